//! DAX end to end: `fsjail serve --dax-window` as its own process, the guest driver as the
//! frontend, and a `WindowMapper` in this process as the window owner answering SHMEM_MAP /
//! SHMEM_UNMAP, as a VMM would.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::dax::{host_page_size, WindowMapper, DAX_BLOCK};
use guest_driver::abi::{
    ROOT_ID, SETUPMAPPING_FLAG_READ as READ, SETUPMAPPING_FLAG_WRITE as WRITE,
};
use guest_driver::{Device, Options, Session, Setattr, VhostUserProtocolFeatures};
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Backend, FrontendReqHandler, VhostUserFrontendReqHandler};

/// What Linux guests put in SETUPMAPPING's fh.
const ANY_HANDLE: u64 = u64::MAX;
const WINDOW: u64 = 8 * DAX_BLOCK;

struct Worker {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(extra: &[&str]) -> Worker {
        Self::start_under(&[], extra)
    }

    /// Starts `fsjail serve` (unjailed: there is no sandbox in `serve` yet), as the argument
    /// of `wrapper` (e.g. strace) when that is not empty.
    fn start_under(wrapper: &[&str], extra: &[&str]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("f"), pattern(8192, 1)).unwrap();
        std::fs::create_dir(shared.join("d")).unwrap();
        let sock = dir.path().join("fsjail.sock");
        let bin = env!("CARGO_BIN_EXE_fsjail");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("serve")
            .args(["--socket-path", sock.to_str().unwrap()])
            .args(["--shared-dir", shared.to_str().unwrap()])
            .args(["--log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fsjail serve");
        Worker { child, dir, sock }
    }

    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// Connects with `mapper` (if any) answering the backend's requests, and sends INIT.
    fn session(&self, mapper: Option<Arc<WindowMapper>>) -> Session {
        let opts = Options {
            backend_handler: mapper
                .map(|m| m as Arc<guest_driver::backend_channel::BackendRequestHandler>),
            ..Options::default()
        };
        let dev = Device::connect_with(&self.sock, opts).expect("connect");
        let s = Session::new(Arc::new(dev));
        s.init().expect("init");
        s
    }

    /// The process that serves the share: the jailed worker (the broker's one child) when
    /// `fsjail serve` runs one, else the process we started.
    fn server_pid(&self) -> u32 {
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

    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.server_pid()))
            .unwrap()
            .count()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The window's lines of /proc/self/maps, clipped to it, as (offset in window, end, perms).
fn window_vmas(w: &WindowMapper) -> Vec<(u64, u64, String)> {
    let base = w.as_ptr() as u64;
    let end = base + w.len();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (range, perms) = (parts.next()?, parts.next()?);
            let (s, e) = range.split_once('-')?;
            let s = u64::from_str_radix(s, 16).ok()?;
            let e = u64::from_str_radix(e, 16).ok()?;
            (s < end && e > base).then(|| (s.max(base) - base, e.min(end) - base, perms.to_owned()))
        })
        .collect()
}

fn all_prot_none(w: &WindowMapper) -> bool {
    window_vmas(w) == vec![(0, w.len(), "---p".to_owned())]
}

/// Copies bytes out of the window.
///
/// # Safety
/// `[offset, offset + len)` must be mapped to a file range within the file's size.
unsafe fn window_read(w: &WindowMapper, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: the caller promises the source range is mapped and backed by the file; `out` is a
    // fresh buffer of `len` bytes, so the two cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(w.as_ptr().add(offset as usize), out.as_mut_ptr(), len)
    };
    out
}

fn errno(r: guest_driver::Result<()>) -> i32 {
    match r {
        Ok(()) => panic!("expected a refusal"),
        Err(e) => e.errno().unwrap_or_else(|| panic!("not a FUSE errno: {e}")),
    }
}

#[test]
fn negotiation_with_and_without_dax() {
    let w = Worker::start(&["--dax-window", "16M"]);
    let fs = w.session(None);
    let dev = fs.device();
    assert!(dev
        .backend_protocol_features()
        .contains(VhostUserProtocolFeatures::SHMEM));
    let shm = dev.shmem_config().unwrap();
    assert_eq!(shm.nregions, 1);
    assert_eq!(shm.memory_sizes[0], 16 << 20);
    let init = fs.init_out().unwrap();
    assert_ne!(
        init.flags as u64 & guest_driver::abi::init_flags::MAP_ALIGNMENT,
        0
    );
    assert_eq!(1u64 << init.map_alignment, host_page_size());

    let w = Worker::start(&[]);
    let fs = w.session(None);
    assert!(!fs
        .device()
        .backend_protocol_features()
        .contains(VhostUserProtocolFeatures::SHMEM));
    let init = fs.init_out().unwrap();
    assert_eq!(
        init.flags as u64 & guest_driver::abi::init_flags::MAP_ALIGNMENT,
        0
    );
    assert_eq!(init.map_alignment, 0);
    let e = fs.lookup(ROOT_ID, "f").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDWR as u32).unwrap();
    let r = fs.setupmapping(e.nodeid, o.fh, 0, DAX_BLOCK, READ, 0);
    assert_eq!(errno(r), libc::ENOSYS);
    assert_eq!(
        errno(fs.removemapping(e.nodeid, &[(0, DAX_BLOCK)])),
        libc::ENOSYS
    );
}

#[test]
fn bad_settings_are_clear_errors() {
    let rows: [(&[&str], &str); 5] = [
        (&["--dax-window", "3M"], "multiple of 2 MiB"),
        (&["--dax-window", "128G"], "64 GiB"),
        (&["--dax-window", "lots"], "invalid size"),
        (&["--blksize", "1000"], "power of two"),
        (&["--blksize", "131072"], "power of two"),
    ];
    for (args, want) in rows {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fsjail"))
            .arg("serve")
            .args(["--socket-path", dir.path().join("s").to_str().unwrap()])
            .args(["--shared-dir", dir.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{args:?}: {text}");
        assert!(
            !dir.path().join("s").exists(),
            "{args:?}: socket created before the check"
        );
    }
}

#[test]
fn coherence_through_the_window() {
    let w = Worker::start(&["--dax-window", "16M"]);
    let mapper = Arc::new(WindowMapper::new(16 << 20).unwrap());
    let fs = w.session(Some(mapper.clone()));
    let path = w.shared().join("f");
    let e = fs.lookup(ROOT_ID, "f").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDWR as u32).unwrap();

    // A whole 2 MiB block of an 8 KiB file, as Linux maps it: past EOF is accepted.
    let moffset = 3 * DAX_BLOCK;
    fs.setupmapping(e.nodeid, ANY_HANDLE, 0, DAX_BLOCK, READ | WRITE, moffset)
        .unwrap();
    assert!(window_vmas(&mapper).contains(&(moffset, moffset + DAX_BLOCK, "rw-s".to_owned())));
    // SAFETY: the first 8 KiB of the block are backed by the file.
    let head = unsafe { window_read(&mapper, moffset, 8192) };
    assert_eq!(head, pattern(8192, 1));

    // A host process writes the file: the window shows it at once.
    let host = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    host.write_all_at(b"written by the host", 100).unwrap();
    // SAFETY: bytes 100..119 lie inside the file's 8 KiB, mapped as above.
    let seen = unsafe { window_read(&mapper, moffset + 100, 19) };
    assert_eq!(seen, b"written by the host");

    // The guest writes through the window: the host's pread sees it, no FUSE request between.
    let data = b"written through the window";
    // SAFETY: the mapping is writable and backed by the file at this offset.
    unsafe {
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            mapper.as_ptr().add((moffset + 4096) as usize),
            data.len(),
        );
    }
    let mut back = vec![0u8; data.len()];
    host.read_exact_at(&mut back, 4096).unwrap();
    assert_eq!(&back, data);

    // REMOVEMAPPING: the range is PROT_NONE again, and the reservation whole.
    fs.removemapping(e.nodeid, &[(moffset, DAX_BLOCK)]).unwrap();
    assert!(all_prot_none(&mapper), "{:?}", window_vmas(&mapper));
    fs.release(e.nodeid, o.fh, libc::O_RDWR as u32, 0, 0)
        .unwrap();
}

#[test]
fn refusals() {
    let w = Worker::start(&["--dax-window", "16M"]);
    let mapper = Arc::new(WindowMapper::new(16 << 20).unwrap());
    let fs = w.session(Some(mapper.clone()));
    let f = fs.lookup(ROOT_ID, "f").unwrap().nodeid;
    let ro = fs.open(f, libc::O_RDONLY as u32).unwrap().fh;

    // WRITE through a read-only handle, named or "any" when only read-only handles are open.
    assert_eq!(
        errno(fs.setupmapping(f, ro, 0, DAX_BLOCK, READ | WRITE, 0)),
        libc::EACCES
    );
    assert_eq!(
        errno(fs.setupmapping(f, ANY_HANDLE, 0, DAX_BLOCK, READ | WRITE, 0)),
        libc::EACCES
    );
    // A handle that is not open, or open on another node.
    assert_eq!(
        errno(fs.setupmapping(f, ro + 1000, 0, DAX_BLOCK, READ, 0)),
        libc::EBADF
    );
    assert_eq!(
        errno(fs.setupmapping(ROOT_ID, ro, 0, DAX_BLOCK, READ, 0)),
        libc::EBADF
    );
    // Bad geometry and flags, all EINVAL before the filesystem is asked.
    let page = host_page_size();
    for (foffset, moffset, len, flags) in [
        (0, 16 << 20, DAX_BLOCK, READ),
        (0, (16 << 20) - DAX_BLOCK, 2 * DAX_BLOCK, READ),
        (0, u64::MAX - page + 1, DAX_BLOCK, READ),
        (0, 0, 0, READ),
        (1, 0, DAX_BLOCK, READ),
        (0, 0, DAX_BLOCK, READ | 4),
        (u64::MAX - page + 1, 0, DAX_BLOCK, READ),
    ] {
        let r = fs.setupmapping(f, ro, foffset, len, flags, moffset);
        assert_eq!(
            errno(r),
            libc::EINVAL,
            "{foffset:#x} {moffset:#x} {len:#x} {flags}"
        );
    }
    // REMOVEMAPPING: a bad range, a count that does not match the bytes, too many entries.
    assert_eq!(
        errno(fs.removemapping(f, &[(0, DAX_BLOCK), (16 << 20, DAX_BLOCK)])),
        libc::EINVAL
    );
    assert_eq!(errno(fs.removemapping(f, &[])), libc::EINVAL);
    let many: Vec<(u64, u64)> = (0..257).map(|_| (0, DAX_BLOCK)).collect();
    assert_eq!(errno(fs.removemapping(f, &many)), libc::EINVAL);

    // A directory: its OPENDIR handle is no file handle, and an OPEN of it is no regular file.
    let d = fs.lookup(ROOT_ID, "d").unwrap().nodeid;
    let dh = fs.opendir(d, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(
        errno(fs.setupmapping(d, dh, 0, DAX_BLOCK, READ, 0)),
        libc::EBADF
    );
    let o = fs
        .open(d, (libc::O_RDONLY | libc::O_DIRECTORY) as u32)
        .unwrap();
    assert_eq!(
        errno(fs.setupmapping(d, o.fh, 0, DAX_BLOCK, READ, 0)),
        libc::ENODEV
    );
    assert!(
        all_prot_none(&mapper),
        "a refusal mapped something: {:?}",
        window_vmas(&mapper)
    );

    // A read-only mapping through the read-only handle is fine.
    fs.setupmapping(f, ro, 0, DAX_BLOCK, READ, 0).unwrap();
    assert_eq!(window_vmas(&mapper)[0], (0, DAX_BLOCK, "r--s".to_owned()));
    fs.removemapping(f, &[(0, DAX_BLOCK)]).unwrap();

    // A file in a read-only share: WRITE is refused by the share policy.
    let w = Worker::start(&["--dax-window", "16M", "--readonly"]);
    let mapper = Arc::new(WindowMapper::new(16 << 20).unwrap());
    let fs = w.session(Some(mapper.clone()));
    let f = fs.lookup(ROOT_ID, "f").unwrap().nodeid;
    let ro = fs.open(f, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(
        errno(fs.setupmapping(f, ro, 0, DAX_BLOCK, READ | WRITE, 0)),
        libc::EROFS
    );
    assert_eq!(
        errno(fs.setupmapping(f, ANY_HANDLE, 0, DAX_BLOCK, READ | WRITE, 0)),
        libc::EROFS
    );
    assert!(all_prot_none(&mapper));
    fs.setupmapping(f, ANY_HANDLE, 0, DAX_BLOCK, READ, 0)
        .unwrap();
    assert_eq!(window_vmas(&mapper)[0], (0, DAX_BLOCK, "r--s".to_owned()));
}

/// A SHMEM_MAP forged by a compromised worker, sent over a real backend-request socket to a
/// `WindowMapper`: refused, and nothing is mapped.
#[test]
fn forged_shmem_map_is_refused_by_the_owner() {
    let mapper = Arc::new(WindowMapper::new(WINDOW).unwrap());
    let mut server = FrontendReqHandler::new(mapper.clone()).unwrap();
    server.set_reply_ack_flag(true);
    // SAFETY: the tx end belongs to `server`; dup it so the stream owns its own descriptor.
    let tx = unsafe { libc::dup(server.get_tx_raw_fd()) };
    assert!(tx >= 0);
    // SAFETY: `tx` is a fresh descriptor nobody else owns.
    let stream = unsafe { UnixStream::from_raw_fd(tx) };
    // vhost's frontend handler sends no ack at all for a message its own validator rejects;
    // a timeout turns such a case into a failure instead of a hang.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let backend = Backend::from_stream(stream);
    backend.set_reply_ack_flag(true);
    backend.set_shmem_flag(true);
    // The handler keeps its own copy of the tx end, so it never sees EOF: shut its socket down
    // through a dup to stop it.
    // SAFETY: the handler's socket is open while `server` lives; dup gives us our own copy.
    let rx = unsafe { libc::dup(server.as_raw_fd()) };
    assert!(rx >= 0);
    // SAFETY: `rx` is a fresh descriptor nobody else owns.
    let rx = unsafe { std::os::fd::OwnedFd::from_raw_fd(rx) };
    let serving = std::thread::spawn(move || {
        while let Ok(_) | Err(vhost::vhost_user::Error::ReqHandlerError(_)) =
            server.handle_request()
        {}
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, pattern(4096, 2)).unwrap();
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let page = host_page_size();
    let forged = |fd_offset, shm_offset, len| VhostUserMMap {
        shmid: 0,
        padding: [0; 7],
        fd_offset,
        shm_offset,
        len,
        flags: VhostUserMMapFlags::WRITABLE.bits(),
    };
    // Each passes vhost's own message validation (no u64 overflow) and fails ours.
    let far = i64::MAX as u64 & !(page - 1);
    for req in [
        forged(0, WINDOW, DAX_BLOCK),
        forged(0, WINDOW - page, 2 * page),
        forged(0, 1 << 62, page),
        forged(0, page / 2, page),
        forged(page / 2, 0, page),
        forged(far, 0, 2 * page),
    ] {
        assert!(backend.shmem_map(&req, &rw).is_err(), "{req:?} accepted");
        assert!(
            all_prot_none(&mapper),
            "{req:?} mapped {:?}",
            window_vmas(&mapper)
        );
    }
    drop(backend);
    // SAFETY: shutdown on a descriptor we own; no memory is involved.
    unsafe { libc::shutdown(rx.as_raw_fd(), libc::SHUT_RDWR) };
    serving.join().unwrap();
}

#[test]
fn thousand_cycles_leak_nothing() {
    let w = Worker::start(&["--dax-window", "16M"]);
    let mapper = Arc::new(WindowMapper::new(16 << 20).unwrap());
    let fs = w.session(Some(mapper.clone()));
    let f = fs.lookup(ROOT_ID, "f").unwrap().nodeid;
    let fh = fs.open(f, libc::O_RDWR as u32).unwrap().fh;
    // Warm up once so lazily opened descriptors are counted in the baseline.
    fs.setupmapping(f, fh, 0, DAX_BLOCK, READ | WRITE, 0)
        .unwrap();
    fs.removemapping(f, &[(0, DAX_BLOCK)]).unwrap();
    let fds = w.fd_count();
    let vmas = window_vmas(&mapper);

    let started = Instant::now();
    for i in 0..1000u64 {
        let moffset = (i % 8) * DAX_BLOCK;
        let flags = if i % 2 == 0 { READ | WRITE } else { READ };
        fs.setupmapping(f, fh, (i % 3) * DAX_BLOCK, DAX_BLOCK, flags, moffset)
            .unwrap();
        fs.removemapping(f, &[(moffset, DAX_BLOCK)]).unwrap();
    }
    assert_eq!(w.fd_count(), fds, "the worker's descriptors grew");
    assert_eq!(window_vmas(&mapper), vmas, "the owner's mappings grew");
    assert!(all_prot_none(&mapper));
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// With `--blksize 1024`, every reply that carries attributes reports 1024 (the host's files
/// report more).
#[test]
fn blksize_caps_every_attribute_reply() {
    let w = Worker::start(&["--blksize", "1024"]);
    let host = std::fs::metadata(w.shared().join("f")).unwrap().blksize();
    assert!(
        host > 1024,
        "host st_blksize {host}: the cap would not show"
    );
    let fs = w.session(None);
    let reg = libc::S_IFREG | 0o644;
    let rdwr = libc::O_RDWR as u32;

    let e = fs.lookup(ROOT_ID, "f").unwrap();
    let mut seen = vec![("LOOKUP", e.attr.blksize)];
    seen.push(("GETATTR", fs.getattr(e.nodeid, None).unwrap().attr.blksize));
    let a = fs.setattr(e.nodeid, &Setattr::new().mode(0o600)).unwrap();
    seen.push(("SETATTR", a.attr.blksize));
    seen.push((
        "CREATE",
        fs.create(ROOT_ID, "c", reg, rdwr, 0)
            .unwrap()
            .0
            .attr
            .blksize,
    ));
    let fifo = fs.mknod(ROOT_ID, "p", libc::S_IFIFO | 0o600, 0, 0).unwrap();
    seen.push(("MKNOD", fifo.attr.blksize));
    seen.push((
        "MKDIR",
        fs.mkdir(ROOT_ID, "m", 0o755, 0).unwrap().attr.blksize,
    ));
    seen.push((
        "SYMLINK",
        fs.symlink(ROOT_ID, "s", "f").unwrap().attr.blksize,
    ));
    seen.push((
        "LINK",
        fs.link(e.nodeid, ROOT_ID, "l").unwrap().attr.blksize,
    ));
    seen.push((
        "TMPFILE",
        fs.tmpfile(ROOT_ID, reg, rdwr, 0).unwrap().0.attr.blksize,
    ));
    let dh = fs.opendir(ROOT_ID, libc::O_RDONLY as u32).unwrap().fh;
    let listed = fs.readdirplus(ROOT_ID, dh, 0, 65536).unwrap();
    // "." and ".." carry no attributes (nodeid 0); every other entry does.
    let with_attrs: Vec<_> = listed.iter().filter(|d| d.entry.nodeid != 0).collect();
    assert!(with_attrs.len() >= 7, "{} entries", with_attrs.len());
    seen.extend(
        with_attrs
            .iter()
            .map(|d| ("READDIRPLUS", d.entry.attr.blksize)),
    );
    for (op, blksize) in seen {
        assert_eq!(blksize, 1024, "{op}");
    }
}

/// FSYNC, FSYNCDIR and SYNCFS reach the host as fsync/fdatasync/syncfs on the right
/// descriptor: the worker runs under `strace -f -y`, which names each descriptor's file.
#[test]
fn sync_requests_reach_the_host() {
    let probe = Command::new("strace").arg("-V").output();
    assert!(
        probe.map(|o| o.status.success()).unwrap_or(false),
        "this test needs strace (.ci/run installs it: apt-get install strace)"
    );
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace");
    let trace_arg = trace.to_str().unwrap();
    let wrapper = [
        "strace",
        "-f",
        "-y",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,syncfs",
        "-o",
        trace_arg,
    ];
    // With the sandbox off, so the descriptors strace names are host paths.
    let mut w = Worker::start_under(&wrapper, &["--sandbox", "none"]);
    let shared = std::fs::canonicalize(w.shared()).unwrap();
    {
        let fs = w.session(None);
        let f = fs.lookup(ROOT_ID, "f").unwrap().nodeid;
        let fh = fs.open(f, libc::O_RDWR as u32).unwrap().fh;
        fs.write(f, fh, 0, b"durable").unwrap();
        fs.fsync(f, fh, false).unwrap();
        fs.fsync(f, fh, true).unwrap();
        let d = fs.lookup(ROOT_ID, "d").unwrap().nodeid;
        let dh = fs.opendir(d, libc::O_RDONLY as u32).unwrap().fh;
        fs.fsyncdir(d, dh, false).unwrap();
        fs.fsyncdir(d, dh, true).unwrap();
        fs.syncfs(ROOT_ID).unwrap();
    }
    // The session is gone: the worker exits, and strace with it, flushing the trace.
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the worker did not exit after the frontend left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&trace).unwrap();
    let called = |syscall: &str, path: &Path| {
        let fd = format!("<{}>)", path.display());
        text.lines()
            .any(|l| l.contains(&format!(" {syscall}(")) && l.contains(&fd) && l.ends_with("= 0"))
    };
    let file = shared.join("f");
    let dir = shared.join("d");
    assert!(
        called("fsync", &file),
        "FSYNC -> fsync on the file:\n{text}"
    );
    assert!(
        called("fdatasync", &file),
        "FSYNC(datasync) -> fdatasync on the file:\n{text}"
    );
    assert!(
        called("fsync", &dir),
        "FSYNCDIR -> fsync on the directory:\n{text}"
    );
    assert!(
        called("fdatasync", &dir),
        "FSYNCDIR(datasync) -> fdatasync on the directory:\n{text}"
    );
    assert!(
        called("syncfs", &shared),
        "SYNCFS -> syncfs on the share:\n{text}"
    );
}

/// FUSE's replace and split semantics through the real worker, with a window owner that keeps
/// QEMU 11.1's rules (a map over a live mapping and an inexact unmap are refused): the upgrade
/// of a read-only block to read-write, a map over parts of several mappings, a partial
/// REMOVEMAPPING. Every request succeeds, and the owner ends with exactly the mappings FUSE's
/// semantics say.
#[test]
fn replace_and_split_under_qemus_window_rules() {
    let w = Worker::start(&["--dax-window", "16M"]);
    std::fs::write(w.shared().join("big"), pattern(4 * DAX_BLOCK as usize, 3)).unwrap();
    let mapper = Arc::new(WindowMapper::new(16 << 20).unwrap());
    let fs = w.session(Some(mapper.clone()));
    let f = fs.lookup(ROOT_ID, "big").unwrap().nodeid;
    let fh = fs.open(f, libc::O_RDWR as u32).unwrap().fh;
    let page = host_page_size();

    // Read-only, then read-write over the same live block (what a Linux guest sends on the
    // first write fault in a block it read).
    fs.setupmapping(f, ANY_HANDLE, 0, DAX_BLOCK, READ, 0)
        .unwrap();
    assert_eq!(window_vmas(&mapper)[0], (0, DAX_BLOCK, "r--s".to_owned()));
    fs.setupmapping(f, ANY_HANDLE, 0, DAX_BLOCK, READ | WRITE, 0)
        .unwrap();
    assert_eq!(window_vmas(&mapper)[0], (0, DAX_BLOCK, "rw-s".to_owned()));
    assert_eq!(mapper.mappings(), vec![(0, DAX_BLOCK)]);

    // A second block, then one range over the end of the first and the start of the second.
    fs.setupmapping(f, ANY_HANDLE, DAX_BLOCK, DAX_BLOCK, READ, DAX_BLOCK)
        .unwrap();
    fs.setupmapping(
        f,
        ANY_HANDLE,
        3 * DAX_BLOCK,
        2 * page,
        READ,
        DAX_BLOCK - page,
    )
    .unwrap();
    assert_eq!(
        mapper.mappings(),
        vec![
            (0, DAX_BLOCK - page),
            (DAX_BLOCK - page, 2 * page),
            (DAX_BLOCK + page, DAX_BLOCK - page)
        ]
    );
    // SAFETY: each range read is mapped to file data within the 8 MiB file.
    unsafe {
        assert_eq!(
            window_read(&mapper, DAX_BLOCK - page, 16),
            pattern(4 * DAX_BLOCK as usize, 3)[3 * DAX_BLOCK as usize..][..16]
        );
        assert_eq!(
            window_read(&mapper, DAX_BLOCK + page, 16),
            pattern(4 * DAX_BLOCK as usize, 3)[(DAX_BLOCK + page) as usize..][..16]
        );
    }

    // REMOVEMAPPING of a page inside the first mapping and one across two: what stays is
    // mapped again in pieces.
    fs.removemapping(f, &[(page, page), (DAX_BLOCK - page, 3 * page)])
        .unwrap();
    assert_eq!(
        mapper.mappings(),
        vec![
            (0, page),
            (2 * page, DAX_BLOCK - 3 * page),
            (DAX_BLOCK + 2 * page, DAX_BLOCK - 2 * page)
        ]
    );
    fs.removemapping(f, &[(0, 16 << 20)]).unwrap();
    assert!(mapper.mappings().is_empty());
    assert!(all_prot_none(&mapper), "{:?}", window_vmas(&mapper));

    // An empty file is never sent to the owner (QEMU would grow it to the mapping's end).
    std::fs::write(w.shared().join("empty"), b"").unwrap();
    let e = fs.lookup(ROOT_ID, "empty").unwrap().nodeid;
    fs.open(e, libc::O_RDWR as u32).unwrap();
    assert_eq!(
        errno(fs.setupmapping(e, ANY_HANDLE, 0, DAX_BLOCK, READ | WRITE, 0)),
        libc::EINVAL
    );
    assert_eq!(
        std::fs::metadata(w.shared().join("empty")).unwrap().len(),
        0
    );
    fs.release(f, fh, libc::O_RDWR as u32, 0, 0).unwrap();
}

/// GET_CONFIG: protocol feature CONFIG only with `--tag`, and then the virtio-fs config space
/// (the 36-byte tag, then the number of request queues).
#[test]
fn config_space_only_with_a_tag() {
    use vhost::vhost_user::message::VhostUserConfigFlags;
    use vhost::vhost_user::{Frontend, VhostUserFrontend};
    use vhost::VhostBackend;
    let offered = |w: &Worker| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut fe = loop {
            match Frontend::connect(&w.sock, 1) {
                Ok(fe) => break fe,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        fe.set_features(features).unwrap();
        let protocol = fe.get_protocol_features().unwrap();
        (fe, protocol)
    };

    let w = Worker::start(&[]);
    let (_fe, protocol) = offered(&w);
    assert!(!protocol.contains(VhostUserProtocolFeatures::CONFIG));

    let w = Worker::start(&["--tag", "vfs", "--num-request-queues", "2"]);
    let (mut fe, protocol) = offered(&w);
    assert!(protocol.contains(VhostUserProtocolFeatures::CONFIG));
    fe.set_protocol_features(protocol).unwrap();
    let (_, space) = fe
        .get_config(0, 40, VhostUserConfigFlags::empty(), &[0u8; 40])
        .unwrap();
    let mut want = b"vfs".to_vec();
    want.resize(36, 0);
    want.extend_from_slice(&2u32.to_le_bytes());
    assert_eq!(space, want);
    // Just the queue count. (A range past the end gets an empty answer, which vhost's own
    // frontend then waits on forever, so that case is a unit test of the config space.)
    let (_, queues) = fe
        .get_config(36, 4, VhostUserConfigFlags::empty(), &[0u8; 4])
        .unwrap();
    assert_eq!(queues, 2u32.to_le_bytes());

    // A tag longer than the 36 bytes is refused at startup.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fsjail"))
        .arg("serve")
        .args(["--socket-path", dir.path().join("s").to_str().unwrap()])
        .args(["--shared-dir", dir.path().to_str().unwrap()])
        .args(["--tag", &"t".repeat(37)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("longer than 36 bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
