//! Typed FUSE operations, part 1: session setup, names and attributes.

use devices::fuse::abi::{
    init_flags, setattr_valid, AttrOut, BatchForgetIn, EntryOut, ForgetIn, ForgetOne, GetattrIn,
    InitIn, InitOut, InterruptIn, LinkIn, MkdirIn, MknodIn, Opcode, Rename2In, RenameIn, SetattrIn,
    GETATTR_FH, KERNEL_MINOR_VERSION, KERNEL_VERSION,
};
use vm_memory::ByteValued;

use crate::error::{Error, Result};
use crate::fuse_client::{parse_exact, parse_prefix, Session};

/// Bytes of INIT's request before 7.36.
const INIT_IN_COMPAT: usize = 16;
/// Bytes of INIT's reply before 7.23.
const INIT_OUT_COMPAT: usize = 24;

/// What INIT asks for.
#[derive(Clone, Copy, Debug)]
pub struct InitOptions {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    /// Capability bits (bits 32.. go in `flags2`, sent only with INIT_EXT).
    pub flags: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        use init_flags::*;
        InitOptions {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            max_readahead: 128 * 1024,
            flags: ASYNC_READ
                | POSIX_LOCKS
                | ATOMIC_O_TRUNC
                | EXPORT_SUPPORT
                | BIG_WRITES
                | DONT_MASK
                | FLOCK_LOCKS
                | HAS_IOCTL_DIR
                | AUTO_INVAL_DATA
                | DO_READDIRPLUS
                | READDIRPLUS_AUTO
                | ASYNC_DIO
                | PARALLEL_DIROPS
                | HANDLE_KILLPRIV_V2
                | ABORT_ERROR
                | MAX_PAGES
                | CACHE_SYMLINKS
                | EXPLICIT_INVAL_DATA
                | MAP_ALIGNMENT
                | SUBMOUNTS
                | INIT_EXT,
        }
    }
}

/// SETATTR arguments, built field by field; each setter also sets its `valid` bit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setattr {
    pub inner: SetattrIn,
}

impl Setattr {
    /// Nothing to change yet.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn mode(mut self, mode: u32) -> Self {
        self.inner.mode = mode;
        self.inner.valid |= setattr_valid::MODE;
        self
    }
    pub fn uid(mut self, uid: u32) -> Self {
        self.inner.uid = uid;
        self.inner.valid |= setattr_valid::UID;
        self
    }
    pub fn gid(mut self, gid: u32) -> Self {
        self.inner.gid = gid;
        self.inner.valid |= setattr_valid::GID;
        self
    }
    pub fn size(mut self, size: u64) -> Self {
        self.inner.size = size;
        self.inner.valid |= setattr_valid::SIZE;
        self
    }
    pub fn atime(mut self, sec: u64, nsec: u32) -> Self {
        self.inner.atime = sec;
        self.inner.atimensec = nsec;
        self.inner.valid |= setattr_valid::ATIME;
        self
    }
    pub fn mtime(mut self, sec: u64, nsec: u32) -> Self {
        self.inner.mtime = sec;
        self.inner.mtimensec = nsec;
        self.inner.valid |= setattr_valid::MTIME;
        self
    }
    pub fn ctime(mut self, sec: u64, nsec: u32) -> Self {
        self.inner.ctime = sec;
        self.inner.ctimensec = nsec;
        self.inner.valid |= setattr_valid::CTIME;
        self
    }
    pub fn atime_now(mut self) -> Self {
        self.inner.valid |= setattr_valid::ATIME | setattr_valid::ATIME_NOW;
        self
    }
    pub fn mtime_now(mut self) -> Self {
        self.inner.valid |= setattr_valid::MTIME | setattr_valid::MTIME_NOW;
        self
    }
    pub fn fh(mut self, fh: u64) -> Self {
        self.inner.fh = fh;
        self.inner.valid |= setattr_valid::FH;
        self
    }
    pub fn lock_owner(mut self, owner: u64) -> Self {
        self.inner.lock_owner = owner;
        self.inner.valid |= setattr_valid::LOCKOWNER;
        self
    }
    pub fn kill_suidgid(mut self) -> Self {
        self.inner.valid |= setattr_valid::KILL_SUIDGID;
        self
    }
    /// Overrides `valid` wholesale (hostile tests).
    pub fn raw_valid(mut self, valid: u32) -> Self {
        self.inner.valid = valid;
        self
    }
}

/// `name` followed by a NUL, as FUSE wants names.
pub(crate) fn cstr(name: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = name.as_ref().to_vec();
    v.push(0);
    v
}

const ENTRY: usize = std::mem::size_of::<EntryOut>();
const ATTR: usize = std::mem::size_of::<AttrOut>();

impl Session {
    /// INIT with [`InitOptions::default`].
    pub fn init(&self) -> Result<InitOut> {
        self.init_with(InitOptions::default())
    }

    /// INIT: negotiates the protocol and remembers the reply (max_write etc.).
    pub fn init_with(&self, o: InitOptions) -> Result<InitOut> {
        let ext = o.flags & init_flags::INIT_EXT != 0;
        let arg = InitIn {
            major: o.major,
            minor: o.minor,
            max_readahead: o.max_readahead,
            flags: o.flags as u32,
            flags2: if ext { (o.flags >> 32) as u32 } else { 0 },
            unused: [0; 11],
        };
        let len = if o.minor >= 36 {
            arg.as_slice().len()
        } else {
            INIT_IN_COMPAT
        };
        let body = self.call(
            Opcode::Init,
            0,
            &[&arg.as_slice()[..len]],
            &[std::mem::size_of::<InitOut>()],
        )?;
        let out: InitOut = parse_prefix(Opcode::Init, &body, INIT_OUT_COMPAT)?;
        if out.major != KERNEL_VERSION {
            return Err(Error::Protocol(format!(
                "INIT: server speaks major {}",
                out.major
            )));
        }
        *self.init_out.lock().unwrap() = Some(out);
        Ok(out)
    }

    /// The capability bits the server granted (flags | flags2 << 32, the latter only if the
    /// server set INIT_EXT).
    pub fn granted_flags(&self) -> u64 {
        self.init_out().map_or(0, |o| {
            let mut f = o.flags as u64;
            if f & init_flags::INIT_EXT != 0 {
                f |= (o.flags2 as u64) << 32;
            }
            f
        })
    }

    /// DESTROY. The server may answer with a bare header or not at all.
    pub fn destroy(&self) -> Result<()> {
        let q = self.request_queue();
        let p = self.submit_on(q, Opcode::Destroy as u32, 0, &[], Some(&[]))?;
        let unique = p.unique;
        let raw = self.complete_raw(p)?;
        check_optional_reply("DESTROY", unique, &raw.bytes, raw.used_len)
    }

    /// LOOKUP `name` in `parent`.
    pub fn lookup(&self, parent: u64, name: impl AsRef<[u8]>) -> Result<EntryOut> {
        let body = self.call(Opcode::Lookup, parent, &[&cstr(name)], &[ENTRY])?;
        parse_exact(Opcode::Lookup, &body)
    }

    /// FORGET (on the hiprio queue; no reply).
    pub fn forget(&self, nodeid: u64, nlookup: u64) -> Result<()> {
        let arg = ForgetIn { nlookup };
        self.call_no_reply(0, Opcode::Forget, nodeid, &[arg.as_slice()])
    }

    /// BATCH_FORGET of `(nodeid, nlookup)` pairs (on the hiprio queue; no reply).
    pub fn batch_forget(&self, items: &[(u64, u64)]) -> Result<()> {
        let head = BatchForgetIn {
            count: items.len() as u32,
            dummy: 0,
        };
        let mut list = Vec::with_capacity(items.len() * 16);
        for &(nodeid, nlookup) in items {
            list.extend_from_slice(ForgetOne { nodeid, nlookup }.as_slice());
        }
        self.call_no_reply(0, Opcode::BatchForget, 0, &[head.as_slice(), &list])
    }

    /// INTERRUPT request `unique` (hiprio queue). The server may stay silent.
    pub fn interrupt(&self, unique: u64) -> Result<()> {
        let arg = InterruptIn { unique };
        let p = self.submit_on(0, Opcode::Interrupt as u32, 0, &[arg.as_slice()], Some(&[]))?;
        let u = p.unique;
        let raw = self.complete_raw(p)?;
        check_optional_reply("INTERRUPT", u, &raw.bytes, raw.used_len)
    }

    /// GETATTR, optionally through an open handle.
    pub fn getattr(&self, nodeid: u64, fh: Option<u64>) -> Result<AttrOut> {
        let arg = GetattrIn {
            getattr_flags: if fh.is_some() { GETATTR_FH } else { 0 },
            dummy: 0,
            fh: fh.unwrap_or(0),
        };
        let body = self.call(Opcode::Getattr, nodeid, &[arg.as_slice()], &[ATTR])?;
        parse_exact(Opcode::Getattr, &body)
    }

    /// SETATTR.
    pub fn setattr(&self, nodeid: u64, s: &Setattr) -> Result<AttrOut> {
        let body = self.call(Opcode::Setattr, nodeid, &[s.inner.as_slice()], &[ATTR])?;
        parse_exact(Opcode::Setattr, &body)
    }

    /// READLINK.
    pub fn readlink(&self, nodeid: u64) -> Result<Vec<u8>> {
        self.call(Opcode::Readlink, nodeid, &[], &[4096])
    }

    /// SYMLINK: create `name` in `parent` pointing at `target`.
    pub fn symlink(
        &self,
        parent: u64,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> Result<EntryOut> {
        let body = self.call(
            Opcode::Symlink,
            parent,
            &[&cstr(name), &cstr(target)],
            &[ENTRY],
        )?;
        parse_exact(Opcode::Symlink, &body)
    }

    /// MKNOD.
    pub fn mknod(
        &self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<EntryOut> {
        let arg = MknodIn {
            mode,
            rdev,
            umask,
            padding: 0,
        };
        let body = self.call(
            Opcode::Mknod,
            parent,
            &[arg.as_slice(), &cstr(name)],
            &[ENTRY],
        )?;
        parse_exact(Opcode::Mknod, &body)
    }

    /// MKDIR.
    pub fn mkdir(
        &self,
        parent: u64,
        name: impl AsRef<[u8]>,
        mode: u32,
        umask: u32,
    ) -> Result<EntryOut> {
        let arg = MkdirIn { mode, umask };
        let body = self.call(
            Opcode::Mkdir,
            parent,
            &[arg.as_slice(), &cstr(name)],
            &[ENTRY],
        )?;
        parse_exact(Opcode::Mkdir, &body)
    }

    /// UNLINK.
    pub fn unlink(&self, parent: u64, name: impl AsRef<[u8]>) -> Result<()> {
        self.call(Opcode::Unlink, parent, &[&cstr(name)], &[])
            .map(drop)
    }

    /// RMDIR.
    pub fn rmdir(&self, parent: u64, name: impl AsRef<[u8]>) -> Result<()> {
        self.call(Opcode::Rmdir, parent, &[&cstr(name)], &[])
            .map(drop)
    }

    /// RENAME.
    pub fn rename(
        &self,
        olddir: u64,
        oldname: impl AsRef<[u8]>,
        newdir: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<()> {
        let arg = RenameIn { newdir };
        self.call(
            Opcode::Rename,
            olddir,
            &[arg.as_slice(), &cstr(oldname), &cstr(newname)],
            &[],
        )
        .map(drop)
    }

    /// RENAME2 with `RENAME_*` flags.
    pub fn rename2(
        &self,
        olddir: u64,
        oldname: impl AsRef<[u8]>,
        newdir: u64,
        newname: impl AsRef<[u8]>,
        flags: u32,
    ) -> Result<()> {
        let arg = Rename2In {
            newdir,
            flags,
            padding: 0,
        };
        self.call(
            Opcode::Rename2,
            olddir,
            &[arg.as_slice(), &cstr(oldname), &cstr(newname)],
            &[],
        )
        .map(drop)
    }

    /// LINK: a new name `newname` in `newparent` for `oldnodeid`.
    pub fn link(
        &self,
        oldnodeid: u64,
        newparent: u64,
        newname: impl AsRef<[u8]>,
    ) -> Result<EntryOut> {
        let arg = LinkIn { oldnodeid };
        let body = self.call(
            Opcode::Link,
            newparent,
            &[arg.as_slice(), &cstr(newname)],
            &[ENTRY],
        )?;
        parse_exact(Opcode::Link, &body)
    }
}

/// For requests a server may or may not answer: nothing at all is fine, otherwise the header
/// must be well formed, and an error becomes `Errno`.
fn check_optional_reply(what: &str, unique: u64, bytes: &[u8], used_len: u32) -> Result<()> {
    if used_len == 0 {
        return Ok(());
    }
    if bytes.len() < 16 {
        return Err(Error::Protocol(format!("{what}: {used_len}-byte reply")));
    }
    let h: devices::fuse::abi::OutHeader = crate::fuse_client::copy_struct(bytes);
    if h.unique != unique || h.len != used_len {
        return Err(Error::Protocol(format!(
            "{what}: reply header unique {} len {} (want {unique}, {used_len})",
            h.unique, h.len
        )));
    }
    match h.error {
        0 => Ok(()),
        e if (-4095..0).contains(&e) => Err(Error::Errno(-e)),
        e => Err(Error::Protocol(format!("{what}: error field {e}"))),
    }
}
