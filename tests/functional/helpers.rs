//! Helpers shared by the functional tests: errno checks, host-side views, xattrs.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::Kind;
use guest_driver::abi::Attr;
use guest_driver::{Error, Session};

// ---------------------------------------------------------------------------------------------
// helpers

pub(crate) const RDWR: u32 = libc::O_RDWR as u32;
pub(crate) const RDONLY: u32 = libc::O_RDONLY as u32;
pub(crate) const REG: u32 = libc::S_IFREG;

/// The errno of a FUSE error reply; panics on success or on a transport/protocol failure.
#[track_caller]
pub(crate) fn errno<T: std::fmt::Debug>(r: guest_driver::Result<T>) -> i32 {
    match r {
        Err(Error::Errno(e)) => e,
        Err(e) => panic!("expected an errno reply, got a failure: {e}"),
        Ok(v) => panic!("expected an errno reply, got success: {v:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_errno<T: std::fmt::Debug>(r: guest_driver::Result<T>, want: i32, what: &str) {
    let got = errno(r);
    assert_eq!(
        got,
        want,
        "{what}: errno {got} ({}), want {want} ({})",
        std::io::Error::from_raw_os_error(got),
        std::io::Error::from_raw_os_error(want)
    );
}

pub(crate) fn lmeta(p: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

/// The reply's attributes equal the host's. atime is left out: the test's own host-side reads
/// move it; the time tests check it explicitly.
#[track_caller]
pub(crate) fn assert_attr_eq(a: &Attr, md: &fs::Metadata, what: &str) {
    assert_eq!(a.ino, md.ino(), "{what}: ino");
    assert_eq!(a.mode, md.mode(), "{what}: mode");
    assert_eq!(a.nlink as u64, md.nlink(), "{what}: nlink");
    assert_eq!(a.uid, md.uid(), "{what}: uid");
    assert_eq!(a.gid, md.gid(), "{what}: gid");
    assert_eq!(a.size, md.size(), "{what}: size");
    assert_eq!(a.blocks, md.blocks(), "{what}: blocks");
    assert_eq!(a.rdev as u64, md.rdev(), "{what}: rdev");
    assert_eq!(a.mtime as i64, md.mtime(), "{what}: mtime");
    assert_eq!(a.mtimensec as i64, md.mtime_nsec(), "{what}: mtime nsec");
}

/// Names in a directory on the host, sorted.
pub(crate) fn host_names(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub(crate) fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// lgetxattr on the host: `None` when the attribute does not exist.
pub(crate) fn host_getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = cpath(p);
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ENODATA), "host getxattr: {e}");
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

pub(crate) fn host_setxattr(p: &Path, name: &str, value: &[u8]) {
    let path = cpath(p);
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value buffer of the length passed.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "host setxattr: {}", std::io::Error::last_os_error());
}

pub(crate) fn host_listxattr(p: &Path) -> BTreeSet<Vec<u8>> {
    let path = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: a valid NUL-terminated path and a buffer of the length passed.
    let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        n >= 0,
        "host listxattr: {}",
        std::io::Error::last_os_error()
    );
    split_names(&buf[..n as usize])
}

pub(crate) fn split_names(list: &[u8]) -> BTreeSet<Vec<u8>> {
    list.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The mode bits a create-type request with `mode` and `umask` leaves on the host. fsjail
/// applies the request's umask (PassthroughFs does); virtiofsd applies it only with POSIX ACLs
/// and otherwise leaves it to the guest kernel, which has masked `mode` already unless it was
/// granted DONT_MASK. For a Linux guest both give the same result.
pub(crate) fn masked(kind: Kind, mode: u32, umask: u32) -> u32 {
    match kind {
        Kind::Fsjail => mode & !umask,
        Kind::Peer => mode,
    }
}

/// Creates `name` in `parent` for read/write with `mode`, umask 0.
pub(crate) fn create_rw(s: &Session, parent: u64, name: &str, mode: u32) -> (u64, u64) {
    let (e, o) = s.create(parent, name, REG | mode, RDWR, 0).unwrap();
    (e.nodeid, o.fh)
}
