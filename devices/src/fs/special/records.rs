//! Reading, writing and showing the records of [`Emulation`], and the creation and SETATTR
//! paths that write them. The `FileSystem` methods that call these are in `wrapper`.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem, GetxattrReply, SetattrValid};

use super::record::{self, Kind, Record};
use super::wrapper::errno;
use super::{Emulation, Ownership};
use crate::fs::xattr_path;

pub(super) fn apply(st: &mut stat64, r: &Record) {
    st.st_mode = r.kind.ifmt() | r.perm;
    st.st_uid = r.uid;
    st.st_gid = r.gid;
    st.st_rdev = r.dev();
    if r.kind == Kind::Symlink {
        // The stand-in's own blocks move under the guest (0 until the host filesystem
        // allocates the target's bytes, 8 after), so a symlink's metadata would change with no
        // change to the symlink (pjdfstest's rename::preserve_metadata_symlink saw it). Shown as
        // ext4 stores a link: in the inode up to 60 bytes, else in whole 4 KiB blocks.
        st.st_blocks = symlink_blocks(st.st_size);
    }
}

/// The 512-byte blocks an ext4 symlink of a `size`-byte target occupies.
fn symlink_blocks(size: i64) -> i64 {
    const INLINE: i64 = 60;
    const BLOCK: i64 = 4096;
    if size < INLINE {
        0
    } else {
        (size + BLOCK - 1) / BLOCK * (BLOCK / 512)
    }
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
    pub(super) fn get_raw(&self, ctx: &Context, inode: u64, st: &stat64) -> io::Result<Vec<u8>> {
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

    pub(super) fn set_raw(
        &self,
        ctx: &Context,
        inode: u64,
        st: &stat64,
        value: &[u8],
    ) -> io::Result<()> {
        self.seen.forget(st);
        match &self.paths {
            Some(paths) => xattr_path::set(&paths.path(inode, st)?, record::NAME, value, 0),
            None => self.inner.setxattr(ctx, inode, record::NAME, value, 0),
        }
    }

    pub(super) fn remove_raw(&self, ctx: &Context, inode: u64, st: &stat64) -> io::Result<()> {
        self.seen.forget(st);
        match &self.paths {
            Some(paths) => xattr_path::remove(&paths.path(inode, st)?, record::NAME),
            None => self.inner.removexattr(ctx, inode, record::NAME),
        }
    }

    /// Remembers how the guest reached an inode that may carry a record (see [`super::paths`]).
    /// With host ownership a file gets a record only when `mknod` makes it, so a file known to
    /// carry none needs no name kept (which saves a map update per LOOKUP of plain files).
    pub(super) fn note(&self, entry: &Entry, parent: u64, name: &[u8]) {
        let Some(paths) = &self.paths else {
            return;
        };
        if !self.may_carry(&entry.attr) {
            return;
        }
        if self.ownership == Ownership::Host && self.seen.get(&entry.attr) == Some(None) {
            return;
        }
        paths.note(entry.inode, parent, name);
    }

    /// Whether a host file may carry a record we honour: see the module docs of [`super`].
    /// Also what keeps the common case cheap: most files fail this on their stat alone and
    /// cost no getxattr.
    pub(super) fn may_carry(&self, st: &stat64) -> bool {
        if st.st_uid != self.owner_uid || st.st_mode & 0o022 != 0 {
            return false;
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => st.st_size == 0 || self.ownership == Ownership::Emulate,
            libc::S_IFDIR => self.ownership == Ownership::Emulate,
            _ => false,
        }
    }

    /// The record a host file carries, if any and if it is to be honoured. Asks the host only
    /// when the file changed since the last answer (see [`super::seen`]).
    pub(super) fn record_of(&self, ctx: &Context, inode: u64, st: &stat64) -> Option<Record> {
        if !self.may_carry(st) {
            return None;
        }
        if let Some(found) = self.seen.get(st) {
            return found;
        }
        let (found, lasting) = self.read_record(ctx, inode, st);
        if lasting {
            self.seen.put(st, found);
        }
        found
    }

    /// Reads and checks the record of a host file; the flag says whether the answer holds
    /// until the file changes (not after an error that may pass, such as a missing name).
    fn read_record(&self, ctx: &Context, inode: u64, st: &stat64) -> (Option<Record>, bool) {
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
                let lasting = matches!(
                    e.raw_os_error(),
                    Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
                );
                return (None, lasting);
            }
        };
        let host_fmt = st.st_mode & libc::S_IFMT;
        let found = match Record::parse(&value) {
            Ok(r)
                if r.kind.host_ifmt() == host_fmt
                    && (r.kind.is_placeholder() || self.ownership == Ownership::Emulate) =>
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
        };
        (found, true)
    }

    /// Replaces what the host says with what the guest is to see; returns the record used.
    pub(super) fn show(&self, ctx: &Context, inode: u64, st: &mut stat64) -> Option<Record> {
        let r = self.record_of(ctx, inode, st)?;
        apply(st, &r);
        Some(r)
    }

    pub(super) fn show_entry(&self, ctx: &Context, mut entry: Entry) -> Entry {
        self.show(ctx, entry.inode, &mut entry.attr);
        entry
    }

    pub(super) fn write_record(
        &self,
        ctx: &Context,
        inode: u64,
        st: &stat64,
        r: &Record,
    ) -> io::Result<()> {
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

    /// Makes a regular host file, mode 0600, owned by the worker, holding `content`, with a
    /// record of `kind`, permission bits `mode` and device `rdev`; the owner recorded is the
    /// guest's (see [`Self::create_as_guest`]). On any failure nothing is left behind.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make_standin(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        kind: Kind,
        mode: u32,
        rdev: u32,
        content: &[u8],
    ) -> io::Result<Entry> {
        let (major, minor) = record::split_guest_rdev(rdev);
        let (entry, uid, gid) = self.create_as_guest(ctx, |c| {
            self.inner
                .mknod(c, parent, name, libc::S_IFREG | 0o600, 0, 0)
        })?;
        let gid = self.inherited_group(ctx, parent).unwrap_or(gid);
        let r = Record {
            kind,
            perm: mode & 0o7777,
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
            if !content.is_empty() {
                self.write_content(entry.inode, &entry.attr, content)?;
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
        entry.attr.st_size = content.len() as i64;
        apply(&mut entry.attr, &r);
        Ok(entry)
    }

    /// Runs a creating call as the guest's ids; with `ownership = "emulate"` and ids the host
    /// cannot take (the passthrough's credential switch answers EINVAL for an id outside the
    /// worker's map), runs it as the worker instead. Returns the entry and the owner the guest
    /// is to see.
    pub(super) fn create_as_guest<T>(
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
    pub(super) fn inherited_group(&self, ctx: &Context, parent: u64) -> Option<u32> {
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
    pub(super) fn record_owner(
        &self,
        ctx: &Context,
        parent: u64,
        entry: &mut Entry,
        uid: u32,
        gid: u32,
    ) {
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
    pub(super) fn setattr_recorded(
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
        if want.kind.is_placeholder() && valid.contains(SetattrValid::SIZE) {
            // truncate(2) of a device, FIFO or socket: the kernel says EINVAL.
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
        if want.kind.is_placeholder() {
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
            if valid.contains(SetattrValid::MODE) || want.perm != host.st_mode & 0o7777 {
                host_attr.st_mode = want.perm;
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
pub(super) trait AsEntry {
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
