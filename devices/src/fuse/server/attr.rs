//! Conversions from host `stat`/`statvfs` results to FUSE replies.
//!
//! Every reply that carries attributes goes through [`attr_from_stat`], which clamps
//! `st_blksize` to the share's guest page size: the guest turns st_blksize into i_blkbits, and a
//! host block size larger than the guest page (16K host, 4K guest) trips a WARN in the guest's
//! DAX writeback.

use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::Entry;

use crate::fuse::abi::{Attr, AttrOut, EntryOut, Kstatfs};

/// Host attributes in FUSE's layout, with st_blksize clamped to `blksize_cap`.
pub fn attr_from_stat(st: &stat64, attr_flags: u32, blksize_cap: u32) -> Attr {
    let host_blksize = u32::try_from(st.st_blksize).unwrap_or(u32::MAX);
    Attr {
        ino: st.st_ino,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: st.st_atime as u64,
        mtime: st.st_mtime as u64,
        ctime: st.st_ctime as u64,
        atimensec: st.st_atime_nsec as u32,
        mtimensec: st.st_mtime_nsec as u32,
        ctimensec: st.st_ctime_nsec as u32,
        mode: st.st_mode,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: host_blksize.min(blksize_cap),
        flags: attr_flags,
    }
}

pub fn entry_out(entry: &Entry, blksize_cap: u32) -> EntryOut {
    EntryOut {
        nodeid: entry.inode,
        generation: entry.generation,
        entry_valid: entry.entry_timeout.as_secs(),
        attr_valid: entry.attr_timeout.as_secs(),
        entry_valid_nsec: entry.entry_timeout.subsec_nanos(),
        attr_valid_nsec: entry.attr_timeout.subsec_nanos(),
        attr: attr_from_stat(&entry.attr, entry.attr_flags, blksize_cap),
    }
}

pub fn attr_out(st: &stat64, timeout: Duration, blksize_cap: u32) -> AttrOut {
    AttrOut {
        attr_valid: timeout.as_secs(),
        attr_valid_nsec: timeout.subsec_nanos(),
        dummy: 0,
        attr: attr_from_stat(st, 0, blksize_cap),
    }
}

pub fn kstatfs(st: &libc::statvfs64) -> Kstatfs {
    Kstatfs {
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        files: st.f_files,
        ffree: st.f_ffree,
        bsize: st.f_bsize as u32,
        namelen: st.f_namemax as u32,
        frsize: st.f_frsize as u32,
        padding: 0,
        spare: [0; 6],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_stat(blksize: i64) -> stat64 {
        // SAFETY: stat64 is a plain C struct of integers; all-zero is a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_blksize = blksize as _;
        st.st_mode = libc::S_IFREG | 0o644;
        st.st_nlink = 1;
        st
    }

    #[test]
    fn blksize_is_clamped_to_the_guest_page() {
        let rows = [
            // (host st_blksize, cap, reported)
            (16384, 4096, 4096),
            (65536, 4096, 4096),
            (4096, 4096, 4096),
            (512, 4096, 512),
            (16384, 1024, 1024),
            (i64::MAX, 4096, 4096),
        ];
        for (host, cap, want) in rows {
            let attr = attr_from_stat(&synthetic_stat(host), 0, cap);
            assert_eq!(attr.blksize, want, "host {host} cap {cap}");
        }
        // The default cap is the Linux guest's 4K page: a 16K host reports 4096.
        let default_cap = crate::fuse::server::ServerOptions::default().blksize;
        assert_eq!(
            attr_from_stat(&synthetic_stat(16384), 0, default_cap).blksize,
            4096
        );
    }
}
