//! Naming an inode by a path inside a jail, for reading and writing its record.
//!
//! Outside a jail the passthrough reaches an inode's xattrs through its `/proc/self/fd/N`
//! link, which names the inode whatever happened to its names since. Inside the jail there is
//! no `/proc`, and the only name the passthrough can give is the path its descriptor was opened
//! by (`PassthroughFs::readlinkat_proc_file`). That path follows renames, but once that name
//! is unlinked it reads `... (deleted)` even when the inode lives on under another hard link
//! (`mknod a; ln a b; rm a`). So we also remember, per inode that may carry a record, the last
//! few (directory, name) pairs the guest reached it by, and use the first that still names the
//! same inode (same st_dev and st_ino) when the descriptor's own path is gone.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use fuse_backend_rs::abi::fuse_abi::stat64;

use crate::fs::policy::InodePathFn;
use crate::id_hash::{id_map, IdMap};

/// Remembered names at most; past it the table starts over (a miss only costs the record of
/// an inode whose first name was unlinked, until the guest looks it up again).
const MAX_NAMES: usize = 1 << 16;

/// Names remembered per inode (its most recent ones).
const NAMES_PER_INODE: usize = 4;

/// What the kernel appends to the link of a descriptor whose name was unlinked.
const DELETED: &[u8] = b" (deleted)";

pub(super) struct Paths {
    resolve: InodePathFn,
    names: Mutex<IdMap<u64, Vec<(u64, CString)>>>,
}

impl Paths {
    pub(super) fn new(resolve: InodePathFn) -> Self {
        Paths {
            resolve,
            names: Mutex::new(id_map()),
        }
    }

    /// Remembers that `inode` was reached as `name` in directory `parent`.
    pub(super) fn note(&self, inode: u64, parent: u64, name: &[u8]) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        // The common case, the same name looked up again, changes nothing and allocates nothing.
        let newest = names.get(&inode).and_then(|known| known.first());
        if newest.is_some_and(|(p, n)| *p == parent && n.as_bytes() == name) {
            return;
        }
        let Ok(name) = CString::new(name) else {
            return;
        };
        if names.len() >= MAX_NAMES && !names.contains_key(&inode) {
            names.clear();
        }
        let known = names.entry(inode).or_default();
        known.retain(|(p, n)| !(*p == parent && *n == name));
        known.insert(0, (parent, name));
        known.truncate(NAMES_PER_INODE);
    }

    /// A path, valid from the worker's root, that names the inode whose host stat is `st`.
    pub(super) fn path(&self, inode: u64, st: &stat64) -> io::Result<PathBuf> {
        let own = (self.resolve)(inode)?;
        if !own.as_os_str().as_bytes().ends_with(DELETED) {
            return Ok(own);
        }
        let known = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&inode)
            .cloned()
            .unwrap_or_default();
        for (parent, name) in known {
            let Ok(dir) = (self.resolve)(parent) else {
                continue;
            };
            if dir.as_os_str().as_bytes().ends_with(DELETED) {
                continue;
            }
            let candidate = dir.join(OsStr::from_bytes(name.as_bytes()));
            // The name may have been replaced since: only the same inode will do. (A rename
            // racing with the use of the path can still swap it; the record read or written
            // is then another file of the same share, which only the guest itself can cause.)
            match std::fs::symlink_metadata(&candidate) {
                Ok(md) if md.ino() == st.st_ino && md.dev() == st.st_dev => return Ok(candidate),
                _ => continue,
            }
        }
        Err(io::Error::from_raw_os_error(libc::ENOENT))
    }
}
