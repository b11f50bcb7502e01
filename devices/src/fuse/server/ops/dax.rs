//! SETUPMAPPING and REMOVEMAPPING (DAX). The pure check runs before the filesystem is called;
//! the filesystem (through the share policy, which refuses WRITE on a read-only share) opens
//! the file and hands its fd to our `FsCacheReqHandler`, where the handle and the fd are
//! checked and the request goes to the window owner. With DAX off both opcodes answer ENOSYS, as if the device had no window.

use std::io;
use std::mem::size_of;

use fuse_backend_rs::abi::virtio_fs::RemovemappingOne as FsRemovemappingOne;
use fuse_backend_rs::api::filesystem::FileSystem;
use log::debug;

use super::Request;
use crate::dax::channel::{RemoveHandler, SetupHandler};
use crate::dax::{check_map, check_range, MapRequest};
use crate::fuse::abi::{RemovemappingIn, RemovemappingOne, SetupmappingIn};
use crate::fuse::server::{err, Server};

/// Most ranges one REMOVEMAPPING may carry: what Linux puts in one page
/// (FUSE_REMOVEMAPPING_MAX_ENTRY = PAGE_SIZE / sizeof(fuse_removemapping_one)).
pub const MAX_REMOVEMAPPING_ENTRIES: usize = 4096 / size_of::<RemovemappingOne>();

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    /// Records a handle the guest opened (only with DAX on: nothing else needs it).
    pub(super) fn note_open(&self, nodeid: u64, handle: Option<u64>, flags: u32) {
        if let (Some(_), Some(fh)) = (&self.dax, handle) {
            self.handles.opened(nodeid, fh, flags);
        }
    }

    /// Forgets a released handle.
    pub(super) fn note_release(&self, fh: u64) {
        if self.dax.is_some() {
            self.handles.released(fh);
        }
    }

    pub(super) fn setupmapping(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let dax = self.dax.as_ref().ok_or_else(|| err(libc::ENOSYS))?.clone();
        let arg = req.read::<SetupmappingIn>()?;
        req.expect_end()?;
        let nodeid = req.nodeid();
        let map = MapRequest {
            foffset: arg.foffset,
            moffset: arg.moffset,
            len: arg.len,
            flags: arg.flags,
        };
        check_map(dax.window(), &map).map_err(|e| {
            debug!("SETUPMAPPING node {nodeid}: {e}");
            err(e.errno())
        })?;
        // The policy (EROFS for WRITE on a read-only share) runs inside the filesystem call;
        // the handle and fd checks run in the handler it calls back.
        let mut handler = SetupHandler::new(dax, self.handles.clone(), nodeid, arg.fh, map);
        self.fs.setupmapping(
            &req.ctx,
            nodeid,
            arg.fh,
            arg.foffset,
            arg.len,
            arg.flags,
            arg.moffset,
            &mut handler,
        )?;
        if !handler.done() {
            // A filesystem that says yes without mapping anything would leave the guest
            // reading an empty window.
            return Err(err(libc::EIO));
        }
        req.ok(&[])
    }

    pub(super) fn removemapping(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let dax = self.dax.as_ref().ok_or_else(|| err(libc::ENOSYS))?.clone();
        let head = req.read::<RemovemappingIn>()?;
        let count = head.count as usize;
        // The count must match the bytes actually sent, and stay within what Linux sends.
        if count == 0
            || count > MAX_REMOVEMAPPING_ENTRIES
            || req.r.available_bytes() != count * size_of::<RemovemappingOne>()
        {
            return Err(err(libc::EINVAL));
        }
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let one = req.read::<RemovemappingOne>()?;
            check_range(dax.window(), one.moffset, one.len).map_err(|e| {
                debug!("REMOVEMAPPING: {e}");
                err(e.errno())
            })?;
            ranges.push((one.moffset, one.len));
        }
        req.expect_end()?;
        let requests = ranges
            .iter()
            .map(|&(moffset, len)| FsRemovemappingOne { moffset, len })
            .collect();
        let mut handler = RemoveHandler::new(dax, ranges);
        self.fs
            .removemapping(&req.ctx, req.nodeid(), requests, &mut handler)?;
        if !handler.done() {
            return Err(err(libc::EIO));
        }
        req.ok(&[])
    }
}

#[cfg(test)]
mod tests {
    use crate::dax::settings::{SettingsError, DAX_BLOCK};
    use crate::fs::{new_passthrough, ShareOptions, SharePolicy};
    use crate::fuse::server::{Server, ServerOptions};

    fn options(dax_window: u64, blksize: u32) -> ServerOptions {
        ServerOptions {
            dax_window,
            blksize,
            host_page_size: 16384,
            ..ServerOptions::default()
        }
    }

    #[test]
    fn options_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let fs = || {
            SharePolicy::new(
                new_passthrough(&ShareOptions::new(dir.path())).unwrap(),
                false,
            )
        };

        let s = Server::try_new(fs(), options(4 * DAX_BLOCK, 1024), None).unwrap();
        let dax = s.dax().unwrap();
        assert_eq!(
            (dax.window().len(), dax.window().map_alignment()),
            (4 * DAX_BLOCK, 14)
        );
        assert!(Server::try_new(fs(), options(0, 4096), None)
            .unwrap()
            .dax()
            .is_none());

        let bad = [
            (
                options(DAX_BLOCK + 16384, 4096),
                SettingsError::WindowNotBlockMultiple(DAX_BLOCK + 16384),
            ),
            (options(DAX_BLOCK, 3000), SettingsError::BadBlksize(3000)),
            (
                ServerOptions {
                    host_page_size: 5000,
                    ..options(DAX_BLOCK, 4096)
                },
                SettingsError::BadPageSize(5000),
            ),
        ];
        for (o, want) in bad {
            assert_eq!(o.check(), Err(want.clone()));
            match Server::try_new(fs(), o.clone(), None) {
                Ok(_) => panic!("{o:?} accepted"),
                Err(e) => assert_eq!(e, want),
            }
        }
    }
}
