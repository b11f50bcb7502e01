//! Opcodes on open files: open/create, data transfer, sync, locks, ioctl.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use fuse_backend_rs::abi::fuse_abi::CreateIn as FsCreateIn;
use fuse_backend_rs::api::filesystem::FileLock as FsFileLock;
use fuse_backend_rs::api::filesystem::FileSystem;
use vm_memory::ByteValued;

use super::{name_err, NameBuf, Request};
use crate::fuse::abi::{
    CopyFileRangeIn, CreateIn, FallocateIn, FileLock, FlushIn, FsyncIn, IoctlIn, LkIn, LkOut,
    LseekIn, LseekOut, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn, SyncfsIn, WriteIn, WriteOut,
    FSYNC_FDATASYNC, LK_FLOCK, READ_LOCKOWNER, RELEASE_FLOCK_UNLOCK, RELEASE_FLUSH, WRITE_CACHE,
    WRITE_LOCKOWNER,
};
use crate::fuse::server::attr::entry_out;
use crate::fuse::server::bounce::BounceBuffer;
use crate::fuse::server::names::{single_entry_name, split_cstr};
use crate::fuse::server::{err, reply_header_for_body, Server};

/// ioctl commands the guest may pass through to the host. Empty: no ioctl has been shown safe
/// and needed yet, so every IOCTL answers ENOTTY.
pub const IOCTL_ALLOWLIST: &[u32] = &[];

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

    /// O_TMPFILE, emulated: PassthroughFs cannot open an unnamed file, so we create a uniquely
    /// named one and unlink it at once. The open handle keeps the inode alive; unlike a real
    /// O_TMPFILE, it cannot be given a name later with linkat(AT_EMPTY_PATH).
    pub(super) fn tmpfile(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<CreateIn>()?;
        // Linux sends the new dentry's name ("/") after the struct, as for CREATE. It names
        // nothing and is ignored, but it must be one NUL-terminated string ending the request.
        let mut names = NameBuf::new();
        let body = req.names(&mut names)?;
        if !body.is_empty() && !split_cstr(body).map_err(name_err)?.1.is_empty() {
            return Err(err(libc::EINVAL));
        }
        let seq = self.tmpfile_seq.fetch_add(1, Ordering::Relaxed);
        let name = CString::new(format!(".fsjail-tmpfile.{}.{seq}", std::process::id()))
            .map_err(|_| err(libc::EINVAL))?;
        let tmpfile_bits = (libc::O_TMPFILE | libc::O_DIRECTORY) as u32;
        let args = FsCreateIn {
            flags: (arg.flags & !tmpfile_bits) | (libc::O_CREAT | libc::O_EXCL) as u32,
            mode: arg.mode,
            umask: arg.umask,
            fuse_flags: arg.open_flags,
        };
        let (entry, handle, options, _) = self.fs.create(&req.ctx, req.nodeid(), &name, args)?;
        if let Err(e) = self.fs.unlink(&req.ctx, req.nodeid(), &name) {
            if let Some(h) = handle {
                let _ = self
                    .fs
                    .release(&req.ctx, entry.inode, 0, h, false, false, None);
            }
            self.fs.forget(&req.ctx, entry.inode, 1);
            return Err(e);
        }
        self.note_open(entry.inode, handle, arg.flags);
        let mut entry = entry_out(&entry, self.options.blksize);
        entry.attr.nlink = 0;
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

    /// Copies at most `max_write` bytes per request through a bounce buffer (a short count is
    /// what copy_file_range(2) allows; the guest loops).
    pub(super) fn copy_file_range(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<CopyFileRangeIn>()?;
        req.expect_end()?;
        if arg.flags != 0 {
            return Err(err(libc::EINVAL));
        }
        check_offset(arg.off_in)?;
        check_offset(arg.off_out)?;
        let len = arg.len.min(u64::from(self.options.max_write)) as u32;
        let mut bounce = BounceBuffer::with_capacity(len as usize);
        self.fs.read(
            &req.ctx,
            req.nodeid(),
            arg.fh_in,
            &mut bounce,
            len,
            arg.off_in,
            None,
            0,
        )?;
        let filled = bounce.filled() as u32;
        let written = if filled == 0 {
            0
        } else {
            self.fs.write(
                &req.ctx,
                arg.nodeid_out,
                arg.fh_out,
                &mut bounce,
                filled,
                arg.off_out,
                None,
                false,
                0,
                0,
            )?
        };
        let out = WriteOut {
            size: written as u32,
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

    pub(super) fn ioctl(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let arg = req.read::<IoctlIn>()?;
        if !IOCTL_ALLOWLIST.contains(&arg.cmd) {
            return Err(err(libc::ENOTTY));
        }
        Err(err(libc::ENOTTY))
    }

    /// SYNCFS reaches the host as syncfs(2) on the share's root.
    pub(super) fn syncfs(&self, req: &mut Request<'_>) -> io::Result<usize> {
        let _ = req.read::<SyncfsIn>()?;
        req.expect_end()?;
        let root = self.share_root.as_ref().ok_or_else(|| err(libc::ENOSYS))?;
        // SAFETY: syncfs only reads the fd, which `root` keeps open for the call.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ok(&[])
    }
}
