//! A FUSE filesystem of the tests' own, mounted inside a share, that fails chosen calls.
//!
//! [`FaultFs`] is fuse-backend-rs's `PassthroughFs` over a host directory, served on
//! `/dev/fuse` by fuse-backend-rs's own FUSE server (feature `fusedev`, a dev-dependency
//! only), with every call first checked against a set of faults: "fail every `write` with
//! EIO" until cleared. The worker under test sees an ordinary filesystem inside its share whose
//! disk fails exactly when and where the test says, so the test can check that the guest gets
//! that errno for exactly those calls. Unless asked for write-back, data and metadata are
//! uncached (direct I/O, zero timeouts), so each guest call reaches this filesystem.
//!
//! Needs root (mount(2) of a FUSE filesystem) and /dev/fuse; fails loudly without them.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, FsOptions, GetxattrReply, ListxattrReply,
    OpenOptions, SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::PassthroughFs;
use fuse_backend_rs::transport::FuseSession;

/// Which calls fail, by the `FileSystem` method name (`"write"`, `"fsync"`, ...), and with what.
#[derive(Default)]
pub struct Faults(Mutex<HashMap<&'static str, i32>>);

impl Faults {
    /// From now on every `op` fails with `errno`.
    pub fn fail(&self, op: &'static str, errno: i32) {
        self.0.lock().unwrap().insert(op, errno);
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn check(&self, op: &'static str) -> io::Result<()> {
        match self.0.lock().unwrap().get(op) {
            Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

pub struct FaultFs {
    inner: PassthroughFs,
    faults: Arc<Faults>,
}

macro_rules! plain {
    ($($(#[$attr:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?;)*) => {
        $(
            $(#[$attr])*
            fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                self.inner.$name($($arg),*)
            }
        )*
    };
}

macro_rules! faulty {
    ($($(#[$attr:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*) => {
        $(
            $(#[$attr])*
            fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.faults.check(stringify!($name))?;
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl FileSystem for FaultFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        self.inner.init(capable)
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: Self::Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.faults.check("mknod")?;
        self.inner.mknod(ctx, parent, name, mode, rdev, umask)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Self::Handle>, OpenOptions, Option<u32>)> {
        self.faults.check("open")?;
        self.inner.open(ctx, inode, flags, fuse_flags)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        attr: stat64,
        handle: Option<Self::Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.faults.check("setattr")?;
        self.inner.setattr(ctx, inode, attr, handle, valid)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.faults.check("setxattr")?;
        self.inner.setxattr(ctx, inode, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.faults.check("getxattr")?;
        self.inner.getxattr(ctx, inode, name, size)
    }

    fn listxattr(
        &self,
        ctx: &Context,
        inode: Self::Inode,
        size: u32,
    ) -> io::Result<ListxattrReply> {
        self.faults.check("listxattr")?;
        self.inner.listxattr(ctx, inode, size)
    }

    fn removexattr(&self, ctx: &Context, inode: Self::Inode, name: &CStr) -> io::Result<()> {
        self.faults.check("removexattr")?;
        self.inner.removexattr(ctx, inode, name)
    }

    plain! {
        fn destroy(&self);
        fn forget(&self, ctx: &Context, inode: Self::Inode, count: u64);
        fn batch_forget(&self, ctx: &Context, requests: Vec<(Self::Inode, u64)>);
    }

    faulty! {
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
        fn lookup(&self, ctx: &Context, parent: Self::Inode, name: &CStr) -> io::Result<Entry>;
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
    }
}

/// A mounted [`FaultFs`]: unmounted (and its server threads stopped) on drop.
pub struct Mounted {
    pub faults: Arc<Faults>,
    session: Option<FuseSession>,
    threads: Vec<JoinHandle<()>>,
}

/// Mounts a [`FaultFs`] over `backing` (a host directory) at `at`, served by two threads.
/// `writeback`: the host kernel caches writes and flushes them later (FUSE write-back cache),
/// so a failing `write` shows at fsync; otherwise every call goes straight through (direct
/// I/O, nothing cached).
pub fn mount(backing: &Path, at: &Path, writeback: bool) -> Mounted {
    let mut opts = devices::fs::ShareOptions::new(backing);
    if writeback {
        opts.cache = devices::fs::CachePolicy::Auto;
        opts.writeback = true;
    } else {
        opts.cache = devices::fs::CachePolicy::Never;
    }
    let inner =
        devices::fs::new_passthrough(&opts).expect("PassthroughFs for the fault filesystem");
    let faults = Arc::new(Faults::default());
    let fs = FaultFs {
        inner,
        faults: faults.clone(),
    };
    let server = Arc::new(Server::new(Arc::new(fs)));
    let mut session = FuseSession::new(at, "fsjail-faultfs", "", false)
        .unwrap_or_else(|e| panic!("FUSE session at {}: {e}", at.display()));
    session.mount().unwrap_or_else(|e| {
        panic!("mounting the fault filesystem (needs root and /dev/fuse): {e}")
    });
    let threads = (0..2)
        .map(|_| {
            let mut ch = session.new_channel().expect("FUSE channel");
            let server = server.clone();
            std::thread::spawn(move || {
                while let Ok(Some((reader, writer))) = ch.get_request() {
                    // A failed reply (the requester gone) is not the test's concern.
                    let _ = server.handle_message(reader, writer.into(), None, None);
                }
            })
        })
        .collect();
    Mounted {
        faults,
        session: Some(session),
        threads,
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = s.umount();
            let _ = s.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
