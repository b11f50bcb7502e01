//! The window owner's side: [`WindowMapper`] owns the address range the guest sees as the
//! virtio-fs cache window and maps files into it on SHMEM_MAP.
//!
//! The owner is whoever holds the guest's memory map: a VMM (which registers
//! [`WindowMapper::as_ptr`]..+[`WindowMapper::len`] as guest memory at the window's guest
//! physical address) or, in tests, the guest driver. Either way the requests come from the
//! device worker, which the owner does not trust: every request is checked again here, with the
//! same pure check plus the file descriptor check, before `mmap` runs.
//!
//! The range is reserved once (PROT_NONE, MAP_NORESERVE) and never has holes: unmapping maps
//! PROT_NONE anonymous memory over the range instead of calling munmap, so nothing else in the
//! process (malloc, another mmap) can ever be placed inside the window where the guest could
//! reach it.
//!
//! By default the mapper keeps QEMU 11.1's rules for the window ([`Overlaps::Refuse`]): a
//! SHMEM_MAP over any live mapping is refused, and a SHMEM_UNMAP must name exactly one earlier
//! mapping. A worker that passes our tests therefore works with QEMU too. An embedding VMM that
//! wants `mmap(MAP_FIXED)` replacement and trimming asks for it with [`Overlaps::Replace`].

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use log::error;
use thiserror::Error;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

use super::fd_check::{check_fd, FdError};
use super::settings::{self, SettingsError};
use super::validate::{check_map, check_range, Access, CheckError, MapRequest, Window};
use crate::fuse::abi::{SETUPMAPPING_FLAG_READ, SETUPMAPPING_FLAG_WRITE};

/// The id of the virtio-fs cache window among the device's shared memory regions
/// (VIRTIO_FS_SHMCAP_ID_CACHE); the device has no other region.
pub const CACHE_SHMID: u8 = 0;

/// Why the owner refused or failed a request.
#[derive(Debug, Error)]
pub enum WindowError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("page size {page} is not a multiple of the host page size {host}")]
    PageBelowHost { page: u64, host: u64 },
    #[error("reserving the {len}-byte window: {source}")]
    Reserve { len: u64, source: io::Error },
    #[error("shared memory region {0} does not exist (the cache window is region 0)")]
    BadRegion(u8),
    #[error("unknown SHMEM_MAP flags {0:#x}")]
    UnknownFlags(u64),
    #[error("refused: {0}")]
    Check(#[from] CheckError),
    #[error("refused: {0}")]
    Fd(#[from] FdError),
    #[error("mmap into the window: {0}")]
    Map(io::Error),
    #[error("resetting a window range to PROT_NONE: {0}")]
    Reset(io::Error),
    #[error(
        "refused: {moffset:#x}+{len:#x} overlaps the live mapping {live_offset:#x}+{live_len:#x}"
    )]
    Overlap {
        moffset: u64,
        len: u64,
        live_offset: u64,
        live_len: u64,
    },
    #[error("refused: {moffset:#x}+{len:#x} is not exactly one live mapping")]
    NotMapped { moffset: u64, len: u64 },
}

/// What the mapper does with a map over live mappings and an unmap of part of one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overlaps {
    /// QEMU 11.1's rules: refuse both.
    #[default]
    Refuse,
    /// `mmap(MAP_FIXED)` semantics: a map replaces what it overlaps, an unmap trims or splits.
    Replace,
}

impl WindowError {
    /// The errno for the worker's guest (it travels only as "failed" over vhost-user, but an
    /// in-process owner passes it on).
    pub fn errno(&self) -> i32 {
        match self {
            WindowError::Check(e) => e.errno(),
            WindowError::Fd(e) => e.errno(),
            WindowError::Overlap { .. } => libc::EEXIST,
            WindowError::Map(e)
            | WindowError::Reset(e)
            | WindowError::Reserve { source: e, .. } => e.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::EINVAL,
        }
    }
}

impl From<WindowError> for io::Error {
    fn from(e: WindowError) -> Self {
        io::Error::from_raw_os_error(e.errno())
    }
}

/// The cache window: a reserved range of this process's address space.
#[derive(Debug)]
pub struct WindowMapper {
    base: NonNull<u8>,
    window: Window,
    overlaps: Overlaps,
    /// Live mappings, offset -> length (kept under [`Overlaps::Refuse`] only). The lock is
    /// held from the check to the mmap, so two requests cannot both pass the overlap check.
    live: Mutex<BTreeMap<u64, u64>>,
}

// SAFETY: `base` is the address of a reservation this struct owns; it is only passed to
// mmap/munmap, which the kernel serializes, never dereferenced here. Sharing it between threads
// is as safe as sharing the integer.
unsafe impl Send for WindowMapper {}
// SAFETY: as above: every method takes &self and only makes system calls on the reservation.
unsafe impl Sync for WindowMapper {}

impl WindowMapper {
    /// Reserves a window of `len` bytes, checked against the host page.
    pub fn new(len: u64) -> Result<Self, WindowError> {
        Self::with_page_size(len, settings::host_page_size())
    }

    /// Reserves a window whose requests are checked against `page`, which must be a multiple of
    /// the real host page (so a 4K host can enforce a 16K or 64K host's rules).
    pub fn with_page_size(len: u64, page: u64) -> Result<Self, WindowError> {
        Self::with_options(len, page, Overlaps::Refuse)
    }

    /// A window with mmap's replacement semantics instead of QEMU's rules (see [`Overlaps`]).
    pub fn replacing(len: u64) -> Result<Self, WindowError> {
        Self::with_options(len, settings::host_page_size(), Overlaps::Replace)
    }

    /// Reserves a window checked against `page` that treats overlaps as `overlaps` says.
    pub fn with_options(len: u64, page: u64, overlaps: Overlaps) -> Result<Self, WindowError> {
        let host = settings::host_page_size();
        let window = Window::new(len, page)?;
        // Both are powers of two, so the larger is a multiple of the smaller.
        if page < host {
            return Err(WindowError::PageBelowHost { page, host });
        }
        let size = usize::try_from(len).map_err(|_| SettingsError::WindowTooLarge(len))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; it touches
        // no existing memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(WindowError::Reserve {
                len,
                source: io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(addr.cast::<u8>()).ok_or(WindowError::Reserve {
            len,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        Ok(WindowMapper {
            base,
            window,
            overlaps,
            live: Mutex::new(BTreeMap::new()),
        })
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        // Each update is one insert or remove, after the mmap it records succeeded.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live mappings as (offset, length), in window order (empty under
    /// [`Overlaps::Replace`], which keeps no record).
    pub fn mappings(&self) -> Vec<(u64, u64)> {
        self.live().iter().map(|(o, l)| (*o, *l)).collect()
    }

    /// How the mapper treats overlaps.
    pub fn overlaps(&self) -> Overlaps {
        self.overlaps
    }

    /// The window's geometry.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Where the window starts in this process. What is readable there changes under the
    /// guest's control: only access it knowing what is mapped (and that a page past the end of
    /// a file raises SIGBUS).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The window's length in bytes.
    pub fn len(&self) -> u64 {
        self.window.len()
    }

    /// Never true: a window has at least one 2 MiB block.
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// The address of a checked window range. Both offsets are within the window, so the
    /// addition cannot leave the reservation.
    fn addr(&self, moffset: u64) -> *mut libc::c_void {
        // moffset < window length <= isize::MAX (checked by the caller and Window::new).
        self.base.as_ptr().wrapping_add(moffset as usize).cast()
    }

    /// Maps `req.len` bytes of `fd` at `req.fd_offset` to window offset `req.shm_offset`,
    /// replacing what was there. Checked first: region 0, known flags, the same range rules as
    /// the worker, and a regular file open for what the flags ask.
    pub fn map(&self, req: &VhostUserMMap, fd: BorrowedFd<'_>) -> Result<(), WindowError> {
        // Copy out of the packed struct: no references to its fields.
        let (shmid, fd_offset, shm_offset, len, flags) =
            (req.shmid, req.fd_offset, req.shm_offset, req.len, req.flags);
        if shmid != CACHE_SHMID {
            return Err(WindowError::BadRegion(shmid));
        }
        let writable = match VhostUserMMapFlags::from_bits(flags) {
            Some(f) => f.contains(VhostUserMMapFlags::WRITABLE),
            None => return Err(WindowError::UnknownFlags(flags)),
        };
        let fuse_flags =
            SETUPMAPPING_FLAG_READ | if writable { SETUPMAPPING_FLAG_WRITE } else { 0 };
        let checked = MapRequest {
            foffset: fd_offset,
            moffset: shm_offset,
            len,
            flags: fuse_flags,
        };
        let access = check_map(&self.window, &checked)?;
        check_fd(fd, access)?;
        let prot = match access {
            Access::Read => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        if self.overlaps == Overlaps::Replace {
            return self.mmap_file(shm_offset, len, prot, fd.as_raw_fd(), fd_offset);
        }
        let mut live = self.live();
        // check_map refused ranges that wrap.
        let end = shm_offset + len;
        if let Some((&o, &l)) = live.range(..end).next_back() {
            if o + l > shm_offset {
                return Err(WindowError::Overlap {
                    moffset: shm_offset,
                    len,
                    live_offset: o,
                    live_len: l,
                });
            }
        }
        self.mmap_file(shm_offset, len, prot, fd.as_raw_fd(), fd_offset)?;
        live.insert(shm_offset, len);
        Ok(())
    }

    fn mmap_file(
        &self,
        moffset: u64,
        len: u64,
        prot: i32,
        fd: RawFd,
        foffset: u64,
    ) -> Result<(), WindowError> {
        // SAFETY: the range [moffset, moffset + len) was checked to lie inside our reservation,
        // so MAP_FIXED replaces only window pages, which no Rust reference points into. The
        // offsets fit usize and off_t (checked: len <= window <= 64 GiB, foffset + len <= i64::MAX).
        let addr = unsafe {
            libc::mmap(
                self.addr(moffset),
                len as usize,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                foffset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // A failed MAP_FIXED may already have removed the old pages, leaving a hole in the
            // reservation. Fill it at once so the window stays whole.
            if let Err(reset) = self.reset(moffset, len) {
                error!("window range {moffset:#x}+{len:#x} may have a hole: {reset}");
            }
            return Err(WindowError::Map(e));
        }
        Ok(())
    }

    /// Makes a checked range PROT_NONE again by mapping anonymous memory over it.
    fn reset(&self, moffset: u64, len: u64) -> Result<(), WindowError> {
        // SAFETY: as in `mmap_file`: the range lies inside our reservation.
        let addr = unsafe {
            libc::mmap(
                self.addr(moffset),
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(WindowError::Reset(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Unmaps `req.len` bytes at `req.shm_offset` (the file offset and flags are ignored): the
    /// range becomes PROT_NONE reserved memory again. Under [`Overlaps::Refuse`] the range must
    /// be exactly one live mapping.
    pub fn unmap(&self, req: &VhostUserMMap) -> Result<(), WindowError> {
        let (shmid, shm_offset, len) = (req.shmid, req.shm_offset, req.len);
        if shmid != CACHE_SHMID {
            return Err(WindowError::BadRegion(shmid));
        }
        check_range(&self.window, shm_offset, len)?;
        if self.overlaps == Overlaps::Replace {
            return self.reset(shm_offset, len);
        }
        let mut live = self.live();
        if live.get(&shm_offset) != Some(&len) {
            return Err(WindowError::NotMapped {
                moffset: shm_offset,
                len,
            });
        }
        self.reset(shm_offset, len)?;
        live.remove(&shm_offset);
        Ok(())
    }

    /// Unmaps the whole window (the worker disconnected, or the guest reset the device).
    pub fn clear(&self) -> Result<(), WindowError> {
        let mut live = self.live();
        self.reset(0, self.window.len())?;
        live.clear();
        Ok(())
    }
}

impl Drop for WindowMapper {
    fn drop(&mut self) {
        // SAFETY: the reservation is ours and nothing can use it after drop.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.window.len() as usize) };
    }
}

/// Lets the mapper serve SHMEM_MAP/SHMEM_UNMAP directly: plug it into vhost's
/// `FrontendReqHandler` (a VMM's backend-request channel, the guest driver's), or hand it to
/// the worker's `DaxChannel` when device and window live in one process.
impl VhostUserFrontendReqHandler for WindowMapper {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        let raw = fd.as_raw_fd();
        if raw < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: the caller lends a descriptor (checked not -1) that stays open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        self.map(req, fd).map(|()| 0).map_err(|e| {
            log::warn!("SHMEM_MAP refused: {e}");
            e.into()
        })
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        self.unmap(req).map(|()| 0).map_err(|e| {
            log::warn!("SHMEM_UNMAP refused: {e}");
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dax::settings::DAX_BLOCK;
    use std::fs::OpenOptions;
    use std::os::fd::AsFd;

    fn mmap_req(fd_offset: u64, shm_offset: u64, len: u64, writable: bool) -> VhostUserMMap {
        VhostUserMMap {
            shmid: 0,
            padding: [0; 7],
            fd_offset,
            shm_offset,
            len,
            flags: if writable {
                VhostUserMMapFlags::WRITABLE.bits()
            } else {
                0
            },
        }
    }

    /// Lines of /proc/self/maps inside the window, as (start, end, perms), clipped to it.
    fn window_vmas(w: &WindowMapper) -> Vec<(u64, u64, String)> {
        let base = w.as_ptr() as u64;
        let end = base + w.len();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut vmas = maps
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let (range, perms) = (parts.next()?, parts.next()?);
                let (s, e) = range.split_once('-')?;
                let s = u64::from_str_radix(s, 16).ok()?;
                let e = u64::from_str_radix(e, 16).ok()?;
                // Clipped: a neighbouring PROT_NONE mapping (another test's window) may merge
                // with ours into one line.
                (s < end && e > base).then(|| (s.max(base), e.min(end), perms.to_owned()))
            })
            .collect::<Vec<_>>();
        // /proc/self/maps is not read atomically: when other tests in this process map or
        // unmap meanwhile, the kernel may report a range twice or split at a neighbour's edge.
        // Sorted, deduplicated and with touching same-permission ranges merged, the list says
        // what the window holds, whatever the neighbours did.
        vmas.sort();
        vmas.dedup();
        let mut merged: Vec<(u64, u64, String)> = Vec::new();
        for v in vmas {
            match merged.last_mut() {
                Some(last) if last.2 == v.2 && last.1 >= v.0 => last.1 = last.1.max(v.1),
                _ => merged.push(v),
            }
        }
        merged
    }

    #[test]
    fn map_read_write_unmap() {
        let w = WindowMapper::new(2 * DAX_BLOCK).unwrap();
        assert_eq!(
            window_vmas(&w),
            vec![(
                w.as_ptr() as u64,
                w.as_ptr() as u64 + w.len(),
                "---p".into()
            )]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello window").unwrap();
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();

        w.map(&mmap_req(0, DAX_BLOCK, DAX_BLOCK, true), rw.as_fd())
            .unwrap();
        let vmas = window_vmas(&w);
        assert_eq!(vmas.len(), 2, "{vmas:?}");
        assert_eq!(vmas[1].2, "rw-s");
        // SAFETY: the block is mapped from a 12-byte file: its first page is backed.
        unsafe {
            let p = w.as_ptr().add(DAX_BLOCK as usize);
            assert_eq!(std::slice::from_raw_parts(p, 12), b"hello window");
            p.add(6).copy_from_nonoverlapping(b"WINDOW".as_ptr(), 6);
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"hello WINDOW");

        w.unmap(&mmap_req(0, DAX_BLOCK, DAX_BLOCK, false)).unwrap();
        let vmas = window_vmas(&w);
        assert_eq!(
            vmas.len(),
            1,
            "the reservation merged back into one range: {vmas:?}"
        );
        assert_eq!(vmas[0].2, "---p");
    }

    #[test]
    fn refusals_map_nothing() {
        let w = WindowMapper::new(2 * DAX_BLOCK).unwrap();
        let before = window_vmas(&w);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let ro = OpenOptions::new().read(true).open(&path).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();

        let cases: Vec<(VhostUserMMap, BorrowedFd<'_>, i32)> = vec![
            (
                mmap_req(0, 2 * DAX_BLOCK, DAX_BLOCK, false),
                ro.as_fd(),
                libc::EINVAL,
            ),
            (
                mmap_req(0, DAX_BLOCK, 2 * DAX_BLOCK, false),
                ro.as_fd(),
                libc::EINVAL,
            ),
            (
                mmap_req(0, u64::MAX - 4095, DAX_BLOCK, false),
                ro.as_fd(),
                libc::EINVAL,
            ),
            (mmap_req(0, 0, 0, false), ro.as_fd(), libc::EINVAL),
            (mmap_req(1, 0, DAX_BLOCK, false), ro.as_fd(), libc::EINVAL),
            (mmap_req(0, 0, DAX_BLOCK, true), ro.as_fd(), libc::EACCES),
            (mmap_req(0, 0, DAX_BLOCK, false), d.as_fd(), libc::ENODEV),
            (
                VhostUserMMap {
                    flags: 2,
                    ..mmap_req(0, 0, DAX_BLOCK, false)
                },
                ro.as_fd(),
                libc::EINVAL,
            ),
            (
                VhostUserMMap {
                    shmid: 1,
                    ..mmap_req(0, 0, DAX_BLOCK, false)
                },
                ro.as_fd(),
                libc::EINVAL,
            ),
        ];
        for (req, fd, errno) in cases {
            let e = w.map(&req, fd).unwrap_err();
            assert_eq!(e.errno(), errno, "{req:?}: {e}");
            assert_eq!(window_vmas(&w), before, "{req:?} changed the window");
        }
        let e = w
            .unmap(&mmap_req(0, DAX_BLOCK, 2 * DAX_BLOCK, false))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }

    /// What QEMU 11.1 refuses, this refuses: a map over any part of a live mapping, and an
    /// unmap that is not exactly one live mapping. Each refusal changes nothing. With
    /// `Overlaps::Replace` both are mmap's replacement and trimming instead.
    #[test]
    fn refuses_what_qemu_refuses() {
        let w = WindowMapper::new(4 * DAX_BLOCK).unwrap();
        assert_eq!(w.overlaps(), Overlaps::Refuse);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let ro = OpenOptions::new().read(true).open(&path).unwrap();
        let page = settings::host_page_size();
        w.map(&mmap_req(0, DAX_BLOCK, DAX_BLOCK, false), ro.as_fd())
            .unwrap();
        let before = window_vmas(&w);
        for (shm_offset, len) in [
            (DAX_BLOCK, DAX_BLOCK),
            (DAX_BLOCK + page, page),
            (0, DAX_BLOCK + page),
            (2 * DAX_BLOCK - page, 2 * page),
            (0, 4 * DAX_BLOCK),
        ] {
            let e = w
                .map(&mmap_req(0, shm_offset, len, false), ro.as_fd())
                .unwrap_err();
            assert!(matches!(e, WindowError::Overlap { .. }), "{e}");
            assert_eq!(window_vmas(&w), before);
        }
        for (shm_offset, len) in [
            (DAX_BLOCK, page),
            (DAX_BLOCK + page, DAX_BLOCK - page),
            (0, 2 * DAX_BLOCK),
            (0, DAX_BLOCK),
        ] {
            let e = w.unmap(&mmap_req(0, shm_offset, len, false)).unwrap_err();
            assert!(matches!(e, WindowError::NotMapped { .. }), "{e}");
            assert_eq!(window_vmas(&w), before);
        }
        assert_eq!(w.mappings(), vec![(DAX_BLOCK, DAX_BLOCK)]);
        // Beside it is fine, and the exact unmap.
        w.map(&mmap_req(0, 0, DAX_BLOCK, false), ro.as_fd())
            .unwrap();
        w.unmap(&mmap_req(0, DAX_BLOCK, DAX_BLOCK, false)).unwrap();
        assert_eq!(w.mappings(), vec![(0, DAX_BLOCK)]);
        w.clear().unwrap();
        assert!(w.mappings().is_empty());

        // Asked for explicitly: MAP_FIXED replacement and trimming.
        let r = WindowMapper::replacing(4 * DAX_BLOCK).unwrap();
        r.map(&mmap_req(0, 0, DAX_BLOCK, false), ro.as_fd())
            .unwrap();
        r.map(&mmap_req(0, page, page, false), ro.as_fd()).unwrap();
        r.unmap(&mmap_req(0, 0, page, false)).unwrap();
        let vmas = window_vmas(&r);
        let base = r.as_ptr() as u64;
        assert_eq!(vmas[0], (base, base + page, "---p".to_owned()), "{vmas:?}");
        assert_eq!(vmas[1].2, "r--s", "{vmas:?}");
    }

    #[test]
    fn stricter_page_than_host() {
        let host = settings::host_page_size();
        let w = WindowMapper::with_page_size(DAX_BLOCK, 65536).unwrap();
        assert_eq!(w.window().page_size(), 65536);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let ro = OpenOptions::new().read(true).open(&path).unwrap();
        if host < 65536 {
            let e = w
                .map(&mmap_req(host, 0, 65536, false), ro.as_fd())
                .unwrap_err();
            assert!(
                matches!(e, WindowError::Check(CheckError::Misaligned { .. })),
                "{e}"
            );
        }
        w.map(&mmap_req(65536, 0, 65536, false), ro.as_fd())
            .unwrap();
        w.clear().unwrap();
        assert!(WindowMapper::with_page_size(DAX_BLOCK, 1024).is_err());
    }
}
