//! Byte-stream access to a virtio descriptor chain in guest memory.
//!
//! A FUSE request arrives as one descriptor chain: a device-readable part (the request) followed
//! by a device-writable part (room for the reply). [`split_chain`] validates the chain once, up
//! front, and turns it into a [`Reader`] over the readable part and a [`Writer`] over the writable
//! part. After that point no guest-supplied length or address is trusted again: every later access
//! goes through host slices that were bounds-checked against guest memory here.
//!
//! Everything in a chain is chosen by the guest, which we treat as hostile:
//! - the number of descriptors is capped ([`MAX_DESCRIPTORS`]);
//! - each side's total length must fit in a `u32`, summed with checked arithmetic;
//! - every descriptor must lie entirely inside guest memory, and is cut into one host slice per
//!   guest memory region it covers (at most [`MAX_SEGMENTS`] slices per side);
//! - a readable descriptor after a writable one is rejected, as the virtio spec requires of
//!   drivers (VIRTIO 1.2, 2.7.4.2).
//!
//! Loops in the chain are already prevented by `virtio_queue::DescriptorChain`: its iterator
//! carries a time-to-live initialised to the queue size (or the indirect table size) and
//! decremented on every `next` descriptor, so a cyclic chain ends after that many steps. The same
//! iterator also stops once the whole chain would exceed `u32::MAX` bytes. Both are guards we rely
//! on but re-check independently here, because they end the chain silently rather than failing.
//!
//! The guest may keep writing to the buffers while we use them, so all accesses are volatile
//! copies through `vm_memory::VolatileSlice`, and each byte is copied out of guest memory at most
//! once (see [`Reader::read_obj`]).

mod reader;
mod writer;

use std::io;
use std::ops::Deref;
use std::ptr::NonNull;

use fuse_backend_rs::file_buf::FileVolatileSlice;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{GuestAddress, GuestMemory, Permissions, VolatileSlice};

pub use reader::Reader;
pub use writer::Writer;

/// Most descriptors accepted in one chain (readable and writable together).
///
/// 32768 is the largest queue size the virtio spec allows, so no direct chain can legitimately be
/// longer. Indirect tables may hold up to 65535 entries, which virtio-queue does not cap further;
/// this bound keeps the per-request work and allocation of such a chain finite.
pub const MAX_DESCRIPTORS: usize = 32768;

/// Most host slices on either side of a chain.
///
/// A descriptor yields one slice per guest memory region it touches, so this is normally the
/// descriptor count. It bounds the heap used for one side at `MAX_SEGMENTS` slices (about
/// 768 KiB), however the guest lays out its buffers.
pub const MAX_SEGMENTS: usize = 32768;

/// Slices kept inline before a side spills to the heap.
///
/// Metadata requests use a handful of descriptors (header, arguments, name), so they complete
/// without any allocation; only large data requests, with one descriptor per guest page, pay for
/// one `Vec`.
const INLINE_SEGMENTS: usize = 16;

/// Most iovecs handed to the file in one zero-copy call.
///
/// The kernel accepts at most `IOV_MAX` (1024) per call; 256 covers a 1 MiB request made of
/// 4 KiB pages (the Linux FUSE default `max_pages`) in a single system call while keeping the
/// on-stack array at 4 KiB. Longer transfers loop.
const ZERO_COPY_BATCH: usize = 256;

/// Errors found while validating a descriptor chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chain has more descriptors than [`MAX_DESCRIPTORS`].
    #[error("descriptor chain has more than {max} descriptors")]
    TooManyDescriptors { max: usize },
    /// One side of the chain covers more than [`MAX_SEGMENTS`] host slices.
    #[error("descriptor chain needs more than {max} memory segments on one side")]
    TooManySegments { max: usize },
    /// A device-readable descriptor follows a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// A descriptor's range is not entirely backed by guest memory.
    #[error("descriptor range {addr:#x}+{len:#x} is outside guest memory")]
    AddressOutOfRange { addr: u64, len: u32 },
    /// The readable or writable part of the chain is longer than `u32::MAX` bytes.
    #[error("descriptor chain length overflows u32")]
    TotalLengthOverflow,
    /// [`Writer::split_at`] was asked for an offset past the end of the writer.
    #[error("split offset {offset} is past the {available} available bytes")]
    SplitOutOfRange { offset: usize, available: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Splits a chain into its device-readable part and device-writable part.
///
/// `mem` must be the same guest memory the chain was taken from; it is borrowed for `'a` so the
/// returned slices cannot outlive the mapping. The writer writes through raw host pointers
/// (zero-copy I/O), which `mem`'s dirty-page bitmap never sees: while migration logs dirty pages,
/// use [`split_chain_logged`] and mark what it records once the reply is written.
pub fn split_chain<'a, M, T>(
    mem: &'a M,
    chain: DescriptorChain<T>,
) -> Result<(Reader<'a>, Writer<'a>)>
where
    M: GuestMemory + ?Sized,
    T: Deref,
    T::Target: GuestMemory,
{
    split_descriptors(mem, chain, MAX_DESCRIPTORS, None)
}

/// [`split_chain`], also recording in `written` the guest range of every device-writable
/// descriptor, for the dirty-page log (`crate::vhost_user` marks them after the reply). Takes
/// any descriptor sequence, so the queue loop can count what a chain made it walk.
pub fn split_chain_logged<'a, M, I>(
    mem: &'a M,
    chain: I,
    written: &mut crate::vhost_user::dirty_log::Written,
) -> Result<(Reader<'a>, Writer<'a>)>
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    split_descriptors(mem, chain, MAX_DESCRIPTORS, Some(written))
}

/// Core of [`split_chain`], over any descriptor sequence and with an explicit descriptor limit so
/// that tests can reach limits a real queue makes impractical to hit.
fn split_descriptors<'a, M, I>(
    mem: &'a M,
    descriptors: I,
    max_descriptors: usize,
    mut written: Option<&mut crate::vhost_user::dirty_log::Written>,
) -> Result<(Reader<'a>, Writer<'a>)>
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    let mut readable = Segments::new();
    let mut writable = Segments::new();
    // Totals are kept in u32: the virtio spec caps a chain at 2^32 bytes and the FUSE layer
    // stores lengths in u32, so anything bigger is malformed.
    let mut readable_len: u32 = 0;
    let mut writable_len: u32 = 0;
    // Tracked separately from the lengths so a zero-length writable descriptor still counts.
    let mut seen_writable = false;

    for (count, desc) in descriptors.into_iter().enumerate() {
        if count >= max_descriptors {
            return Err(Error::TooManyDescriptors {
                max: max_descriptors,
            });
        }
        let (segments, total, access) = if desc.is_write_only() {
            seen_writable = true;
            if let Some(w) = written.as_deref_mut() {
                w.push((desc.addr(), desc.len()));
            }
            (&mut writable, &mut writable_len, Permissions::Write)
        } else {
            if seen_writable {
                return Err(Error::ReadableAfterWritable);
            }
            (&mut readable, &mut readable_len, Permissions::Read)
        };
        *total = total
            .checked_add(desc.len())
            .ok_or(Error::TotalLengthOverflow)?;
        segments.map_descriptor(mem, desc.addr(), desc.len(), access)?;
    }

    Ok((Reader::new(readable), Writer::new(writable)))
}

/// Inline-first storage for the host slices of one side of a chain.
// The size gap between the variants is the point: the inline array is what keeps small requests
// off the heap.
#[allow(clippy::large_enum_variant)]
enum Store<'a> {
    Inline {
        buf: [VolatileSlice<'a>; INLINE_SEGMENTS],
        len: usize,
    },
    Heap(Vec<VolatileSlice<'a>>),
}

impl<'a> Store<'a> {
    fn new() -> Self {
        Store::Inline {
            buf: [empty_slice(); INLINE_SEGMENTS],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[VolatileSlice<'a>] {
        match self {
            Store::Inline { buf, len } => &buf[..*len],
            Store::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [VolatileSlice<'a>] {
        match self {
            Store::Inline { buf, len } => &mut buf[..*len],
            Store::Heap(v) => v,
        }
    }

    fn push(&mut self, slice: VolatileSlice<'a>) {
        match self {
            Store::Inline { buf, len } if *len < INLINE_SEGMENTS => {
                buf[*len] = slice;
                *len += 1;
            }
            Store::Inline { buf, len } => {
                // Spill once; doubling from here keeps reallocations logarithmic.
                let mut v = Vec::with_capacity(INLINE_SEGMENTS * 4);
                v.extend_from_slice(&buf[..*len]);
                v.push(slice);
                *self = Store::Heap(v);
            }
            Store::Heap(v) => v.push(slice),
        }
    }

    fn truncate(&mut self, new_len: usize) {
        match self {
            Store::Inline { len, .. } => *len = (*len).min(new_len),
            Store::Heap(v) => v.truncate(new_len),
        }
    }
}

/// A zero-length slice used to fill unused inline entries. It is never dereferenced.
fn empty_slice<'a>() -> VolatileSlice<'a> {
    VolatileSlice::from(<&mut [u8]>::default())
}

/// The host slices of one side of a chain plus a cursor marking how much has been consumed.
///
/// Consumed bytes are dropped from the front: `head` indexes the first slice with data left, and
/// that slice is shrunk in place as it is partially consumed. Every slice in the store is
/// non-empty, which keeps the cursor logic free of zero-length special cases.
pub(crate) struct Segments<'a> {
    store: Store<'a>,
    head: usize,
    available: usize,
    consumed: usize,
}

impl<'a> Segments<'a> {
    fn new() -> Self {
        Segments {
            store: Store::new(),
            head: 0,
            available: 0,
            consumed: 0,
        }
    }

    /// Appends the host slices backing `[addr, addr + len)`, failing unless all of it is guest
    /// memory accessible with `access`.
    fn map_descriptor<M>(
        &mut self,
        mem: &'a M,
        addr: GuestAddress,
        len: u32,
        access: Permissions,
    ) -> Result<()>
    where
        M: GuestMemory + ?Sized,
    {
        let out_of_range = || Error::AddressOutOfRange { addr: addr.0, len };
        // get_slices yields one slice per region and, if it yields no error, slices that add up
        // to exactly `len` bytes; any gap or overflow past the end of memory is an error item.
        let slices = mem
            .get_slices(addr, len as usize, access)
            .map_err(|_| out_of_range())?;
        for slice in slices {
            let slice = slice.map_err(|_| out_of_range())?;
            if slice.is_empty() {
                continue;
            }
            // The slice loses its dirty bitmap here: our writes go through raw pointers, and
            // the queue loop logs the writable descriptors itself (`split_chain_logged`).
            // SAFETY: the pointer and length come from a slice vm-memory bounds-checked against
            // `mem`, which stays borrowed for 'a, as long as the new slice lives.
            let slice = unsafe { VolatileSlice::new(slice.ptr_guard_mut().as_ptr(), slice.len()) };
            if self.store.as_slice().len() >= MAX_SEGMENTS {
                return Err(Error::TooManySegments { max: MAX_SEGMENTS });
            }
            self.available += slice.len();
            self.store.push(slice);
        }
        Ok(())
    }

    pub(crate) fn available(&self) -> usize {
        self.available
    }

    pub(crate) fn consumed(&self) -> usize {
        self.consumed
    }

    fn remaining(&self) -> &[VolatileSlice<'a>] {
        self.store.as_slice().get(self.head..).unwrap_or(&[])
    }

    /// Marks `n` bytes at the front as consumed. Callers never pass more than `available`; a
    /// larger `n` is clamped so the cursor can never move past the end.
    pub(crate) fn advance(&mut self, n: usize) {
        let mut n = n.min(self.available);
        self.available -= n;
        self.consumed += n;
        while n > 0 {
            let Some(seg) = self.store.as_mut_slice().get_mut(self.head) else {
                break;
            };
            if n < seg.len() {
                // `offset(n)` only fails for n > len, which the branch rules out; on the
                // impossible failure the whole slice is dropped rather than panicking.
                match seg.offset(n) {
                    Ok(rest) => *seg = rest,
                    Err(_) => self.head += 1,
                }
                break;
            }
            n -= seg.len();
            self.head += 1;
        }
    }

    /// Copies up to `buf.len()` bytes out of guest memory without consuming them.
    pub(crate) fn peek(&self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        for seg in self.remaining() {
            if done == buf.len() {
                break;
            }
            done += seg.copy_to(&mut buf[done..]);
        }
        done
    }

    /// Copies up to `buf.len()` bytes out of guest memory and consumes them.
    pub(crate) fn copy_out(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        for seg in self.remaining() {
            if done == buf.len() {
                break;
            }
            // copy_to copies min(seg.len(), dst.len()) bytes with volatile reads.
            done += seg.copy_to(&mut buf[done..]);
        }
        self.advance(done);
        done
    }

    /// Copies up to `buf.len()` bytes into guest memory and consumes them.
    pub(crate) fn copy_in(&mut self, buf: &[u8]) -> usize {
        let mut done = 0;
        for seg in self.remaining() {
            if done == buf.len() {
                break;
            }
            let n = seg.len().min(buf.len() - done);
            // copy_from writes min(seg.len(), src.len()) bytes with volatile writes.
            seg.copy_from(&buf[done..done + n]);
            done += n;
        }
        self.advance(done);
        done
    }

    /// Moves everything after the first `offset` available bytes into a new `Segments`.
    pub(crate) fn split_at(&mut self, offset: usize) -> Result<Segments<'a>> {
        if offset > self.available {
            return Err(Error::SplitOutOfRange {
                offset,
                available: self.available,
            });
        }
        let mut tail = Segments::new();
        let mut keep = offset;
        // Index in the store of the first slice that (partly) belongs to the tail.
        let mut cut = self.store.as_slice().len();
        for (i, seg) in self
            .store
            .as_mut_slice()
            .iter_mut()
            .enumerate()
            .skip(self.head)
        {
            if keep >= seg.len() {
                keep -= seg.len();
                continue;
            }
            if keep == 0 {
                cut = i;
            } else {
                // The slice straddles the split: the front stays, the rest moves to the tail.
                let (front, back) = seg.split_at(keep).map_err(|_| Error::SplitOutOfRange {
                    offset,
                    available: self.available,
                })?;
                *seg = front;
                tail.store.push(back);
                tail.available += back.len();
                cut = i + 1;
            }
            break;
        }
        for seg in self.store.as_slice().get(cut..).unwrap_or(&[]) {
            tail.store.push(*seg);
            tail.available += seg.len();
        }
        self.store.truncate(cut);
        self.available = offset;
        Ok(tail)
    }

    /// Moves up to `count` bytes between the front of the segments and a file, without an
    /// intermediate buffer, and consumes what was moved.
    ///
    /// `io` performs one vectored transfer at a file offset and returns the bytes moved. The
    /// loop keeps going after short transfers, because a `FileReadWriteVolatile` may legitimately
    /// handle only its first buffer per call; it stops at the first `Ok(0)` or error. Errors after
    /// some progress are dropped in favour of `Ok(progress)` since the zero-copy traits promise
    /// that an error means nothing was transferred; a persistent error recurs on the next call.
    /// `Ok(0)` before any progress yields `zero_error` when given, else `Ok(0)`.
    pub(crate) fn transfer<F>(
        &mut self,
        count: usize,
        mut off: u64,
        zero_error: Option<io::ErrorKind>,
        mut io: F,
    ) -> io::Result<usize>
    where
        F: FnMut(&[FileVolatileSlice<'_>], u64) -> io::Result<usize>,
    {
        let target = count.min(self.available);
        let mut done = 0;
        while done < target {
            let mut iovs = [empty_file_slice(); ZERO_COPY_BATCH];
            let mut nr = 0;
            let mut len = 0;
            for seg in self.remaining().iter().take(ZERO_COPY_BATCH) {
                let want = seg.len().min(target - done - len);
                if want == 0 {
                    break;
                }
                // SAFETY: `seg` was produced by `GuestMemory::get_slices`, so its pointer is valid
                // for `seg.len()` bytes (and `want <= seg.len()`) for as long as the guest memory
                // borrowed for `'a` is mapped, which outlives this call. The FileVolatileSlice
                // only lives for the duration of `io`. Guest memory is shared with the guest, and
                // the file implementation only accesses it through the kernel (preadv/pwritev)
                // or volatile copies, never through Rust references. The pointer guard only
                // matters for on-demand (Xen) mappings, which we do not enable; for plain mmap
                // regions the pointer stays valid after the guard is dropped.
                iovs[nr] =
                    unsafe { FileVolatileSlice::from_raw_ptr(seg.ptr_guard_mut().as_ptr(), want) };
                nr += 1;
                len += want;
            }
            if nr == 0 {
                break;
            }
            if off.checked_add(len as u64).is_none() {
                return finish(
                    done,
                    io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows u64"),
                );
            }
            match io(&iovs[..nr], off) {
                Ok(0) => {
                    if done == 0 {
                        if let Some(kind) = zero_error {
                            return Err(io::Error::new(kind, "file transferred no bytes"));
                        }
                    }
                    break;
                }
                Ok(n) => {
                    // A file claiming more than it was given is a bug on its side; never let it
                    // move our cursor past the buffers it actually saw.
                    let n = n.min(len);
                    self.advance(n);
                    done += n;
                    // Cannot overflow: checked above for `len >= n`.
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return finish(done, e),
            }
        }
        Ok(done)
    }
}

/// Result of a zero-copy transfer that failed after `done` bytes: the error only if none moved.
fn finish(done: usize, e: io::Error) -> io::Result<usize> {
    if done == 0 {
        Err(e)
    } else {
        Ok(done)
    }
}

/// A zero-length file slice used to fill unused iovec entries. It is never dereferenced.
fn empty_file_slice<'b>() -> FileVolatileSlice<'b> {
    // SAFETY: the slice is zero bytes long, so the (dangling but non-null, aligned) pointer is
    // never read or written; only the filled prefix of the iovec array is handed to the file.
    unsafe { FileVolatileSlice::from_raw_ptr(NonNull::<u8>::dangling().as_ptr(), 0) }
}

#[cfg(test)]
pub(crate) mod test_utils {
    //! Helpers shared by the reader and writer tests.

    use virtio_queue::desc::split::Descriptor as SplitDescriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{DescriptorChain, Queue, QueueOwnedT};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    pub const WRITE: u16 = virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE as u16;

    /// Two adjacent 64 KiB regions, so buffers can straddle a region boundary at 0x10000.
    pub fn memory() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x10000),
            (GuestAddress(0x10000), 0x10000),
        ])
        .expect("guest memory")
    }

    /// Builds a chain of `(addr, len, flags)` descriptors; the queue itself lives at 0..0x1000.
    pub fn chain<'m>(
        mem: &'m GuestMemoryMmap<()>,
        descs: &[(u64, u32, u16)],
    ) -> DescriptorChain<&'m GuestMemoryMmap<()>> {
        let queue = MockSplitQueue::new(mem, 16);
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .map(|&(addr, len, flags)| {
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
            })
            .collect();
        // build_desc_chain links the descriptors and publishes the chain, but its returned chain
        // borrows the mock; re-read it through a fresh Queue so it only borrows `mem`.
        queue.build_desc_chain(&raw).expect("descriptor chain");
        let mut q: Queue = queue.create_queue().expect("queue");
        q.iter(mem).expect("avail ring").next().expect("one chain")
    }
}

#[cfg(test)]
mod tests {
    use super::test_utils::*;
    use super::*;
    use vm_memory::{Bytes, GuestMemoryMmap};

    #[test]
    fn splits_readable_and_writable_parts() {
        let mem = memory();
        let c = chain(
            &mem,
            &[(0x1000, 16, 0), (0x2000, 32, 0), (0x3000, 64, WRITE)],
        );
        let (r, w) = split_chain(&mem, c).unwrap();
        assert_eq!(r.available_bytes(), 48);
        assert_eq!(w.available_bytes(), 64);
    }

    #[test]
    fn zero_length_and_empty_sides_are_fine() {
        let mem = memory();
        let c = chain(&mem, &[(0x1000, 0, 0), (0x2000, 8, 0)]);
        let (r, w) = split_chain(&mem, c).unwrap();
        assert_eq!(r.available_bytes(), 8);
        assert_eq!(w.available_bytes(), 0);
    }

    #[test]
    fn descriptor_spanning_two_regions_is_mapped() {
        let mem = memory();
        mem.write_slice(&[1, 2, 3, 4, 5, 6, 7, 8], GuestAddress(0xfffc))
            .unwrap();
        let c = chain(&mem, &[(0xfffc, 8, 0)]);
        let (mut r, _) = split_chain(&mem, c).unwrap();
        assert_eq!(r.segs.remaining().len(), 2, "one slice per region");
        let mut buf = Vec::new();
        r.read_to_vec(&mut buf, 8).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn out_of_memory_address_rejected() {
        let mem = memory();
        // Starts inside the second region but runs past the end of guest memory.
        let c = chain(&mem, &[(0x1fff0, 0x20, 0)]);
        assert!(matches!(
            split_chain(&mem, c),
            Err(Error::AddressOutOfRange {
                addr: 0x1fff0,
                len: 0x20
            })
        ));
        // Entirely outside guest memory, on the writable side.
        let c = chain(&mem, &[(0x1000, 4, 0), (0x5000_0000, 4, WRITE)]);
        assert!(matches!(
            split_chain(&mem, c),
            Err(Error::AddressOutOfRange {
                addr: 0x5000_0000,
                ..
            })
        ));
        // Wrapping around the top of the address space.
        let c = chain(&mem, &[(u64::MAX - 1, 0x10, 0)]);
        assert!(matches!(
            split_chain(&mem, c),
            Err(Error::AddressOutOfRange { .. })
        ));
    }

    #[test]
    fn readable_after_writable_rejected() {
        let mem = memory();
        let c = chain(&mem, &[(0x1000, 4, 0), (0x2000, 4, WRITE), (0x3000, 4, 0)]);
        assert!(matches!(
            split_chain(&mem, c),
            Err(Error::ReadableAfterWritable)
        ));
        // Even a zero-length writable descriptor fixes the order.
        let c = chain(&mem, &[(0x2000, 0, WRITE), (0x3000, 4, 0)]);
        assert!(matches!(
            split_chain(&mem, c),
            Err(Error::ReadableAfterWritable)
        ));
    }

    #[test]
    fn total_length_overflow_rejected() {
        // virtio-queue's iterator already stops a chain at 4 GiB, so feed descriptors directly.
        // 4 GiB + 4 KiB of guest memory, reserved but never touched, so both descriptors are
        // in range and only their sum is wrong.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1_0000_1000)]).unwrap();
        let descs = [
            Descriptor::new(0, u32::MAX, 0, 0),
            Descriptor::new(0x1000, 1, 0, 0),
        ];
        assert!(matches!(
            split_descriptors(&mem, descs, MAX_DESCRIPTORS, None),
            Err(Error::TotalLengthOverflow)
        ));
        // The same lengths on opposite sides are fine: each side is bounded on its own.
        let descs = [
            Descriptor::new(0, u32::MAX, 0, 0),
            Descriptor::new(0x1000, 1, WRITE, 0),
        ];
        let (r, w) = split_descriptors(&mem, descs, MAX_DESCRIPTORS, None).unwrap();
        assert_eq!(r.available_bytes(), u32::MAX as usize);
        assert_eq!(w.available_bytes(), 1);
    }

    #[test]
    fn logged_split_records_the_writable_descriptors_only() {
        let mem = memory();
        let descs = [
            Descriptor::new(0x1000, 40, 0, 0),
            Descriptor::new(0x2000, 16, WRITE, 0),
            Descriptor::new(0x3000, 4096, WRITE, 0),
        ];
        let mut written = crate::vhost_user::dirty_log::Written::new();
        let (r, w) = split_descriptors(&mem, descs, MAX_DESCRIPTORS, Some(&mut written)).unwrap();
        assert_eq!((r.available_bytes(), w.available_bytes()), (40, 4112));
        let got: Vec<_> = written.iter().map(|&(a, l)| (a.0, l)).collect();
        assert_eq!(got, [(0x2000, 16), (0x3000, 4096)]);
    }

    #[test]
    fn too_many_descriptors_rejected() {
        let mem = memory();
        let descs = (0..5).map(|i| Descriptor::new(0x1000 + i * 16, 16, 0, 0));
        assert!(matches!(
            split_descriptors(&mem, descs.clone(), 4, None),
            Err(Error::TooManyDescriptors { max: 4 })
        ));
        assert!(split_descriptors(&mem, descs, 5, None).is_ok());
    }

    #[test]
    fn many_segments_spill_to_heap() {
        let mem = memory();
        let n = INLINE_SEGMENTS as u64 * 3;
        let descs = (0..n).map(|i| Descriptor::new(0x1000 + i * 16, 16, 0, 0));
        let (mut r, _) = split_descriptors(&mem, descs, MAX_DESCRIPTORS, None).unwrap();
        assert_eq!(r.available_bytes(), n as usize * 16);
        let mut buf = Vec::new();
        r.read_to_vec(&mut buf, n as usize * 16).unwrap();
        assert_eq!(r.available_bytes(), 0);
    }
}
