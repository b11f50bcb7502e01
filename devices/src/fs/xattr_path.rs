//! Extended attributes by path, with the `l*xattr` calls (a final symlink is never followed).
//!
//! Used by a jailed worker, whose root is the share: there fuse-backend-rs's own xattr calls
//! (on the literal path `/proc/self/fd/N`) do not resolve, and any path resolves inside the share.
//! See [`super::SharePolicy::with_xattr_paths`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A value or a list of names, or only its size when the caller's size was 0 (getxattr(2)).
pub enum Sized {
    Bytes(Vec<u8>),
    Count(u32),
}

fn c_path(path: &Path) -> io::Result<CString> {
    // readlink never yields a NUL, but a path is refused rather than trusted.
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The result of an xattr syscall: its non-negative count, or the errno it set.
fn check(res: isize) -> io::Result<usize> {
    usize::try_from(res).map_err(|_| io::Error::last_os_error())
}

fn sized(mut buf: Vec<u8>, size: u32, len: usize) -> Sized {
    if size == 0 {
        return Sized::Count(u32::try_from(len).unwrap_or(u32::MAX));
    }
    buf.truncate(len);
    Sized::Bytes(buf)
}

pub fn get(path: &Path, name: &CStr, size: u32) -> io::Result<Sized> {
    let path = c_path(path)?;
    let mut buf = vec![0u8; size as usize];
    // SAFETY: the strings are NUL-terminated; `buf` is writable for `buf.len()` bytes and the
    // kernel writes at most that many.
    let res = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = check(res)?;
    Ok(sized(buf, size, len))
}

pub fn list(path: &Path, size: u32) -> io::Result<Sized> {
    let path = c_path(path)?;
    let mut buf = vec![0u8; size as usize];
    // SAFETY: the path is NUL-terminated; `buf` is writable for `buf.len()` bytes and the kernel
    // writes at most that many.
    let res = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = check(res)?;
    Ok(sized(buf, size, len))
}

pub fn set(path: &Path, name: &CStr, value: &[u8], flags: u32) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a valid slice
    // of the given length that the kernel only reads.
    let res = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags as libc::c_int,
        )
    };
    check(res as isize).map(|_| ())
}

pub fn remove(path: &Path, name: &CStr) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: both strings are NUL-terminated and live across the call.
    let res = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    check(res as isize).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_on_a_real_file_and_errors_are_errnos() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let name = c"user.fsjail-test";
        // A filesystem without user xattrs (tmpfs before Linux 6.6) fails here, loudly: point
        // TMPDIR at one that has them.
        set(&file, name, b"value", 0).unwrap_or_else(|e| {
            panic!(
                "user xattrs on {}: {e} (set TMPDIR elsewhere)",
                dir.path().display()
            )
        });
        assert!(matches!(get(&file, name, 0).unwrap(), Sized::Count(5)));
        assert!(matches!(get(&file, name, 64).unwrap(), Sized::Bytes(v) if v == b"value"));
        assert_eq!(
            get(&file, name, 2).err().and_then(|e| e.raw_os_error()),
            Some(libc::ERANGE)
        );
        assert!(matches!(list(&file, 64).unwrap(), Sized::Bytes(v) if v == b"user.fsjail-test\0"));
        remove(&file, name).unwrap();
        assert_eq!(
            get(&file, name, 64).err().and_then(|e| e.raw_os_error()),
            Some(libc::ENODATA)
        );
    }
}
