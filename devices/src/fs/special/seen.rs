//! What the last read of each host file's record found, so that a file is not asked again
//! while it is unchanged.
//!
//! Reading a record costs a getxattr, and in a jailed worker also the readlink that names the
//! inode (see [`super::paths`]): two system calls on every reply that carries attributes, for
//! every empty file owned by the worker, nearly always to learn that there is no record. A
//! LOOKUP+GETATTR pair of such a file cost about a third more CPU than virtiofsd's because of
//! it (docs/performance.md). Any change of an extended attribute changes the file's ctime, so
//! a result stays true for as long as the host stat shows the same (device, inode, ctime): a
//! record set or removed on the host behind the worker's back is seen at the next reply. The
//! worker's own writes forget the entry explicitly as well, for filesystems whose timestamps
//! are coarser than two changes in a row.

use std::sync::Mutex;

use fuse_backend_rs::abi::fuse_abi::stat64;

use super::record::Record;
use crate::id_hash::IdMap;

/// Files remembered at most; past it the table starts over (a miss costs one read).
const MAX_FILES: usize = 1 << 16;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(st: &stat64) -> Self {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Ctime {
    sec: i64,
    nsec: i64,
}

impl Ctime {
    fn of(st: &stat64) -> Self {
        Ctime {
            sec: st.st_ctime,
            nsec: st.st_ctime_nsec,
        }
    }
}

#[derive(Default)]
pub(super) struct SeenRecords {
    files: Mutex<IdMap<FileId, (Ctime, Option<Record>)>>,
}

impl SeenRecords {
    /// What was found on the file whose host stat is `st`, if it has not changed since.
    /// `Some(None)`: it carries no record to honour.
    pub(super) fn get(&self, st: &stat64) -> Option<Option<Record>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match files.get(&FileId::of(st)) {
            Some((ctime, found)) if *ctime == Ctime::of(st) => Some(*found),
            _ => None,
        }
    }

    /// Remembers what a read of the file whose host stat is `st` found.
    pub(super) fn put(&self, st: &stat64, found: Option<Record>) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if files.len() >= MAX_FILES {
            files.clear();
        }
        files.insert(FileId::of(st), (Ctime::of(st), found));
    }

    /// Forgets the file whose host stat is `st` (its record is being written or removed).
    pub(super) fn forget(&self, st: &stat64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.remove(&FileId::of(st));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::special::record::Kind;

    fn stat(ino: u64, ctime: i64) -> stat64 {
        // SAFETY: stat64 is plain old data; all zeroes is a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_dev = 7;
        st.st_ino = ino;
        st.st_ctime = ctime;
        st
    }

    #[test]
    fn a_result_holds_until_the_ctime_moves_or_it_is_forgotten() {
        let seen = SeenRecords::default();
        let record = Record {
            kind: Kind::Char,
            perm: 0o644,
            uid: 0,
            gid: 0,
            major: 1,
            minor: 3,
        };
        assert_eq!(seen.get(&stat(1, 100)), None);
        seen.put(&stat(1, 100), None);
        seen.put(&stat(2, 100), Some(record));
        assert_eq!(seen.get(&stat(1, 100)), Some(None));
        assert_eq!(seen.get(&stat(2, 100)), Some(Some(record)));
        assert_eq!(seen.get(&stat(1, 101)), None, "a changed ctime is a miss");
        let mut other_nsec = stat(2, 100);
        other_nsec.st_ctime_nsec = 1;
        assert_eq!(seen.get(&other_nsec), None);
        seen.forget(&stat(2, 100));
        assert_eq!(seen.get(&stat(2, 100)), None);
    }
}
