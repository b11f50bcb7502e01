//! The attack catalogue's shared harness. Every case proves three things:
//!
//! 1. the guest gets the right errno (or no reply / a dropped connection where the protocol
//!    demands it) — checked by the case itself with [`assert_errno_reply`] or [`errno_of`];
//! 2. the backend still serves the next good request and its process is alive —
//!    [`Arena::still_serves`];
//! 3. nothing outside the share changed, not even an access time — [`Sentinel`], a directory
//!    *beside* the share with files, a sub-directory, a symlink and xattrs, snapshotted before
//!    and compared after every case.
//!
//! [`Arena::verify`] runs checks 2 and 3; [`Arena::refused`] runs all three for a raw request.
//!
//! Used from `tests/attacks_*.rs` as `#[path = "attacks/mod.rs"] mod attacks;` next to
//! `mod common;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use guest_driver::abi::{InHeader, Opcode, ROOT_ID};
use guest_driver::{RawReply, Session};
use vm_memory::ByteValued;

use crate::common::{Backend, Config, Kind};
// Re-exported for the attack files; not every one of them uses both.
#[allow(unused_imports)]
pub use crate::common::{assert_errno_reply, out_header};

/// Size of the FUSE request header.
pub const HDR: usize = std::mem::size_of::<InHeader>();
/// What the probe file (in every arena's share) holds.
pub const PROBE: &[u8] = b"probe: the next good request";

// ---------------------------------------------------------------------------------------------
// The sentinel: a directory beside the share that no guest request may touch.

/// Everything about one path that a guest could change or reveal by reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    /// Access time: the sentinel's atimes are set before its mtimes, so under `relatime` any
    /// read of a file (or listing of a directory) moves it. Not kept for symlinks: reading the
    /// target (which the snapshot must do) moves a link's atime.
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// File content, symlink target, or the sorted listing of a directory.
    pub content: Vec<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A directory beside the share, snapshotted once and compared after every case.
pub struct Sentinel {
    pub root: PathBuf,
    before: BTreeMap<PathBuf, EntryState>,
}

impl Sentinel {
    /// Creates `dir` (which must not exist) with a secret file, a public file, a sub-directory
    /// with a file, a symlink, and xattrs (`user.*`, plus `trusted.*` when we may set it), then
    /// sets every access time a day before its modification time.
    pub fn create(dir: &Path) -> Sentinel {
        fs::create_dir(dir).expect("create the sentinel directory");
        fs::write(
            dir.join("secret"),
            b"sentinel secret: never reach the guest\n",
        )
        .unwrap();
        fs::write(dir.join("public"), b"sentinel public\n").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/deep"), b"deep\n").unwrap();
        std::os::unix::fs::symlink("secret", dir.join("link")).unwrap();
        set_mode(&dir.join("secret"), 0o600);
        lsetxattr(&dir.join("secret"), "user.sentinel", b"xattr-value").expect("user xattr");
        // Root can set trusted.*; others cannot, and the snapshot just has one xattr fewer.
        let _ = lsetxattr(&dir.join("secret"), "trusted.sentinel", b"trusted-value");
        for rel in ["secret", "public", "sub/deep", "sub", ""] {
            backdate_atime(&dir.join(rel));
        }
        let mut s = Sentinel {
            root: dir.to_path_buf(),
            before: BTreeMap::new(),
        };
        s.before = s.snapshot();
        s
    }

    /// A sentinel over an existing directory, as it is now (its access times left as they
    /// are: under `relatime` a read still moves an access time not later than its mtime).
    pub fn adopt(dir: &Path) -> Sentinel {
        let mut s = Sentinel {
            root: dir.to_path_buf(),
            before: BTreeMap::new(),
        };
        s.before = s.snapshot();
        s
    }

    /// The state of every path under the sentinel, read without moving any access time
    /// (O_NOATIME; the tests run as the owner or as root).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, EntryState> {
        let mut out = BTreeMap::new();
        walk(&self.root, Path::new(""), &mut out);
        out
    }

    /// Panics, naming every difference, unless the sentinel is exactly as it was created.
    #[track_caller]
    pub fn assert_unchanged(&self, after: &str) {
        let now = self.snapshot();
        if now == self.before {
            return;
        }
        let mut diffs = Vec::new();
        for (p, was) in &self.before {
            match now.get(p) {
                None => diffs.push(format!("{}: removed", p.display())),
                Some(is) if is != was => {
                    diffs.push(format!("{}: was {was:?}\n    now {is:?}", p.display()))
                }
                _ => {}
            }
        }
        for p in now.keys().filter(|p| !self.before.contains_key(*p)) {
            diffs.push(format!("{}: appeared", p.display()));
        }
        panic!(
            "after {after}: the sentinel beside the share changed:\n  {}",
            diffs.join("\n  ")
        );
    }
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, EntryState>) {
    let path = root.join(rel);
    let md = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kind = md.mode() & libc::S_IFMT;
    let content = match kind {
        libc::S_IFREG => vec![read_noatime(&path)],
        libc::S_IFLNK => vec![fs::read_link(&path)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec()],
        libc::S_IFDIR => list_noatime(&path),
        _ => Vec::new(),
    };
    let state = EntryState {
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        nlink: md.nlink(),
        size: md.size(),
        // Reading a symlink's target moves its atime, so a link's atime is not compared.
        atime: if kind == libc::S_IFLNK {
            (0, 0)
        } else {
            (md.atime(), md.atime_nsec())
        },
        mtime: (md.mtime(), md.mtime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
        xattrs: xattrs(&path),
        content: content.clone(),
    };
    out.insert(rel.to_path_buf(), state);
    if kind == libc::S_IFDIR {
        for name in content {
            let name = std::ffi::OsStr::from_bytes(&name);
            walk(root, &rel.join(name), out);
        }
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn open_noatime(p: &Path, extra: i32) -> i32 {
    let c = cpath(p);
    // SAFETY: a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOATIME | libc::O_CLOEXEC | libc::O_NOFOLLOW | extra,
        )
    };
    assert!(
        fd >= 0,
        "open {} with O_NOATIME: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    fd
}

fn read_noatime(p: &Path) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: open_noatime returns a fresh descriptor that the File now owns.
    let mut f = unsafe { fs::File::from_raw_fd(open_noatime(p, 0)) };
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

fn list_noatime(p: &Path) -> Vec<Vec<u8>> {
    let fd = open_noatime(p, libc::O_DIRECTORY);
    // SAFETY: `fd` is an open directory descriptor; fdopendir takes ownership of it and
    // closedir closes it. Each dirent pointer is used before the next readdir call.
    let mut names = unsafe {
        let dir = libc::fdopendir(fd);
        assert!(!dir.is_null(), "fdopendir {}", p.display());
        let mut names = Vec::new();
        loop {
            let ent = libc::readdir(dir);
            if ent.is_null() {
                break;
            }
            let name = CStr::from_ptr((*ent).d_name.as_ptr()).to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        libc::closedir(dir);
        names
    };
    names.sort();
    names
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = cpath(p);
    let mut buf = vec![0u8; 4096];
    // SAFETY: `buf` is writable for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: as above, for the value buffer.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        val.truncate(m.max(0) as usize);
        out.insert(name.to_vec(), val);
    }
    out
}

/// Sets an xattr on the host without following a final symlink.
pub fn lsetxattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a value slice that outlive the call.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads an xattr on the host (no symlink following); `None` if absent.
pub fn lgetxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let mut val = vec![0u8; 65536];
    // SAFETY: NUL-terminated strings; `val` is writable for its length.
    let m = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
    (m >= 0).then(|| {
        val.truncate(m as usize);
        val
    })
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// atime = mtime - 1 day, without following a final symlink.
fn backdate_atime(p: &Path) {
    let md = fs::symlink_metadata(p).unwrap();
    let times = [
        libc::timespec {
            tv_sec: md.mtime() - 86_400,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    let c = cpath(p);
    // SAFETY: a NUL-terminated path and a two-element timespec array, both live for the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

// ---------------------------------------------------------------------------------------------
// Raw requests.

static UNIQUE: AtomicU64 = AtomicU64::new(0x5eed_0000);

/// A fresh `unique` for a hand-built request.
pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A request header claiming `len` bytes, with the test process's ids.
pub fn header(len: usize, opcode: u32, unique: u64, nodeid: u64) -> InHeader {
    InHeader {
        len: len as u32,
        opcode,
        unique,
        nodeid,
        // SAFETY: getuid takes no arguments and cannot fail.
        uid: unsafe { libc::getuid() },
        // SAFETY: getgid takes no arguments and cannot fail.
        gid: unsafe { libc::getgid() },
        pid: std::process::id(),
        total_extlen: 0,
        padding: 0,
    }
}

/// Header (honest length) followed by `body`; returns the bytes and the `unique` used.
pub fn request(opcode: Opcode, nodeid: u64, body: &[&[u8]]) -> (Vec<u8>, u64) {
    request_op(opcode as u32, nodeid, body)
}

/// [`request`] for any opcode number.
pub fn request_op(opcode: u32, nodeid: u64, body: &[&[u8]]) -> (Vec<u8>, u64) {
    let u = unique();
    let len = HDR + body.iter().map(|b| b.len()).sum::<usize>();
    let mut v = header(len, opcode, u, nodeid).as_slice().to_vec();
    for b in body {
        v.extend_from_slice(b);
    }
    (v, u)
}

/// `s` with its NUL.
pub fn cname(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

/// The errno of a typed call's FUSE error reply; panics on success or a transport failure.
#[track_caller]
pub fn errno_of<T: std::fmt::Debug>(r: guest_driver::Result<T>, what: &str) -> i32 {
    match r {
        Err(guest_driver::Error::Errno(e)) => e,
        Err(e) => panic!("{what}: expected an errno reply, got a failure: {e}"),
        Ok(v) => panic!("{what}: expected an errno reply, got success: {v:?}"),
    }
}

#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: guest_driver::Result<T>, want: i32, what: &str) {
    let got = errno_of(r, what);
    assert_eq!(
        got,
        want,
        "{what}: errno {got} ({}), want {want} ({})",
        std::io::Error::from_raw_os_error(got),
        std::io::Error::from_raw_os_error(want)
    );
}

// ---------------------------------------------------------------------------------------------
// The arena: a backend, a session, a probe file in the share and a sentinel beside it.

pub struct Arena {
    pub b: Backend,
    pub s: Session,
    pub sentinel: Sentinel,
}

impl Arena {
    /// fsjail with `cfg`, INIT done.
    pub fn new(cfg: &Config) -> Arena {
        let b = Arena::backend(cfg);
        let s = b.session();
        Arena::with(b, s)
    }

    /// fsjail with `cfg` and the probe and sentinel in place, before any connection.
    pub fn backend(cfg: &Config) -> Backend {
        let b = Backend::start(Kind::Fsjail, cfg);
        fs::write(b.host("probe"), PROBE).unwrap();
        b
    }

    /// Wraps a started backend and a session (INIT may or may not be done).
    pub fn with(b: Backend, s: Session) -> Arena {
        let sentinel = Sentinel::create(&b.share().parent().unwrap().join("sentinel"));
        Arena { b, s, sentinel }
    }

    /// The sentinel's path as seen from the share (for symlink targets).
    pub fn sentinel_path(&self) -> &Path {
        &self.sentinel.root
    }

    /// Sends `bytes` as one readable descriptor with one writable buffer of `wlen` bytes (none
    /// if 0) on request queue 1.
    pub fn send(&self, bytes: &[u8], wlen: u32) -> RawReply {
        self.send_on(1, bytes, wlen)
    }

    pub fn send_on(&self, queue: u16, bytes: &[u8], wlen: u32) -> RawReply {
        let w: &[u32] = if wlen == 0 {
            &[]
        } else {
            std::slice::from_ref(&wlen)
        };
        self.s
            .send_raw(queue, &[bytes], w)
            .unwrap_or_else(|e| panic!("raw request: {e}\n{}", self.b.log()))
    }

    /// Check 1 for a raw request (errno reply with its `unique`), then checks 2 and 3.
    #[track_caller]
    pub fn refused(&mut self, (bytes, unique): &(Vec<u8>, u64), errno: i32, what: &str) {
        let r = self.send(bytes, 4096);
        assert_errno_reply(&r, *unique, errno, what);
        self.verify(what);
    }

    /// Checks 2 and 3: the backend serves a good request, is alive, and the sentinel is intact.
    #[track_caller]
    pub fn verify(&mut self, after: &str) {
        self.still_serves(after);
        self.sentinel.assert_unchanged(after);
    }

    /// LOOKUP + OPEN + READ + RELEASE + FORGET of the probe, and GETATTR of the root.
    #[track_caller]
    pub fn still_serves(&mut self, after: &str) {
        let s = &self.s;
        let fail = |e: guest_driver::Error, op: &str| -> ! {
            panic!("{op} after {after}: {e}\n{}", self.b.log())
        };
        let e = s
            .lookup(ROOT_ID, "probe")
            .unwrap_or_else(|e| fail(e, "LOOKUP"));
        let o = s
            .open(e.nodeid, libc::O_RDONLY as u32)
            .unwrap_or_else(|e| fail(e, "OPEN"));
        let data = s
            .read(e.nodeid, o.fh, 0, 4096)
            .unwrap_or_else(|e| fail(e, "READ"));
        assert_eq!(data, PROBE, "probe content after {after}");
        s.release(e.nodeid, o.fh, libc::O_RDONLY as u32, 0, 0)
            .unwrap_or_else(|e| fail(e, "RELEASE"));
        s.forget(e.nodeid, 1).unwrap_or_else(|e| fail(e, "FORGET"));
        s.getattr(ROOT_ID, None)
            .unwrap_or_else(|e| fail(e, "GETATTR"));
        self.b.assert_alive();
    }

    /// LOOKUP of `name` in the root; its nodeid.
    pub fn lookup(&self, name: &str) -> u64 {
        self.s
            .lookup(ROOT_ID, name)
            .unwrap_or_else(|e| panic!("LOOKUP {name}: {e}"))
            .nodeid
    }
}

/// `VmHWM` (peak resident set) of `pid` in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for {pid}"))
}

/// A line of /proc/PID/status after its `key`, trimmed.
pub fn status_field(pid: u32, key: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The jailed worker behind `fsjail serve`.

/// The pid of the worker `fsjail serve` runs the share in (its log says `[PID]: worker
/// started`); the latest one. Waits (bounded) for the line.
pub fn worker_pid(b: &Backend) -> u32 {
    let t = std::time::Instant::now();
    loop {
        let log = b.log();
        let pid = log
            .lines()
            .rev()
            .filter(|l| l.ends_with("]: worker started"))
            .find_map(|l| l.rsplit_once('[')?.1.split(']').next()?.parse().ok());
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "no worker pid in the log:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Panics if the log says a worker died by a signal (SIGSEGV, SIGSYS, SIGABRT...).
#[track_caller]
pub fn assert_no_worker_crash(b: &Backend, after: &str) {
    let log = b.log();
    assert!(
        !log.contains("killed by") && !log.contains("panicked"),
        "after {after}: a worker crashed:\n{log}"
    );
}
