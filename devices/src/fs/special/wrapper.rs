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
use super::record::{self, Kind, Record};
use super::{Ownership, SpecialFiles};
use crate::fs::policy::InodePathFn;
use crate::fs::xattr_path;

/// Largest list of attribute names (Linux's XATTR_LIST_MAX).
const XATTR_LIST_MAX: u32 = 65536;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Shows emulated device nodes and owners to the guest; see the module docs of
/// [`super`].
pub struct Emulation<F> {
    inner: F,
    special_files: SpecialFiles,
    ownership: Ownership,
    /// Whether the guest may use extended attributes at all (the share's `xattr`).
    guest_xattr: bool,
    /// The worker's own uid and gid: the only owner whose files may carry a record.
    owner_uid: u32,
    owner_gid: u32,
    /// Set in a jailed worker: records are reached by path (see [`Emulation::with_record_paths`]).
    paths: Option<Paths>,
    /// Serialises read-modify-write of records, so two concurrent SETATTRs on one file do not
    /// lose one of their changes.
    update: Mutex<()>,
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

fn apply(st: &mut stat64, r: &Record) {
    st.st_mode = r.kind.ifmt() | r.perm;
    st.st_uid = r.uid;
    st.st_gid = r.gid;
    st.st_rdev = r.dev();
}

/// A context that acts as the worker itself (no credential switch in the passthrough).
fn as_worker(ctx: &Context, uid: u32, gid: u32) -> Context {
    let mut c = *ctx;
    c.uid = uid;
    c.gid = gid;
    c
}

impl<F: FileSystem<Inode = u64, Handle = u64>> Emulation<F> {
    /// The stored record of `inode` (host stat `st`), at most `record::MAX_LEN` bytes.
    fn get_raw(&self, ctx: &Context, inode: u64, st: &stat64) -> io::Result<Vec<u8>> {
        let size = record::MAX_LEN as u32;
        let reply = match &self.paths {
            Some(paths) => match xattr_path::get(&paths.path(inode, st)?, record::NAME, size)? {
                xattr_path::Sized::Bytes(v) => GetxattrReply::Value(v),
                xattr_path::Sized::Count(n) => GetxattrReply::Count(n),
            },
            None => self.inner.getxattr(ctx, inode, record::NAME, size)?,
        };
        match reply {
            GetxattrReply::Value(v) => Ok(v),
            GetxattrReply::Count(_) => Err(errno(libc::EIO)),
        }
    }

    fn set_raw(&self, ctx: &Context, inode: u64, st: &stat64, value: &[u8]) -> io::Result<()> {
        match &self.paths {
            Some(paths) => xattr_path::set(&paths.path(inode, st)?, record::NAME, value, 0),
            None => self.inner.setxattr(ctx, inode, record::NAME, value, 0),
        }
    }

    fn remove_raw(&self, ctx: &Context, inode: u64, st: &stat64) -> io::Result<()> {
        match &self.paths {
            Some(paths) => xattr_path::remove(&paths.path(inode, st)?, record::NAME),
            None => self.inner.removexattr(ctx, inode, record::NAME),
        }
    }

    /// Remembers how the guest reached an inode that may carry a record (see [`super::paths`]).
    fn note(&self, entry: &Entry, parent: u64, name: &[u8]) {
        if let Some(paths) = &self.paths {
            if self.may_carry(&entry.attr) {
                paths.note(entry.inode, parent, name);
            }
        }
    }

    /// Whether a host file may carry a record we honour: see the module docs of [`super`].
    /// Also what keeps the common case cheap: most files fail this on their stat alone and
    /// cost no getxattr.
    fn may_carry(&self, st: &stat64) -> bool {
        if st.st_uid != self.owner_uid || st.st_mode & 0o022 != 0 {
            return false;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => st.st_size == 0 || self.ownership == Ownership::Emulate,
            libc::S_IFDIR => self.ownership == Ownership::Emulate,
            _ => false,
        }
    }

    /// The record a host file carries, if any and if it is to be honoured.
    fn record_of(&self, ctx: &Context, inode: u64, st: &stat64) -> Option<Record> {
        if !self.may_carry(st) {
            return None;
        }
        let value = match self.get_raw(ctx, inode, st) {
            Ok(v) => v,
            Err(e) => {
                match e.raw_os_error() {
                    // No record, or a filesystem without user xattrs: a plain file. ENOENT:
                    // the inode has no name we can reach it by (see `paths`).
                    Some(libc::ENODATA)
                    | Some(libc::EOPNOTSUPP)
                    | Some(libc::ENOSYS)
                    | Some(libc::ENOENT) => {}
                    Some(libc::ERANGE) => crate::guest_warn!(
                        "host inode {}: {} is longer than {} bytes; shown as the plain host file",
                        st.st_ino,
                        record::NAME.to_string_lossy(),
                        record::MAX_LEN
                    ),
                    _ => crate::guest_debug!(
                        "host inode {}: reading {}: {e}",
                        st.st_ino,
                        record::NAME.to_string_lossy()
                    ),
                }
                return None;
            }
        };
        let host_fmt = st.st_mode & libc::S_IFMT;
        match Record::parse(&value) {
            Ok(r)
                if r.kind.host_ifmt() == host_fmt
                    && (r.kind.is_device() || self.ownership == Ownership::Emulate) =>
            {
                Some(r)
            }
            // An owner record while ownership is "host": the operator switched it off.
            Ok(r) if r.kind.host_ifmt() == host_fmt => None,
            Ok(r) => {
                crate::guest_warn!(
                    "host inode {}: {} says {r:?} but the host file has type {:o}; shown as \
                     the plain host file",
                    st.st_ino,
                    record::NAME.to_string_lossy(),
                    host_fmt
                );
                None
            }
            Err(e) => {
                crate::guest_warn!(
                    "host inode {}: malformed {} ({e}); shown as the plain host file",
                    st.st_ino,
                    record::NAME.to_string_lossy()
                );
                None
            }
        }
    }

    /// Replaces what the host says with what the guest is to see; returns the record used.
    fn show(&self, ctx: &Context, inode: u64, st: &mut stat64) -> Option<Record> {
        let r = self.record_of(ctx, inode, st)?;
        apply(st, &r);
        Some(r)
    }

    fn show_entry(&self, ctx: &Context, mut entry: Entry) -> Entry {
        self.show(ctx, entry.inode, &mut entry.attr);
        entry
    }

    fn write_record(&self, ctx: &Context, inode: u64, st: &stat64, r: &Record) -> io::Result<()> {
        if !r.valid() {
            return Err(errno(libc::EINVAL));
        }
        self.set_raw(ctx, inode, st, &r.to_bytes())
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                    crate::guest_warn!(
                        "the share's host filesystem does not take user xattrs: cannot \
                         record an emulated device or owner"
                    );
                    errno(libc::EPERM)
                }
                _ => e,
            })
    }

    /// A guest `mknod` of a device: an empty regular file, mode 0600, with the device recorded.
    #[allow(clippy::too_many_arguments)]
    fn mknod_device(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        kind: Kind,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let (major, minor) = record::split_guest_rdev(rdev);
        let (entry, uid, gid) = self.create_as_guest(ctx, |c| {
            self.inner
                .mknod(c, parent, name, libc::S_IFREG | 0o600, 0, 0)
        })?;
        let gid = self.inherited_group(ctx, parent).unwrap_or(gid);
        let r = Record {
            kind,
            perm: mode & !umask & 0o7777,
            uid,
            gid,
            major,
            minor,
        };
        if let Some(paths) = &self.paths {
            paths.note(entry.inode, parent, name.to_bytes());
        }
        let worker = as_worker(ctx, self.owner_uid, self.owner_gid);
        let made = (|| {
            if entry.attr.st_uid != self.owner_uid {
                let mut st = entry.attr;
                st.st_uid = self.owner_uid;
                self.inner
                    .setattr(&worker, entry.inode, st, None, SetattrValid::UID)?;
            }
            self.write_record(ctx, entry.inode, &entry.attr, &r)
        })();
        if let Err(e) = made {
            // Leave nothing behind: the guest was told the mknod failed.
            let _ = self.inner.unlink(&worker, parent, name);
            self.inner.forget(ctx, entry.inode, 1);
            return Err(e);
        }
        let mut entry = entry;
        apply(&mut entry.attr, &r);
        Ok(entry)
    }

    /// Runs a creating call as the guest's ids; with `ownership = "emulate"` and ids the host
    /// cannot take (the passthrough's credential switch answers EINVAL for an id outside the
    /// worker's map), runs it as the worker instead. Returns the entry and the owner the guest
    /// is to see.
    fn create_as_guest<T>(
        &self,
        ctx: &Context,
        call: impl Fn(&Context) -> io::Result<T>,
    ) -> io::Result<(T, u32, u32)>
    where
        T: AsEntry,
    {
        match call(ctx) {
            Ok(t) => {
                let (uid, gid) = (t.entry().attr.st_uid, t.entry().attr.st_gid);
                Ok((t, uid, gid))
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    && self.ownership == Ownership::Emulate
                    && (ctx.uid, ctx.gid) != (self.owner_uid, self.owner_gid) =>
            {
                let t = call(&as_worker(ctx, self.owner_uid, self.owner_gid))?;
                Ok((t, ctx.uid, ctx.gid))
            }
            Err(e) => Err(e),
        }
    }

    /// The group a new entry in `parent` takes when `parent` is a setgid directory whose group
    /// is only recorded (the host cannot hand it down). `None` otherwise.
    fn inherited_group(&self, ctx: &Context, parent: u64) -> Option<u32> {
        if self.ownership != Ownership::Emulate {
            return None;
        }
        let (st, _) = self.inner.getattr(ctx, parent, None).ok()?;
        let r = self.record_of(ctx, parent, &st)?;
        (r.perm & libc::S_ISGID != 0).then_some(r.gid)
    }

    /// After a creation: record the owner the guest is to see when the host file does not hold
    /// it (made as the worker for an unmapped guest id, or in a setgid directory whose group
    /// is recorded; a directory made there is setgid too, as the kernel does).
    fn record_owner(&self, ctx: &Context, parent: u64, entry: &mut Entry, uid: u32, gid: u32) {
        let inherited = self.inherited_group(ctx, parent);
        let gid = inherited.unwrap_or(gid);
        let st = &entry.attr;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let add_perm = if inherited.is_some() && is_dir {
            libc::S_ISGID
        } else {
            0
        };
        if (st.st_uid, st.st_gid) == (uid, gid) && add_perm == 0 {
            return;
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::Regular,
            libc::S_IFDIR => Kind::Directory,
            // Symlinks, FIFOs and sockets cannot carry a user xattr: they stay the worker's.
            _ => return,
        };
        let r = Record {
            kind,
            perm: (st.st_mode & 0o7777) | add_perm,
            uid,
            gid,
            major: 0,
            minor: 0,
        };
        let host_perm = r.perm & 0o755;
        let worker = as_worker(ctx, self.owner_uid, self.owner_gid);
        let done = self.write_record(ctx, entry.inode, st, &r).and_then(|()| {
            if host_perm == st.st_mode & 0o7777 {
                return Ok(());
            }
            let mut want = *st;
            want.st_mode = host_perm;
            self.inner
                .setattr(&worker, entry.inode, want, None, SetattrValid::MODE)
                .map(|_| ())
        });
        match done {
            Ok(()) => {
                entry.attr.st_mode = (entry.attr.st_mode & libc::S_IFMT) | host_perm;
                self.show(ctx, entry.inode, &mut entry.attr);
            }
            Err(e) => crate::guest_warn!("recording the owner of a new file: {e}"),
        }
    }

    /// SETATTR of a file that carries a record, or that is to carry one.
    fn setattr_recorded(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
        host: stat64,
    ) -> io::Result<(stat64, Duration)> {
        let owner_bits =
            SetattrValid::MODE | SetattrValid::UID | SetattrValid::GID | SetattrValid::KILL_SUIDGID;
        let guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
        // Read again under the lock: another SETATTR may have just changed it.
        let current = self.record_of(ctx, inode, &host);
        let host_kind = if host.st_mode & libc::S_IFMT == libc::S_IFDIR {
            Kind::Directory
        } else {
            Kind::Regular
        };
        let mut want = current.unwrap_or(Record {
            kind: host_kind,
            perm: host.st_mode & 0o7777,
            uid: host.st_uid,
            gid: host.st_gid,
            major: 0,
            minor: 0,
        });
        if want.kind.is_device() && valid.contains(SetattrValid::SIZE) {
            // truncate(2) of a device node: the kernel says EINVAL.
            return Err(errno(libc::EINVAL));
        }
        if valid.contains(SetattrValid::UID) {
            want.uid = attr.st_uid;
        }
        if valid.contains(SetattrValid::GID) {
            want.gid = attr.st_gid;
        }
        if valid.contains(SetattrValid::MODE) {
            want.perm = attr.st_mode & 0o7777;
        } else if valid.contains(SetattrValid::KILL_SUIDGID) {
            want.perm &= !libc::S_ISUID;
            if want.perm & libc::S_IXGRP != 0 {
                want.perm &= !libc::S_ISGID;
            }
        }
        let mut host_valid = valid - owner_bits;
        let mut host_attr = attr;
        if want.kind.is_device() {
            // The host file stays an empty 0600 file of the worker's.
            self.write_record(ctx, inode, &host, &want)?;
        } else if (want.uid, want.gid) != (host.st_uid, host.st_gid) {
            // An owner the host file does not hold: record it; the host file keeps no bit
            // that would let anyone but the worker's user write it (or its record).
            self.write_record(ctx, inode, &host, &want)?;
            let host_perm = want.perm & 0o755;
            if host_perm != host.st_mode & 0o7777 {
                host_attr.st_mode = host_perm;
                host_valid |= SetattrValid::MODE;
            }
        } else {
            // The host can hold it all: no record needed any more.
            if current.is_some() {
                match self.remove_raw(ctx, inode, &host) {
                    Err(e) if e.raw_os_error() != Some(libc::ENODATA) => return Err(e),
                    _ => {}
                }
            }
            host_attr.st_mode = want.perm;
            host_valid |= valid & SetattrValid::MODE;
            if current.is_some() && want.perm != host.st_mode & 0o7777 {
                host_valid |= SetattrValid::MODE;
            }
        }
        drop(guard);
        let (mut st, timeout) = self
            .inner
            .setattr(ctx, inode, host_attr, handle, host_valid)?;
        self.show(ctx, inode, &mut st);
        Ok((st, timeout))
    }
}

/// What a creating call returns: an entry, perhaps with an open handle.
trait AsEntry {
    fn entry(&self) -> &Entry;
}

impl AsEntry for Entry {
    fn entry(&self) -> &Entry {
        self
    }
}

impl<H, O, P> AsEntry for (Entry, H, O, P) {
    fn entry(&self) -> &Entry {
        &self.0
    }
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
        if let Some(kind) = Kind::device_from_mode(mode) {
            if self.special_files == SpecialFiles::Emulate {
                return self.mknod_device(ctx, parent, name, kind, mode, rdev, umask);
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
        let (entry, _, _) =
            self.create_as_guest(ctx, |c| self.inner.symlink(c, linkname, parent, name))?;
        Ok(entry)
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
            if r.kind.is_device() {
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
            .is_some_and(|r| r.kind.is_device())
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
        fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>>;
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
