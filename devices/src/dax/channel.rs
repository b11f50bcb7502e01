//! The worker's side of the window: checks each mapping's file descriptor, keeps the mapping
//! table, and sends SHMEM_MAP / SHMEM_UNMAP (with the fd) to the window owner.
//!
//! The owner is anything implementing vhost's `VhostUserFrontendReqHandler`: the
//! backend-request channel's `Backend` (the fd travels over SCM_RIGHTS to the VMM), or a
//! [`WindowMapper`](super::WindowMapper) in the same process. The table lock is held while the
//! owner is asked, so the owner sees requests in the order the table records them.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::transport::FsCacheReqHandler;
use log::warn;
use thiserror::Error;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::VhostUserFrontendReqHandler;

use super::fd_check::{check_fd, FdError};
use super::handles::{HandleError, OpenHandles};
use super::table::{Mapping, MappingTable, TableFull};
use super::validate::{check_map, check_range, CheckError, MapRequest, Window};
use super::window::CACHE_SHMID;

/// Whoever owns the window and answers SHMEM_MAP / SHMEM_UNMAP.
pub type WindowOwner = Arc<dyn VhostUserFrontendReqHandler + Send + Sync>;

/// Most live mappings the worker tracks. A Linux guest maps 2 MiB blocks, so a 64 GiB window
/// needs 32768; twice that leaves room for splits.
pub const MAX_TABLE_ENTRIES: usize = 1 << 16;

/// Why a mapping request failed in the worker.
#[derive(Debug, Error)]
pub enum DaxError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Fd(#[from] FdError),
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error(transparent)]
    Table(#[from] TableFull),
    #[error("no window owner is connected (no backend request channel)")]
    NoOwner,
    #[error("the window owner refused or failed the request: {0}")]
    Owner(io::Error),
    #[error("the filesystem asked for a different mapping than the one checked")]
    Mismatch,
}

impl DaxError {
    pub fn errno(&self) -> i32 {
        match self {
            DaxError::Check(e) => e.errno(),
            DaxError::Fd(e) => e.errno(),
            DaxError::Handle(e) => e.errno(),
            DaxError::Table(_) => libc::ENOMEM,
            // Over vhost-user a refusal arrives without its errno.
            DaxError::Owner(e) => match e.raw_os_error() {
                Some(errno) if errno > 0 => errno,
                _ => libc::EIO,
            },
            DaxError::NoOwner | DaxError::Mismatch => libc::EIO,
        }
    }
}

impl From<DaxError> for io::Error {
    fn from(e: DaxError) -> Self {
        io::Error::from_raw_os_error(e.errno())
    }
}

struct State {
    table: MappingTable,
    owner: Option<WindowOwner>,
}

/// One share's window as the worker sees it.
pub struct DaxChannel {
    window: Window,
    state: Mutex<State>,
}

impl DaxChannel {
    pub fn new(window: Window) -> Self {
        DaxChannel {
            window,
            state: Mutex::new(State {
                table: MappingTable::new(MAX_TABLE_ENTRIES),
                owner: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single assignment or a table operation that keeps the
        // table consistent, so a panicking holder leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window's geometry.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// A new owner (the frontend set up the backend-request channel). Its window is empty, so
    /// the table starts empty too.
    pub fn connect(&self, owner: WindowOwner) {
        let mut st = self.lock();
        st.table.clear();
        st.owner = Some(owner);
    }

    /// The owner went away (frontend disconnect): forget it and everything mapped.
    pub fn disconnect(&self) {
        let mut st = self.lock();
        st.table.clear();
        st.owner = None;
    }

    pub fn is_connected(&self) -> bool {
        self.lock().owner.is_some()
    }

    /// Bytes of the window currently mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.lock().table.mapped_bytes()
    }

    /// A copy of the live mappings, in window order.
    pub fn mappings(&self) -> Vec<Mapping> {
        self.lock().table.iter().copied().collect()
    }

    /// Checks `fd` and asks the owner to map it; records the mapping when the owner agrees.
    /// `req` was checked by the server already; it is checked again because this is a public
    /// entry point.
    pub fn map(&self, nodeid: u64, req: &MapRequest, fd: BorrowedFd<'_>) -> Result<(), DaxError> {
        let access = check_map(&self.window, req)?;
        check_fd(fd, access)?;
        let mut st = self.lock();
        let owner = st.owner.clone().ok_or(DaxError::NoOwner)?;
        let mapping = Mapping {
            moffset: req.moffset,
            len: req.len,
            foffset: req.foffset,
            nodeid,
            writable: access.writable(),
        };
        if !st.table.can_insert(mapping.moffset, mapping.len) {
            return Err(TableFull(MAX_TABLE_ENTRIES).into());
        }
        let flags = if access.writable() {
            VhostUserMMapFlags::WRITABLE
        } else {
            VhostUserMMapFlags::empty()
        };
        let msg = VhostUserMMap {
            shmid: CACHE_SHMID,
            padding: [0; 7],
            fd_offset: req.foffset,
            shm_offset: req.moffset,
            len: req.len,
            flags: flags.bits(),
        };
        match owner.shmem_map(&msg, &fd) {
            Ok(_) => Ok(st.table.insert(mapping)?),
            Err(e) => {
                // A failed map leaves the range unmapped at the owner (WindowMapper resets it);
                // keep the table the same.
                if let Err(full) = st.table.remove(req.moffset, req.len) {
                    warn!("DAX table out of step after a failed map: {full}");
                }
                Err(DaxError::Owner(e))
            }
        }
    }

    /// Asks the owner to unmap each `(moffset, len)` in order and updates the table. All
    /// ranges are checked before the first is sent.
    pub fn unmap(&self, ranges: &[(u64, u64)]) -> Result<(), DaxError> {
        for &(moffset, len) in ranges {
            check_range(&self.window, moffset, len)?;
        }
        let mut st = self.lock();
        let owner = st.owner.clone().ok_or(DaxError::NoOwner)?;
        for &(moffset, len) in ranges {
            if st.table.would_split(moffset, len) && !st.table.has_room() {
                return Err(TableFull(MAX_TABLE_ENTRIES).into());
            }
            let msg = VhostUserMMap {
                shmid: CACHE_SHMID,
                padding: [0; 7],
                fd_offset: 0,
                shm_offset: moffset,
                len,
                flags: 0,
            };
            owner.shmem_unmap(&msg).map_err(DaxError::Owner)?;
            st.table.remove(moffset, len)?;
        }
        Ok(())
    }
}

/// The `FsCacheReqHandler` the server hands to `FileSystem::setupmapping` for one request. It
/// only forwards the exact mapping the server checked, once, and only if the guest's handle
/// allows it: the check runs here, after the share policy had its say (so a read-only share
/// answers EROFS), and before the fd leaves the worker.
pub struct SetupHandler {
    channel: Arc<DaxChannel>,
    handles: Arc<OpenHandles>,
    nodeid: u64,
    fh: u64,
    expected: MapRequest,
    done: bool,
}

impl SetupHandler {
    pub fn new(
        channel: Arc<DaxChannel>,
        handles: Arc<OpenHandles>,
        nodeid: u64,
        fh: u64,
        expected: MapRequest,
    ) -> Self {
        SetupHandler {
            channel,
            handles,
            nodeid,
            fh,
            expected,
            done: false,
        }
    }

    /// Whether the filesystem forwarded the mapping (and the owner made it).
    pub fn done(&self) -> bool {
        self.done
    }

    fn forward(&mut self, asked: MapRequest, fd: RawFd) -> Result<(), DaxError> {
        if self.done || asked != self.expected {
            return Err(DaxError::Mismatch);
        }
        let access = check_map(self.channel.window(), &asked)?;
        self.handles.check(self.nodeid, self.fh, access)?;
        if fd < 0 {
            return Err(FdError::Stat(io::Error::from_raw_os_error(libc::EBADF)).into());
        }
        // SAFETY: the filesystem lends an open descriptor for the duration of this call, and
        // the borrow does not outlive it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.channel.map(self.nodeid, &asked, fd)?;
        self.done = true;
        Ok(())
    }
}

fn refuse(e: DaxError) -> io::Error {
    log::debug!("DAX request refused: {e}");
    e.into()
}

impl FsCacheReqHandler for SetupHandler {
    fn map(
        &mut self,
        foffset: u64,
        moffset: u64,
        len: u64,
        flags: u64,
        fd: RawFd,
    ) -> io::Result<()> {
        self.forward(
            MapRequest {
                foffset,
                moffset,
                len,
                flags,
            },
            fd,
        )
        .map_err(refuse)
    }

    fn unmap(&mut self, _requests: Vec<RemovemappingOne>) -> io::Result<()> {
        Err(refuse(DaxError::Mismatch))
    }
}

/// The `FsCacheReqHandler` for one REMOVEMAPPING: forwards exactly the checked ranges, once.
pub struct RemoveHandler {
    channel: Arc<DaxChannel>,
    expected: Vec<(u64, u64)>,
    done: bool,
}

impl RemoveHandler {
    pub fn new(channel: Arc<DaxChannel>, expected: Vec<(u64, u64)>) -> Self {
        RemoveHandler {
            channel,
            expected,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }
}

impl FsCacheReqHandler for RemoveHandler {
    fn map(&mut self, _: u64, _: u64, _: u64, _: u64, _: RawFd) -> io::Result<()> {
        Err(refuse(DaxError::Mismatch))
    }

    fn unmap(&mut self, requests: Vec<RemovemappingOne>) -> io::Result<()> {
        let asked: Vec<(u64, u64)> = requests.iter().map(|r| (r.moffset, r.len)).collect();
        if self.done || asked != self.expected {
            return Err(refuse(DaxError::Mismatch));
        }
        self.channel.unmap(&self.expected).map_err(refuse)?;
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        let seen =
            unsafe { std::slice::from_raw_parts(mapper.as_ptr().add(DAX_BLOCK as usize), 8) };
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
}
