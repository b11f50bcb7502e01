//! A recording window owner: a real [`WindowMapper`] behind a page-by-page model of what it
//! mapped, so a target can check that the worker's mapping table and the owner never disagree
//! and that nothing the worker sends lies outside the window.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use devices::dax::table::Mapping;
use devices::dax::{WindowError, WindowMapper};
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

/// What the owner believes one window page holds: (file offset, writable).
pub type Page = Option<(u64, bool)>;

pub struct Recorder {
    pub mapper: WindowMapper,
    page: u64,
    model: Mutex<Vec<Page>>,
    /// When set, the next SHMEM_MAP is refused (as a VMM whose mmap failed would).
    pub fail_next_map: AtomicBool,
}

impl Recorder {
    pub fn new(window_len: u64) -> Recorder {
        let mapper = WindowMapper::new(window_len).expect("reserve the DAX window");
        let page = mapper.window().page_size();
        Recorder {
            model: Mutex::new(vec![None; (window_len / page) as usize]),
            mapper,
            page,
            fail_next_map: AtomicBool::new(false),
        }
    }

    pub fn page(&self) -> u64 {
        self.page
    }

    /// Unmaps everything (a new connection starts with an empty window).
    pub fn reset(&self) {
        self.mapper.clear().expect("clear the window");
        self.model
            .lock()
            .unwrap()
            .iter_mut()
            .for_each(|p| *p = None);
        self.fail_next_map.store(false, Ordering::Relaxed);
    }

    /// Panics unless the request is page-aligned, non-empty and inside the window: the worker
    /// must never send anything else.
    fn assert_inside(&self, what: &str, moffset: u64, len: u64) {
        let end = moffset.checked_add(len);
        assert!(
            len > 0
                && moffset.is_multiple_of(self.page)
                && len.is_multiple_of(self.page)
                && end.is_some_and(|e| e <= self.mapper.len()),
            "{what} outside the window from the worker: {moffset:#x}+{len:#x} (window {:#x})",
            self.mapper.len()
        );
    }

    fn set(&self, moffset: u64, len: u64, value: impl Fn(u64) -> Page) {
        let mut m = self.model.lock().unwrap();
        for i in 0..len / self.page {
            m[(moffset / self.page + i) as usize] = value(i * self.page);
        }
    }

    /// Panics unless `table` (the worker's view) describes exactly the pages the owner mapped.
    pub fn assert_agrees(&self, table: &[Mapping]) {
        let model = self.model.lock().unwrap();
        let mut covered = 0u64;
        let mut last_end = 0u64;
        for m in table {
            assert!(m.moffset >= last_end, "table entries overlap: {table:?}");
            last_end = m.moffset + m.len;
            for i in 0..m.len / self.page {
                let page = (m.moffset / self.page + i) as usize;
                let want = Some((m.foffset + i * self.page, m.writable));
                assert_eq!(
                    model[page], want,
                    "window page {page}: the owner has {:?}, the worker's table {m:?}",
                    model[page]
                );
                covered += 1;
            }
        }
        let mapped = model.iter().filter(|p| p.is_some()).count() as u64;
        assert_eq!(
            mapped, covered,
            "the owner maps {mapped} pages, the worker's table {covered}: {table:?}"
        );
    }
}

impl VhostUserFrontendReqHandler for Recorder {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        let (fd_offset, moffset, len, flags) = (req.fd_offset, req.shm_offset, req.len, req.flags);
        self.assert_inside("SHMEM_MAP", moffset, len);
        assert_eq!(
            fd_offset % self.page,
            0,
            "unaligned file offset from the worker"
        );
        if self.fail_next_map.swap(false, Ordering::Relaxed) {
            // A failing VMM refuses and maps nothing: the worker only maps where nothing is
            // mapped (QEMU's rule, which the mapper enforces), so the range stays empty.
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        // SAFETY: the caller lends an open descriptor for the duration of this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
        match self.mapper.map(req, borrowed) {
            Ok(()) => {
                let writable = VhostUserMMapFlags::from_bits_truncate(flags)
                    .contains(VhostUserMMapFlags::WRITABLE);
                self.set(moffset, len, |off| Some((fd_offset + off, writable)));
                Ok(0)
            }
            Err(WindowError::Map(e)) => {
                // The mapper filled the hole it may have made: the range is unmapped.
                self.set(moffset, len, |_| None);
                Err(e)
            }
            // Includes a map over a live mapping: QEMU refuses it, so the worker must never send
            // one.
            Err(e) => panic!("the owner refused what the worker checked and sent: {e}"),
        }
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        let (moffset, len) = (req.shm_offset, req.len);
        self.assert_inside("SHMEM_UNMAP", moffset, len);
        self.mapper
            .unmap(req)
            .unwrap_or_else(|e| panic!("the owner refused an unmap (must be exactly one mapping): {e}"));
        self.set(moffset, len, |_| None);
        Ok(0)
    }
}
