//! Which file handles are open, on which node, and whether for writing: what SETUPMAPPING's
//! "WRITE only on a handle opened for writing" is checked against.
//!
//! The filesystem cannot answer this itself: `PassthroughFs::setupmapping` ignores the handle
//! and reopens the inode (read-write when WRITE is asked), and Linux guests send `fh = -1`
//! ([`ANY_HANDLE`]) because a DAX range belongs to the inode, not to one open file. So the
//! server records every OPEN/CREATE/TMPFILE reply and RELEASE here, and a mapping is allowed
//! when the named handle, or for `fh = -1` some handle, is open on that node with the access
//! the mapping needs. A Linux guest only maps a file it has open (an mmap keeps its file open
//! until munmap), so this refuses nothing a real guest does.

use std::collections::HashMap;
use std::sync::Mutex;

use super::validate::Access;

/// The handle Linux guests put in SETUPMAPPING: "whichever open file of this inode".
pub const ANY_HANDLE: u64 = u64::MAX;

/// Why the handle check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("handle {fh} is not open on node {nodeid}")]
    NotOpen { nodeid: u64, fh: u64 },
    #[error("no handle is open on node {0}")]
    NoneOpen(u64),
    #[error("writable mapping of node {nodeid} through a handle not open for writing")]
    NotWritable { nodeid: u64 },
}

impl HandleError {
    pub fn errno(&self) -> i32 {
        match self {
            HandleError::NotOpen { .. } | HandleError::NoneOpen(_) => libc::EBADF,
            // mmap(2)'s answer to PROT_WRITE on a read-only descriptor.
            HandleError::NotWritable { .. } => libc::EACCES,
        }
    }
}

#[derive(Default)]
struct Counts {
    open: u64,
    writable: u64,
}

#[derive(Default)]
struct Inner {
    /// fh -> (nodeid, opened for writing)
    handles: HashMap<u64, (u64, bool)>,
    /// nodeid -> how many handles are open, and how many of them for writing
    nodes: HashMap<u64, Counts>,
}

/// The registry of open file handles.
#[derive(Default)]
pub struct OpenHandles {
    inner: Mutex<Inner>,
}

/// Whether `open(2)` flags give write access.
pub fn opened_for_writing(flags: u32) -> bool {
    let mode = flags & libc::O_ACCMODE as u32;
    mode == libc::O_WRONLY as u32 || mode == libc::O_RDWR as u32
}

impl OpenHandles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps are consistent after every statement that panics can interrupt.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an open handle. A handle number the filesystem reuses replaces the old record.
    pub fn opened(&self, nodeid: u64, fh: u64, flags: u32) {
        let writable = opened_for_writing(flags);
        let mut inner = self.lock();
        if let Some((old_node, old_writable)) = inner.handles.insert(fh, (nodeid, writable)) {
            forget(&mut inner.nodes, old_node, old_writable);
        }
        let counts = inner.nodes.entry(nodeid).or_default();
        counts.open += 1;
        counts.writable += u64::from(writable);
    }

    /// Forgets a released handle; unknown handles are ignored.
    pub fn released(&self, fh: u64) {
        let mut inner = self.lock();
        if let Some((nodeid, writable)) = inner.handles.remove(&fh) {
            forget(&mut inner.nodes, nodeid, writable);
        }
    }

    /// Forgets every handle (the filesystem was destroyed).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.handles.clear();
        inner.nodes.clear();
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.lock().handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that `fh` (or, for [`ANY_HANDLE`], some handle) is open on `nodeid` with `access`.
    pub fn check(&self, nodeid: u64, fh: u64, access: Access) -> Result<(), HandleError> {
        let inner = self.lock();
        let writable = if fh == ANY_HANDLE {
            let counts = inner
                .nodes
                .get(&nodeid)
                .ok_or(HandleError::NoneOpen(nodeid))?;
            counts.writable > 0
        } else {
            match inner.handles.get(&fh) {
                Some(&(node, writable)) if node == nodeid => writable,
                _ => return Err(HandleError::NotOpen { nodeid, fh }),
            }
        };
        if access.writable() && !writable {
            return Err(HandleError::NotWritable { nodeid });
        }
        Ok(())
    }
}

fn forget(nodes: &mut HashMap<u64, Counts>, nodeid: u64, writable: bool) {
    if let Some(counts) = nodes.get_mut(&nodeid) {
        counts.open = counts.open.saturating_sub(1);
        counts.writable = counts.writable.saturating_sub(u64::from(writable));
        if counts.open == 0 {
            nodes.remove(&nodeid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RO: u32 = libc::O_RDONLY as u32;
    const RW: u32 = libc::O_RDWR as u32;
    const WO: u32 = libc::O_WRONLY as u32;

    #[test]
    fn named_handles() {
        let h = OpenHandles::default();
        h.opened(5, 10, RO);
        h.opened(5, 11, RW | libc::O_APPEND as u32);
        assert_eq!(h.check(5, 10, Access::Read), Ok(()));
        assert_eq!(
            h.check(5, 10, Access::ReadWrite),
            Err(HandleError::NotWritable { nodeid: 5 })
        );
        assert_eq!(h.check(5, 11, Access::ReadWrite), Ok(()));
        // A handle of another node, and an unknown one.
        assert_eq!(
            h.check(6, 10, Access::Read),
            Err(HandleError::NotOpen { nodeid: 6, fh: 10 })
        );
        assert_eq!(
            h.check(5, 12, Access::Read),
            Err(HandleError::NotOpen { nodeid: 5, fh: 12 })
        );
        h.released(11);
        assert_eq!(
            h.check(5, 11, Access::Read),
            Err(HandleError::NotOpen { nodeid: 5, fh: 11 })
        );
        assert_eq!(HandleError::NotWritable { nodeid: 5 }.errno(), libc::EACCES);
        assert_eq!(HandleError::NoneOpen(5).errno(), libc::EBADF);
    }

    #[test]
    fn any_handle_follows_the_node() {
        let h = OpenHandles::default();
        assert_eq!(
            h.check(5, ANY_HANDLE, Access::Read),
            Err(HandleError::NoneOpen(5))
        );
        h.opened(5, 1, RO);
        assert_eq!(h.check(5, ANY_HANDLE, Access::Read), Ok(()));
        assert_eq!(
            h.check(5, ANY_HANDLE, Access::ReadWrite),
            Err(HandleError::NotWritable { nodeid: 5 })
        );
        h.opened(5, 2, WO);
        assert_eq!(h.check(5, ANY_HANDLE, Access::ReadWrite), Ok(()));
        h.released(2);
        assert_eq!(
            h.check(5, ANY_HANDLE, Access::ReadWrite),
            Err(HandleError::NotWritable { nodeid: 5 })
        );
        h.released(1);
        h.released(1);
        assert_eq!(
            h.check(5, ANY_HANDLE, Access::Read),
            Err(HandleError::NoneOpen(5))
        );
        assert!(h.is_empty());
        // A reused handle number moves to its new node.
        h.opened(5, 3, RW);
        h.opened(6, 3, RO);
        assert_eq!(
            h.check(5, ANY_HANDLE, Access::Read),
            Err(HandleError::NoneOpen(5))
        );
        assert_eq!(h.len(), 1);
        h.clear();
        assert!(h.is_empty());
    }
}
