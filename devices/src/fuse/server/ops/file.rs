//! Opcodes on open files: open/create, data transfer, sync, locks, ioctl.

use std::io;
use std::io::Read;
use std::mem::size_of;

use fuse_backend_rs::abi::fuse_abi::CreateIn as FsCreateIn;
use fuse_backend_rs::api::filesystem::FileLock as FsFileLock;
use fuse_backend_rs::api::filesystem::{FileSystem, IoctlData};
use vm_memory::ByteValued;

use super::{name_err, NameBuf, Request};
use crate::fuse::abi::{
    CopyFileRangeIn, CreateIn, FallocateIn, FileLock, FlushIn, FsyncIn, IoctlIn, IoctlOut, LkIn,
    LkOut, LseekIn, LseekOut, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn, SyncfsIn, WriteIn,
    WriteOut, FSYNC_FDATASYNC, LK_FLOCK, READ_LOCKOWNER, RELEASE_FLOCK_UNLOCK, RELEASE_FLUSH,
    WRITE_CACHE, WRITE_LOCKOWNER,
};
use crate::fuse::server::attr::entry_out;
use crate::fuse::server::names::{single_entry_name, split_cstr};
use crate::fuse::server::{err, reply_header_for_body, Server};

/// FUSE_IOCTL_UNRESTRICTED: the guest asks the server to retry with iovecs it names, which
/// would make us read and write guest memory the request did not carry. Refused.
const IOCTL_UNRESTRICTED: u32 = 1 << 1;

/// File offsets travel as u64 but the host takes off_t: anything past i64::MAX is invalid.
fn check_offset(offset: u64) -> io::Result<u64> {
    i64::try_from(offset)
        .map(|_| offset)
        .map_err(|_| err(libc::EINVAL))
}

fn to_fs_lock(lk: &FileLock) -> io::Result<FsFileLock> {
    if !lk.is_valid() {
        return Err(err(libc::EINVAL));
    }
    Ok(FsFileLock {
        start: lk.start,
        end: lk.end,
        lock_type: lk.type_,
        pid: lk.pid,
    })
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    pub(super) fn open(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<OpenIn>()?;
        req.expect_end()?;
        let (handle, options, _) =
            self.fs
                .open(&req.ctx, req.nodeid(), arg.flags, arg.open_flags)?;
        self.note_open(req.nodeid(), handle, arg.flags);
        let out = OpenOut {
            fh: handle.unwrap_or(0),
            open_flags: options.bits(),
            backing_id: 0,
        };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn create(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<CreateIn>()?;
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        let name = single_entry_name(body).map_err(name_err)?;
        let args = FsCreateIn {
            flags: arg.flags,
            mode: arg.mode,
            umask: arg.umask,
            fuse_flags: arg.open_flags,
        };
        let (entry, handle, options, _) = self.fs.create(&req.ctx, req.nodeid(), name, args)?;
        self.note_open(entry.inode, handle, arg.flags);
        let entry = entry_out(&entry, self.options.blksize);
        let open = OpenOut {
            fh: handle.unwrap_or(0),
            open_flags: options.bits(),
            backing_id: 0,
        };
        req.ok(&[entry.as_slice(), open.as_slice()])
    }

    /// O_TMPFILE (emulated by the adapter: see `FuseAdapter::tmpfile`).
    pub(super) fn tmpfile(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<CreateIn>()?;
        // Linux sends the new dentry's name ("/") after the struct, as for CREATE. It names
        // nothing and is ignored, but it must be one NUL-terminated string ending the request.
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        if !body.is_empty() && !split_cstr(body).map_err(name_err)?.1.is_empty() {
            return Err(err(libc::EINVAL));
        }
        let args = FsCreateIn {
            flags: arg.flags,
            mode: arg.mode,
            umask: arg.umask,
            fuse_flags: arg.open_flags,
        };
        let (entry, handle, options) = self.fs.tmpfile(&req.ctx, req.nodeid(), args)?;
        self.note_open(entry.inode, handle, arg.flags);
        let entry = entry_out(&entry, self.options.blksize);
        let open = OpenOut {
            fh: handle.unwrap_or(0),
            open_flags: options.bits(),
            backing_id: 0,
        };
        req.ok(&[entry.as_slice(), open.as_slice()])
    }

    pub(super) fn read(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<ReadIn>()?;
        req.expect_end()?;
        check_offset(arg.offset)?;
        let room = req
            .w
            .available_bytes()
            .saturating_sub(size_of::<OutHeader>());
        if arg.size > self.options.max_write || arg.size as usize > room {
            return Err(err(libc::EINVAL));
        }
        let mut body = req
            .w
            .split_at(size_of::<OutHeader>())
            .map_err(|_| err(libc::EINVAL))?;
        let lock_owner = (arg.read_flags & READ_LOCKOWNER != 0).then_some(arg.lock_owner);
        self.fs.read(
            &req.ctx,
            req.nodeid(),
            arg.fh,
            &mut body,
            arg.size,
            arg.offset,
            lock_owner,
            arg.flags,
        )?;
        reply_header_for_body(&mut req.w, req.header.unique, body.bytes_written())
    }

    pub(super) fn write(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<WriteIn>()?;
        check_offset(arg.offset)?;
        if arg.size > self.options.max_write || arg.size as usize != req.r.available_bytes() {
            return Err(err(libc::EINVAL));
        }
        let lock_owner = (arg.write_flags & WRITE_LOCKOWNER != 0).then_some(arg.lock_owner);
        let written = self.fs.write(
            &req.ctx,
            req.nodeid(),
            arg.fh,
            &mut req.r,
            arg.size,
            arg.offset,
            lock_owner,
            arg.write_flags & WRITE_CACHE != 0,
            arg.flags,
            arg.write_flags,
        )?;
        let out = WriteOut {
            size: u32::try_from(written).map_err(|_| err(libc::EIO))?,
            padding: 0,
        };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn release(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<ReleaseIn>()?;
        req.expect_end()?;
        let flock_release = arg.release_flags & RELEASE_FLOCK_UNLOCK != 0;
        let released = self.fs.release(
            &req.ctx,
            req.nodeid(),
            arg.flags,
            arg.fh,
            arg.release_flags & RELEASE_FLUSH != 0,
            flock_release,
            flock_release.then_some(arg.lock_owner),
        );
        // Forgotten even if the release failed: DAX then refuses more, never less.
        self.note_release(arg.fh);
        released?;
        req.ok(&[])
    }

    pub(super) fn flush(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<FlushIn>()?;
        req.expect_end()?;
        self.fs
            .flush(&req.ctx, req.nodeid(), arg.fh, arg.lock_owner)?;
        req.ok(&[])
    }

    /// FSYNC reaches the host as fsync, or fdatasync when the guest asked for data only.
    pub(super) fn fsync(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<FsyncIn>()?;
        req.expect_end()?;
        let datasync = arg.fsync_flags & FSYNC_FDATASYNC != 0;
        self.fs.fsync(&req.ctx, req.nodeid(), datasync, arg.fh)?;
        req.ok(&[])
    }

    pub(super) fn fallocate(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<FallocateIn>()?;
        req.expect_end()?;
        check_offset(arg.offset)?;
        check_offset(arg.length)?;
        self.fs.fallocate(
            &req.ctx,
            req.nodeid(),
            arg.fh,
            arg.mode,
            arg.offset,
            arg.length,
        )?;
        req.ok(&[])
    }

    pub(super) fn lseek(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<LseekIn>()?;
        req.expect_end()?;
        let known = [
            libc::SEEK_SET,
            libc::SEEK_CUR,
            libc::SEEK_END,
            libc::SEEK_DATA,
            libc::SEEK_HOLE,
        ];
        if !known.iter().any(|w| *w as u32 == arg.whence) {
            return Err(err(libc::EINVAL));
        }
        let offset = self
            .fs
            .lseek(&req.ctx, req.nodeid(), arg.fh, arg.offset, arg.whence)?;
        let out = LseekOut { offset };
        req.ok(&[out.as_slice()])
    }

    /// Copies at most `max_write` bytes per request (a short count is what
    /// copy_file_range(2) allows; the guest loops).
    pub(super) fn copy_file_range(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<CopyFileRangeIn>()?;
        req.expect_end()?;
        if arg.flags != 0 {
            return Err(err(libc::EINVAL));
        }
        check_offset(arg.off_in)?;
        check_offset(arg.off_out)?;
        let len = arg.len.min(u64::from(self.options.max_write)) as u32;
        let written = self.fs.copy_file_range(
            &req.ctx,
            req.nodeid(),
            arg.fh_in,
            arg.off_in,
            arg.nodeid_out,
            arg.fh_out,
            arg.off_out,
            len,
        )?;
        let out = WriteOut {
            size: written,
            padding: 0,
        };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn getlk(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<LkIn>()?;
        req.expect_end()?;
        let lock = to_fs_lock(&arg.lk)?;
        let got = self.fs.getlk(
            &req.ctx,
            req.nodeid(),
            arg.fh,
            arg.owner,
            lock,
            arg.lk_flags,
        )?;
        let out = LkOut {
            lk: FileLock {
                start: got.start,
                end: got.end,
                type_: got.lock_type,
                pid: got.pid,
            },
        };
        req.ok(&[out.as_slice()])
    }

    pub(super) fn setlk(&self, req: &mut Request<'_>, wait: bool) -> io::Result<usize> {
        let arg = req.read::<LkIn>()?;
        req.expect_end()?;
        let lock = to_fs_lock(&arg.lk)?;
        let flags = arg.lk_flags & LK_FLOCK;
        if wait {
            self.fs
                .setlkw(&req.ctx, req.nodeid(), arg.fh, arg.owner, lock, flags)?;
        } else {
            self.fs
                .setlk(&req.ctx, req.nodeid(), arg.fh, arg.owner, lock, flags)?;
        }
        req.ok(&[])
    }

    /// IOCTL: decoded and checked here, allowed or refused by the share's policy (which owns
    /// the allowlist: see `SharePolicy::ioctl`).
    pub(super) fn ioctl(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<IoctlIn>()?;
        if arg.flags & IOCTL_UNRESTRICTED != 0 || arg.in_size as usize != req.r.available_bytes() {
            return Err(err(libc::EINVAL));
        }
        if arg.out_size > self.options.max_write {
            return Err(err(libc::EINVAL));
        }
        let mut input = vec![0u8; arg.in_size as usize];
        req.r.read_exact(&mut input)?;
        let data = IoctlData {
            result: 0,
            data: Some(&input),
        };
        let reply = self.fs.ioctl(
            &req.ctx,
            req.nodeid(),
            arg.fh,
            arg.flags,
            arg.cmd,
            data,
            arg.out_size,
        )?;
        let out_data = reply.data.unwrap_or(&[]);
        if out_data.len() > arg.out_size as usize {
            return Err(err(libc::EIO));
        }
        let out = IoctlOut {
            result: reply.result,
            flags: 0,
            in_iovs: 0,
            out_iovs: 0,
        };
        req.ok(&[out.as_slice(), out_data])
    }

    /// SYNCFS reaches the host as syncfs(2) on the share's root.
    pub(super) fn syncfs(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let _ = req.read::<SyncfsIn>()?;
        req.expect_end()?;
        self.fs.syncfs()?;
        req.ok(&[])
    }
}
