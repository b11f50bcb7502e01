//! fsjail as a drop-in for virtiofsd: `fsjail-virtiofsd` started with the command lines libvirt
//! builds (the socket created by the caller and handed down with `--fd`), the capabilities
//! JSON libvirt reads, refusals of flags fsjail does not support, the systemd unit, READY=1,
//! and a guest flooding bad requests without flooding the host's log.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/skip.rs"]
mod skip;

use guest_driver::abi::InHeader;
use guest_driver::{Descriptor, Device, RawDesc, Session};
use vm_memory::ByteValued;

const COMPAT: &str = env!("CARGO_BIN_EXE_fsjail-virtiofsd");
const FSJAIL: &str = env!("CARGO_BIN_EXE_fsjail");

/// A started `fsjail-virtiofsd` with its share, socket and log.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    share: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn new_dir(share_name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("fsjail-compat.")
            .tempdir()
            .expect("tempdir");
        let share = dir.path().join(share_name);
        std::fs::create_dir(&share).expect("create share");
        let sock = dir.path().join("vhost.sock");
        let log = dir.path().join("daemon.log");
        (dir, share, sock, log)
    }

    /// What libvirt does: create and listen on the socket, pass it down as `--fd=N` without
    /// FD_CLOEXEC, close the parent's copy. `argv` gets the descriptor number and the share.
    fn start_with_fd(share_name: &str, argv: impl FnOnce(i32, &Path) -> Vec<OsString>) -> Daemon {
        let (dir, share, sock, log) = Self::new_dir(share_name);
        let listener = UnixListener::bind(&sock).expect("bind the socket");
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new(COMPAT);
        cmd.args(argv(fd, &share));
        // SAFETY: the closure only calls fcntl, which is async-signal-safe, on a descriptor
        // that the child inherited from us.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_logged(&mut cmd, &log);
        drop(listener);
        Daemon {
            child,
            dir,
            share,
            sock,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn session(&self) -> Session {
        let dev =
            Device::connect(&self.sock).unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log()));
        let s = Session::new(Arc::new(dev));
        s.init()
            .unwrap_or_else(|e| panic!("INIT: {e}\n{}", self.log()));
        s
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                t.elapsed() < limit,
                "still running after {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let err = File::create(log).expect("create log");
    cmd.stdin(Stdio::null())
        .stdout(err.try_clone().expect("dup log"))
        .stderr(err)
        .spawn()
        .expect("spawn fsjail-virtiofsd")
}

/// The guest side of "a working share": INIT, CREATE, WRITE, READ back, the host sees the
/// bytes, and a file the host wrote reads back in the guest.
fn exercise(d: &Daemon, fs: &Session) {
    std::fs::write(d.share.join("from-host.txt"), b"written by the host").unwrap();
    let data = b"written by the guest";
    let (entry, open) = fs
        .create(
            1,
            "hello.txt",
            libc::S_IFREG | 0o644,
            libc::O_RDWR as u32,
            0,
        )
        .unwrap_or_else(|e| panic!("CREATE: {e}\n{}", d.log()));
    assert_eq!(
        fs.write(entry.nodeid, open.fh, 0, data).unwrap(),
        data.len() as u32
    );
    assert_eq!(fs.read(entry.nodeid, open.fh, 0, 4096).unwrap(), data);
    fs.release(entry.nodeid, open.fh, libc::O_RDWR as u32, 0, 0)
        .unwrap();
    assert_eq!(std::fs::read(d.share.join("hello.txt")).unwrap(), data);

    let host = fs.lookup(1, "from-host.txt").unwrap();
    let open = fs.open(host.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(
        fs.read(host.nodeid, open.fh, 0, 4096).unwrap(),
        b"written by the host"
    );
}

/// The process libvirt recorded is the serving process: fsjail-virtiofsd exec'd fsjail.
fn assert_became_fsjail(d: &Daemon) {
    let exe =
        std::fs::read_link(format!("/proc/{}/exe", d.child.id())).expect("read /proc/pid/exe");
    let fsjail = std::fs::canonicalize(FSJAIL).unwrap();
    assert_eq!(
        exe,
        fsjail,
        "pid {} runs {}\n{}",
        d.child.id(),
        exe.display(),
        d.log()
    );
}

fn os(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

#[test]
fn libvirt_separate_options_argv_serves_a_share() {
    // qemuVirtioFSBuildCommandLine for a daemon announcing "separate-options", with
    // <driver type='virtiofs' queue='1024'/>, cache='none', xattr='on' and <openfiles>.
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the live struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    assert_eq!(rc, 0);
    let mut d = Daemon::start_with_fd("share", |fd, share| {
        let mut v = os(&[&format!("--fd={fd}"), "--shared-dir"]);
        v.push(share.into());
        v.extend(os(&["--cache", "never", "--xattr", "--thread-pool-size=0"]));
        v.push(format!("--rlimit-nofile={}", hard.rlim_max.min(65536)).into());
        v
    });
    let fs = d.session();
    assert_became_fsjail(&d);
    exercise(&d, &fs);
    // The frontend goes away: the daemon exits 0, as virtiofsd does.
    drop(fs);
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}\n{}", d.log());
    let log = d.log();
    assert!(log.contains("jailed (namespace sandbox)"), "{log}");
    assert!(log.contains("inherited fd"), "{log}");
}

#[test]
fn libvirt_legacy_o_argv_serves_a_share() {
    // The same function for daemons without "separate-options": -o with the path's commas
    // doubled, the XML's locking attributes, and the debug switch.
    let mut d = Daemon::start_with_fd("share,with,commas", |fd, share| {
        let escaped = share.to_str().unwrap().replace(',', ",,");
        os(&[
            &format!("--fd={fd}"),
            "-o",
            &format!("source={escaped},cache=always,sandbox=none,xattr,no_flock,no_posix_lock"),
            "--thread-pool-size=1",
            "-d",
        ])
    });
    let fs = d.session();
    assert_became_fsjail(&d);
    exercise(&d, &fs);
    drop(fs);
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}\n{}", d.log());
    let log = d.log();
    // -d became --log-level debug.
    assert!(log.contains("DEBUG"), "{log}");
}

#[test]
fn print_capabilities_is_vhost_user_json() {
    let out = Command::new(COMPAT)
        .arg("--print-capabilities")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["type"], "fs");
    let features: Vec<&str> = json["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(features, ["migrate-precopy", "separate-options"]);

    // The descriptor that lets libvirt pick fsjail-virtiofsd without <binary path=...>
    // (QEMU's docs/interop/vhost-user.json, VhostUserBackend).
    let desc = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/40-fsjail-virtiofsd.json"
    ))
    .unwrap();
    let desc: serde_json::Value = serde_json::from_slice(&desc).expect("valid JSON");
    assert_eq!(desc["type"], "fs");
    assert!(desc["binary"]
        .as_str()
        .unwrap()
        .ends_with("/fsjail-virtiofsd"));
    assert!(desc["description"].is_string());

    let out = Command::new(COMPAT).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("fsjail-virtiofsd "));
    let out = Command::new(COMPAT).arg("-V").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn unsupported_flags_fail_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().to_str().unwrap();
    let sock = dir.path().join("s.sock");
    let sock = sock.to_str().unwrap();
    for (extra, name) in [
        (&["--posix-acl"][..], "--posix-acl"),
        (
            &["--migration-mode", "file-handles"][..],
            "--migration-mode",
        ),
        (&["--modcaps=+sys_admin"][..], "--modcaps"),
        (&["-o", "flock"][..], "-o flock"),
        (&["--cache=metadata"][..], "--cache"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = Command::new(COMPAT)
            .args(["--socket-path", sock, "--shared-dir", share])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(name), "{extra:?}: {stderr}");
        assert!(!Path::new(sock).exists(), "{extra:?} created the socket");
    }
    // A problem only serve can see (a descriptor that is no socket) fails too, naming --fd.
    let out = Command::new(COMPAT)
        .args(["--fd=0", "--shared-dir", share])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--fd 0"),
        "{out:?}"
    );
}

#[test]
fn systemd_unit_verifies() {
    let have = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        skip::skip("systemd-analyze verify", "systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/fsjail.service"
    ))
    .expect("contrib/fsjail.service");
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fsjail.service");
    std::fs::write(&path, unit.replace("/usr/bin/fsjail", FSJAIL)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown or misspelled directives are only warnings; treat them as failures.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("fsjail.service"))
        .collect();
    assert!(ours.is_empty(), "warnings about the unit:\n{stderr}");
}

fn notify_socket(name: &str) -> (UnixDatagram, String) {
    let name = format!("fsjail-compat-{name}-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (sock, format!("@{name}"))
}

#[test]
fn sd_notify_sends_ready() {
    let (sock, addr) = notify_socket("direct");
    jail::sd_notify::notify_to(addr.as_ref(), "READY=1").unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn ready_arrives_once_the_socket_listens() {
    let (notify, addr) = notify_socket("serve");
    let (dir, share, sock, log) = Daemon::new_dir("share");
    let mut cmd = Command::new(COMPAT);
    cmd.arg(format!("--socket-path={}", sock.display()))
        .arg(format!("--shared-dir={}", share.display()))
        .env("NOTIFY_SOCKET", &addr);
    let child = spawn_logged(&mut cmd, &log);
    let d = Daemon {
        child,
        dir,
        share,
        sock,
        log,
    };
    let mut buf = [0u8; 64];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}\n{}", d.log()));
    assert_eq!(&buf[..n], b"READY=1");
    // At READY=1 the socket is there and serves.
    exercise(&d, &d.session());
}

/// 10,000 refused requests and 2,000 chains pointing outside guest RAM, with debug logging on,
/// must leave only a handful of lines: each call site may log 10 lines per 5 s.
#[test]
fn guest_flood_leaves_a_bounded_log() {
    let d = Daemon::start_with_fd("share", |fd, share| {
        let mut v = os(&[
            &format!("--fd={fd}"),
            "--log-level",
            "debug",
            "--shared-dir",
        ]);
        v.push(share.into());
        v
    });
    let fs = d.session();
    let start = Instant::now();
    let bad = InHeader {
        len: 9999,
        opcode: 3,
        unique: 1,
        nodeid: 1,
        ..InHeader::default()
    };
    for _ in 0..10_000 {
        let r = fs.send_raw(1, &[bad.as_slice()], &[16]).unwrap();
        assert_eq!(r.used_len, 16, "an EINVAL reply");
    }
    let q = fs.device().queue(1).unwrap();
    let ram = fs.device().ram();
    let outside = ram.base() + ram.size() + (1 << 20);
    for _ in 0..2_000 {
        let desc = Descriptor {
            addr: outside,
            len: 64,
            flags: 0,
            next: 0,
        };
        let token = q
            .post_raw(&[RawDesc { index: 0, desc }], 0, Vec::new())
            .unwrap();
        let c = q.wait(token, Duration::from_secs(10)).unwrap();
        assert_eq!(c.used_len, 0);
    }
    let elapsed = start.elapsed();
    // The share still works after the flood.
    let e = fs.lookup(1, "missing").unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT));

    // After a full window, the next line reports how many were dropped.
    std::thread::sleep(devices::ratelimit::INTERVAL + Duration::from_millis(200));
    fs.send_raw(1, &[bad.as_slice()], &[16]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let log = d.log();
    let lines = log.lines().count();
    let windows = (start.elapsed().as_secs() / devices::ratelimit::INTERVAL.as_secs()) + 2;
    // Three guest-triggered call sites, BURST lines plus one summary each per window, plus the
    // start-up and connection lines.
    let bound = 3 * (devices::ratelimit::BURST as u64 + 1) * windows + 20;
    eprintln!("{lines} log lines for 12,000 bad requests in {elapsed:?} (bound {bound})");
    assert!(
        (lines as u64) <= bound,
        "{lines} log lines for 12,000 bad requests in {elapsed:?} (bound {bound}):\n{}",
        log.lines().take(60).collect::<Vec<_>>().join("\n")
    );
    assert!(log.contains("dropping malformed descriptor chain"), "{log}");
    assert!(log.contains("refused"), "{log}");
    assert!(
        log.contains("were not logged"),
        "no suppression summary:\n{log}"
    );
}

/// The broker under `Type=notify`: READY=1 arrives only when every share's socket listens.
#[test]
fn broker_sends_ready_once_every_share_listens() {
    let (notify, addr) = notify_socket("broker");
    let dir = tempfile::Builder::new()
        .prefix("fsjail-compat.")
        .tempdir()
        .unwrap();
    let d = dir.path().canonicalize().unwrap();
    let mut policy = format!("[broker]\nruntime_dir = \"{}/run\"\n", d.display());
    for tag in ["a", "b"] {
        std::fs::create_dir(d.join(tag)).unwrap();
        std::fs::write(d.join(tag).join("hello.txt"), format!("hello from {tag}")).unwrap();
        policy.push_str(&format!(
            "\n[[share]]\ntag = \"{tag}\"\npath = \"{0}/{tag}\"\nsocket = \"{0}/{tag}.sock\"\n",
            d.display()
        ));
    }
    std::fs::write(d.join("policy.toml"), policy).unwrap();
    let log = d.join("broker.log");
    let mut cmd = Command::new(FSJAIL);
    cmd.args(["run", "--policy"])
        .arg(d.join("policy.toml"))
        .env("NOTIFY_SOCKET", &addr);
    let mut broker = spawn_logged(&mut cmd, &log);
    let mut buf = [0u8; 64];
    let got = notify.recv(&mut buf);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let n = got.unwrap_or_else(|e| panic!("no READY=1 from the broker: {e}\n{}", log_text()));
    assert_eq!(&buf[..n], b"READY=1");
    for tag in ["a", "b"] {
        let sock = d.join(format!("{tag}.sock"));
        let dev = Device::connect(&sock).unwrap_or_else(|e| panic!("{tag}: {e}\n{}", log_text()));
        let fs = Session::new(Arc::new(dev));
        let fail = |what: &str, e: guest_driver::Error| -> ! {
            panic!("{tag}: {what}: {e}\n{}", log_text())
        };
        fs.init().unwrap_or_else(|e| fail("INIT", e));
        let e = fs
            .lookup(1, "hello.txt")
            .unwrap_or_else(|e| fail("LOOKUP", e));
        let open = fs
            .open(e.nodeid, libc::O_RDONLY as u32)
            .unwrap_or_else(|e| fail("OPEN", e));
        let data = fs
            .read(e.nodeid, open.fh, 0, 64)
            .unwrap_or_else(|e| fail("READ", e));
        assert_eq!(data, format!("hello from {tag}").as_bytes());
    }
    // SAFETY: kill(2) on the broker this test started.
    unsafe { libc::kill(broker.id() as i32, libc::SIGTERM) };
    let st = broker.wait().unwrap();
    assert!(st.success(), "{st}\n{}", log_text());
}
