//! The per-share policy, enforced as a wrapper at the `FileSystem` trait.
//!
//! The FUSE server only ever talks to the [`FileSystem`] trait, so wrapping the real filesystem
//! in [`SharePolicy`] puts every guest request through the policy, whatever the filesystem
//! underneath and whichever code path (FUSE message, DAX mapping) the request came in by. Checks
//! here are made on the request alone, before the inner filesystem touches the host, so a denied
//! request has no side effect.

use std::ffi::CStr;
use std::io;
use std::path::PathBuf;

use super::xattr_path;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::abi::virtio_fs::{RemovemappingOne, SetupmappingFlags};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, FsOptions, GetxattrReply, IoctlData,
    ListxattrReply, OpenOptions, SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::transport::FsCacheReqHandler;

/// A share's policy around an inner filesystem `F`.
///
/// - `readonly`: every request that would modify the share answers `EROFS`, opens for writing
///   included, and writeback caching is not offered to the guest.
/// - `allow_devices` (off by default): unless set, the guest cannot create character or block
///   device nodes. A guest-made device node is opened by the host-side daemon with the host's
///   meaning of its major/minor numbers (CVE-2020-35517), so it is refused even on writable
///   shares.
/// - ioctls are refused (`ENOTTY`) until an allowlist exists.
pub struct SharePolicy<F> {
    inner: F,
    readonly: bool,
    allow_devices: bool,
    /// Set in a jailed worker; see [`SharePolicy::with_xattr_paths`].
    xattr_paths: Option<InodePathFn>,
    /// Set in a jailed worker; see [`SharePolicy::with_confinement`].
    confine: Option<InodePathFn>,
}

/// Names an inode by a path that is valid from the worker's root.
pub type InodePathFn = Box<dyn Fn(u64) -> io::Result<PathBuf> + Send + Sync>;

impl<F: std::fmt::Debug> std::fmt::Debug for SharePolicy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharePolicy")
            .field("inner", &self.inner)
            .field("readonly", &self.readonly)
            .field("allow_devices", &self.allow_devices)
            .field("xattr_paths", &self.xattr_paths.is_some())
            .field("confine", &self.confine.is_some())
            .finish()
    }
}

impl<F> SharePolicy<F> {
    /// Wrap `inner`; device nodes are refused.
    pub fn new(inner: F, readonly: bool) -> Self {
        SharePolicy {
            inner,
            readonly,
            allow_devices: false,
            xattr_paths: None,
            confine: None,
        }
    }

    /// Before SETATTR, SETXATTR and REMOVEXATTR, check that the node still lies beneath the
    /// share (`super::confine`), naming it through `resolve` (as for
    /// [`SharePolicy::with_xattr_paths`]). Landlock refuses everything else the worker could do
    /// to a node the host moved out of the share, but has no right for chmod, chown, utimes or
    /// xattrs. Only for a jailed worker, whose root is the share.
    pub fn with_confinement(mut self, resolve: InodePathFn) -> Self {
        self.confine = Some(resolve);
        self
    }

    /// Serve xattr requests through paths from `resolve` instead of the inner filesystem.
    ///
    /// fuse-backend-rs reaches an inode's xattrs through the literal path `/proc/self/fd/N`
    /// (the `f*xattr` calls refuse its O_PATH fds). Inside the jail the worker's root is the
    /// share, where no `/proc` exists, so those calls fail with ENOENT. A jailed worker passes
    /// a resolver that reads the inode's path through the filesystem's own `/proc/self/fd` fd
    /// (PassthroughFs::readlinkat_proc_file); the `l*xattr` calls on that path never follow a
    /// final symlink, and any path resolves inside the share because the share is the root.
    /// Not for unjailed use: outside a chroot a path can be raced out of the share.
    pub fn with_xattr_paths(mut self, resolve: InodePathFn) -> Self {
        self.xattr_paths = Some(resolve);
        self
    }

    /// Allow (or keep refusing) guest-created character and block devices. Only for shares whose
    /// guest is trusted with the host's devices.
    pub fn with_allow_devices(mut self, allow: bool) -> Self {
        self.allow_devices = allow;
        self
    }

    /// Whether modifications are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether guest-created device nodes are allowed.
    pub fn allow_devices(&self) -> bool {
        self.allow_devices
    }

    /// The wrapped filesystem (e.g. for `keep_fds`).
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// Unwrap the inner filesystem.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: FileSystem> SharePolicy<F> {
    /// ENOENT when confinement is on and `inode` no longer lies beneath the share; else the
    /// inode back (the trait's inode type need not be `Copy`).
    fn check_beneath(&self, ctx: &Context, inode: F::Inode) -> io::Result<F::Inode> {
        let Some(resolve) = &self.confine else {
            return Ok(inode);
        };
        let id: u64 = inode.into();
        let (st, _) = self.inner.getattr(ctx, F::Inode::from(id), None)?;
        super::confine::check(&resolve(id)?, &st)?;
        Ok(F::Inode::from(id))
    }
}

/// The answer to a modification of a read-only share.
fn erofs<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(libc::EROFS))
}

/// Whether `open(2)` flags (the guest's, which are Linux values like the host's) ask for write
/// access or could change the file. `O_TMPFILE` needs a write access mode, so it is covered.
fn open_flags_write(flags: u32) -> bool {
    const MODIFYING: u32 = (libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT) as u32;
    flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 || flags & MODIFYING != 0
}

/// Whether a `mknod` mode makes a character or block device.
fn mode_is_device(mode: u32) -> bool {
    let fmt = mode & libc::S_IFMT;
    fmt == libc::S_IFCHR || fmt == libc::S_IFBLK
}

/// Methods that go to the inner filesystem unchanged.
macro_rules! delegate {
    ($($(#[$attr:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?;)*) => {
        $(
            $(#[$attr])*
            fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                self.inner.$name($($arg),*)
            }
        )*
    };
}

/// Methods that modify the share: `EROFS` when read-only, else the inner filesystem.
macro_rules! deny_if_readonly {
    ($($(#[$attr:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*) => {
        $(
            $(#[$attr])*
            fn $name(&self $(, $arg: $ty)*) -> $ret {
                if self.readonly {
                    return erofs();
                }
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl<F: FileSystem> FileSystem for SharePolicy<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;

    fn setxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        if self.readonly {
            return erofs();
        }
        let inode = self.check_beneath(ctx, inode)?;
        match &self.xattr_paths {
            Some(resolve) => xattr_path::set(&resolve(inode.into())?, name, value, flags),
            None => self.inner.setxattr(ctx, inode, name, value, flags),
        }
    }

    fn removexattr(&self, ctx: &Context, inode: Self::Inode, name: &CStr) -> io::Result<()> {
        if self.readonly {
            return erofs();
        }
        let inode = self.check_beneath(ctx, inode)?;
        match &self.xattr_paths {
            Some(resolve) => xattr_path::remove(&resolve(inode.into())?, name),
            None => self.inner.removexattr(ctx, inode, name),
        }
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let Some(resolve) = &self.xattr_paths else {
            return self.inner.getxattr(ctx, inode, name, size);
        };
        Ok(
            match xattr_path::get(&resolve(inode.into())?, name, size)? {
                xattr_path::Sized::Bytes(v) => GetxattrReply::Value(v),
                xattr_path::Sized::Count(n) => GetxattrReply::Count(n),
            },
        )
    }

    fn listxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        size: u32,
    ) -> io::Result<ListxattrReply> {
        let Some(resolve) = &self.xattr_paths else {
            return self.inner.listxattr(ctx, inode, size);
        };
        Ok(match xattr_path::list(&resolve(inode.into())?, size)? {
            xattr_path::Sized::Bytes(v) => ListxattrReply::Names(v),
            xattr_path::Sized::Count(n) => ListxattrReply::Count(n),
        })
    }

    /// A read-only share neither asks the inner filesystem for writeback caching nor offers it to
    /// the guest: with writeback the guest kernel would hold dirty pages it can never flush.
    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        if !self.readonly {
            return self.inner.init(capable);
        }
        let mut opts = self.inner.init(capable - FsOptions::WRITEBACK_CACHE)?;
        opts.remove(FsOptions::WRITEBACK_CACHE);
        Ok(opts)
    }

    /// Device nodes are refused first, as that holds on every share; then read-only.
    fn mknod(
        &self,
        ctx: &Context,
        parent: Self::Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        if mode_is_device(mode) && !self.allow_devices {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if self.readonly {
            return erofs();
        }
        self.inner.mknod(ctx, parent, name, mode, rdev, umask)
    }

    /// Read-only opens keep working on a read-only share.
    fn open(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Self::Handle>, OpenOptions, Option<u32>)> {
        if self.readonly && open_flags_write(flags) {
            return erofs();
        }
        self.inner.open(ctx, inode, flags, fuse_flags)
    }

    /// A writable DAX mapping would let the guest modify the file through memory.
    #[allow(clippy::too_many_arguments)]
    fn setupmapping(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        handle: Self::Handle,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        if self.readonly && flags & SetupmappingFlags::WRITE.bits() != 0 {
            return erofs();
        }
        self.inner
            .setupmapping(ctx, inode, handle, foffset, len, flags, moffset, vu_req)
    }

    /// No ioctl reaches the host for now: an ioctl is an arbitrary host-kernel entry point.
    ///
    /// The allowlist goes here: match `cmd` against the allowed requests and forward those with
    /// `self.inner.ioctl(ctx, inode, handle, flags, cmd, data, out_size)`.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _ctx: &Context,
        _inode: Self::Inode,
        _handle: Self::Handle,
        _flags: u32,
        _cmd: u32,
        _data: IoctlData,
        _out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        Err(io::Error::from_raw_os_error(libc::ENOTTY))
    }

    /// chmod, chown and utimes are no Landlock rights: a node the host moved out of the share
    /// is refused here (see [`SharePolicy::with_confinement`]).
    fn setattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        attr: stat64,
        handle: Option<Self::Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        if self.readonly {
            return erofs();
        }
        let inode = self.check_beneath(ctx, inode)?;
        self.inner.setattr(ctx, inode, attr, handle, valid)
    }

    deny_if_readonly! {
        fn symlink(
            &self,
            ctx: &Context,
            linkname: &CStr,
            parent: Self::Inode,
            name: &CStr,
        ) -> io::Result<Entry>;
        fn mkdir(
            &self,
            ctx: &Context,
            parent: Self::Inode,
            name: &CStr,
            mode: u32,
            umask: u32,
        ) -> io::Result<Entry>;
        fn unlink(&self, ctx: &Context, parent: Self::Inode, name: &CStr) -> io::Result<()>;
        fn rmdir(&self, ctx: &Context, parent: Self::Inode, name: &CStr) -> io::Result<()>;
        fn rename(
            &self,
            ctx: &Context,
            olddir: Self::Inode,
            oldname: &CStr,
            newdir: Self::Inode,
            newname: &CStr,
            flags: u32,
        ) -> io::Result<()>;
        fn link(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            newparent: Self::Inode,
            newname: &CStr,
        ) -> io::Result<Entry>;
        fn create(
            &self,
            ctx: &Context,
            parent: Self::Inode,
            name: &CStr,
            args: CreateIn,
        ) -> io::Result<(Entry, Option<Self::Handle>, OpenOptions, Option<u32>)>;
        #[allow(clippy::too_many_arguments)]
        fn write(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            r: &mut dyn ZeroCopyReader,
            size: u32,
            offset: u64,
            lock_owner: Option<u64>,
            delayed_write: bool,
            flags: u32,
            fuse_flags: u32,
        ) -> io::Result<usize>;
        fn fallocate(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            mode: u32,
            offset: u64,
            length: u64,
        ) -> io::Result<()>;
    }

    delegate! {
        fn destroy(&self);
        fn lookup(&self, ctx: &Context, parent: Self::Inode, name: &CStr) -> io::Result<Entry>;
        fn forget(&self, ctx: &Context, inode: Self::Inode, count: u64);
        fn batch_forget(&self, ctx: &Context, requests: Vec<(Self::Inode, u64)>);
        fn getattr(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Option<Self::Handle>,
        ) -> io::Result<(stat64, Duration)>;
        fn readlink(&self, ctx: &Context, inode: Self::Inode) -> io::Result<Vec<u8>>;
        #[allow(clippy::too_many_arguments)]
        fn read(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            w: &mut dyn ZeroCopyWriter,
            size: u32,
            offset: u64,
            lock_owner: Option<u64>,
            flags: u32,
        ) -> io::Result<usize>;
        fn flush(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            lock_owner: u64,
        ) -> io::Result<()>;
        fn fsync(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            datasync: bool,
            handle: Self::Handle,
        ) -> io::Result<()>;
        #[allow(clippy::too_many_arguments)]
        fn release(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            flags: u32,
            handle: Self::Handle,
            flush: bool,
            flock_release: bool,
            lock_owner: Option<u64>,
        ) -> io::Result<()>;
        fn statfs(&self, ctx: &Context, inode: Self::Inode) -> io::Result<statvfs64>;
        fn opendir(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            flags: u32,
        ) -> io::Result<(Option<Self::Handle>, OpenOptions)>;
        fn readdir(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            size: u32,
            offset: u64,
            add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
        ) -> io::Result<()>;
        fn readdirplus(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            size: u32,
            offset: u64,
            add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
        ) -> io::Result<()>;
        fn fsyncdir(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            datasync: bool,
            handle: Self::Handle,
        ) -> io::Result<()>;
        fn releasedir(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            flags: u32,
            handle: Self::Handle,
        ) -> io::Result<()>;
        fn removemapping(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            requests: Vec<RemovemappingOne>,
            vu_req: &mut dyn FsCacheReqHandler,
        ) -> io::Result<()>;
        fn access(&self, ctx: &Context, inode: Self::Inode, mask: u32) -> io::Result<()>;
        fn lseek(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            offset: u64,
            whence: u32,
        ) -> io::Result<u64>;
        fn getlk(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<FileLock>;
        fn setlk(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
        fn setlkw(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
        fn bmap(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            block: u64,
            blocksize: u32,
        ) -> io::Result<u64>;
        fn poll(
            &self,
            ctx: &Context,
            inode: Self::Inode,
            handle: Self::Handle,
            khandle: Self::Handle,
            flags: u32,
            events: u32,
        ) -> io::Result<u32>;
        fn notify_reply(&self) -> io::Result<()>;
        fn id_remap(&self, ctx: &mut Context) -> io::Result<()>;
    }
}

#[cfg(test)]
mod tests;
