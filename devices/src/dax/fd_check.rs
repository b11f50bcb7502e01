//! Checks on the file descriptor a mapping is made from: what the pure check cannot see.
//! Both the worker (before sending the fd) and the window owner (before mapping it) run it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use thiserror::Error;

use super::validate::Access;

/// Why a file descriptor cannot back a mapping.
#[derive(Debug, Error)]
pub enum FdError {
    #[error("fstat on the mapping's file: {0}")]
    Stat(io::Error),
    #[error("fcntl(F_GETFL) on the mapping's file: {0}")]
    Flags(io::Error),
    #[error("the mapping's file is not a regular file (mode {0:#o})")]
    NotRegularFile(u32),
    #[error("the mapping's file is not open for reading")]
    NotReadable,
    #[error("a writable mapping of a file not open for reading and writing")]
    NotWritable,
    #[error("the mapping's file is empty")]
    Empty,
}

impl FdError {
    /// What the guest gets: mmap(2)'s errno for the same refusal.
    pub fn errno(&self) -> i32 {
        match self {
            FdError::Stat(e) | FdError::Flags(e) => e.raw_os_error().unwrap_or(libc::EIO),
            FdError::NotRegularFile(_) => libc::ENODEV,
            FdError::NotReadable | FdError::NotWritable => libc::EACCES,
            FdError::Empty => libc::EINVAL,
        }
    }
}

/// `fd` must be a regular file (a directory, device or socket cannot be DAX-mapped, and a
/// device could map host memory), open for reading, and for writing too when `access` is
/// `ReadWrite` (MAP_SHARED with PROT_WRITE needs O_RDWR).
pub fn check_fd(fd: BorrowedFd<'_>, access: Access) -> Result<(), FdError> {
    // SAFETY: an all-zero stat64 is a valid value of this plain C struct.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a live descriptor for the borrow, and `st` is a writable stat64.
    if unsafe { libc::fstat64(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(FdError::Stat(io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FdError::NotRegularFile(st.st_mode));
    }
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(FdError::Flags(io::Error::last_os_error()));
    }
    if flags & libc::O_PATH != 0 {
        // An O_PATH descriptor reports O_RDONLY but allows no I/O at all.
        return Err(FdError::NotReadable);
    }
    match (flags & libc::O_ACCMODE, access) {
        (libc::O_RDWR, _) | (libc::O_RDONLY, Access::Read) => Ok(()),
        (libc::O_RDONLY, Access::ReadWrite) => Err(FdError::NotWritable),
        _ => Err(FdError::NotReadable),
    }
}

/// `fd` must not be empty when it goes to a VMM: QEMU 11.1 (its RAM-from-descriptor code, which
/// SHMEM_MAP uses) takes an empty file for new backing store and grows it to the mapping's end,
/// which would change the guest's file behind its back. A Linux guest never maps an empty file:
/// there is nothing to read, and a write that extends a file goes through FUSE_WRITE.
pub fn check_not_empty(fd: BorrowedFd<'_>) -> Result<(), FdError> {
    // SAFETY: an all-zero stat64 is a valid value of this plain C struct.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a live descriptor for the borrow, and `st` is a writable stat64.
    if unsafe { libc::fstat64(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(FdError::Stat(io::Error::last_os_error()));
    }
    if st.st_size == 0 {
        return Err(FdError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::fd::AsFd;

    #[test]
    fn fd_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let ro = OpenOptions::new().read(true).open(&path).unwrap();
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let wo = OpenOptions::new().write(true).open(&path).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();

        check_fd(ro.as_fd(), Access::Read).unwrap();
        check_fd(rw.as_fd(), Access::Read).unwrap();
        check_fd(rw.as_fd(), Access::ReadWrite).unwrap();
        let e = check_fd(ro.as_fd(), Access::ReadWrite).unwrap_err();
        assert_eq!(e.errno(), libc::EACCES, "{e}");
        let e = check_fd(wo.as_fd(), Access::Read).unwrap_err();
        assert_eq!(e.errno(), libc::EACCES, "{e}");
        let e = check_fd(d.as_fd(), Access::Read).unwrap_err();
        assert!(matches!(e, FdError::NotRegularFile(_)), "{e}");
        assert_eq!(e.errno(), libc::ENODEV);

        check_not_empty(ro.as_fd()).unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let e = check_not_empty(std::fs::File::open(&empty).unwrap().as_fd()).unwrap_err();
        assert!(matches!(e, FdError::Empty), "{e}");
        assert_eq!(e.errno(), libc::EINVAL);
    }
}
