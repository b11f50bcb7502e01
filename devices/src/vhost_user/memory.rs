//! Checks on the guest memory a frontend shares (SET_MEM_TABLE).
//!
//! vhost-user-backend maps each region with `mmap(MAP_SHARED)` of the file the frontend sent,
//! for the size the frontend claims, and vm-memory does not compare that size with the file's.
//! A region that runs past the end of its file is mapped all the same, and the first touch of a
//! page beyond the end raises SIGBUS: the frontend's very next SET_VRING_ADDR (which reads the
//! used index) kills the worker. [`check_backing`] refuses such a table before anything touches
//! it; the vhost-user handler then ends the connection.
//!
//! What this cannot catch is a frontend that shrinks the file after the table was accepted: a
//! frontend owns the guest's memory, and a backend can only trust it not to pull it away.

use std::io;

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Fails unless every file-backed region of `mem` lies within its (regular) file.
pub fn check_backing<B: vm_memory::bitmap::Bitmap>(mem: &GuestMemoryMmap<B>) -> io::Result<()> {
    for region in mem.iter() {
        let Some(file_offset) = region.file_offset() else {
            continue;
        };
        let meta = file_offset.file().metadata()?;
        // Device files (and hugetlbfs's special sizes) have no st_size to compare with.
        if !meta.is_file() {
            continue;
        }
        let end = file_offset.start().checked_add(region.len());
        if !matches!(end, Some(end) if end <= meta.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "guest memory region at {:#x} maps {:#x} bytes at file offset {:#x}, past \
                     the end of its {:#x}-byte file",
                    region.start_addr().0,
                    region.len(),
                    file_offset.start(),
                    meta.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::FromRawFd;

    use vm_memory::{FileOffset, GuestAddress, GuestRegionMmap, MmapRegion};

    use super::*;

    fn memfd(len: u64) -> File {
        // SAFETY: a NUL-terminated name; the new descriptor is owned by the File at once.
        let f = unsafe { File::from_raw_fd(libc::memfd_create(c"guest".as_ptr(), 0)) };
        f.set_len(len).unwrap();
        f
    }

    /// One region of `size` bytes at `offset` in a `file_len`-byte memfd (never touched).
    fn table(file_len: u64, offset: u64, size: usize) -> GuestMemoryMmap {
        let region = MmapRegion::from_file(FileOffset::new(memfd(file_len), offset), size).unwrap();
        let region = GuestRegionMmap::new(region, GuestAddress(0)).unwrap();
        GuestMemoryMmap::from_regions(vec![region]).unwrap()
    }

    #[test]
    fn regions_past_the_end_of_their_file_are_refused() {
        let mib = 1u64 << 20;
        check_backing(&table(mib, 0, mib as usize)).unwrap();
        check_backing(&table(2 * mib, mib, mib as usize)).unwrap();
        // What the vhost_user_messages fuzz target found: an offset far beyond the file.
        let e = check_backing(&table(mib, 0x200_0000_0000, mib as usize)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // A region one page longer than the file.
        assert!(check_backing(&table(mib, 0, (mib + 4096) as usize)).is_err());
        assert!(check_backing(&table(mib, 4096, mib as usize)).is_err());
        // Anonymous memory has no file to run past.
        let anon = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap();
        check_backing(&anon).unwrap();
    }
}
