//! The few host system calls std does not wrap, each with its safety argument. Everything
//! unsafe in the benchmark lives here.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::ptr::NonNull;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; returns the inode number (to keep the call
/// from being optimised into nothing and to check the file exists).
pub fn fstatat(dir: &File, name: &CStr) -> io::Result<u64> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and outlives the call; `st` is a valid, writable stat
    // buffer; the fd is open for the duration of the borrow.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st.st_ino)
}

/// `openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644)`.
pub fn create_at(dir: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated and outlives the call; the dir fd is open.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by openat and nobody else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reserves `len` bytes of disk for `file` (mode 0: extend the size too).
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we hold open; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    match check(r) {
        Ok(_) => Ok(()),
        // Filesystems without fallocate: the pattern write that follows allocates anyway.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One `getdents64` call into `buf`; returns the number of bytes filled (0 at the end).
pub fn getdents64(dir: &File, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the whole call; the
    // kernel writes at most that many.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Walks the records of a getdents64 buffer: calls `f(name)` for each (names without NUL).
pub fn for_each_dirent(buf: &[u8], mut f: impl FnMut(&[u8])) {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    let mut pos = 0;
    while pos + 19 <= buf.len() {
        let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
        if reclen < 19 || pos + reclen > buf.len() {
            break;
        }
        let name = &buf[pos + 19..pos + reclen];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        f(&name[..end]);
        pos += reclen;
    }
}

/// Raises the soft open-file limit to the hard one (backends inherit it; a passthrough
/// server keeps one fd per inode the guest knows).
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}

/// Sends `sig` to process group `pgid`.
pub fn kill_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a stale group just yields ESRCH.
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
}

/// A region of this process's address space, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it between threads is fine.
unsafe impl Send for Mapping {}
// SAFETY: shared access only copies bytes out of it through raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` from offset 0, read-only and shared (the page cache).
    pub fn file_readonly(file: &File, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) overlaps nothing of ours;
        // the fd is open for the call and the mapping keeps its own reference to the file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        Self::from_mmap(p, len)
    }

    /// Reserves `len` bytes of inaccessible address space (a DAX window before any mapping).
    pub fn reserve(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous PROT_NONE mapping at an address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        Self::from_mmap(p, len)
    }

    fn from_mmap(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Replaces `[off, off + len)` of this reservation with a shared mapping of `fd` at
    /// `fd_offset` (what a VMM does for a backend's SHMEM_MAP).
    pub fn map_fixed(
        &self,
        off: u64,
        len: u64,
        fd: RawFd,
        fd_offset: u64,
        writable: bool,
    ) -> io::Result<()> {
        self.check_range(off, len)?;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: the range lies inside this reservation (checked), which we own and never
        // hand out as a Rust reference, so replacing its pages invalidates nothing.
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().add(off as usize).cast(),
                len as usize,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                fd_offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Puts `[off, off + len)` back to inaccessible anonymous memory (SHMEM_UNMAP).
    pub fn unmap_fixed(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_range(off, len)?;
        // SAFETY: as in `map_fixed`: the range is inside our own reservation.
        let p = unsafe {
            libc::mmap(
                self.ptr.as_ptr().add(off as usize).cast(),
                len as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn check_range(&self, off: u64, len: u64) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.len as u64 && len > 0 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// Copies `dst.len()` bytes starting at `off` out of the mapping (a plain memcpy). The
    /// range must be mapped readable, or the process faults: callers copy only ranges they
    /// mapped.
    pub fn copy_out(&self, off: usize, dst: &mut [u8]) -> io::Result<()> {
        self.check_range(off as u64, dst.len() as u64)?;
        // SAFETY: the source range is inside the mapping (checked) and `dst` is a distinct,
        // writable Rust buffer of the same length. The bytes are copied through raw pointers,
        // never turned into a reference, so a concurrent writer to the file cannot break
        // aliasing rules.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range this value mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
