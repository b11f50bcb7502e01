//! Whether a node still lies beneath the share, for the calls Landlock does not cover.
//!
//! The worker holds an O_PATH descriptor per node, and a descriptor follows its file wherever a
//! process on the host moves it, out of the share included. The jail's Landlock ruleset refuses
//! opens, creations, removals, links, renames and truncation outside the share, but the kernel
//! has no Landlock right for chmod, chown, utimes or xattrs. Before those calls the share
//! policy asks this module.
//!
//! The check: the node's path as the kernel names it (`readlink` of its `/proc/self/fd` entry,
//! relative to the worker's root, which in a jailed worker is the share) must lead, from that
//! root, to the node itself (same device and inode). A node moved out of the share is named by
//! a path that is not below the worker's root (the kernel prints it from the filesystem's
//! root), and that path leads to nothing, or to something else, inside the share. A node that
//! was unlinked (no links left) is reachable by no path at all and passes: changing its
//! attributes changes nothing anyone can find.
//!
//! What remains: a host move between this check and the call it guards (microseconds, and the
//! guest cannot cause the move), and a hard link the host made from outside the share to a file
//! inside (the inode is the same file; nothing confines that).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuse_backend_rs::abi::fuse_abi::stat64;

/// Ok when `path`, resolved from the worker's root without following a final symlink, is the
/// file `node` describes (its `fstat`), or when that file has no links left; ENOENT otherwise.
pub fn check(path: &Path, node: &stat64) -> io::Result<()> {
    if node.st_nlink == 0 {
        return Ok(());
    }
    let gone = || Err(io::Error::from_raw_os_error(libc::ENOENT));
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return gone();
    };
    // SAFETY: lstat writes only into `st`, a plain C struct for which zeroes are valid.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and lives across the call; `st` is writable.
    if unsafe { libc::lstat64(c.as_ptr(), &mut st) } != 0 {
        return gone();
    }
    if st.st_dev == node.st_dev && st.st_ino == node.st_ino {
        Ok(())
    } else {
        gone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn stat_of(p: &Path) -> stat64 {
        let md = std::fs::symlink_metadata(p).unwrap();
        // SAFETY: stat64 is a plain C struct for which zeroes are valid.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_dev = md.dev();
        st.st_ino = md.ino();
        st.st_nlink = md.nlink();
        st
    }

    #[test]
    fn same_file_passes_and_anything_else_is_enoent() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let st = stat_of(&a);
        check(&a, &st).unwrap();
        let enoent = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        assert_eq!(enoent(check(&b, &st)), Some(libc::ENOENT));
        assert_eq!(
            enoent(check(&d.path().join("gone"), &st)),
            Some(libc::ENOENT)
        );
        // A symlink to the file is not the file.
        std::os::unix::fs::symlink(&a, d.path().join("l")).unwrap();
        assert_eq!(enoent(check(&d.path().join("l"), &st)), Some(libc::ENOENT));
        // No links left: passes whatever the path.
        let mut unlinked = st;
        unlinked.st_nlink = 0;
        check(&d.path().join("gone (deleted)"), &unlinked).unwrap();
    }
}
