//! Starts a virtio-fs backend as its own process, for the integration tests.
//!
//! A [`Backend`] is either fsjail (`fsjail serve`) or the reference peer (the virtiofsd binary
//! named by `FSJAIL_PEER`). Each one gets a fresh temporary directory holding the share and the
//! vhost-user socket, is waited for until its socket appears, and is killed when dropped. Its
//! stderr goes to a file that is printed if the test fails, so a crash leaves its log behind.
//!
//! This file is also compiled into `guest-driver`'s tests (through `#[path]`), where Cargo does
//! not provide `CARGO_BIN_EXE_fsjail`: there the binary is built on demand with `cargo build`.

#![allow(dead_code)]

pub mod skip;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use guest_driver::{Device, Options, RawReply, Session};

/// Defines, for each named `fn(Kind)` in the crate root, `fsjail::<name>` (always run) and
/// `peer::<name>` (run when `FSJAIL_PEER` is set; else the skip is counted, or fails the test
/// under `FSJAIL_REQUIRE_PEER=1`: see [`skip`]).
/// Use with `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod fsjail {
            $(
                #[test]
                fn $name() {
                    super::$name(super::common::Kind::Fsjail)
                }
            )*
        }
        mod peer {
            $(
                #[test]
                fn $name() {
                    if super::common::peer_binary().is_none() {
                        super::common::skip::peer_missing();
                        return;
                    }
                    super::$name(super::common::Kind::Peer)
                }
            )*
        }
    };
}

/// Which backend to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `fsjail serve`.
    Fsjail,
    /// The virtiofsd binary named by `FSJAIL_PEER`.
    Peer,
}

/// How to start a backend. The flags map to each binary's own spelling.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub xattr: bool,
    pub readonly: bool,
    /// fsjail's `--num-request-queues` (virtiofsd serves one request queue).
    pub num_request_queues: Option<u16>,
    /// Extra arguments for fsjail only.
    pub fsjail_args: Vec<String>,
    /// Extra arguments for the peer only.
    pub peer_args: Vec<String>,
    /// A tmpfs mounted at `share/NAME` before the backend starts (a jailed worker serves the
    /// mount tree it saw at start), unmounted when the backend is dropped. Needs root; see
    /// [`Backend::has_tmpfs`].
    pub tmpfs_at: Option<&'static str>,
    /// Mount options for `tmpfs_at` (`"size=1m"`).
    pub tmpfs_options: Option<&'static str>,
    /// Serve this existing directory (prepared by the test, e.g. with a mount inside) instead
    /// of a fresh `share` in the backend's temporary directory.
    pub share_dir: Option<PathBuf>,
}

impl Config {
    pub fn xattr() -> Self {
        Config {
            xattr: true,
            ..Config::default()
        }
    }

    pub fn readonly() -> Self {
        Config {
            readonly: true,
            ..Config::default()
        }
    }
}

/// The peer binary, when `FSJAIL_PEER` names one.
pub fn peer_binary() -> Option<PathBuf> {
    std::env::var_os("FSJAIL_PEER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The backends a test should run against: fsjail always, the peer when `FSJAIL_PEER` is set.
pub fn kinds() -> Vec<Kind> {
    let mut v = vec![Kind::Fsjail];
    if peer_binary().is_some() {
        v.push(Kind::Peer);
    } else {
        skip::peer_missing();
    }
    v
}

/// The fsjail binary: Cargo's path in the root package's tests, else built on demand next to
/// the running test (same target directory and profile).
pub fn fsjail_binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_fsjail") {
        return PathBuf::from(p);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // <target>/<profile>/deps/<test binary>
            let exe = std::env::current_exe().expect("current_exe");
            let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
            let target_dir = profile_dir.parent().expect("target dir");
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .find(|d| d.join("src/main.rs").exists() && d.join("Cargo.toml").exists())
                .expect("workspace root with the fsjail package");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace)
                .args(["build", "--quiet", "-p", "fsjail", "--bin", "fsjail"])
                .arg("--target-dir")
                .arg(target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for the fsjail binary");
            assert!(status.success(), "cargo build of fsjail failed: {status}");
            let bin = profile_dir.join("fsjail");
            assert!(bin.exists(), "{} missing after the build", bin.display());
            bin
        })
        .clone()
}

/// A running backend process with its own share and socket.
pub struct Backend {
    pub kind: Kind,
    child: Child,
    dir: tempfile::TempDir,
    share: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    num_request_queues: u16,
    /// Dropped after the backend is killed (fields drop after `Drop::drop`).
    _tmpfs: Option<MountGuard>,
}

impl Backend {
    /// Starts `kind` with `cfg`. Panics if the peer is asked for without `FSJAIL_PEER`.
    pub fn start(kind: Kind, cfg: &Config) -> Backend {
        let dir = tempfile::Builder::new()
            .prefix("fsjail-test.")
            .tempdir()
            .expect("tempdir");
        let share = match &cfg.share_dir {
            Some(d) => d.clone(),
            None => {
                let share = dir.path().join("share");
                std::fs::create_dir(&share).expect("create share");
                share
            }
        };
        let sock = dir.path().join("vhost.sock");
        let log = dir.path().join("backend.log");
        let tmpfs = cfg.tmpfs_at.and_then(|name| {
            let at = share.join(name);
            std::fs::create_dir(&at).expect("create the tmpfs mount point");
            mount_tmpfs_with(&at, cfg.tmpfs_options)
        });
        let mut cmd = match kind {
            Kind::Fsjail => {
                let mut c = Command::new(fsjail_binary());
                c.arg("serve")
                    .arg("--socket-path")
                    .arg(&sock)
                    .arg("--shared-dir")
                    .arg(&share);
                if cfg.xattr {
                    c.arg("--xattr");
                }
                if cfg.readonly {
                    c.arg("--readonly");
                }
                if let Some(n) = cfg.num_request_queues {
                    c.arg("--num-request-queues").arg(n.to_string());
                }
                c.args(&cfg.fsjail_args);
                c
            }
            Kind::Peer => {
                let bin = peer_binary().expect("FSJAIL_PEER names the peer binary");
                let mut c = Command::new(bin);
                c.arg(format!("--socket-path={}", sock.display()))
                    .arg(format!("--shared-dir={}", share.display()))
                    .args(["--sandbox=none", "--cache=auto"]);
                if cfg.xattr {
                    c.arg("--xattr");
                }
                if cfg.readonly {
                    c.arg("--readonly");
                }
                c.args(&cfg.peer_args);
                c
            }
        };
        let errfile = File::create(&log).expect("create log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(errfile.try_clone().expect("dup log"))
            .stderr(errfile)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {kind:?}: {e}"));
        let mut b = Backend {
            kind,
            child,
            dir,
            share,
            sock,
            log,
            num_request_queues: cfg.num_request_queues.unwrap_or(1),
            _tmpfs: tmpfs,
        };
        b.wait_for_socket(Duration::from_secs(20));
        b
    }

    /// Polls (bounded) until the socket exists; fails early if the process died.
    fn wait_for_socket(&mut self, limit: Duration) {
        let t = Instant::now();
        while !self.sock.exists() {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{:?} exited before creating its socket: {st}\n{}",
                    self.kind,
                    self.log()
                );
            }
            assert!(
                t.elapsed() < limit,
                "{:?}: no socket after {limit:?}\n{}",
                self.kind,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The host directory the backend shares.
    pub fn share(&self) -> &Path {
        &self.share
    }

    /// `share/rel` on the host.
    pub fn host(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.share.join(rel)
    }

    pub fn socket(&self) -> &Path {
        &self.sock
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// What the backend wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `needle` shows up in the log within `limit`. A jailed worker's lines reach the
    /// log through the broker, which relays them on its own time: a line the worker wrote
    /// before it answered a request may still be on its way.
    #[allow(dead_code)]
    pub fn log_shows(&self, needle: &str, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the backend process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Panics (with the backend's log) unless the process is still running.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!("{:?} is gone: {st}\n{}", self.kind, self.log());
        }
    }

    /// Waits (polling, bounded by `limit`) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if t.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the tmpfs asked for with `Config::tmpfs_at` is mounted.
    pub fn has_tmpfs(&self) -> bool {
        self._tmpfs.is_some()
    }

    /// The process that serves the share: the jailed worker when `fsjail serve` runs one
    /// (the only child of the broker we started), else the backend process itself.
    pub fn server_pid(&self) -> u32 {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let kids: Vec<u32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        match kids.as_slice() {
            [worker] => *worker,
            _ => pid,
        }
    }

    /// Number of open file descriptors of the serving process (host side of FORGET).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.server_pid()))
            .expect("read the serving process's /proc/pid/fd")
            .count()
    }

    /// Default driver options with as many request queues as the backend was started with.
    pub fn options(&self) -> Options {
        Options {
            num_request_queues: self.num_request_queues,
            ..Options::default()
        }
    }

    /// Connects with `opts` without INIT.
    pub fn connect(&self, opts: Options) -> Session {
        let dev = Device::connect_with(&self.sock, opts)
            .unwrap_or_else(|e| panic!("connect to {:?}: {e}\n{}", self.kind, self.log()));
        Session::new(Arc::new(dev))
    }

    /// A connected session with INIT done.
    pub fn session(&self) -> Session {
        self.session_with(self.options())
    }

    /// A connected session with `opts` and INIT done.
    pub fn session_with(&self, opts: Options) -> Session {
        let s = self.connect(opts);
        let init = s
            .init()
            .unwrap_or_else(|e| panic!("INIT on {:?}: {e}\n{}", self.kind, self.log()));
        assert_eq!(init.major, 7);
        assert!(init.max_write >= 4096, "max_write {}", init.max_write);
        s
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {:?} log ----\n{}---- end of log ----",
                self.kind,
                self.log()
            );
        }
    }
}

/// Unmounts (lazily) on drop.
pub struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let p = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; umount2 reads it only.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Mounts a tmpfs at `dir`; `None` when not permitted here (the caller says what it skips).
pub fn mount_tmpfs(dir: &Path) -> Option<MountGuard> {
    mount_tmpfs_with(dir, None)
}

/// [`mount_tmpfs`] with mount options (`"size=1m"`).
pub fn mount_tmpfs_with(dir: &Path, options: Option<&str>) -> Option<MountGuard> {
    let data = options.map(|o| std::ffi::CString::new(o).expect("no NUL"));
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r != 0 {
        eprintln!(
            "cannot mount a tmpfs at {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        return None;
    }
    Some(MountGuard(dir.to_path_buf()))
}

/// A reply's out header: (len, error, unique).
pub fn out_header(r: &RawReply) -> (u32, i32, u64) {
    assert!(
        r.bytes.len() >= 16,
        "reply of {} bytes: {:?}",
        r.used_len,
        r.bytes
    );
    (
        u32::from_le_bytes(r.bytes[0..4].try_into().unwrap()),
        i32::from_le_bytes(r.bytes[4..8].try_into().unwrap()),
        u64::from_le_bytes(r.bytes[8..16].try_into().unwrap()),
    )
}

/// The reply is a bare error header with `-errno` and `unique`.
#[track_caller]
pub fn assert_errno_reply(r: &RawReply, unique: u64, errno: i32, what: &str) {
    assert_eq!(r.used_len, 16, "{what}: used len (reply {:?})", r.bytes);
    let (len, error, u) = out_header(r);
    assert_eq!(len, 16, "{what}: header len");
    assert_eq!(
        error,
        -errno,
        "{what}: error {} ({}), want {errno} ({})",
        -error,
        std::io::Error::from_raw_os_error(-error),
        std::io::Error::from_raw_os_error(errno)
    );
    assert_eq!(u, unique, "{what}: unique");
}
