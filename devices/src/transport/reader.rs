//! Reading the device-readable part of a descriptor chain.

use std::io;

use fuse_backend_rs::api::filesystem::ZeroCopyReader;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;
use vm_memory::ByteValued;

use super::Segments;

/// Consumes the device-readable bytes of a descriptor chain, front to back.
///
/// Every read copies out of guest memory exactly once, so a value the caller validates is the
/// value it uses, whatever the guest does to the buffer meanwhile.
pub struct Reader<'a> {
    pub(super) segs: Segments<'a>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(segs: Segments<'a>) -> Self {
        Reader { segs }
    }

    /// Bytes not yet read.
    pub fn available_bytes(&self) -> usize {
        self.segs.available()
    }

    /// Bytes read (or skipped) so far.
    pub fn bytes_read(&self) -> usize {
        self.segs.consumed()
    }

    /// Copies a plain-old-data struct out of guest memory (one copy; caller validates the copy).
    ///
    /// The object may straddle descriptors or memory regions. If fewer than `size_of::<T>()`
    /// bytes remain, fails with `UnexpectedEof` and consumes nothing.
    pub fn read_obj<T: ByteValued>(&mut self) -> io::Result<T> {
        let size = std::mem::size_of::<T>();
        if size > self.available_bytes() {
            return Err(short_request(size, self.available_bytes()));
        }
        // ByteValued guarantees every byte pattern is a valid T, so filling the zeroed value's
        // bytes directly is sound and needs no intermediate buffer.
        let mut obj = T::zeroed();
        let copied = self.segs.copy_out(obj.as_mut_slice());
        debug_assert_eq!(copied, size);
        Ok(obj)
    }

    /// Reads exactly `len` bytes into `buf` (a reusable Vec the caller owns; cleared then filled).
    ///
    /// If fewer than `len` bytes remain, fails with `UnexpectedEof`, consumes nothing and leaves
    /// `buf` empty. Reusing `buf` across requests avoids a per-request allocation.
    pub fn read_to_vec(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        buf.clear();
        // Checked before resizing so a guest-chosen `len` can never drive a huge allocation:
        // it is bounded by the chain, which was bounded by guest memory.
        if len > self.available_bytes() {
            return Err(short_request(len, self.available_bytes()));
        }
        buf.resize(len, 0);
        let copied = self.segs.copy_out(buf);
        debug_assert_eq!(copied, len);
        Ok(())
    }

    /// Copies up to `buf.len()` of the next bytes without consuming them; returns how many.
    ///
    /// For routing decisions made before the request is served (which queue thread or pool
    /// thread serves it). The server reads the request again, so the guest can change it in
    /// between: nothing validated on a peeked copy may be relied on when serving.
    pub fn peek(&self, buf: &mut [u8]) -> usize {
        self.segs.peek(buf)
    }

    /// Discards the next `n` bytes without copying them.
    ///
    /// Fails with `UnexpectedEof` and consumes nothing if fewer than `n` bytes remain.
    pub fn skip(&mut self, n: usize) -> io::Result<()> {
        if n > self.available_bytes() {
            return Err(short_request(n, self.available_bytes()));
        }
        self.segs.advance(n);
        Ok(())
    }
}

fn short_request(wanted: usize, available: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("request too short: wanted {wanted} bytes, {available} left"),
    )
}

impl io::Read for Reader<'_> {
    /// Copies up to `buf.len()` bytes; returns `Ok(0)` once the readable part is exhausted.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.segs.copy_out(buf))
    }
}

impl ZeroCopyReader for Reader<'_> {
    /// Writes up to `count` bytes of guest memory straight into `f` at `off`.
    ///
    /// Returns `Ok(0)` without touching `f` when `count` is 0 or nothing is left. If `f` writes
    /// nothing before any progress was made, fails with `WriteZero` as the trait requires. Only
    /// bytes `f` reports as written are consumed; an error after partial progress is reported as
    /// that progress, since an error must mean nothing was copied.
    fn read_to(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        self.segs.transfer(
            count,
            off,
            Some(io::ErrorKind::WriteZero),
            |bufs, off| match bufs {
                // One buffer (a payload in one descriptor): pwrite. File's vectored call
                // builds a Vec of iovecs on every call, a heap allocation per WRITE.
                [one] => f.write_at_volatile(*one, off),
                _ => f.write_vectored_at_volatile(bufs, off),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    use fuse_backend_rs::file_buf::FileVolatileSlice;
    use vm_memory::{Bytes, GuestAddress, Le32, Le64};

    use super::super::test_utils::*;
    use super::super::{split_chain, Reader};
    use super::*;

    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    #[repr(C)]
    struct Header {
        len: Le32,
        opcode: Le32,
        unique: Le64,
    }
    // SAFETY: plain integers, no padding (4 + 4 + 8 with 8-byte alignment), any bit pattern valid.
    unsafe impl ByteValued for Header {}

    fn fill(mem: &vm_memory::GuestMemoryMmap<()>, addr: u64, data: &[u8]) {
        mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    #[test]
    fn read_across_descriptors() {
        let mem = memory();
        fill(&mem, 0x1000, b"hello ");
        fill(&mem, 0x2000, b"virtio");
        fill(&mem, 0x3000, b"-fs");
        let c = chain(
            &mem,
            &[
                (0x1000, 6, 0),
                (0x2000, 6, 0),
                (0x3000, 3, 0),
                (0x4000, 8, WRITE),
            ],
        );
        let (mut r, _) = split_chain(&mem, c).unwrap();
        assert_eq!(r.available_bytes(), 15);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello virtio-fs");
        assert_eq!(r.bytes_read(), 15);
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0);
    }

    #[test]
    fn read_obj_across_descriptor_boundary() {
        let mem = memory();
        let h = Header {
            len: 40.into(),
            opcode: 15.into(),
            unique: 0x1122_3344_5566_7788.into(),
        };
        let bytes = h.as_slice();
        // Split the header 5 / 11 over two descriptors, the second one crossing a region edge.
        fill(&mem, 0x1000, &bytes[..5]);
        fill(&mem, 0xfffa, &bytes[5..]);
        fill(&mem, 0x10005, &[0xaa, 0xbb]);
        let c = chain(&mem, &[(0x1000, 5, 0), (0xfffa, 13, 0)]);
        let (mut r, _) = split_chain(&mem, c).unwrap();
        assert_eq!(r.read_obj::<Header>().unwrap(), h);
        assert_eq!(r.bytes_read(), 16);
        assert_eq!(
            r.read_obj::<u16>().unwrap(),
            u16::from_le_bytes([0xaa, 0xbb])
        );
        // Only 0 bytes left: a further object is refused and nothing is consumed.
        let e = r.read_obj::<u8>().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn short_reads_consume_nothing() {
        let mem = memory();
        fill(&mem, 0x1000, &[1, 2, 3, 4, 5, 6]);
        let c = chain(&mem, &[(0x1000, 6, 0)]);
        let (mut r, _) = split_chain(&mem, c).unwrap();
        assert!(r.read_obj::<u64>().is_err());
        let mut buf = vec![9u8; 3];
        assert!(r.read_to_vec(&mut buf, 7).is_err());
        assert!(buf.is_empty());
        assert!(r.skip(7).is_err());
        assert_eq!(r.available_bytes(), 6);
        r.skip(2).unwrap();
        r.read_to_vec(&mut buf, 4).unwrap();
        assert_eq!(buf, [3, 4, 5, 6]);
        assert_eq!(r.bytes_read(), 6);
    }

    #[test]
    fn read_to_file_zero_copy() {
        let mem = memory();
        let data: Vec<u8> = (0..=255u8).cycle().take(0x3000).collect();
        // Three descriptors, the middle one straddling the region boundary at 0x10000.
        fill(&mem, 0x2000, &data[..0x1000]);
        fill(&mem, 0xf800, &data[0x1000..0x2000]);
        fill(&mem, 0x12000, &data[0x2000..]);
        let c = chain(
            &mem,
            &[
                (0x2000, 0x1000, 0),
                (0xf800, 0x1000, 0),
                (0x12000, 0x1000, 0),
            ],
        );
        let (mut r, _) = split_chain(&mem, c).unwrap();
        // Skip a prefix so the transfer starts mid-descriptor.
        r.skip(0x10).unwrap();

        let mut file = tempfile::tempfile().unwrap();
        let n = r.read_to(&mut file, 0x1800, 0x100).unwrap();
        assert_eq!(n, 0x1800);
        assert_eq!(r.bytes_read(), 0x1810);
        // The rest, via the trait's exact helper.
        r.read_exact_to(&mut file, 0x3000 - 0x1810, 0x1900).unwrap();
        assert_eq!(r.available_bytes(), 0);
        // Nothing left: Ok(0) without calling the file.
        assert_eq!(r.read_to(&mut file, 10, 0).unwrap(), 0);

        let mut back = vec![0u8; 0x3000 - 0x10];
        file.read_exact_at(&mut back, 0x100).unwrap();
        assert_eq!(back, data[0x10..]);
    }

    /// A file that accepts only its first buffer, a few bytes at a time, then fails.
    struct Stingy {
        got: Vec<u8>,
        budget: usize,
        zero: bool,
    }

    impl FileReadWriteVolatile for Stingy {
        fn read_volatile(&mut self, _: FileVolatileSlice) -> io::Result<usize> {
            Err(io::Error::other("Stingy only takes positioned writes"))
        }
        fn write_volatile(&mut self, _: FileVolatileSlice) -> io::Result<usize> {
            Err(io::Error::other("Stingy only takes positioned writes"))
        }
        fn read_at_volatile(&mut self, _: FileVolatileSlice, _: u64) -> io::Result<usize> {
            Err(io::Error::other("Stingy only takes positioned writes"))
        }
        fn write_at_volatile(&mut self, s: FileVolatileSlice, off: u64) -> io::Result<usize> {
            assert_eq!(off as usize, self.got.len());
            if self.zero {
                return Ok(0);
            }
            if self.budget == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = s.len().min(3).min(self.budget);
            let mut b = vec![0u8; n];
            s.as_volatile_slice().copy_to(&mut b[..]);
            self.got.extend_from_slice(&b);
            self.budget -= n;
            Ok(n)
        }
    }

    fn two_part_reader(mem: &vm_memory::GuestMemoryMmap<()>) -> Reader<'_> {
        fill(mem, 0x1000, b"abcde");
        fill(mem, 0x2000, b"fghij");
        let c = chain(mem, &[(0x1000, 5, 0), (0x2000, 5, 0)]);
        split_chain(mem, c).unwrap().0
    }

    #[test]
    fn read_to_partial_progress_then_error() {
        let mem = memory();
        let mut r = two_part_reader(&mem);
        let mut f = Stingy {
            got: Vec::new(),
            budget: 7,
            zero: false,
        };
        // Short transfers continue across buffers; the later error becomes Ok(progress).
        assert_eq!(r.read_to(&mut f, 10, 0).unwrap(), 7);
        assert_eq!(f.got, b"abcdefg");
        assert_eq!(r.bytes_read(), 7);
        // Now the error comes first, so it is reported and nothing is consumed.
        assert_eq!(
            r.read_to(&mut f, 10, 7).unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert_eq!(r.available_bytes(), 3);
    }

    #[test]
    fn read_to_zero_write_is_write_zero() {
        let mem = memory();
        let mut r = two_part_reader(&mem);
        let mut f = Stingy {
            got: Vec::new(),
            budget: 10,
            zero: true,
        };
        let e = r.read_to(&mut f, 4, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        assert_eq!(r.available_bytes(), 10);
        // count == 0 never reaches the file.
        assert_eq!(r.read_to(&mut f, 0, 0).unwrap(), 0);
    }
}
