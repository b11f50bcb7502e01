//! The `FileSystem` trait for [`Tracked`]: every guest node id and handle is translated to the
//! inner filesystem's, and every reply that hands the guest a node or a handle is recorded.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, FsOptions, GetxattrReply, IoctlData,
    ListxattrReply, OpenOptions, SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::transport::FsCacheReqHandler;

use super::{Tracked, ROOT};

impl<F: FileSystem<Inode = u64, Handle = u64>> FileSystem for Tracked<F> {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        self.inner.init(capable)
    }

    /// The guest starts over: every node and handle it held is gone with the inner ones.
    fn destroy(&self) {
        self.inner.destroy();
        let mut t = self.write();
        t.nodes.clear();
        t.by_inner.clear();
        t.handles.clear();
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let p = self.node(parent)?;
        self.entry(self.inner.lookup(ctx, p, name))
    }

    fn forget(&self, ctx: &Context, inode: u64, count: u64) {
        self.forget_inner(ctx, inode, count);
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>) {
        for (inode, count) in requests {
            self.forget_inner(ctx, inode, count);
        }
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let i = self.node(inode)?;
        let h = self.opt_handle(handle)?;
        self.inner.getattr(ctx, i, h)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let i = self.node(inode)?;
        let h = self.opt_handle(handle)?;
        self.inner.setattr(ctx, i, attr, h, valid)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, self.node(inode)?)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let p = self.node(parent)?;
        self.entry(self.inner.symlink(ctx, linkname, p, name))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let p = self.node(parent)?;
        self.entry(self.inner.mknod(ctx, p, name, mode, rdev, umask))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let p = self.node(parent)?;
        self.entry(self.inner.mkdir(ctx, p, name, mode, umask))
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.unlink(ctx, self.node(parent)?, name)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.inner.rmdir(ctx, self.node(parent)?, name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let o = self.node(olddir)?;
        let n = self.node(newdir)?;
        self.inner.rename(ctx, o, oldname, n, newname, flags)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let i = self.node(inode)?;
        let p = self.node(newparent)?;
        self.entry(self.inner.link(ctx, i, p, newname))
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let i = self.node(inode)?;
        let (h, opts, passthrough) = self.inner.open(ctx, i, flags, fuse_flags)?;
        Ok((self.add_handle(inode, h, flags, false), opts, passthrough))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let p = self.node(parent)?;
        let flags = args.flags;
        let (mut entry, h, opts, passthrough) = self.inner.create(ctx, p, name, args)?;
        self.register(&mut entry);
        let fh = self.add_handle(entry.inode, h, flags, false);
        Ok((entry, fh, opts, passthrough))
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner
            .read(ctx, i, h, w, size, offset, lock_owner, flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.write(
            ctx,
            i,
            h,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.flush(ctx, i, h, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.fsync(ctx, i, datasync, h)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.fallocate(ctx, i, h, mode, offset, length)
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let _ = inode;
        let taken = self.take_handle(handle)?;
        let r = match taken.handle {
            Some(h) => {
                self.inner
                    .release(ctx, taken.inode, flags, h, flush, flock_release, lock_owner)
            }
            None => Ok(()),
        };
        if let Some((i, refs)) = taken.forget {
            self.inner.forget(ctx, i, refs);
        }
        r
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, self.node(inode)?)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .setxattr(ctx, self.node(inode)?, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(ctx, self.node(inode)?, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(ctx, self.node(inode)?, size)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.inner.removexattr(ctx, self.node(inode)?, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let i = self.node(inode)?;
        let (h, opts) = self.inner.opendir(ctx, i, flags)?;
        Ok((self.add_handle(inode, h, flags, true), opts))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.readdir(ctx, i, h, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner
            .readdirplus(ctx, i, h, size, offset, &mut |d, mut e| {
                let inner = e.inode;
                self.register(&mut e);
                let guest = e.inode;
                let r = add_entry(d, e);
                match r {
                    // Did not fit: the inner filesystem forgets its lookup itself.
                    Ok(0) => self.unregister(guest),
                    Ok(_) => {}
                    Err(_) => {
                        self.unregister(guest);
                        if inner != 0 && inner != ROOT {
                            self.inner.forget(ctx, inner, 1);
                        }
                    }
                }
                r
            })
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.fsyncdir(ctx, i, datasync, h)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        let _ = inode;
        let taken = self.take_handle(handle)?;
        let r = match taken.handle {
            Some(h) => self.inner.releasedir(ctx, taken.inode, flags, h),
            None => Ok(()),
        };
        if let Some((i, refs)) = taken.forget {
            self.inner.forget(ctx, i, refs);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn setupmapping(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        // The handle goes through as the guest gave it: Linux sends -1 ("any open file of the
        // inode"), the server checks it against the guest's own handles, and PassthroughFs
        // ignores it.
        let i = self.node(inode)?;
        self.inner
            .setupmapping(ctx, i, handle, foffset, len, flags, moffset, vu_req)
    }

    fn removemapping(
        &self,
        ctx: &Context,
        inode: u64,
        requests: Vec<RemovemappingOne>,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        self.inner
            .removemapping(ctx, self.node(inode)?, requests, vu_req)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        self.inner.access(ctx, self.node(inode)?, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.lseek(ctx, i, h, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.getlk(ctx, i, h, owner, lock, flags)
    }

    fn setlk(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.setlk(ctx, i, h, owner, lock, flags)
    }

    fn setlkw(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.setlkw(ctx, i, h, owner, lock, flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        flags: u32,
        cmd: u32,
        data: IoctlData,
        out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.ioctl(ctx, i, h, flags, cmd, data, out_size)
    }

    fn bmap(&self, ctx: &Context, inode: u64, block: u64, blocksize: u32) -> io::Result<u64> {
        self.inner.bmap(ctx, self.node(inode)?, block, blocksize)
    }

    fn poll(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        khandle: u64,
        flags: u32,
        events: u32,
    ) -> io::Result<u32> {
        let i = self.node(inode)?;
        let h = self.handle(handle)?;
        self.inner.poll(ctx, i, h, khandle, flags, events)
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        self.inner.id_remap(ctx)
    }
}
