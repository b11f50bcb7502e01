//! Guest RAM: one memfd mapped into this process and shared with the backend, plus a small
//! first-fit allocator handing out buffers inside it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Arc, Mutex};

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{
    ByteValued, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap,
    GuestMemoryRegion,
};

use crate::error::{Error, Result};

/// Every allocation starts on this boundary (a cache line), so that unrelated buffers never
/// share a line.
pub const MIN_ALIGN: u64 = 64;

/// The shared guest RAM.
pub struct GuestRam {
    mem: GuestMemoryMmap<()>,
    // Keeps the memfd open for as long as the RAM lives; the mapping refers to it too.
    file: File,
    base: u64,
    size: u64,
    alloc: Mutex<FreeList>,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam")
            .field("base", &self.base)
            .field("size", &self.size)
            .finish()
    }
}

impl GuestRam {
    /// Creates `size` bytes of guest RAM at guest physical address `base`, backed by a memfd.
    pub fn new(base: u64, size: usize) -> Result<Arc<Self>> {
        if size == 0 || size & 4095 != 0 || base & 4095 != 0 {
            return Err(Error::InvalidArgument(format!(
                "guest memory base {base:#x} and size {size:#x} must be page aligned and non-empty"
            )));
        }
        base.checked_add(size as u64)
            .ok_or_else(|| Error::InvalidArgument("guest memory wraps around".into()))?;
        let name = CString::new("fsjail-guest-ram").expect("no NUL in literal");
        // SAFETY: `name` is a valid NUL-terminated string; memfd_create has no other
        // memory-safety preconditions.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size as u64)
            .map_err(|e| Error::io("ftruncate guest memory", e))?;
        let mapping_file = file
            .try_clone()
            .map_err(|e| Error::io("dup guest memfd", e))?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(base),
            size,
            Some(FileOffset::new(mapping_file, 0)),
        )])
        .map_err(|e| Error::Memory(e.to_string()))?;
        Ok(Arc::new(GuestRam {
            mem,
            file,
            base,
            size: size as u64,
            alloc: Mutex::new(FreeList::new(base, size as u64)),
        }))
    }

    /// The vm-memory view of the RAM, for direct reads and writes at guest addresses.
    pub fn memory(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }

    /// Guest physical address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The memfd backing the RAM.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The region description SET_MEM_TABLE sends to the backend.
    pub fn region_info(&self) -> Result<VhostUserMemoryRegionInfo> {
        let region = self
            .mem
            .iter()
            .next()
            .ok_or_else(|| Error::Memory("no region".into()))?;
        let mut info = VhostUserMemoryRegionInfo::from_guest_region(region)?;
        // `from_guest_region` uses the fd of the mapping's own dup; both refer to one memfd.
        info.mmap_handle = self.file.as_raw_fd();
        Ok(info)
    }

    /// This process's virtual address of guest address `gpa` (what SET_VRING_ADDR carries).
    pub fn host_address(&self, gpa: u64) -> Result<u64> {
        let region = self
            .mem
            .find_region(GuestAddress(gpa))
            .ok_or_else(|| Error::Memory(format!("{gpa:#x} is outside guest memory")))?;
        let off = gpa - region.start_addr().0;
        Ok(region.as_ptr() as u64 + off)
    }

    /// Allocates `len` bytes (at least one byte is reserved even for `len == 0`) aligned to
    /// `align` (rounded up to [`MIN_ALIGN`]). The buffer is zeroed.
    pub fn alloc(self: &Arc<Self>, len: usize, align: u64) -> Result<GuestBuf> {
        let buf = self.alloc_uninit(len, align)?;
        buf.zero()?;
        Ok(buf)
    }

    /// Like [`Self::alloc`] but leaves whatever the RAM held, which may be an earlier request's
    /// data: for buffers about to be filled, such as the device-writable part of a chain, which
    /// the device fills and of which only the used length is ever read. Zeroing them cost a
    /// heap allocation and a memset of every byte per request (1 MiB per 1 MiB READ).
    pub fn alloc_uninit(self: &Arc<Self>, len: usize, align: u64) -> Result<GuestBuf> {
        let align = align.max(MIN_ALIGN).next_power_of_two();
        let reserve = (len as u64).max(1).next_multiple_of(MIN_ALIGN);
        let addr = self
            .alloc
            .lock()
            .unwrap()
            .alloc(reserve, align)
            .ok_or(Error::OutOfMemory(len))?;
        let buf = GuestBuf {
            ram: Arc::clone(self),
            addr,
            len,
            reserved: reserve,
        };
        Ok(buf)
    }

    /// Allocates a buffer holding a copy of `data`.
    pub fn alloc_with(self: &Arc<Self>, data: &[u8]) -> Result<GuestBuf> {
        let buf = self.alloc_uninit(data.len(), MIN_ALIGN)?;
        buf.write_at(0, data)?;
        Ok(buf)
    }

    /// Bytes currently free in the allocator.
    pub fn free_bytes(&self) -> u64 {
        self.alloc.lock().unwrap().free_bytes()
    }

    /// Writes `data` at guest address `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|e| Error::Memory(e.to_string()))
    }

    /// Reads `len` bytes at guest address `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_into(addr, &mut v)?;
        Ok(v)
    }

    /// Fills `buf` from guest address `addr`.
    pub fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|e| Error::Memory(e.to_string()))
    }

    fn free(&self, addr: u64, len: u64) {
        self.alloc.lock().unwrap().free(addr, len);
    }
}

/// A buffer in guest RAM, returned to the allocator on drop.
pub struct GuestBuf {
    ram: Arc<GuestRam>,
    addr: u64,
    len: usize,
    reserved: u64,
}

impl std::fmt::Debug for GuestBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestBuf({:#x}+{})", self.addr, self.len)
    }
}

impl GuestBuf {
    /// Guest physical address of the first byte.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes (what a descriptor for this buffer would carry).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `data` at `offset` inside the buffer.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        self.ram.write(self.addr + offset as u64, data)
    }

    /// Writes a plain-old-data value at `offset`.
    pub fn write_obj<T: ByteValued>(&self, offset: usize, val: T) -> Result<()> {
        self.write_at(offset, val.as_slice())
    }

    /// Reads `len` bytes from `offset`.
    pub fn read_at(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.check(offset, len)?;
        self.ram.read(self.addr + offset as u64, len)
    }

    /// Fills `buf` from `offset` inside the buffer.
    pub fn read_into(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.ram.read_into(self.addr + offset as u64, buf)
    }

    /// Reads the whole buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        self.read_at(0, self.len)
    }

    /// Fills the buffer with zeroes, from a static block rather than a zeroed heap copy of the
    /// buffer's size.
    pub fn zero(&self) -> Result<()> {
        static ZEROES: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < self.len {
            let n = (self.len - done).min(ZEROES.len());
            self.ram.write(self.addr + done as u64, &ZEROES[..n])?;
            done += n;
        }
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{offset}+{len} is outside a {}-byte buffer",
                self.len
            ))),
        }
    }
}

impl Drop for GuestBuf {
    fn drop(&mut self) {
        self.ram.free(self.addr, self.reserved);
    }
}

/// First-fit free list with coalescing: free blocks keyed by start address.
struct FreeList {
    free: BTreeMap<u64, u64>,
}

impl FreeList {
    fn new(start: u64, len: u64) -> Self {
        let mut free = BTreeMap::new();
        // Keep guest address `start` itself unallocated so that a zero address is never handed
        // out by accident when the RAM starts at 0.
        free.insert(start + 4096, len - 4096);
        FreeList { free }
    }

    fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let (&start, &size, addr) = self.free.iter().find_map(|(start, size)| {
            let addr = start.next_multiple_of(align);
            (addr + len <= start + size).then_some((start, size, addr))
        })?;
        self.free.remove(&start);
        if addr > start {
            self.free.insert(start, addr - start);
        }
        let end = addr + len;
        if end < start + size {
            self.free.insert(end, start + size - end);
        }
        Some(addr)
    }

    fn free(&mut self, addr: u64, len: u64) {
        let mut start = addr;
        let mut end = addr + len;
        if let Some((&prev, &plen)) = self.free.range(..addr).next_back() {
            if prev + plen == addr {
                self.free.remove(&prev);
                start = prev;
            }
        }
        if let Some(&nlen) = self.free.get(&end) {
            self.free.remove(&end);
            end += nlen;
        }
        self.free.insert(start, end - start);
    }

    fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_coalesces() {
        let ram = GuestRam::new(0, 1 << 20).unwrap();
        let before = ram.free_bytes();
        let a = ram.alloc(100, 64).unwrap();
        let b = ram.alloc(5000, 4096).unwrap();
        assert_eq!(b.addr() % 4096, 0);
        assert!(a.addr() >= 4096);
        a.write_at(0, b"hello").unwrap();
        assert_eq!(a.read_at(0, 5).unwrap(), b"hello");
        assert!(a.write_at(98, b"xyz").is_err());
        drop(a);
        drop(b);
        assert_eq!(ram.free_bytes(), before);
        let big = ram.alloc((1 << 20) - 4096, 64).unwrap();
        assert!(ram.alloc(1, 64).is_err());
        drop(big);
    }

    #[test]
    fn alloc_zeroes_and_alloc_uninit_does_not() {
        let ram = GuestRam::new(0, 1 << 20).unwrap();
        // Dirty more than one block of the zeroing loop, then free it.
        let dirty = ram.alloc_uninit(10_000, 4096).unwrap();
        let at = dirty.addr();
        dirty.write_at(0, &[0xa5; 10_000]).unwrap();
        drop(dirty);
        let again = ram.alloc_uninit(10_000, 4096).unwrap();
        assert_eq!(again.addr(), at, "first fit reuses the block");
        assert_eq!(again.read_at(9_999, 1).unwrap(), [0xa5], "left as it was");
        drop(again);
        let zeroed = ram.alloc(10_000, 4096).unwrap();
        assert_eq!(zeroed.addr(), at);
        assert_eq!(zeroed.to_vec().unwrap(), vec![0u8; 10_000]);
    }
}
