//! A host-memory buffer that plays the transport for requests answered with two filesystem
//! calls, such as COPY_FILE_RANGE (PassthroughFs offers no call that copies between two of its
//! handles, so the adapter reads into this buffer and writes out of it).

use std::io;

use fuse_backend_rs::api::filesystem::{ZeroCopyReader, ZeroCopyWriter};
use fuse_backend_rs::file_buf::FileVolatileSlice;
use fuse_backend_rs::file_traits::FileReadWriteVolatile;

/// Bytes filled by a file read (`ZeroCopyWriter` side), then drained into a file write
/// (`ZeroCopyReader` side).
pub struct BounceBuffer {
    data: Vec<u8>,
    filled: usize,
    drained: usize,
}

impl BounceBuffer {
    pub fn with_capacity(capacity: usize) -> Self {
        BounceBuffer {
            data: vec![0; capacity],
            filled: 0,
            drained: 0,
        }
    }

    pub fn filled(&self) -> usize {
        self.filled
    }

    fn slice(&mut self, start: usize, len: usize) -> FileVolatileSlice<'_> {
        let end = start + len;
        let bytes = &mut self.data[start..end];
        // SAFETY: the pointer and length come from a live mutable borrow of our own Vec, which
        // outlives the returned slice (it borrows `self`), and nothing else aliases it meanwhile.
        unsafe { FileVolatileSlice::from_raw_ptr(bytes.as_mut_ptr(), bytes.len()) }
    }
}

impl io::Write for BounceBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.filled);
        self.data[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ZeroCopyWriter for BounceBuffer {
    fn write_from(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let len = count.min(self.data.len() - self.filled);
        if len == 0 {
            return Ok(0);
        }
        let start = self.filled;
        let n = f.read_at_volatile(self.slice(start, len), off)?;
        self.filled += n.min(len);
        Ok(n.min(len))
    }

    fn available_bytes(&self) -> usize {
        self.data.len() - self.filled
    }
}

impl io::Read for BounceBuffer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.filled - self.drained);
        buf[..n].copy_from_slice(&self.data[self.drained..self.drained + n]);
        self.drained += n;
        Ok(n)
    }
}

impl ZeroCopyReader for BounceBuffer {
    fn read_to(
        &mut self,
        f: &mut dyn FileReadWriteVolatile,
        count: usize,
        off: u64,
    ) -> io::Result<usize> {
        let len = count.min(self.filled - self.drained);
        if len == 0 {
            return Ok(0);
        }
        let start = self.drained;
        let n = f.write_at_volatile(self.slice(start, len), off)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        self.drained += n.min(len);
        Ok(n.min(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn copies_a_range_between_real_files() {
        let mut src = tempfile::tempfile().unwrap();
        src.write_all(b"0123456789").unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        let mut bounce = BounceBuffer::with_capacity(4);
        let got = bounce.write_from(&mut src, 8, 3).unwrap();
        assert_eq!(got, 4, "bounded by capacity");
        let put = bounce.read_to(&mut dst, 8, 0).unwrap();
        assert_eq!(put, 4);
        dst.rewind().unwrap();
        let mut out = String::new();
        io::Read::read_to_string(&mut dst, &mut out).unwrap();
        assert_eq!(out, "3456");
    }
}
