//! The `vhost_user_messages` harness: frontend messages into fsjail's `FsBackend`, through
//! vhost-user-backend's real daemon (its message handler is private to that crate, so the
//! daemon connects to a socket we listen on and we play the frontend on the other end).
//!
//! Input format (a sequence of operations, each starting with a kind byte):
//!
//! ```text
//! 0 Msg      code:u32le flags:u32le fds:u8 len:u16le payload[len]
//!            (fds: bit 0 attaches the kick eventfd, bit 1 the call eventfd, bit 2 guest RAM)
//! 1 MemTable n:u8 then n x (gpa:u64le size:u64le user_addr:u64le mmap_offset:u64le),
//!            guest RAM attached once per region
//! 2 Kick     sync with the message thread (GET_FEATURES and its reply), write the kick
//!            eventfd, then wait up to 5 ms for the call eventfd
//! 3 Poke     offset:u32le len:u16le bytes[len]: write guest RAM
//! 4 Raw      len:u16le bytes[len]: written to the socket as they are
//! ```
//!
//! Guest RAM is one [`RAM_SIZE`] memfd. A truncated operation ends the input.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use devices::fs::{CachePolicy, ShareOptions};
use devices::share::{ShareDevice, ShareFs};
use devices::vhost_user::FsBackend;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Size of the guest RAM memfd.
pub const RAM_SIZE: u64 = 1 << 20;
const MAX_OPS: usize = 48;

pub const OP_MSG: u8 = 0;
pub const OP_MEM_TABLE: u8 = 1;
pub const OP_KICK: u8 = 2;
pub const OP_POKE: u8 = 3;
pub const OP_RAW: u8 = 4;

pub const FD_KICK: u8 = 1;
pub const FD_CALL: u8 = 2;
pub const FD_RAM: u8 = 4;

struct Shared {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    device: ShareDevice,
    ram: std::fs::File,
}

fn shared() -> &'static Mutex<Shared> {
    static S: OnceLock<Mutex<Shared>> = OnceLock::new();
    S.get_or_init(|| {
        // libFuzzer's main is not Rust's, so SIGPIPE still has its default action: a write to
        // a connection the backend already closed would kill the fuzzer instead of failing.
        // SAFETY: setting a signal's disposition to SIG_IGN touches no memory.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let dir = tempfile::Builder::new()
            .prefix("fsjail-fuzz-vu.")
            .tempdir()
            .unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir(&share).unwrap();
        std::fs::write(share.join("file"), b"hello").unwrap();
        let settings = settings::DeviceSettings {
            readonly: true,
            cache: CachePolicy::Never,
            ..Default::default()
        };
        let fs = ShareFs::open(&ShareOptions::for_settings(&share, &settings)).unwrap();
        let device = ShareDevice::build(&settings, fs).unwrap();
        // SAFETY: a NUL-terminated name; the descriptor is owned by the File at once.
        let fd = unsafe { libc::memfd_create(c"fuzz-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` is fresh and owned by nobody else.
        let ram = unsafe { std::fs::File::from_raw_fd(fd) };
        ram.set_len(RAM_SIZE).unwrap();
        Mutex::new(Shared {
            sock: dir.path().join("vu.sock"),
            _dir: dir,
            device,
            ram,
        })
    })
}

/// A little-endian byte cursor; every read fails at the end of the input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2)
            .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
}

/// Sends `bytes` with `fds` attached (SCM_RIGHTS).
fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    if fds.is_empty() {
        return (&*sock).write_all(bytes);
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let space = 64 + std::mem::size_of_val(fds);
    let mut cbuf = vec![0u64; space / 8 + 1];
    // SAFETY: msghdr/cmsghdr are plain C structs built here; CMSG_* walk the buffer we own,
    // which is large enough for one SCM_RIGHTS header and `fds`; the iovec points at `bytes`,
    // which outlives the call (the kernel only reads it).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The rest of a short send goes without the descriptors (they went with the first byte).
        if (n as usize) < bytes.len() {
            (&*sock).write_all(&bytes[n as usize..])?;
        }
    }
    Ok(())
}

/// A vhost-user message: header (request, flags, size) and payload.
pub fn message(code: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.extend_from_slice(&code.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Descriptors open in this process, by number.
fn open_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether descriptor `fd` is an eventfd.
fn is_eventfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|l| l.as_os_str() == "anon_inode:[eventfd]")
}

/// Runs one input against a fresh backend and daemon.
///
/// vhost-user-backend 0.24 leaks one eventfd per queue thread per daemon (VringEpollHandler::new
/// registers the exit event's consumer with `into_raw_fd` and never closes it). fsjail is not
/// affected in practice: a worker serves one connection and exits. Here a daemon is made per
/// input, so once everything of the run is dropped and its threads joined, the eventfds it left
/// behind are closed, or the process would run out of descriptors.
pub fn run(data: &[u8]) {
    // Only the descriptors that appeared during the run are looked at (a readlink each), not
    // every open one twice: that was a tenth of an input's system calls.
    let before = open_fds();
    run_daemon(data);
    let leaked = open_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd) && is_eventfd(*fd));
    for fd in leaked {
        // SAFETY: every thread of the run has been joined and every object of it dropped, so
        // nothing owns this descriptor any more (it was leaked); closing it touches no memory.
        unsafe { libc::close(fd) };
    }
}

fn run_daemon(data: &[u8]) {
    let sh = shared().lock().unwrap_or_else(|p| p.into_inner());
    let _ = std::fs::remove_file(&sh.sock);
    let listener = UnixListener::bind(&sh.sock).expect("bind");
    // A fresh backend per input (negotiated features, memory, exit events), over one server.
    let backend = Arc::new(FsBackend::new(sh.device.server().clone(), 1).expect("backend"));
    let mut daemon = VhostUserDaemon::new(
        "fuzz".into(),
        backend.clone(),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .expect("daemon");
    // connect() completes against the listen backlog, so accepting afterwards is fine.
    daemon
        .start_client(sh.sock.to_str().unwrap())
        .expect("start_client");
    let (conn, _) = listener.accept().expect("accept the daemon");
    // Guest RAM starts zeroed. Overwritten, not truncated and regrown: a queue thread of the
    // previous input's daemon may still be winding down with this file mapped, and a read of
    // a truncated shared mapping is SIGBUS.
    sh.ram.write_all_at(&vec![0u8; RAM_SIZE as usize], 0).unwrap();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let call = EventFd::new(EFD_NONBLOCK).unwrap();

    let mut c = Cursor(data);
    for _ in 0..MAX_OPS {
        if feed_one(&mut c, &conn, &sh.ram, &kick, &call).is_none() {
            break;
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
    // The daemon's thread ends on the disconnect; its result (an error for garbage) is fine.
    let _ = daemon.wait();
    backend.signal_exit();
    drop(daemon);
    backend.disconnect();
}

fn feed_one(
    c: &mut Cursor<'_>,
    conn: &UnixStream,
    ram: &std::fs::File,
    kick: &EventFd,
    call: &EventFd,
) -> Option<()> {
    match c.u8()? % 5 {
        OP_MSG => {
            let code = c.u32()?;
            let flags = c.u32()?;
            let which = c.u8()?;
            let len = c.u16()? as usize;
            let payload = c.bytes(len.min(c.0.len()))?;
            let mut fds = Vec::new();
            if which & FD_KICK != 0 {
                fds.push(kick.as_raw_fd());
            }
            if which & FD_CALL != 0 {
                fds.push(call.as_raw_fd());
            }
            if which & FD_RAM != 0 {
                fds.push(ram.as_raw_fd());
            }
            send_with_fds(conn, &message(code, flags, payload), &fds).ok()?;
        }
        OP_MEM_TABLE => {
            let n = (c.u8()? % 9) as usize;
            let mut payload = Vec::new();
            payload.extend_from_slice(&(n as u32).to_le_bytes());
            payload.extend_from_slice(&0u32.to_le_bytes());
            for _ in 0..n {
                for _ in 0..4 {
                    payload.extend_from_slice(&c.u64()?.to_le_bytes());
                }
            }
            let fds = vec![ram.as_raw_fd(); n];
            send_with_fds(conn, &message(5, 1, &payload), &fds).ok()?;
        }
        OP_KICK => {
            // Kicks are served on a queue thread: first let the message thread catch up, so
            // an input replays the same way every time.
            sync(conn);
            let _ = kick.write(1);
            // A served ring signals within microseconds; most fuzzed rings never do, and each
            // such kick used to cost the whole wait (a third of the harness's time at 5 ms).
            wait_readable(call.as_raw_fd(), Duration::from_millis(1));
            let _ = call.read();
        }
        OP_POKE => {
            let off = c.u32()? as u64 % RAM_SIZE;
            let len = c.u16()? as usize;
            let bytes = c.bytes(len.min(c.0.len()))?;
            let n = bytes.len().min((RAM_SIZE - off) as usize);
            ram.write_all_at(&bytes[..n], off).ok()?;
        }
        _ => {
            let len = c.u16()? as usize;
            let bytes = c.bytes(len.min(c.0.len()))?;
            (&*conn).write_all(bytes).ok()?;
        }
    }
    Some(())
}

/// Sends GET_FEATURES and reads replies until its own arrives (the backend handles messages in
/// order, so everything sent before has been handled), or 20 ms pass, or the connection ends.
fn sync(conn: &UnixStream) {
    use std::io::Read;
    const REPLY: u32 = 0x4;
    if (&*conn).write_all(&message(1, 1, &[])).is_err() {
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Complete replies at the front of `buf`: header (request, flags, size) and payload.
        while buf.len() >= 12 {
            let request = u32::from_le_bytes(buf[0..4].try_into().unwrap());
            let flags = u32::from_le_bytes(buf[4..8].try_into().unwrap());
            let size = u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize;
            if buf.len() < 12 + size {
                break;
            }
            buf.drain(..12 + size);
            if request == 1 && flags & REPLY != 0 {
                return;
            }
        }
        match (&*conn).read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn wait_readable(fd: RawFd, limit: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that lives for the call.
    unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) };
}

/// Builders for inputs (the seed generator uses them).
pub mod input {
    use super::*;

    pub fn msg(out: &mut Vec<u8>, code: u32, fds: u8, payload: &[u8]) {
        out.push(OP_MSG);
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.push(fds);
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.extend_from_slice(payload);
    }

    pub fn mem_table(out: &mut Vec<u8>, regions: &[(u64, u64, u64, u64)]) {
        out.push(OP_MEM_TABLE);
        out.push(regions.len() as u8);
        for &(gpa, size, uaddr, off) in regions {
            for v in [gpa, size, uaddr, off] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    pub fn poke(out: &mut Vec<u8>, offset: u32, bytes: &[u8]) {
        out.push(OP_POKE);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }

    pub fn kick(out: &mut Vec<u8>) {
        out.push(OP_KICK);
    }

    fn state(index: u32, num: u32) -> Vec<u8> {
        let mut v = index.to_le_bytes().to_vec();
        v.extend_from_slice(&num.to_le_bytes());
        v
    }

    /// A frontend that negotiates, shares guest RAM, sets up request queue 1 with a 16-entry
    /// ring holding one chain (`request` readable, 4 KiB writable) and kicks it.
    pub fn setup_and_kick(request: &[u8]) -> Vec<u8> {
        const UADDR: u64 = 0x7f00_0000_0000;
        const DESC: u64 = 0x1000;
        const AVAIL: u64 = 0x2000;
        const USED: u64 = 0x3000;
        const REQ: u64 = 0x10000;
        const REPLY: u64 = 0x20000;
        let features: u64 = (1 << 32) | (1 << 30);
        let mut v = Vec::new();
        msg(&mut v, 3, 0, &[]); // SET_OWNER
        msg(&mut v, 1, 0, &[]); // GET_FEATURES
        msg(&mut v, 2, 0, &features.to_le_bytes()); // SET_FEATURES
        msg(&mut v, 15, 0, &[]); // GET_PROTOCOL_FEATURES
        msg(&mut v, 16, 0, &1u64.to_le_bytes()); // SET_PROTOCOL_FEATURES: MQ
        mem_table(&mut v, &[(0, RAM_SIZE, UADDR, 0)]);
        let q = 1u32;
        msg(&mut v, 8, 0, &state(q, 16)); // SET_VRING_NUM
        let mut addr = Vec::new();
        addr.extend_from_slice(&q.to_le_bytes());
        addr.extend_from_slice(&0u32.to_le_bytes());
        for a in [DESC, USED, AVAIL, 0] {
            addr.extend_from_slice(&(UADDR + a).to_le_bytes());
        }
        msg(&mut v, 9, 0, &addr); // SET_VRING_ADDR
        msg(&mut v, 10, 0, &state(q, 0)); // SET_VRING_BASE
        msg(&mut v, 13, FD_CALL, &(q as u64).to_le_bytes()); // SET_VRING_CALL
        msg(&mut v, 12, FD_KICK, &(q as u64).to_le_bytes()); // SET_VRING_KICK
        msg(&mut v, 18, 0, &state(q, 1)); // SET_VRING_ENABLE
                                          // Descriptor 0 -> 1: the request, then room for the reply.
        let mut table = Vec::new();
        for (addr, len, flags, next) in
            [(REQ, request.len() as u32, 1u16, 1u16), (REPLY, 4096, 2, 0)]
        {
            table.extend_from_slice(&addr.to_le_bytes());
            table.extend_from_slice(&len.to_le_bytes());
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&next.to_le_bytes());
        }
        poke(&mut v, DESC as u32, &table);
        poke(&mut v, REQ as u32, request);
        // avail: flags 0, idx 1, ring[0] = head 0.
        poke(&mut v, AVAIL as u32, &[0, 0, 1, 0, 0, 0]);
        kick(&mut v);
        // The ring moves under the device after it started (the CVE-2026-5747 class).
        msg(&mut v, 8, 0, &state(q, 32768));
        let mut moved = addr.clone();
        moved[8..16].copy_from_slice(&(UADDR + RAM_SIZE - 8).to_le_bytes());
        msg(&mut v, 9, 0, &moved);
        poke(&mut v, AVAIL as u32, &[0, 0, 2, 0, 0, 0, 0, 0]);
        kick(&mut v);
        v
    }
}
