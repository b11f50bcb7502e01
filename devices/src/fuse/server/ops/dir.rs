//! Directory opcodes. READDIR and READDIRPLUS write their entries straight into the guest's
//! buffer, bounded by the smaller of the guest's `size` and the room in the chain.

use std::io::{self, Write};
use std::mem::size_of;

use fuse_backend_rs::api::filesystem::{DirEntry, Entry, FileSystem};
use vm_memory::ByteValued;

use super::Request;
use crate::fuse::abi::{
    dirent_align, Dirent, Direntplus, FsyncIn, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn,
    FSYNC_FDATASYNC,
};
use crate::fuse::server::attr::entry_out;
use crate::fuse::server::{err, reply_header_for_body, Server};
use crate::transport::Writer;

const PADDING: [u8; 8] = [0; 8];

/// The smallest host getdents buffer we let the filesystem use. PassthroughFs sizes its host
/// buffer by the size we pass and drops "." and ".."; with a guest buffer smaller than those two
/// plus one real entry, the reply would be empty, which the guest reads as the end of the
/// directory. The guest's own limit is enforced by `push_record`, so a larger host buffer only
/// means entries past the limit are read and left for the next request.
const MIN_HOST_DIRENT_BUFFER: u32 = 4096;

/// Appends one record (fixed part, name, zero padding) if it fits in `limit` bytes total;
/// returns its length, or 0 when it does not fit (which ends the listing).
fn push_record(
    body: &mut Writer<'_>,
    limit: usize,
    fixed: &[u8],
    name: &[u8],
) -> io::Result<usize> {
    let unpadded = fixed.len() + name.len();
    let record = dirent_align(unpadded);
    if body.bytes_written() + record > limit {
        return Ok(0);
    }
    body.write_all(fixed)?;
    body.write_all(name)?;
    body.write_all(&PADDING[..record - unpadded])?;
    Ok(record)
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    pub(super) fn opendir(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<OpenIn>()?;
        req.expect_end()?;
        let (handle, options) = self.fs.opendir(&req.ctx, req.nodeid(), arg.flags)?;
        let out = OpenOut {
            fh: handle.unwrap_or(0),
            open_flags: options.bits(),
            backing_id: 0,
        };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn readdir(&self, req: &mut Request<'_>, plus: bool) -> io::Result<usize> {
        let arg = req.read::<ReadIn>()?;
        req.expect_end()?;
        let room = req
            .w
            .available_bytes()
            .saturating_sub(size_of::<OutHeader>());
        if arg.size > self.options.max_write || arg.size as usize > room {
            return Err(err(libc::EINVAL));
        }
        let limit = arg.size as usize;
        if limit == 0 {
            return reply_header_for_body(&mut req.w, req.header.unique, 0);
        }
        let host_size = arg.size.max(MIN_HOST_DIRENT_BUFFER);
        let mut body = req
            .w
            .split_at(size_of::<OutHeader>())
            .map_err(|_| err(libc::EINVAL))?;
        let blksize = self.options.blksize;
        if plus {
            // The listed directory's device, for the submount mark (one stat per request).
            let parent_dev = self.parent_dev(&req.ctx, req.nodeid());
            self.fs.readdirplus(
                &req.ctx,
                req.nodeid(),
                arg.fh,
                host_size,
                arg.offset,
                &mut |d: DirEntry, mut e: Entry| {
                    Self::mark_submount(parent_dev, &mut e);
                    let fixed = Direntplus {
                        entry_out: entry_out(&e, blksize),
                        dirent: Dirent {
                            ino: d.ino,
                            off: d.offset,
                            namelen: d.name.len() as u32,
                            type_: d.type_,
                        },
                    };
                    push_record(&mut body, limit, fixed.as_slice(), d.name)
                },
            )?;
        } else {
            self.fs.readdir_host_ino(
                &req.ctx,
                req.nodeid(),
                arg.fh,
                host_size,
                arg.offset,
                &mut |d: DirEntry| {
                    let fixed = Dirent {
                        ino: d.ino,
                        off: d.offset,
                        namelen: d.name.len() as u32,
                        type_: d.type_,
                    };
                    push_record(&mut body, limit, fixed.as_slice(), d.name)
                },
            )?;
        }
        reply_header_for_body(&mut req.w, req.header.unique, body.bytes_written())
    }

    pub(super) fn releasedir(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<ReleaseIn>()?;
        req.expect_end()?;
        self.fs
            .releasedir(&req.ctx, req.nodeid(), arg.flags, arg.fh)?;
        req.ok(&[])
    }

    /// FSYNCDIR reaches the host as fsync (or fdatasync) on the directory.
    pub(super) fn fsyncdir(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<FsyncIn>()?;
        req.expect_end()?;
        let datasync = arg.fsync_flags & FSYNC_FDATASYNC != 0;
        self.fs.fsyncdir(&req.ctx, req.nodeid(), datasync, arg.fh)?;
        req.ok(&[])
    }
}
