//! The jail, checked from outside the worker: real namespaces, a real `fsjail worker` process
//! started by `jail::spawn::spawn_worker` from this test process (the broker's code path), and
//! every property read from `/proc/PID/` as the host sees it.
//!
//! Runs as root (the jail needs it, or a user namespace). `spawn_worker` is safe to call from
//! the test harness's threads: the child runs only async-signal-safe code until exec. The
//! worker dies with the thread that spawned it (parent-death signal), so a failed test leaves
//! nothing behind.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guest_driver::{Device, Session};
use jail::handover;
use jail::policy::{IdMap, SandboxMode, ShareConfig};
use jail::spawn::{spawn_worker, Worker};

const NOFILE: u64 = 1000;
/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID.
const CAPS: &str = "00000000000000db";
const CAPS_MKNOD: &str = "00000000080000db";

struct Jailed {
    worker: Worker,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    share: PathBuf,
    socket: PathBuf,
}

impl Jailed {
    fn pid(&self) -> i32 {
        self.worker.pid
    }

    fn proc(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{rel}", self.pid()))
    }

    fn status(&self, field: &str) -> String {
        let text = std::fs::read_to_string(self.proc("status")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in status:\n{text}"))
            .trim()
            .to_owned()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for the worker to end; returns its wait status as (exited, code or signal).
    fn wait(&self, timeout: Duration) -> (bool, i32) {
        let mut pfd = libc::pollfd {
            fd: self.worker.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, a live local; the pidfd is owned by `self.worker`.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        assert_eq!(
            n,
            1,
            "worker {} still running after {timeout:?}; log:\n{}",
            self.pid(),
            self.log()
        );
        // SAFETY: siginfo_t is plain data; all-zero is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only `info`, a live local; the pidfd is owned by `self.worker`.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.worker.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
        // SAFETY: waitid succeeded with WEXITED, so `info` describes a child's exit and
        // si_status is the field it set.
        let status = unsafe { info.si_status() };
        (info.si_code == libc::CLD_EXITED, status)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo (a null pointer).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.worker.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        assert_eq!(rc, 0);
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo (a null pointer); the
        // pidfd stays valid even if the worker is already gone.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.worker.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PIDFD,
                self.worker.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            );
        }
        if std::thread::panicking() {
            eprintln!("--- worker log ---\n{}", self.log());
        }
    }
}

/// A share holding `hello.txt`, `sub/inner.txt` and `passwd -> /etc/passwd`, next to a file
/// `outside.txt` the worker must never reach; and a worker jailed on it.
fn start(configure: impl FnOnce(&mut ShareConfig)) -> Jailed {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello.txt"), "hello\n").unwrap();
    std::fs::create_dir(share.join("sub")).unwrap();
    std::fs::write(share.join("sub/inner.txt"), "inner\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", share.join("passwd")).unwrap();
    std::fs::write(dir.path().join("outside.txt"), "outside\n").unwrap();
    let share = share.canonicalize().unwrap();

    let socket = dir.path().join("vfs.sock");
    let listener: OwnedFd = UnixListener::bind(&socket).unwrap().into();

    let mut cfg = ShareConfig::new("jailtest", share.clone(), socket.clone());
    cfg.rlimit_nofile = NOFILE;
    cfg.uid_map = vec![];
    cfg.gid_map = vec![];
    configure(&mut cfg);

    // The worker logs at the level of its broker: here, this process.
    log::set_max_level(log::LevelFilter::Debug);
    let exe = Path::new(env!("CARGO_BIN_EXE_fsjail"));
    let worker = spawn_worker(&cfg, &listener, exe).unwrap();
    drop(listener);

    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = std::fs::File::from(worker.stderr.try_clone().unwrap());
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });

    let jailed = Jailed {
        worker,
        log,
        dir,
        share,
        socket,
    };
    // READY means every jail step is done: what /proc shows now is the final jail.
    let mut pfd = libc::pollfd {
        fd: jailed.worker.control.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, a live local; the control socket is owned by `jailed.worker`.
    let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
    assert_eq!(n, 1, "worker not ready in 20 s; log:\n{}", jailed.log());
    if let Err(e) = handover::recv_ready(jailed.worker.control.as_fd()) {
        std::thread::sleep(Duration::from_millis(200));
        panic!("worker did not get ready: {e}; log:\n{}", jailed.log());
    }
    jailed
}

fn ns(pid: &str, name: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap()
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn share_names() -> BTreeSet<String> {
    ["hello.txt", "sub", "passwd"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn check_credentials(j: &Jailed, caps: &str) {
    assert_eq!(j.status("NoNewPrivs"), "1");
    assert_eq!(j.status("CapEff"), caps);
    assert_eq!(j.status("CapPrm"), caps);
    assert_eq!(j.status("CapBnd"), caps);
    assert_eq!(j.status("CapInh"), "0000000000000000");
    assert_eq!(j.status("CapAmb"), "0000000000000000");
    // The test runs with supplementary group 0 (root's): the worker must not inherit it.
    assert_eq!(j.status("Groups"), "");
    // Step 9: the worker allowlist plus the clone3 filter, in filter mode.
    assert_eq!(j.status("Seccomp"), "2");
    assert_eq!(j.status("Seccomp_filters"), "2");
}

fn check_limits(j: &Jailed) {
    let limits = std::fs::read_to_string(j.proc("limits")).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row("Max open files"),
        [NOFILE.to_string(), NOFILE.to_string()]
    );
    assert_eq!(row("Max core file size"), ["0", "0"]);
    // One request queue plus the default request pool.
    let nproc =
        (jail::steps::rlimits::NPROC_BASE + 1 + jail::policy::defaults::THREAD_POOL_SIZE as u64)
            .to_string();
    assert_eq!(row("Max processes"), [nproc.clone(), nproc]);
}

/// Every descriptor of the worker, by what it points at (as seen from here).
fn fd_targets(j: &Jailed) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(j.proc("fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            (
                fd,
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    fds.sort();
    fds
}

/// 0 /dev/null, 1 and 2 the stderr pipe, 3 the control socket, 4 the listener, then the
/// share's root (for syncfs), the passthrough's /proc/self/fd and /proc/self/mountinfo (its
/// own proc: pid 1) and its root inode (the share again, at /share/NAME in its tmpfs root); once the vhost-user daemon is up,
/// its epoll and eventfds. Nothing else: no host
/// directory, no inherited descriptor of this test process.
fn check_fds(j: &Jailed) {
    let fds = fd_targets(j);
    let fixed: Vec<(i32, &str)> = fds
        .iter()
        .filter(|(_, t)| t != "anon_inode:[eventpoll]" && t != "anon_inode:[eventfd]")
        .map(|(fd, t)| (*fd, t.as_str()))
        .collect();
    assert_eq!(fixed.len(), 9, "worker fds: {fds:?}");
    assert_eq!(fixed[0], (0, "/dev/null"), "{fds:?}");
    assert!(
        fixed[1].1.starts_with("pipe:") && fixed[1].1 == fixed[2].1,
        "{fds:?}"
    );
    assert!(
        fixed[3].1.starts_with("socket:") && fixed[4].1.starts_with("socket:"),
        "{fds:?}"
    );
    let mut rest: Vec<&str> = fixed[5..].iter().map(|(_, t)| *t).collect();
    rest.sort_unstable();
    // The share lies at /share/NAME in the worker's tmpfs root (its parent is bound at /share).
    let share = format!("/share/{}", j.share.file_name().unwrap().to_string_lossy());
    assert_eq!(
        rest,
        ["/proc/1/fd", "/proc/1/mountinfo", &share, &share],
        "worker fds: {fds:?}"
    );
}

/// statvfs's f_flag of the mount `path` (through /proc/PID/root: the worker's) lies on.
fn mount_flags(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs writes only into `st`, a plain C struct for which zeroes are valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable struct, both live for the call.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0, "statvfs");
    st.f_flag
}

#[test]
fn namespace_jail_as_root() {
    let j = start(|_| {});
    let pid = j.pid().to_string();

    check_credentials(&j, CAPS);
    check_limits(&j);

    // Every namespace but the user namespace (no id map: the worker is host root, with six
    // capabilities) is the worker's own.
    for name in [
        "mnt",
        "pid",
        "pid_for_children",
        "net",
        "ipc",
        "uts",
        "cgroup",
        "time",
    ] {
        assert_ne!(
            ns(&pid, name),
            ns("self", name),
            "{name} namespace is shared"
        );
    }
    assert_eq!(ns(&pid, "user"), ns("self", "user"));
    // PID 1 of its own pid namespace.
    let nspid: Vec<String> = j
        .status("NSpid")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(nspid, [pid.clone(), "1".to_owned()]);

    // Its root is the share and nothing else.
    assert_eq!(names_in(&j.proc("root")), share_names());
    assert_eq!(names_in(&j.proc("cwd")), share_names());
    // (A symlink read through /proc/PID/root resolves against the reader's root, so the link
    // is checked through the guest below, where the worker resolves it.)

    // Its mounts, as the kernel lists them relative to its root: none. The one mount it serves
    // from is the share's parent, bound at /share in its tmpfs root, and that mount's root lies
    // above the worker's root (the share), so it is not listed; the host's mounts, the tmpfs
    // and its proc are out of its reach. (Why the parent: see jail/src/steps/mounts.rs.)
    let mountinfo = std::fs::read_to_string(j.proc("mountinfo")).unwrap();
    assert_eq!(mountinfo, "", "the worker sees mounts");
    // The mount under its root: read-write, nosuid, nodev.
    let flags = mount_flags(&j.proc("root"));
    assert_eq!(
        flags & (libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RDONLY),
        libc::ST_NOSUID | libc::ST_NODEV,
        "mount flags {flags:#x}"
    );

    // Only a loopback interface.
    let dev = std::fs::read_to_string(j.proc("net/dev")).unwrap();
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"]);

    check_fds(&j);

    // The guest side: `..` at the root and a symlink to /etc/passwd stay inside.
    guest_cannot_leave(&j);

    // A frontend that disconnects ends the worker with status 0.
    assert_eq!(
        j.wait(Duration::from_secs(10)),
        (true, 0),
        "log:\n{}",
        j.log()
    );
}

fn guest_cannot_leave(j: &Jailed) {
    let dev = Arc::new(Device::connect(&j.socket).unwrap());
    let fs = Session::new(dev);
    fs.init().unwrap();
    let root = fs.getattr(1, None).unwrap().attr;

    // `..` is not a name the guest may look up; whatever it gets is not the share's parent.
    match fs.lookup(1, "..") {
        Err(e) => assert!(e.errno().is_some(), "{e}"),
        Ok(e) => {
            assert_eq!(e.attr.ino, root.ino);
            assert!(fs.lookup(e.nodeid, "outside.txt").is_err());
        }
    }
    let sub = fs.lookup(1, "sub").unwrap();
    if let Ok(up) = fs.lookup(sub.nodeid, "..") {
        assert_eq!(up.attr.ino, root.ino);
    }
    assert!(fs.lookup(1, "outside.txt").is_err());

    // The symlink is served as a symlink; the server never follows it.
    let link = fs.lookup(1, "passwd").unwrap();
    assert_eq!(link.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(fs.readlink(link.nodeid).unwrap(), b"/etc/passwd");
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    if let Ok(open) = fs.open(link.nodeid, libc::O_RDONLY as u32) {
        let data = fs.read(link.nodeid, open.fh, 0, 65536).unwrap_or_default();
        assert_ne!(
            data, host_passwd,
            "read the host's /etc/passwd through a symlink"
        );
    }
    // What the guest can read is the share.
    let hello = fs.lookup(1, "hello.txt").unwrap();
    let open = fs.open(hello.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(hello.nodeid, open.fh, 0, 100).unwrap(), b"hello\n");
}

#[test]
fn namespace_jail_with_id_maps() {
    let map = vec![IdMap {
        guest: 0,
        host: 200_000,
        count: 65536,
    }];
    let j = start(|c| {
        c.uid_map = map.clone();
        c.gid_map = map.clone();
    });
    let pid = j.pid().to_string();
    for name in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"] {
        assert_ne!(
            ns(&pid, name),
            ns("self", name),
            "{name} namespace is shared"
        );
    }
    let uid_map = std::fs::read_to_string(j.proc("uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    // Seen from the host, the worker runs as the mapped uid/gid.
    assert_eq!(
        j.status("Uid").split_whitespace().collect::<Vec<_>>(),
        ["200000"; 4]
    );
    assert_eq!(
        j.status("Gid").split_whitespace().collect::<Vec<_>>(),
        ["200000"; 4]
    );
    // A root broker leaves setgroups allowed so that the worker could drop root's groups.
    assert_eq!(
        std::fs::read_to_string(j.proc("setgroups")).unwrap().trim(),
        "allow"
    );
    check_credentials(&j, CAPS);
    assert_eq!(names_in(&j.proc("root")), share_names());

    // Guest root creates a file: on the host it is the mapped uid's. (The share must belong to
    // a mapped id: the worker's capabilities do not apply to files of unmapped owners, as
    // host root's files are in its user namespace.)
    std::os::unix::fs::chown(&j.share, Some(200_000), Some(200_000)).unwrap();
    let fs = Session::new(Arc::new(Device::connect(&j.socket).unwrap()));
    fs.init().unwrap();
    fs.mkdir(1, "made-by-guest", 0o755, 0).unwrap();
    let meta = std::fs::metadata(j.share.join("made-by-guest")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 200_000);
}

#[test]
fn mknod_kept_only_when_devices_are_allowed() {
    let j = start(|c| c.special_files = devices::fs::SpecialFiles::Host);
    check_credentials(&j, CAPS_MKNOD);
}

#[test]
fn readonly_share_is_a_readonly_mount() {
    let j = start(|c| c.readonly = true);
    let flags = mount_flags(&j.proc("root"));
    assert_ne!(flags & libc::ST_RDONLY, 0, "mount flags {flags:#x}");
    // And a write through the worker's root fails at the kernel, not just at the policy.
    let err = std::fs::write(j.proc("root/new.txt"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(!j.share.join("new.txt").exists());
}

#[test]
fn chroot_sandbox() {
    let j = start(|c| c.sandbox = SandboxMode::Chroot);
    let pid = j.pid().to_string();
    assert_ne!(ns(&pid, "mnt"), ns("self", "mnt"));
    // virtiofsd's chroot sandbox: no other namespace.
    for name in ["pid", "net", "user"] {
        assert_eq!(ns(&pid, name), ns("self", name), "{name}");
    }
    assert_eq!(names_in(&j.proc("root")), share_names());
    check_credentials(&j, CAPS);
    check_limits(&j);
    // The worker can still serve.
    let dev = Arc::new(Device::connect(&j.socket).unwrap());
    let fs = Session::new(dev);
    fs.init().unwrap();
    if let Err(e) = fs.lookup(1, "hello.txt") {
        std::thread::sleep(Duration::from_millis(200));
        panic!("lookup: {e}; log:\n{}", j.log());
    }
    assert!(fs.lookup(1, "outside.txt").is_err());
}

#[test]
fn sigterm_ends_the_worker_with_status_0() {
    let j = start(|_| {});
    j.signal(libc::SIGTERM);
    assert_eq!(j.wait(Duration::from_secs(10)), (true, 0));
    // The directory outlives the worker: nothing was created on the host.
    assert_eq!(
        names_in(j.dir.path()),
        ["outside.txt", "share", "vfs.sock"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn worker_dies_with_the_thread_that_spawned_it() {
    // The parent-death signal fires when the spawning thread exits: a broker that dies takes
    // its workers along.
    let (tx, rx) = std::sync::mpsc::channel();
    let spawner = std::thread::spawn(move || {
        let j = start(|_| {});
        let pidfd = j.worker.pidfd.try_clone().unwrap();
        tx.send((j.pid(), pidfd)).unwrap();
        // Leak the guard: the worker must die because this thread ends, not because of Drop.
        std::mem::forget(j);
    });
    let (pid, pidfd) = rx.recv().unwrap();
    spawner.join().unwrap();
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, a live local; `pidfd` is our own clone of the worker's pidfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1, "worker {pid} survived its broker thread");
    // SAFETY: siginfo_t is plain data; all-zero is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only `info`, a live local; `pidfd` is ours.
    let rc = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED,
        )
    };
    assert_eq!(rc, 0, "waitid: {}", std::io::Error::last_os_error());
    assert_eq!(info.si_code, libc::CLD_KILLED);
    // SAFETY: waitid succeeded and reported a killed child: si_status holds the signal.
    assert_eq!(unsafe { info.si_status() }, libc::SIGKILL);
}

#[test]
fn xattrs_work_in_the_namespace_jail() {
    let j = start(|c| c.xattr = true);
    let path = std::ffi::CString::new(j.share.join("hello.txt").to_str().unwrap()).unwrap();
    // SAFETY: every pointer is to a NUL-terminated string or a 3-byte value that outlives the
    // call; setxattr only reads them.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"user.jail".as_ptr(),
            b"yes".as_ptr().cast(),
            3,
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr on the host: {}",
        std::io::Error::last_os_error()
    );
    let fs = Session::new(Arc::new(Device::connect(&j.socket).unwrap()));
    fs.init().unwrap();
    let hello = fs.lookup(1, "hello.txt").unwrap();
    match fs.getxattr(hello.nodeid, "user.jail", 64) {
        Ok(guest_driver::XattrReply::Data(d)) => assert_eq!(d, b"yes"),
        other => panic!("getxattr through the jail: {other:?}"),
    }
}

/// The broker unprivileged: this test binary runs [`unprivileged_inner`] as uid/gid 65534
/// (setpriv), which spawns the worker in a user namespace mapping 65534 to 0; this process,
/// root, checks the worker from outside and plays the guest.
#[test]
fn unprivileged_broker() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello.txt"), "hello\n").unwrap();
    for p in [dir.path(), &share, &share.join("hello.txt")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let mut inner = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_inner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FSJAIL_TEST_UNPRIVILEGED_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(inner.stdout.take().unwrap());
    let mut pid = None;
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        // libtest prints "test unprivileged_inner ... " before the test's own output.
        if let Some((_, p)) = line.trim().split_once("WORKER_PID=") {
            pid = Some(p.to_owned());
            break;
        }
    }
    let pid =
        pid.unwrap_or_else(|| panic!("the unprivileged broker did not start a worker:\n{seen}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        field("Uid").split_whitespace().collect::<Vec<_>>(),
        ["65534"; 4]
    );
    assert_eq!(field("NoNewPrivs"), "1");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(set), CAPS, "{set}");
    }
    assert_eq!(field("Groups"), "");
    for name in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"] {
        assert_ne!(
            ns(&pid, name),
            ns("self", name),
            "{name} namespace is shared"
        );
    }
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/setgroups"))
            .unwrap()
            .trim(),
        "deny"
    );
    let root: BTreeSet<String> = names_in(Path::new(&format!("/proc/{pid}/root")));
    assert_eq!(root, BTreeSet::from(["hello.txt".to_owned()]));

    // The guest creates a file: on the host it belongs to the unprivileged user.
    let fs = Session::new(Arc::new(
        Device::connect(dir.path().join("vfs.sock")).unwrap(),
    ));
    fs.init().unwrap();
    assert!(fs.lookup(1, "hello.txt").is_ok());
    fs.mkdir(1, "made-by-guest", 0o755, 0).unwrap();
    let meta = std::fs::metadata(share.join("made-by-guest")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    drop(fs);

    drop(inner.stdin.take());
    assert!(inner.wait().unwrap().success());
}

/// The unprivileged broker's half of [`unprivileged_broker`]; run only by it.
#[test]
#[ignore = "run by unprivileged_broker as uid 65534"]
fn unprivileged_inner() {
    let Some(dir) = std::env::var_os("FSJAIL_TEST_UNPRIVILEGED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    // SAFETY: geteuid takes no arguments and cannot fail.
    assert_ne!(unsafe { libc::geteuid() }, 0, "must run unprivileged");
    let socket = dir.join("vfs.sock");
    let listener: OwnedFd = UnixListener::bind(&socket).unwrap().into();
    let mut cfg = ShareConfig::new("unpriv", dir.join("share"), socket);
    cfg.rlimit_nofile = NOFILE;
    cfg.uid_map = vec![];
    cfg.gid_map = vec![];
    let exe = Path::new(env!("CARGO_BIN_EXE_fsjail"));
    let worker = spawn_worker(&cfg, &listener, exe).unwrap();
    let mut pfd = libc::pollfd {
        fd: worker.control.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, a live local; the control socket is owned by `worker`.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
    if let Err(e) = handover::recv_ready(worker.control.as_fd()) {
        let mut log = String::new();
        let _ = std::fs::File::from(worker.stderr).read_to_string(&mut log);
        panic!("worker not ready: {e}\n{log}");
    }
    println!("WORKER_PID={}", worker.pid);
    // Until the outer test is done.
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
}
