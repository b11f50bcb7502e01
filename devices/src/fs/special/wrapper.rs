//! [`Emulation`]: the `FileSystem` wrapper that writes and shows the records of [`super::record`].
//!
//! It sits outside the share policy (`Emulation<SharePolicy<PassthroughFs>>`): it turns a guest
//! device `mknod` into a regular-file `mknod` before the policy sees it, and reaches its record
//! through the policy's xattr calls, which know how to name an inode inside a jail (see
//! `SharePolicy::with_xattr_paths`). The inner filesystem must therefore serve xattrs whatever
//! the share's `xattr` setting; whether the guest may use them is decided here.

use std::ffi::CStr;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, FsOptions, GetxattrReply, IoctlData,
    ListxattrReply, OpenOptions, SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::transport::FsCacheReqHandler;

use super::paths::Paths;
use super::record::{self, Kind};
use super::seen::SeenRecords;
use super::{Ownership, SpecialFiles};
use crate::fs::policy::InodePathFn;

/// Largest list of attribute names (Linux's XATTR_LIST_MAX).
const XATTR_LIST_MAX: u32 = 65536;

pub(super) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Shows emulated device nodes and owners to the guest; see the module docs of
/// [`super`].
pub struct Emulation<F> {
    pub(super) inner: F,
    pub(super) special_files: SpecialFiles,
    pub(super) ownership: Ownership,
    /// Whether the guest may use extended attributes at all (the share's `xattr`).
    pub(super) guest_xattr: bool,
    /// The worker's own uid and gid: the only owner whose files may carry a record.
    pub(super) owner_uid: u32,
    pub(super) owner_gid: u32,
    /// Set in a jailed worker: records are reached by path (see [`Emulation::with_record_paths`]).
    pub(super) paths: Option<Paths>,
    /// Names an inode by a path outside a jail, for the symlink stand-ins' contents (see
    /// [`super::symlinks`]); a jailed worker uses `paths`.
    pub(super) content_paths: Option<InodePathFn>,
    /// What the last read of each file's record found (see [`super::seen`]).
    pub(super) seen: SeenRecords,
    /// Serialises read-modify-write of records, so two concurrent SETATTRs on one file do not
    /// lose one of their changes.
    pub(super) update: Mutex<()>,
}

impl<F> Emulation<F> {
    /// Wraps `inner`, which must serve xattrs (see the module docs). `guest_xattr` is the
    /// share's `xattr` setting.
    pub fn new(
        inner: F,
        special_files: SpecialFiles,
        ownership: Ownership,
        guest_xattr: bool,
    ) -> Self {
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        let (owner_uid, owner_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Emulation {
            inner,
            special_files,
            ownership,
            guest_xattr,
            owner_uid,
            owner_gid,
            paths: None,
            content_paths: None,
            seen: SeenRecords::default(),
            update: Mutex::new(()),
        }
    }

    /// Reach records through paths from `resolve` rather than through the inner filesystem's
    /// xattr calls: for a jailed worker, whose passthrough cannot name an inode by its
    /// `/proc/self/fd` link (see `SharePolicy::with_xattr_paths` and [`super::paths`]).
    /// Writes then go straight to the host; a read-only share is a read-only mount in the jail,
    /// so the kernel refuses them there.
    pub fn with_record_paths(mut self, resolve: InodePathFn) -> Self {
        self.paths = Some(Paths::new(resolve));
        self
    }

    /// Reach the contents of symlink stand-ins through paths from `resolve` (a worker outside
    /// a jail: the `/proc/self/fd` link of the passthrough's descriptor). Without it, or
    /// [`Emulation::with_record_paths`], guest symlinks stay host symlinks.
    pub fn with_content_paths(mut self, resolve: InodePathFn) -> Self {
        self.content_paths = Some(resolve);
        self
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }

    pub fn special_files(&self) -> SpecialFiles {
        self.special_files
    }

    pub fn ownership(&self) -> Ownership {
        self.ownership
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for Emulation<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulation")
            .field("inner", &self.inner)
            .field("special_files", &self.special_files)
            .field("ownership", &self.ownership)
            .field("guest_xattr", &self.guest_xattr)
            .finish()
    }
}

/// Whether an attribute name is fsjail's.
fn reserved(name: &CStr) -> bool {
    name.to_bytes().starts_with(record::RESERVED_PREFIX)
}

/// The `d_type` of a mode.
fn dtype(mode: u32) -> u32 {
    u32::from(match mode & libc::S_IFMT {
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    })
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

impl<F: FileSystem<Inode = u64, Handle = u64>> FileSystem for Emulation<F> {
    type Inode = u64;
    type Handle = u64;

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let entry = self.inner.lookup(ctx, parent, name)?;
        self.note(&entry, parent, name.to_bytes());
        Ok(self.show_entry(ctx, entry))
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let (mut st, timeout) = self.inner.getattr(ctx, inode, handle)?;
        self.show(ctx, inode, &mut st);
        Ok((st, timeout))
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let (host, _) = self.inner.getattr(ctx, inode, None)?;
        let host_fmt = host.st_mode & libc::S_IFMT;
        let owner_change =
            valid.intersects(SetattrValid::MODE | SetattrValid::UID | SetattrValid::GID);
        let eligible =
            matches!(host_fmt, libc::S_IFREG | libc::S_IFDIR) && host.st_uid == self.owner_uid;
        let recorded = self.record_of(ctx, inode, &host).is_some();
        if recorded || (self.ownership == Ownership::Emulate && owner_change && eligible) {
            return self.setattr_recorded(ctx, inode, attr, handle, valid, host);
        }
        let (mut st, timeout) = self.inner.setattr(ctx, inode, attr, handle, valid)?;
        self.show(ctx, inode, &mut st);
        Ok((st, timeout))
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
        // Devices with `special_files = "emulate"`; FIFOs and sockets stay real (inert on the
        // host) unless ownership is emulated: a real one cannot carry the owner's record.
        if let Some(kind) = Kind::special_from_mode(mode) {
            let emulate = if kind.is_device() {
                self.special_files == SpecialFiles::Emulate
            } else {
                self.ownership == Ownership::Emulate
            };
            if emulate {
                // An empty stand-in with the node recorded.
                let rdev = if kind.is_device() { rdev } else { 0 };
                return self.make_standin(ctx, parent, name, kind, mode & !umask, rdev, &[]);
            }
        }
        let (mut entry, uid, gid) = self.create_as_guest(ctx, |c| {
            self.inner.mknod(c, parent, name, mode, rdev, umask)
        })?;
        self.note(&entry, parent, name.to_bytes());
        self.record_owner(ctx, parent, &mut entry, uid, gid);
        Ok(self.show_entry(ctx, entry))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let (mut entry, uid, gid) =
            self.create_as_guest(ctx, |c| self.inner.mkdir(c, parent, name, mode, umask))?;
        self.note(&entry, parent, name.to_bytes());
        self.record_owner(ctx, parent, &mut entry, uid, gid);
        Ok(self.show_entry(ctx, entry))
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        if self.emulates_symlinks() {
            return self.symlink_standin(ctx, linkname, parent, name);
        }
        let (entry, _, _) =
            self.create_as_guest(ctx, |c| self.inner.symlink(c, linkname, parent, name))?;
        Ok(entry)
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        // Only emulated ownership honours a symlink stand-in (its file is not empty, see
        // `may_carry`): otherwise every link is a host link, and no stat is needed first.
        if self.ownership != Ownership::Emulate {
            return self.inner.readlink(ctx, inode);
        }
        let (st, _) = self.inner.getattr(ctx, inode, None)?;
        match self.record_of(ctx, inode, &st) {
            Some(r) if r.kind == Kind::Symlink => self.read_target(inode, &st),
            Some(_) => Err(errno(libc::EINVAL)),
            None => self.inner.readlink(ctx, inode),
        }
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let entry = self.inner.link(ctx, inode, newparent, newname)?;
        self.note(&entry, newparent, newname.to_bytes());
        Ok(self.show_entry(ctx, entry))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let ((mut entry, handle, opts, passthrough), uid, gid) =
            self.create_as_guest(ctx, |c| self.inner.create(c, parent, name, args))?;
        self.note(&entry, parent, name.to_bytes());
        // Without O_EXCL, CREATE opens an existing file: never an emulated device's.
        if let Some(r) = self.record_of(ctx, entry.inode, &entry.attr) {
            if r.kind.is_placeholder() {
                if let Some(h) = handle {
                    let _ = self
                        .inner
                        .release(ctx, entry.inode, args.flags, h, false, false, None);
                }
                self.inner.forget(ctx, entry.inode, 1);
                return Err(errno(libc::EBADF));
            }
        }
        self.record_owner(ctx, parent, &mut entry, uid, gid);
        Ok((self.show_entry(ctx, entry), handle, opts, passthrough))
    }

    /// A guest kernel opens its own device for a device node and never sends OPEN for one.
    /// The passthrough refuses to open anything but regular files and directories (EBADF);
    /// an emulated device's regular host file is refused the same way, so that the guest never
    /// gets the placeholder as the device.
    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let (st, _) = self.inner.getattr(ctx, inode, None)?;
        if self
            .record_of(ctx, inode, &st)
            .is_some_and(|r| r.kind.is_placeholder())
        {
            return Err(errno(libc::EBADF));
        }
        self.inner.open(ctx, inode, flags, fuse_flags)
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
        self.inner
            .readdirplus(ctx, inode, handle, size, offset, &mut |d, mut e| {
                self.note(&e, inode, d.name);
                let type_ = match self.show(ctx, e.inode, &mut e.attr) {
                    Some(_) => dtype(e.attr.st_mode),
                    None => d.type_,
                };
                add_entry(DirEntry { type_, ..d }, e)
            })
    }

    /// In a jail, the renamed inode's new name is remembered: the guest moves its dentry and
    /// may never look the new name up (see [`super::paths`]).
    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .rename(ctx, olddir, oldname, newdir, newname, flags)?;
        if self.paths.is_some() {
            if let Ok(entry) = self.inner.lookup(ctx, newdir, newname) {
                self.note(&entry, newdir, newname.to_bytes());
                self.inner.forget(ctx, entry.inode, 1);
            }
        }
        Ok(())
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        if !self.guest_xattr {
            return Err(errno(libc::ENOSYS));
        }
        if reserved(name) {
            return Err(errno(libc::ENODATA));
        }
        self.inner.getxattr(ctx, inode, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        if !self.guest_xattr {
            return Err(errno(libc::ENOSYS));
        }
        // The whole list, so that the size the guest is told leaves ours out.
        let names = match self.inner.listxattr(ctx, inode, XATTR_LIST_MAX)? {
            ListxattrReply::Names(n) => n,
            ListxattrReply::Count(_) => return Err(errno(libc::EIO)),
        };
        let mut shown = Vec::with_capacity(names.len());
        for name in names.split_inclusive(|&b| b == 0) {
            if !name.starts_with(record::RESERVED_PREFIX) {
                shown.extend_from_slice(name);
            }
        }
        if size == 0 {
            return Ok(ListxattrReply::Count(
                u32::try_from(shown.len()).unwrap_or(u32::MAX),
            ));
        }
        if shown.len() > size as usize {
            return Err(errno(libc::ERANGE));
        }
        Ok(ListxattrReply::Names(shown))
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        if !self.guest_xattr {
            return Err(errno(libc::ENOSYS));
        }
        if reserved(name) {
            return Err(errno(libc::ENODATA));
        }
        self.inner.setxattr(ctx, inode, name, value, flags)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        if !self.guest_xattr {
            return Err(errno(libc::ENOSYS));
        }
        if reserved(name) {
            return Err(errno(libc::ENODATA));
        }
        self.inner.removexattr(ctx, inode, name)
    }

    delegate! {
        fn init(&self, capable: FsOptions) -> io::Result<FsOptions>;
        fn destroy(&self);
        fn forget(&self, ctx: &Context, inode: u64, count: u64);
        fn batch_forget(&self, ctx: &Context, requests: Vec<(u64, u64)>);
        fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()>;
        fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()>;
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
        ) -> io::Result<usize>;
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
        ) -> io::Result<usize>;
        fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()>;
        fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()>;
        fn fallocate(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            mode: u32,
            offset: u64,
            length: u64,
        ) -> io::Result<()>;
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
        ) -> io::Result<()>;
        fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64>;
        fn opendir(
            &self,
            ctx: &Context,
            inode: u64,
            flags: u32,
        ) -> io::Result<(Option<u64>, OpenOptions)>;
        // The server serves READDIR from READDIRPLUS (where d_type is fixed above); this one
        // passes through for other users of the trait.
        fn readdir(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            size: u32,
            offset: u64,
            add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
        ) -> io::Result<()>;
        fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()>;
        fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()>;
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
        ) -> io::Result<()>;
        fn removemapping(
            &self,
            ctx: &Context,
            inode: u64,
            requests: Vec<RemovemappingOne>,
            vu_req: &mut dyn FsCacheReqHandler,
        ) -> io::Result<()>;
        fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()>;
        fn lseek(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            offset: u64,
            whence: u32,
        ) -> io::Result<u64>;
        fn getlk(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<FileLock>;
        fn setlk(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
        fn setlkw(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            owner: u64,
            lock: FileLock,
            flags: u32,
        ) -> io::Result<()>;
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
        ) -> io::Result<IoctlData<'_>>;
        fn bmap(&self, ctx: &Context, inode: u64, block: u64, blocksize: u32) -> io::Result<u64>;
        fn poll(
            &self,
            ctx: &Context,
            inode: u64,
            handle: u64,
            khandle: u64,
            flags: u32,
            events: u32,
        ) -> io::Result<u32>;
        fn notify_reply(&self) -> io::Result<()>;
        fn id_remap(&self, ctx: &mut Context) -> io::Result<()>;
    }
}
