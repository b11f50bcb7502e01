//! Dirty-page logging for live migration (vhost-user LOG_SHMFD, VHOST_F_LOG_ALL).
//!
//! While QEMU copies guest RAM to the destination it asks the backend to record every guest
//! page the backend writes, one bit per 4 KiB page of guest physical address, in a shared
//! bitmap it hands over with SET_LOG_BASE. vhost-user-backend 0.24 implements the protocol side
//! (it maps the bitmap and installs it in each guest memory region's `BitmapMmapRegion`), and
//! vm-memory marks the pages of every write made through it: that covers the used ring (entries
//! and index, which virtio-queue writes through vm-memory). The reply buffers are written by
//! our transport through raw host pointers and `preadv` (zero-copy), which vm-memory never
//! sees, so the queue loop marks them itself with [`mark_written`].
//!
//! What this module adds to the crate's bitmap is a check: the crate maps the size the frontend
//! claims without comparing it with the file, and the first mark of a page past the end of the
//! file would raise SIGBUS and kill the worker. [`LogBitmap`] refuses such a log (the frontend
//! gets an error reply) before any bit of it is touched.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vhost_user_backend::bitmap::{
    AtomicBitmapMmap, BitmapMmapRegion, BitmapReplace, MemRegionBitmap, MmapLogReg,
};
use vm_memory::bitmap::{Bitmap, BitmapSlice, WithBitmapSlice};
use vm_memory::mmap::NewBitmap;
use vm_memory::{Address, GuestAddress, GuestMemory, GuestMemoryRegion, Permissions};

/// Bytes of guest memory one bit of the log stands for (the spec's VHOST_LOG_PAGE).
pub const LOG_PAGE: u64 = 4096;

/// The bitmap of one guest memory region: the crate's, with the log checked when installed.
///
/// A region's own bitmap always holds the crate's. A slice of it (vm-memory makes one for every
/// access: each descriptor read, each used-ring store) holds a share of it only once a log is
/// installed: the crate's slice clones an `Arc`, and those two atomic operations per access were
/// the largest part of what the dirty log cost a worker that never migrates (docs/performance.md).
/// A slice made before a log is installed marks nothing, like a write made before it; the
/// replies that outlive their slice's making (a request split before SET_LOG_BASE, answered
/// after) are marked by [`mark_written`] instead.
#[derive(Clone, Debug)]
pub struct LogBitmap(Option<BitmapMmapRegion>);

impl Default for LogBitmap {
    fn default() -> Self {
        LogBitmap(Some(BitmapMmapRegion::default()))
    }
}

impl Bitmap for LogBitmap {
    fn mark_dirty(&self, offset: usize, len: usize) {
        // The flag is set before the crate installs a log, so while it is false the crate
        // would mark nothing either (and would take a read lock to find that out).
        if let (Some(region), true) = (&self.0, installed()) {
            region.mark_dirty(offset, len)
        }
    }

    fn dirty_at(&self, offset: usize) -> bool {
        self.0.as_ref().is_some_and(|r| r.dirty_at(offset))
    }

    fn slice_at(&self, offset: usize) -> <Self as WithBitmapSlice<'_>>::S {
        match &self.0 {
            Some(region) if installed() => LogBitmap(Some(region.slice_at(offset))),
            _ => LogBitmap(None),
        }
    }
}

impl WithBitmapSlice<'_> for LogBitmap {
    type S = Self;
}

impl BitmapSlice for LogBitmap {}

impl NewBitmap for LogBitmap {
    fn with_len(len: usize) -> Self {
        LogBitmap(Some(BitmapMmapRegion::with_len(len)))
    }
}

impl BitmapReplace for LogBitmap {
    type InnerBitmap = CheckedLog;

    fn replace(&self, bitmap: CheckedLog) {
        // The crate replaces the bitmap of each region, never of a slice.
        if let Some(region) = &self.0 {
            region.replace(bitmap.0)
        }
    }
}

/// One region's view of the frontend's log, made only once the log's bytes for the region are
/// known to be backed by the file.
pub struct CheckedLog(AtomicBitmapMmap);

impl MemRegionBitmap for CheckedLog {
    fn new<R: GuestMemoryRegion>(region: &R, logmem: Arc<MmapLogReg>) -> io::Result<Self> {
        // The crate checks that the region's bits lie inside the mapping it made (and that
        // the region is not empty); what it cannot know is whether the file is that long.
        let inner = AtomicBitmapMmap::new(region, Arc::clone(&logmem))?;
        let start = region.start_addr().raw_value();
        let last = start
            .checked_add(region.len() - 1)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        let first_byte = usize::try_from(start / LOG_PAGE / 8)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let last_byte = usize::try_from(last / LOG_PAGE / 8)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // In bounds: `AtomicBitmapMmap::new` checked `last_byte < logmem.len()`.
        let base = std::ptr::from_ref(&logmem[0]) as usize;
        check_backed(base + first_byte, base + last_byte).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "dirty log does not cover guest memory {start:#x}..={last:#x} (log bytes \
                     {first_byte:#x}..={last_byte:#x}): {e}"
                ),
            )
        })?;
        // Before the crate installs the bitmap: a reply written from now on is marked.
        LOG_INSTALLED.store(true, Ordering::Release);
        Ok(CheckedLog(inner))
    }
}

/// Fails unless every page of our own mapping between `first` and `last` (inclusive) can be
/// written without a fault: MADV_POPULATE_WRITE answers EFAULT where a touch would raise SIGBUS
/// (a shared mapping past the end of its file). Kernels older than 5.14 do not know the advice
/// (EINVAL); there the log is taken on trust, as the guest memory is.
fn check_backed(first: usize, last: usize) -> io::Result<()> {
    const PAGE: usize = 4096;
    let start = first & !(PAGE - 1);
    let len = last - start + 1;
    // SAFETY: the range lies inside the log mapping the crate made (the caller's bounds come
    // from `AtomicBitmapMmap::new`); populating it changes no byte of it, only faults pages in.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINVAL) {
        log::warn!("cannot check the dirty log's backing on this kernel: {e}");
        return Ok(());
    }
    Err(e)
}

/// Set once a frontend installed a log (SET_LOG_BASE) in this process. The crate never takes a
/// log out again (it keeps marking the used ring after VHOST_F_LOG_ALL goes off), so neither do
/// we: marking a page QEMU no longer watches costs it nothing.
static LOG_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether reply buffers must be marked.
pub fn installed() -> bool {
    LOG_INSTALLED.load(Ordering::Acquire)
}

/// The guest ranges of a chain's device-writable descriptors, recorded when the chain is split
/// so they can be marked once the reply is written.
///
/// They are recorded for every chain, not only while a log is installed: a request split
/// before SET_LOG_BASE may write its reply after QEMU's first pass over RAM copied the page,
/// and that write must be logged. Whether to mark is decided after the write (see
/// [`mark_written`]). Eight descriptors are kept inline, so recording allocates nothing for
/// any reply but a large READ.
#[derive(Default)]
pub struct Written {
    inline: [(GuestAddress, u32); INLINE],
    len: usize,
    more: Vec<(GuestAddress, u32)>,
}

const INLINE: usize = 8;

impl Written {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, range: (GuestAddress, u32)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = range;
                self.len += 1;
            }
            None => self.more.push(range),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(GuestAddress, u32)> {
        self.inline[..self.len].iter().chain(self.more.iter())
    }
}

/// Marks every page of `written` in the dirty log, when a log is installed. Called after the
/// reply is written and before the chain goes to the used ring. The whole descriptors are
/// marked, not only the bytes the reply used: marking a page that did not change only makes
/// QEMU copy it again.
pub fn mark_written<M: GuestMemory>(mem: &M, written: &Written) {
    if !installed() {
        return;
    }
    for &(addr, len) in written.iter() {
        // The ranges were checked against this very memory when the chain was split.
        let Ok(slices) = mem.get_slices(addr, len as usize, Permissions::Write) else {
            continue;
        };
        for slice in slices.flatten() {
            slice.bitmap().mark_dirty(0, slice.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap};

    use super::*;

    #[test]
    fn written_keeps_every_range_in_order_past_the_inline_ones() {
        let mut w = Written::new();
        for i in 0..(INLINE as u64 + 5) {
            w.push((GuestAddress(i * 0x1000), i as u32));
        }
        let got: Vec<_> = w.iter().map(|&(a, l)| (a.0, l)).collect();
        let want: Vec<_> = (0..(INLINE as u64 + 5))
            .map(|i| (i * 0x1000, i as u32))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn marking_without_a_log_changes_nothing() {
        let mem = GuestMemoryMmap::<LogBitmap>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let mut w = Written::new();
        w.push((GuestAddress(0x1000), 0x2000));
        // Outside guest memory: skipped, not a panic.
        w.push((GuestAddress(0xf000), 0x2000));
        mark_written(&mem, &w);
        mem.write_slice(&[1, 2, 3], GuestAddress(0x1000)).unwrap();
        let region = mem.iter().next().unwrap();
        assert!(!region.bitmap().dirty_at(0x1000));
    }
}
