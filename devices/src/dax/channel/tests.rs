//! The channel against a real `WindowMapper` (QEMU's rules), a flaky owner in front of one, and
//! a raw frontend socket that answers as QEMU does.

use super::*;
use crate::dax::settings::{host_page_size, DAX_BLOCK};
use crate::dax::WindowMapper;
use crate::fuse::abi::{SETUPMAPPING_FLAG_READ as R, SETUPMAPPING_FLAG_WRITE as W};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd};

fn req(foffset: u64, moffset: u64, len: u64, flags: u64) -> MapRequest {
    MapRequest {
        foffset,
        moffset,
        len,
        flags,
    }
}

/// A channel whose owner is a real WindowMapper in this process.
fn setup() -> (
    Arc<DaxChannel>,
    Arc<WindowMapper>,
    tempfile::TempDir,
    std::fs::File,
) {
    let mapper = Arc::new(WindowMapper::new(4 * DAX_BLOCK).unwrap());
    let window = Window::new(4 * DAX_BLOCK, host_page_size()).unwrap();
    let channel = Arc::new(DaxChannel::new(window));
    channel.connect(mapper.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"coherent").unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (channel, mapper, dir, file)
}

#[test]
fn maps_through_the_owner_and_tracks() {
    let (channel, mapper, _dir, file) = setup();
    channel
        .map(9, &req(0, DAX_BLOCK, DAX_BLOCK, R | W), file.as_fd())
        .unwrap();
    // SAFETY: the block maps the 8-byte file, whose first page is backed.
    let seen = unsafe { std::slice::from_raw_parts(mapper.as_ptr().add(DAX_BLOCK as usize), 8) };
    assert_eq!(seen, b"coherent");
    assert_eq!(channel.mapped_bytes(), DAX_BLOCK);
    let m = channel.mappings()[0];
    assert!(m.writable && m.nodeid == 9 && m.moffset == DAX_BLOCK);

    // Replacing half of it and unmapping across both.
    let page = host_page_size();
    channel
        .map(9, &req(0, DAX_BLOCK + page, page, R), file.as_fd())
        .unwrap();
    assert_eq!(channel.mappings().len(), 3);
    channel.unmap(&[(DAX_BLOCK, DAX_BLOCK)]).unwrap();
    assert_eq!(channel.mapped_bytes(), 0);

    // Checked again here, whatever the caller did.
    let e = channel
        .map(9, &req(0, 4 * DAX_BLOCK, DAX_BLOCK, R), file.as_fd())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let e = channel.unmap(&[(0, DAX_BLOCK), (0, 0)]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);

    channel.disconnect();
    assert!(!channel.is_connected());
    let e = channel
        .map(9, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap_err();
    assert!(matches!(e, DaxError::NoOwner), "{e}");
}

/// A real `WindowMapper` (QEMU's rules) behind a switch that refuses, or breaks, requests,
/// as a VMM can.
struct Flaky {
    mapper: Arc<WindowMapper>,
    /// (requests to let through first, then requests to refuse).
    plan: Mutex<(usize, usize)>,
    broken: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn new(mapper: Arc<WindowMapper>) -> Arc<Self> {
        Arc::new(Flaky {
            mapper,
            plan: Mutex::new((0, 0)),
            broken: false.into(),
        })
    }

    /// Lets `pass` requests through, then refuses `refuse`.
    fn arm(&self, pass: usize, refuse: usize) {
        *self.plan.lock().unwrap() = (pass, refuse);
    }

    fn gate(&self) -> io::Result<()> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other("the socket went away"));
        }
        let mut plan = self.plan.lock().unwrap();
        if plan.0 > 0 {
            plan.0 -= 1;
        } else if plan.1 > 0 {
            plan.1 -= 1;
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(())
    }
}

impl VhostUserFrontendReqHandler for Flaky {
    fn shmem_map(
        &self,
        req: &VhostUserMMap,
        fd: &dyn std::os::fd::AsRawFd,
    ) -> vhost::vhost_user::HandlerResult<u64> {
        self.gate()?;
        self.mapper.shmem_map(req, fd)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> vhost::vhost_user::HandlerResult<u64> {
        self.gate()?;
        self.mapper.shmem_unmap(req)
    }
}

fn agree(channel: &DaxChannel, mapper: &WindowMapper) {
    let table: Vec<(u64, u64)> = channel
        .mappings()
        .iter()
        .map(|m| (m.moffset, m.len))
        .collect();
    assert_eq!(table, mapper.mappings(), "the table and the owner disagree");
}

#[test]
fn upgrade_and_split_under_qemus_rules() {
    let (channel, mapper, _dir, file) = setup();
    let page = host_page_size();
    // Read-only, then upgraded in place: an exact SHMEM_UNMAP, then the new SHMEM_MAP.
    channel
        .map(9, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap();
    channel
        .map(9, &req(0, 0, DAX_BLOCK, R | W), file.as_fd())
        .unwrap();
    assert!(channel.mappings()[0].writable);
    agree(&channel, &mapper);
    // A range over two mappings, then a partial unmap of both: all as QEMU accepts.
    channel
        .map(9, &req(0, DAX_BLOCK, DAX_BLOCK, R), file.as_fd())
        .unwrap();
    channel
        .map(9, &req(0, DAX_BLOCK - page, 2 * page, R), file.as_fd())
        .unwrap();
    assert_eq!(channel.mappings().len(), 3);
    agree(&channel, &mapper);
    channel
        .unmap(&[(page, page), (DAX_BLOCK + 4 * page, page)])
        .unwrap();
    agree(&channel, &mapper);
    assert_eq!(channel.mapped_bytes(), 2 * DAX_BLOCK - 2 * page);
    // A new session unmaps what the last one left.
    channel.restart();
    assert_eq!(channel.mapped_bytes(), 0);
    agree(&channel, &mapper);
}

#[test]
fn a_refusal_leaves_the_table_true() {
    let (channel, mapper, _dir, file) = setup();
    let flaky = Flaky::new(mapper.clone());
    channel.connect(flaky.clone());
    channel
        .map(9, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap();

    // The upgrade's unmap passes, its map is refused: the read-only mapping is put back.
    flaky.arm(1, 1);
    let e = channel
        .map(9, &req(0, 0, DAX_BLOCK, R | W), file.as_fd())
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOMEM, "{e}");
    assert_eq!(channel.mappings().len(), 1);
    assert!(!channel.mappings()[0].writable, "the old mapping came back");
    agree(&channel, &mapper);

    // The undo is refused too: the table says nothing is mapped, as the owner does.
    flaky.arm(1, 2);
    assert!(channel
        .map(9, &req(0, 0, DAX_BLOCK, R | W), file.as_fd())
        .is_err());
    assert_eq!(channel.mapped_bytes(), 0);
    agree(&channel, &mapper);
    assert!(channel.is_connected(), "a refusal keeps the channel");

    // A partial unmap whose piece is refused: the whole mapping is put back.
    channel
        .map(9, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap();
    flaky.arm(1, 1);
    assert!(channel.unmap(&[(0, host_page_size())]).is_err());
    assert_eq!(channel.mapped_bytes(), DAX_BLOCK);
    agree(&channel, &mapper);

    // The channel breaks: the window is unknown, so the owner is dropped and the table
    // cleared.
    flaky
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = channel
        .map(9, &req(0, DAX_BLOCK, DAX_BLOCK, R), file.as_fd())
        .unwrap_err();
    assert!(matches!(e, DaxError::Channel(_)), "{e}");
    assert!(!channel.is_connected());
    assert_eq!(channel.mapped_bytes(), 0);
}

/// Several threads mapping and unmapping overlapping ranges at once: the owner, which
/// refuses overlaps and inexact unmaps, never refuses, and the table ends equal to it.
#[test]
fn concurrent_requests_keep_order_per_range() {
    let (channel, mapper, _dir, file) = setup();
    let page = host_page_size();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let channel = channel.clone();
            let file = file.try_clone().unwrap();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let moffset = ((t + i) % 7) * (DAX_BLOCK / 2);
                    let flags = if (t + i) % 2 == 0 { R } else { R | W };
                    channel
                        .map(t, &req(0, moffset, DAX_BLOCK, flags), file.as_fd())
                        .unwrap();
                    if i % 3 == 0 {
                        channel.unmap(&[(moffset + page, page)]).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    agree(&channel, &mapper);
    channel.unmap(&[(0, 4 * DAX_BLOCK)]).unwrap();
    assert!(mapper.mappings().is_empty());
}

/// Over a real backend-request socket, a frontend that answers NEED_REPLY with 1 (as QEMU
/// does for a refusal; not an errno) refuses the step and keeps the channel; 0 is success.
#[test]
fn a_reply_of_one_is_a_refusal() {
    use std::io::{Read, Write};
    use vhost::vhost_user::Backend;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let backend = Backend::from_stream(ours);
    backend.set_reply_ack_flag(true);
    backend.set_shmem_flag(true);
    let window = Window::new(4 * DAX_BLOCK, host_page_size()).unwrap();
    let channel = Arc::new(DaxChannel::new(window));
    channel.connect(Arc::new(backend));
    // The frontend: reads each request (header, then body) and replies with the next value.
    let replies = [1u64, 0, 1, 0];
    let frontend = std::thread::spawn(move || {
        let mut sock = theirs;
        let mut seen = Vec::new();
        for value in replies {
            let mut hdr = [0u8; 12];
            sock.read_exact(&mut hdr).unwrap();
            let code = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
            let flags = u32::from_le_bytes(hdr[4..8].try_into().unwrap());
            let size = u32::from_le_bytes(hdr[8..12].try_into().unwrap());
            let mut body = vec![0u8; size as usize];
            sock.read_exact(&mut body).unwrap();
            seen.push((code, flags & 0x8 != 0));
            let mut reply = Vec::new();
            reply.extend_from_slice(&code.to_le_bytes());
            // VERSION 1 | REPLY.
            reply.extend_from_slice(&(0x1u32 | 0x4).to_le_bytes());
            reply.extend_from_slice(&8u32.to_le_bytes());
            reply.extend_from_slice(&value.to_le_bytes());
            sock.write_all(&reply).unwrap();
        }
        seen
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"x").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let e = channel
        .map(1, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap_err();
    assert!(matches!(e, DaxError::Owner(_)), "{e}");
    assert_eq!(e.errno(), libc::EIO);
    assert!(channel.is_connected());
    assert_eq!(channel.mapped_bytes(), 0);
    channel
        .map(1, &req(0, 0, DAX_BLOCK, R), file.as_fd())
        .unwrap();
    assert_eq!(channel.mapped_bytes(), DAX_BLOCK);
    // The unmap is refused (the table keeps the mapping), then accepted.
    assert!(channel.unmap(&[(0, DAX_BLOCK)]).is_err());
    assert_eq!(channel.mapped_bytes(), DAX_BLOCK);
    channel.unmap(&[(0, DAX_BLOCK)]).unwrap();
    assert_eq!(channel.mapped_bytes(), 0);
    let seen = frontend.join().unwrap();
    // SHMEM_MAP is backend request 9, SHMEM_UNMAP 10; each asked for a reply.
    assert_eq!(seen, vec![(9, true), (9, true), (10, true), (10, true)]);
}

#[test]
fn refuses_bad_descriptors() {
    let (channel, _mapper, dir, _file) = setup();
    let ro = OpenOptions::new()
        .read(true)
        .open(dir.path().join("f"))
        .unwrap();
    let e = channel
        .map(1, &req(0, 0, DAX_BLOCK, R | W), ro.as_fd())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EACCES, "{e}");
    let d = std::fs::File::open(dir.path()).unwrap();
    let e = channel
        .map(1, &req(0, 0, DAX_BLOCK, R), d.as_fd())
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENODEV, "{e}");
    assert_eq!(channel.mapped_bytes(), 0);
}

#[test]
fn handlers_forward_only_what_was_checked() {
    let (channel, _mapper, _dir, file) = setup();
    let expected = req(0, 0, DAX_BLOCK, R);
    let handles = Arc::new(OpenHandles::default());
    handles.opened(3, 77, libc::O_RDONLY as u32);
    let mut h = SetupHandler::new(channel.clone(), handles.clone(), 3, 77, expected);
    let fd = file.as_raw_fd();
    // Another window offset than the one checked.
    let e = h.map(0, DAX_BLOCK, DAX_BLOCK, R, fd).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(h.unmap(vec![]).is_err());
    assert_eq!(
        h.map(0, 0, DAX_BLOCK, R, -1).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
    h.map(0, 0, DAX_BLOCK, R, fd).unwrap();
    assert!(h.done());
    // Only once.
    assert!(h.map(0, 0, DAX_BLOCK, R, fd).is_err());
    // The handle must be open on the node, for writing when the mapping writes.
    let writing = req(0, 0, DAX_BLOCK, R | W);
    let mut h = SetupHandler::new(channel.clone(), handles.clone(), 3, 77, writing);
    assert_eq!(
        h.map(0, 0, DAX_BLOCK, R | W, fd)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    let mut h = SetupHandler::new(channel.clone(), handles.clone(), 4, 77, expected);
    assert_eq!(
        h.map(0, 0, DAX_BLOCK, R, fd).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );

    let mut r = RemoveHandler::new(channel.clone(), vec![(0, DAX_BLOCK)]);
    let other = vec![RemovemappingOne {
        moffset: DAX_BLOCK,
        len: DAX_BLOCK,
    }];
    assert!(r.unmap(other).is_err());
    assert!(r.map(0, 0, DAX_BLOCK, R, fd).is_err());
    r.unmap(vec![RemovemappingOne {
        moffset: 0,
        len: DAX_BLOCK,
    }])
    .unwrap();
    assert!(r.done());
    assert_eq!(channel.mapped_bytes(), 0);
}
