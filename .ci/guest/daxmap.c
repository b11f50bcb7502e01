/* daxmap: the guest side of the DAX checks (.ci/guest/dax-checks.sh). Busybox has no way to
 * mmap a file, so this small static helper does, and reports through its exit status and one
 * line on stdout. Compiled on the host (gcc -static) by .ci/run and written into the share.
 *
 *   daxmap write FILE OFFSET TEXT      mmap(MAP_SHARED) read-write, write TEXT at OFFSET, msync
 *   daxmap read FILE OFFSET LEN        print LEN bytes at OFFSET, read through a shared mapping
 *   daxmap watch FILE OFFSET TEXT REQ ACK SECONDS
 *                                      map FILE, touch it, create REQ, wait for ACK to exist,
 *                                      then expect TEXT at OFFSET through the same mapping (the
 *                                      host wrote it meanwhile)
 *   daxmap upgrade FILE1 FILE2         map both read-write, read both (read-only DAX mappings),
 *                                      then write FILE1 (the guest upgrades it to read-write)
 *                                      and check both still read back
 *   daxmap truncate FILE               map 2 pages, truncate to 1 page: page 0 still reads, page
 *                                      1 raises SIGBUS, and the file is 1 page long
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what)
{
    printf("FAIL %s: %s\n", what, strerror(errno));
    return 1;
}

static void *map_file(const char *path, int prot, int flags, int *fd_out, size_t *len_out)
{
    int fd = open(path, flags);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0)
        return MAP_FAILED;
    void *p = mmap(NULL, (size_t)st.st_size, prot, MAP_SHARED, fd, 0);
    *fd_out = fd;
    *len_out = (size_t)st.st_size;
    return p;
}

static sigjmp_buf bus_jump;
static void on_bus(int sig)
{
    (void)sig;
    siglongjmp(bus_jump, 1);
}

int main(int argc, char **argv)
{
    int fd;
    size_t len;
    if (argc >= 5 && strcmp(argv[1], "write") == 0) {
        char *p = map_file(argv[2], PROT_READ | PROT_WRITE, O_RDWR, &fd, &len);
        size_t off = strtoul(argv[3], NULL, 0), n = strlen(argv[4]);
        if (p == MAP_FAILED)
            return fail("mmap");
        if (off + n > len) {
            printf("FAIL offset past the end\n");
            return 1;
        }
        memcpy(p + off, argv[4], n);
        if (msync(p, len, MS_SYNC) != 0)
            return fail("msync");
        printf("OK wrote %zu bytes\n", n);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "read") == 0) {
        char *p = map_file(argv[2], PROT_READ, O_RDONLY, &fd, &len);
        size_t off = strtoul(argv[3], NULL, 0), n = strtoul(argv[4], NULL, 0);
        if (p == MAP_FAILED)
            return fail("mmap");
        if (off + n > len) {
            printf("FAIL offset past the end\n");
            return 1;
        }
        fwrite(p + off, 1, n, stdout);
        putchar('\n');
        return 0;
    }
    if (argc >= 8 && strcmp(argv[1], "watch") == 0) {
        char *p = map_file(argv[2], PROT_READ, O_RDONLY, &fd, &len);
        size_t off = strtoul(argv[3], NULL, 0), n = strlen(argv[4]);
        int seconds = atoi(argv[7]);
        struct stat st;
        volatile char c;
        if (p == MAP_FAILED)
            return fail("mmap");
        if (off + n > len) {
            printf("FAIL offset past the end\n");
            return 1;
        }
        c = p[off]; /* the mapping is live before the host writes */
        (void)c;
        int req = open(argv[5], O_CREAT | O_WRONLY, 0644);
        if (req < 0)
            return fail("create the request file");
        close(req);
        for (int i = 0; stat(argv[6], &st) != 0; i++) {
            if (i >= seconds * 10) {
                printf("FAIL the host did not answer in %d s\n", seconds);
                return 1;
            }
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (memcmp(p + off, argv[4], n) != 0) {
            printf("FAIL the mapping shows \"%.*s\"\n", (int)n, p + off);
            return 1;
        }
        printf("OK the mapping shows the host's write\n");
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "upgrade") == 0) {
        int fd2;
        size_t len2;
        volatile char *a = map_file(argv[2], PROT_READ | PROT_WRITE, O_RDWR, &fd, &len);
        volatile char *b = map_file(argv[3], PROT_READ | PROT_WRITE, O_RDWR, &fd2, &len2);
        if (a == MAP_FAILED || b == MAP_FAILED)
            return fail("mmap");
        char a0 = a[0], b0 = b[0];
        a[1] = 'W';
        if (msync((void *)a, len, MS_SYNC) != 0)
            return fail("msync");
        if (a[0] != a0 || a[1] != 'W' || b[0] != b0) {
            printf("FAIL the mappings changed under the upgrade\n");
            return 1;
        }
        printf("OK upgraded\n");
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "truncate") == 0) {
        long page = sysconf(_SC_PAGESIZE);
        char *p = map_file(argv[2], PROT_READ | PROT_WRITE, O_RDWR, &fd, &len);
        volatile char c;
        if (p == MAP_FAILED)
            return fail("mmap");
        if (len < 2 * (size_t)page) {
            printf("FAIL the file must be 2 pages at least\n");
            return 1;
        }
        p[page] = 'x';
        if (ftruncate(fd, page) != 0)
            return fail("ftruncate");
        c = p[0];
        (void)c;
        signal(SIGBUS, on_bus);
        if (sigsetjmp(bus_jump, 1) == 0) {
            c = p[page];
            printf("FAIL no SIGBUS past the new end\n");
            return 1;
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || st.st_size != page) {
            printf("FAIL size %lld after truncate\n", (long long)st.st_size);
            return 1;
        }
        printf("OK truncated under the mapping\n");
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of daxmap.c\n");
    return 2;
}
