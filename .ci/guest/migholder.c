/* Guest side of .ci/vm-migrate.sh (built static on the host, run in the guest from the share).
 *
 *   migholder DIR EXPECT      EXPECT: "ok" (the gone file still reads) or "eio" (it fails EIO)
 *
 * Before the migration it holds DIR/big open after reading its first half, DIR/list open after
 * one short getdents64, DIR/unsynced written but not fsynced, and DIR/gone open after one read;
 * then it creates DIR/ready and waits for DIR/go (the host makes it once the migration ended).
 * After, with the page cache dropped so every read reaches the device, it reads the rest of big
 * (bytes i*7%251), lists the rest of list (LIST_N entries in all), fsyncs unsynced and reads gone
 * again. Prints "check NAME PASS|FAIL detail" lines for the harness.
 *
 * Load during the RAM copy: while the host migrates, a child keeps dropping the page cache and
 * reading DIR/churn back into it, so the device writes READ replies into guest pages while QEMU
 * copies RAM (and logs them). Afterwards churn is read from the page cache the destination
 * received and compared. This is no proof of the log: each round refills the same pages with
 * the same bytes, and it passed with reply marking switched off (guest-driver/tests/dirty_log.rs
 * proves the marks). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (1 << 20)
#define LIST_N 200
#define CHURN (4 << 20)

static int fails;

static void check(const char *name, int ok, const char *detail) {
    printf("check %s %s %s\n", name, ok ? "PASS" : "FAIL", detail);
    fflush(stdout);
    if (!ok) fails++;
}

static int read_full(int fd, unsigned char *buf, size_t len, off_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, off + done);
        if (n < 0) return -errno;
        if (n == 0) break;
        done += n;
    }
    return (int)done;
}

static int churn_ok(const unsigned char *buf, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (unsigned char)((i * 11 + 3) % 253)) return 0;
    return 1;
}

static int pattern_ok(const unsigned char *buf, size_t len, size_t off) {
    for (size_t i = 0; i < len; i++)
        if (buf[i] != (unsigned char)((off + i) * 7 % 251)) return 0;
    return 1;
}

static int list_some(int fd, int max_calls, int *count) {
    char buf[512];
    for (int c = 0; c < max_calls; c++) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) return -errno;
        if (n == 0) return 0;
        for (long pos = 0; pos < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + pos);
            if (strncmp(d->d_name, "entry-", 6) == 0) (*count)++;
            pos += d->d_reclen;
        }
    }
    return 1;
}

static void drop_caches(void) {
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "3", 1) != 1) perror("drop_caches");
        close(fd);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: migholder DIR ok|eio\n");
        return 2;
    }
    char path[4096], detail[256];
    const char *dir = argv[1];
    int want_eio = strcmp(argv[2], "eio") == 0;
    static unsigned char buf[BIG];

    snprintf(path, sizeof path, "%s/big", dir);
    int big = open(path, O_RDONLY);
    int n = big < 0 ? -errno : read_full(big, buf, BIG / 2, 0);
    snprintf(detail, sizeof detail, "n=%d", n);
    check("before_read_half", n == BIG / 2 && pattern_ok(buf, BIG / 2, 0), detail);

    snprintf(path, sizeof path, "%s/list", dir);
    int list = open(path, O_RDONLY | O_DIRECTORY);
    int listed = 0;
    int r = list < 0 ? -errno : list_some(list, 1, &listed);
    snprintf(detail, sizeof detail, "r=%d listed=%d", r, listed);
    check("before_list_some", r == 1 && listed > 0 && listed < LIST_N, detail);

    snprintf(path, sizeof path, "%s/unsynced", dir);
    int uns = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const char *msg = "written before the migration, fsynced after\n";
    ssize_t w = uns < 0 ? -errno : write(uns, msg, strlen(msg));
    snprintf(detail, sizeof detail, "w=%zd", w);
    check("before_write_unsynced", w == (ssize_t)strlen(msg), detail);

    snprintf(path, sizeof path, "%s/gone", dir);
    int gone = open(path, O_RDONLY);
    unsigned char g[16];
    n = gone < 0 ? -errno : read_full(gone, g, 4, 0);
    snprintf(detail, sizeof detail, "n=%d", n);
    check("before_read_gone", n == 4, detail);

    /* The churn reader runs until DIR/go appears. */
    char churn[4096], go[4096];
    snprintf(churn, sizeof churn, "%s/churn", dir);
    snprintf(go, sizeof go, "%s/go", dir);
    pid_t child = fork();
    if (child == 0) {
        static unsigned char cb[CHURN];
        struct stat cs;
        int rounds = 0;
        while (stat(go, &cs) != 0) {
            drop_caches();
            int fd = open(churn, O_RDONLY);
            if (fd < 0 || read_full(fd, cb, CHURN, 0) != CHURN) _exit(1);
            close(fd);
            rounds++;
        }
        printf("check churn_rounds %s rounds=%d\n", rounds > 0 ? "PASS" : "FAIL", rounds);
        fflush(stdout);
        _exit(0);
    }

    snprintf(path, sizeof path, "%s/ready", dir);
    int rd = open(path, O_WRONLY | O_CREAT, 0644);
    if (rd >= 0) close(rd);
    fflush(stdout);

    /* The host migrates the guest now, then makes DIR/go. */
    snprintf(path, sizeof path, "%s/go", dir);
    struct stat st;
    for (int i = 0; stat(path, &st) != 0; i++) {
        if (i > 6000) {
            check("go_seen", 0, "no go file after 600 s");
            return 1;
        }
        usleep(100000);
    }
    int status = 0;
    waitpid(child, &status, 0);
    snprintf(detail, sizeof detail, "child status=%#x", status);
    check("churn_reader", child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, detail);
    {
        /* From the page cache as migrated: no drop_caches before this read. */
        static unsigned char cb[CHURN];
        int fd = open(churn, O_RDONLY);
        n = fd < 0 ? -errno : read_full(fd, cb, CHURN, 0);
        snprintf(detail, sizeof detail, "n=%d", n);
        check("after_churn_cached", n == CHURN && churn_ok(cb, CHURN), detail);
        if (fd >= 0) close(fd);
    }
    drop_caches();

    n = read_full(big, buf, BIG / 2, BIG / 2);
    snprintf(detail, sizeof detail, "n=%d", n);
    check("after_read_rest", n == BIG / 2 && pattern_ok(buf, BIG / 2, BIG / 2), detail);

    r = list_some(list, 100000, &listed);
    snprintf(detail, sizeof detail, "r=%d listed=%d of %d", r, listed, LIST_N);
    check("after_list_rest", r == 0 && listed == LIST_N, detail);

    int fs = fsync(uns);
    snprintf(detail, sizeof detail, "rc=%d errno=%d", fs, fs ? errno : 0);
    check("after_fsync_unsynced", fs == 0, detail);
    close(uns);

    n = read_full(gone, g, 4, 0);
    snprintf(detail, sizeof detail, "n=%d want=%s", n, want_eio ? "EIO" : "4 bytes");
    check("after_read_gone", want_eio ? n == -EIO : n == 4, detail);

    snprintf(path, sizeof path, "%s/done", dir);
    rd = open(path, O_WRONLY | O_CREAT, 0644);
    if (rd >= 0) close(rd);
    return fails ? 1 : 0;
}
