//! Writing the device-writable part of a descriptor chain.

use std::io;

use fuse_backend_rs::api::filesystem::ZeroCopyWriter;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;
use vm_memory::ByteValued;

use super::{Result, Segments};

/// Fills the device-writable bytes of a descriptor chain, front to back.
///
/// The number of bytes the device reports back to the guest as used is the sum of
/// `bytes_written()` over this writer and any writers split off it.
pub struct Writer<'a> {
    segs: Segments<'a>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(segs: Segments<'a>) -> Self {
        Writer { segs }
    }

    /// Bytes of room left.
    pub fn available_bytes(&self) -> usize {
        self.segs.available()
    }

    /// Bytes written so far by this writer (not counting writers split off it).
    pub fn bytes_written(&self) -> usize {
        self.segs.consumed()
    }

    /// Writes a plain-old-data struct, all or nothing.
    ///
    /// Fails with `WriteZero` and writes nothing if it does not fit.
    pub fn write_obj<T: ByteValued>(&mut self, v: T) -> io::Result<()> {
        let bytes = v.as_slice();
        if bytes.len() > self.available_bytes() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "reply buffer too small: need {} bytes, {} left",
                    bytes.len(),
                    self.available_bytes()
                ),
            ));
        }
        let written = self.segs.copy_in(bytes);
        debug_assert_eq!(written, bytes.len());
        Ok(())
    }

    /// Splits off everything after `offset` bytes into a new Writer (so a reply header can be
    /// written into the first part after the body was written into the second).
    ///
    /// `offset` counts from the current position. Afterwards `self` has exactly `offset` bytes
    /// of room and the returned writer has the rest, with `bytes_written() == 0`. Fails if
    /// `offset > available_bytes()`.
    pub fn split_at(&mut self, offset: usize) -> Result<Writer<'a>> {
        self.segs.split_at(offset).map(Writer::new)
    }
}

impl io::Write for Writer<'_> {
    /// Copies as much of `buf` as fits; returns `Ok(0)` once the writable part is full, which
    /// `write_all` turns into `WriteZero`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.segs.copy_in(buf))
    }

    /// Writes land directly in guest memory, so there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for Writer<'_> {
    /// Reads up to `count` bytes from `f` at `off` straight into guest memory.
    ///
    /// Returns `Ok(0)` without touching `f` when `count` is 0 or no room is left. Only bytes `f`
    /// reports as read are consumed; an error after partial progress is reported as that
    /// progress, since an error must mean nothing was copied.
    ///
    /// End of file is `Ok(0)` (or the short count read before it), not `UnexpectedEof`: the trait
    /// documentation lists "no more data left in `f`" as a meaning of `Ok(0)` but also asks for
    /// `UnexpectedEof` when the read returns 0, which contradict each other. FUSE `read` calls
    /// `write_from` once and a read at or past end of file must succeed short, not fail with
    /// EIO, so EOF is reported as a count. `write_all_from` still turns `Ok(0)` into
    /// `UnexpectedEof` for callers that need the exact amount.
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        self.segs
            .transfer(count, off, None, |bufs, off| match bufs {
                // One buffer (a payload in one descriptor): pread. File's vectored call builds a
                // Vec of iovecs on every call, a heap allocation per READ.
                [one] => f.read_at_volatile(*one, off),
                _ => f.read_vectored_at_volatile(bufs, off),
            })
    }

    fn available_bytes(&self) -> usize {
        self.segs.available()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Le32, Le64};

    use super::super::test_utils::*;
    use super::super::{split_chain, Error};
    use super::*;

    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    #[repr(C)]
    struct OutHeader {
        len: Le32,
        error: Le32,
        unique: Le64,
    }
    // SAFETY: plain integers, no padding (4 + 4 + 8 with 8-byte alignment), any bit pattern valid.
    unsafe impl ByteValued for OutHeader {}

    fn read(mem: &GuestMemoryMmap<()>, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn write_across_descriptors_and_regions() {
        let mem = memory();
        let c = chain(
            &mem,
            &[(0x1000, 4, 0), (0x2000, 3, WRITE), (0xfffe, 6, WRITE)],
        );
        let (_, mut w) = split_chain(&mem, c).unwrap();
        assert_eq!(w.available_bytes(), 9);
        assert_eq!(w.write(b"0123456789").unwrap(), 9);
        assert_eq!(w.write(b"x").unwrap(), 0);
        assert_eq!(w.bytes_written(), 9);
        assert_eq!(read(&mem, 0x2000, 3), b"012");
        assert_eq!(read(&mem, 0xfffe, 6), b"345678");
        let e = w.write_all(b"y").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn write_obj_all_or_nothing() {
        let mem = memory();
        let c = chain(&mem, &[(0x2000, 10, WRITE), (0x3000, 10, WRITE)]);
        let (_, mut w) = split_chain(&mem, c).unwrap();
        let h = OutHeader {
            len: 16.into(),
            error: 0.into(),
            unique: 7.into(),
        };
        w.write_obj(h).unwrap();
        let mut back = [0u8; 16];
        back[..10].copy_from_slice(&read(&mem, 0x2000, 10));
        back[10..].copy_from_slice(&read(&mem, 0x3000, 6));
        assert_eq!(back, h.as_slice());
        // 4 bytes left: a 16-byte object is refused untouched.
        let e = w.write_obj(h).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        assert_eq!(w.available_bytes(), 4);
        assert_eq!(read(&mem, 0x3006, 4), [0; 4]);
    }

    #[test]
    fn split_at_header_after_body() {
        let mem = memory();
        // Header room spans a descriptor boundary and the split lands mid-descriptor.
        let c = chain(
            &mem,
            &[(0x1000, 8, 0), (0x2000, 10, WRITE), (0x3000, 20, WRITE)],
        );
        let (_, mut w) = split_chain(&mem, c).unwrap();
        let mut body = w.split_at(16).unwrap();
        assert_eq!(w.available_bytes(), 16);
        assert_eq!(body.available_bytes(), 14);
        assert_eq!(body.bytes_written(), 0);

        body.write_all(b"payload").unwrap();
        let h = OutHeader {
            len: (16 + body.bytes_written() as u32).into(),
            error: 0.into(),
            unique: 42.into(),
        };
        w.write_obj(h).unwrap();
        assert_eq!(w.available_bytes(), 0);
        assert_eq!(
            w.write(b"z").unwrap(),
            0,
            "header part must not spill into the body"
        );

        let mut reply = read(&mem, 0x2000, 10);
        reply.extend(read(&mem, 0x3000, 13));
        assert_eq!(&reply[..16], h.as_slice());
        assert_eq!(&reply[16..], b"payload");
    }

    #[test]
    fn split_at_edges() {
        let mem = memory();
        let c = chain(&mem, &[(0x2000, 8, WRITE), (0x3000, 8, WRITE)]);
        let (_, mut w) = split_chain(&mem, c).unwrap();
        w.write_all(b"ab").unwrap();
        // Offsets count from the current position.
        assert!(matches!(
            w.split_at(15),
            Err(Error::SplitOutOfRange {
                offset: 15,
                available: 14
            })
        ));
        // Split exactly on a descriptor boundary.
        let mut tail = w.split_at(6).unwrap();
        assert_eq!((w.available_bytes(), tail.available_bytes()), (6, 8));
        // Split at the end leaves an empty tail; at zero leaves an empty head.
        let empty = tail.split_at(8).unwrap();
        assert_eq!(empty.available_bytes(), 0);
        let all = tail.split_at(0).unwrap();
        assert_eq!((tail.available_bytes(), all.available_bytes()), (0, 8));
        assert_eq!(w.bytes_written(), 2);
    }

    #[test]
    fn write_from_file_zero_copy() {
        let mem = memory();
        let data: Vec<u8> = (0..=255u8).rev().cycle().take(0x2400).collect();
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&data, 0).unwrap();
        let mut file = file;

        // 16 bytes of header room, then pages, one straddling the region boundary.
        let c = chain(
            &mem,
            &[
                (0x1000, 8, 0),
                (0x2000, 16, WRITE),
                (0x3000, 0x1000, WRITE),
                (0xf800, 0x1000, WRITE),
            ],
        );
        let (_, mut w) = split_chain(&mem, c).unwrap();
        let mut body = w.split_at(16).unwrap();
        assert_eq!(ZeroCopyWriter::available_bytes(&body), 0x2000);

        let n = body.write_from(&mut file, 0x1800, 0x100).unwrap();
        assert_eq!(n, 0x1800);
        assert_eq!(body.bytes_written(), 0x1800);
        // File has 0x2400 - 0x1900 = 0xb00 bytes left; we ask for more and get a short count.
        let n = body.write_from(&mut file, 0x800, 0x1900).unwrap();
        assert_eq!(n, 0x800);
        assert_eq!(body.available_bytes(), 0);
        // Full: Ok(0) without touching the file.
        assert_eq!(body.write_from(&mut file, 10, 0).unwrap(), 0);

        let mut got = read(&mem, 0x3000, 0x1000);
        got.extend(read(&mem, 0xf800, 0x1000));
        assert_eq!(got, data[0x100..0x2100]);
        assert_eq!(read(&mem, 0x2000, 16), [0; 16], "header room untouched");
    }

    #[test]
    fn write_from_stops_at_end_of_file() {
        let mem = memory();
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(b"short file", 0).unwrap();
        let mut file = file;
        let c = chain(&mem, &[(0x2000, 8, WRITE), (0x3000, 8, WRITE)]);
        let (_, mut w) = split_chain(&mem, c).unwrap();
        // A read straddling EOF returns the short count and consumes only that.
        assert_eq!(w.write_from(&mut file, 16, 0).unwrap(), 10);
        assert_eq!(w.available_bytes(), 6);
        assert_eq!(read(&mem, 0x2000, 8), b"short fi");
        assert_eq!(read(&mem, 0x3000, 2), b"le");
        // A read at EOF is Ok(0); the exact variant turns that into UnexpectedEof.
        assert_eq!(w.write_from(&mut file, 4, 10).unwrap(), 0);
        let e = w.write_all_from(&mut file, 4, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(w.available_bytes(), 6);
    }
}
