//! Step 3: the worker's view of the filesystem.
//!
//! Namespace sandbox, in a fresh mount namespace (two calls, because the passthrough
//! filesystem must open `/proc/self/fd` between them):
//! 1. [`enter_new_root`]: `/` recursively private, so nothing we mount propagates back to the
//!    host; a tmpfs (nosuid, nodev, noexec, tiny) mounted over an existing host directory —
//!    only in our namespace, nothing is created on the host — holding the share's parent
//!    directory bind-mounted at `/share` (recursively nosuid, nodev, and read-only when the
//!    share is; see "Why the parent" below) and a fresh proc at `/proc` (our pid namespace's,
//!    `subset=pid`); `pivot_root` into it; the old root detached. Now `/` is the tmpfs: nothing
//!    of the host is reachable by path but the share's parent.
//! 2. [`enter_share`]: `chroot("/share/NAME")`, the share itself. The worker's root is the share itself, so
//!    `/proc/PID/root` seen from outside shows the share and nothing else, and `..` at the root
//!    stays at the root. The tmpfs and proc stay mounted, reachable only through descriptors
//!    opened before (the passthrough's `/proc/self/fd`). The chroot cannot be undone: the
//!    worker loses CAP_SYS_CHROOT in step 7.
//!
//! Chroot sandbox (virtiofsd's `--sandbox chroot`), mount namespace only: [`private_share`]
//! then [`enter_share`] with the share's host path.
//!
//! Why the parent: Landlock (step 9) grants its rights beneath the share's inode, and since
//! Linux 6.18 it treats a directory that was moved out from under a bind mount's root (a
//! "disconnected" directory) like that mount's root. Were the share itself the mount root, a
//! directory a host process moves out of the share would keep the share's rights through the
//! worker's descriptor. With the parent as the mount root, such a directory is judged by the
//! parent, which has no rights, so Landlock refuses it. The parent is never reachable by path
//! (the worker's root is the share) nor by name (the FUSE server refuses `..`). When the share
//! is the root of its own mount (or `/`), nothing can be moved out of it within that mount,
//! and the share is bound as it is.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, pivot_root};
use thiserror::Error;

/// Where the share is bind-mounted in the new root, and where the worker chroots.
pub const SHARE_DIR: &str = "/share";
/// Where the fresh proc is mounted in the new root.
pub const PROC_DIR: &str = "/proc";

/// Host directories the tmpfs may be mounted over, first existing one wins. The mount exists
/// only in the worker's private mount namespace and the directory is left untouched on the
/// host; these are picked because every distribution has at least one of them.
const STAGING_CANDIDATES: &[&str] = &["/mnt", "/tmp", "/run", "/var/tmp", "/opt", "/srv"];

/// tmpfs options: root-owned, world-searchable (the guest's uids must traverse to the share),
/// and small: it only ever holds two empty directories, so a worker that could write to it
/// could not use it to fill host memory.
const TMPFS_OPTIONS: &str = "mode=0755,size=16k,nr_inodes=8";

#[derive(Debug, Error)]
pub enum MountError {
    #[error("making / recursively private: {0}")]
    MakePrivate(Errno),
    #[error("opening the share {}: {source}", path.display())]
    OpenShare { path: PathBuf, source: Errno },
    #[error("no directory to mount the new root over (tried {STAGING_CANDIDATES:?})")]
    NoStagingDir,
    #[error("mounting the root tmpfs on {}: {source}", path.display())]
    Tmpfs { path: PathBuf, source: Errno },
    #[error("creating {} in the new root: {source}", path.display())]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("bind-mounting the share {} on {}: {source}", share.display(), target.display())]
    BindShare {
        share: PathBuf,
        target: PathBuf,
        source: Errno,
    },
    #[error("setting {what} on the share mount {}: {source}", path.display())]
    ShareAttributes {
        path: PathBuf,
        what: &'static str,
        source: Errno,
    },
    #[error("mounting proc on {}: {source}", path.display())]
    Proc { path: PathBuf, source: Errno },
    #[error("entering the new root {}: {source}", path.display())]
    EnterNewRoot { path: PathBuf, source: Errno },
    #[error("pivot_root into {}: {source}", path.display())]
    PivotRoot { path: PathBuf, source: Errno },
    #[error("detaching the old root: {0}")]
    DetachOldRoot(Errno),
    #[error("chroot into {}: {source}", path.display())]
    Chroot { path: PathBuf, source: Errno },
    #[error("the share {} is not at {} after the bind mount (moved meanwhile?): {source}", share.display(), inside.display())]
    ShareMoved {
        share: PathBuf,
        inside: PathBuf,
        source: Errno,
    },
}

/// Namespace sandbox, first half: builds the tmpfs root holding the share and a fresh proc and
/// pivots into it. Returns where the share is now: [`SHARE_DIR`]`/NAME` (its parent is mounted
/// at [`SHARE_DIR`]), or [`SHARE_DIR`] itself when the share is a mount root; our proc is at
/// [`PROC_DIR`].
///
/// Must run in a new mount namespace (and a new pid namespace, for the proc to be ours).
pub fn enter_new_root(share: &Path, readonly: bool) -> Result<PathBuf, MountError> {
    make_root_private()?;

    // Opened before anything is mounted: the staging directory may be the share's ancestor
    // (a share under /tmp), and the tmpfs would then hide it.
    let share_fd = open_share(share)?;
    let anchor = Anchor::of(&share_fd, share)?;

    let staging = staging_dir()?;
    mount(
        Some("tmpfs"),
        &staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(TMPFS_OPTIONS),
    )
    .map_err(|source| MountError::Tmpfs {
        path: staging.clone(),
        source,
    })?;

    let share_target = staging.join(SHARE_DIR.trim_start_matches('/'));
    let proc_target = staging.join(PROC_DIR.trim_start_matches('/'));
    mkdir(&share_target, 0o755)?;
    mkdir(&proc_target, 0o555)?;

    bind_share(&anchor.fd, share, &share_target, readonly)?;
    let inside = anchor.share_in(&share_target);
    check_same_dir(&share_fd, share, &inside)?;
    drop(share_fd);

    // Mounted before the old root goes: in a user namespace the kernel only lets us mount a
    // proc while a fully visible one (the host's) is in our mount namespace.
    mount_proc(&proc_target)?;

    pivot_into(&staging)?;
    Ok(anchor.share_in(Path::new(SHARE_DIR)))
}

/// What gets bind-mounted: the share's parent (see the module doc), or the share itself when
/// it is a mount root or `/`.
struct Anchor {
    fd: OwnedFd,
    /// The share's name in the anchor; `None` when the anchor is the share.
    name: Option<std::ffi::OsString>,
}

impl Anchor {
    fn of(share_fd: &OwnedFd, share: &Path) -> Result<Anchor, MountError> {
        let itself = |fd: &OwnedFd| -> Result<Anchor, MountError> {
            Ok(Anchor {
                fd: fd.try_clone().map_err(|e| MountError::OpenShare {
                    path: share.to_owned(),
                    source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
                })?,
                name: None,
            })
        };
        let Some(name) = share.file_name() else {
            return itself(share_fd);
        };
        if is_mount_root(share_fd) {
            warn_if_subtree_bind(share_fd, share);
            return itself(share_fd);
        }
        // The parent of the directory we opened, not of the path: the path may have changed.
        let fd = nix::fcntl::openat(
            Some(share_fd.as_raw_fd()),
            "..",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| MountError::OpenShare {
            path: share.join(".."),
            source,
        })?;
        Ok(Anchor {
            // SAFETY: `openat` just returned this descriptor; nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            name: Some(name.to_owned()),
        })
    }

    /// The share's path once the anchor is mounted at `at`.
    fn share_in(&self, at: &Path) -> PathBuf {
        match &self.name {
            Some(name) => at.join(name),
            None => at.to_owned(),
        }
    }
}

/// Whether the directory is the root of a mount (statx's STATX_ATTR_MOUNT_ROOT, Linux 5.8).
/// When the kernel cannot say, it is treated as one: the share is then bound as it is.
fn is_mount_root(fd: &OwnedFd) -> bool {
    // SAFETY: statx writes only into `stx`, a plain C struct for which zeroes are valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `fd` itself; `stx` is
    // writable for the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    let mask = libc::STATX_ATTR_MOUNT_ROOT as u64;
    rc != 0 || stx.stx_attributes_mask & mask == 0 || stx.stx_attributes & mask != 0
}

/// A share that is the root of a bind mount of a directory inside its filesystem (not of the
/// filesystem's root) has an outside the worker cannot be anchored above: a directory moved
/// from the share to elsewhere in that filesystem keeps the share's Landlock rights on Linux
/// 6.18+ (see the module doc). Says so; the share works as before.
fn warn_if_subtree_bind(share_fd: &OwnedFd, share: &Path) {
    // SAFETY: statx writes only into `stx`, a plain C struct for which zeroes are valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `share_fd` itself; `stx`
    // is writable for the call.
    let rc = unsafe {
        libc::statx(
            share_fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return;
    }
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let id = stx.stx_mnt_id.to_string();
    let root = mountinfo.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.next() == Some(id.as_str())).then(|| f.nth(2))?
    });
    if let Some(root) = root.filter(|r| *r != "/") {
        log::warn!(
            "the share {} is a bind mount of {root} inside its filesystem: a directory the host moves from it to elsewhere in that filesystem keeps the share's Landlock rights (Linux 6.18+); share a directory below the mount instead",
            share.display()
        );
    }
}

/// After the bind: `inside` must be the directory we opened as the share (a host process could
/// have renamed another directory into its place in between).
fn check_same_dir(share_fd: &OwnedFd, share: &Path, inside: &Path) -> Result<(), MountError> {
    let moved = |source| MountError::ShareMoved {
        share: share.to_owned(),
        inside: inside.to_owned(),
        source,
    };
    let want = nix::sys::stat::fstat(share_fd.as_raw_fd()).map_err(moved)?;
    let got = nix::sys::stat::lstat(inside).map_err(moved)?;
    if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino) {
        return Err(moved(Errno::ESTALE));
    }
    Ok(())
}

/// Chroot sandbox: keeps the host's tree but makes our mount namespace private and the share
/// nosuid, nodev (and read-only when it is), by bind-mounting it over itself.
pub fn private_share(share: &Path, readonly: bool) -> Result<(), MountError> {
    make_root_private()?;
    let share_fd = open_share(share)?;
    // The parent over itself, for the reason the module doc gives.
    let anchor = Anchor::of(&share_fd, share)?;
    let target = match &anchor.name {
        Some(_) => share.parent().unwrap_or(share).to_owned(),
        None => share.to_owned(),
    };
    bind_share(&anchor.fd, share, &target, readonly)?;
    check_same_dir(&share_fd, share, share)
}

/// Namespace sandbox, second half (and the chroot sandbox's last): makes `dir` the process's
/// root and working directory.
pub fn enter_share(dir: &Path) -> Result<(), MountError> {
    chroot(dir).map_err(|source| MountError::Chroot {
        path: dir.to_owned(),
        source,
    })?;
    chdir("/").map_err(|source| MountError::Chroot {
        path: dir.to_owned(),
        source,
    })
}

/// The share as an `O_PATH` descriptor. O_NOFOLLOW with O_DIRECTORY refuses a symlink swapped
/// in for the share after the broker checked it.
fn open_share(share: &Path) -> Result<OwnedFd, MountError> {
    let fd = open(
        share,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| MountError::OpenShare {
        path: share.to_owned(),
        source,
    })?;
    // SAFETY: `open` just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn make_root_private() -> Result<(), MountError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(MountError::MakePrivate)
}

/// The first candidate that is a real directory (not a symlink to one: the mount would land
/// on the symlink's target, which we did not pick).
fn staging_dir() -> Result<PathBuf, MountError> {
    STAGING_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        })
        .ok_or(MountError::NoStagingDir)
}

fn mkdir(path: &Path, mode: u32) -> Result<(), MountError> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|source| MountError::Mkdir {
            path: path.to_owned(),
            source,
        })
}

/// Bind-mounts the directory behind `share_fd` on `target`, with everything mounted below it
/// (MS_REC: in a user namespace the kernel refuses a bind that would uncover what a locked
/// submount hides, and the guest should see what the share's owner sees), then sets nosuid,
/// nodev (and rdonly) on the whole tree at once with `mount_setattr(AT_RECURSIVE)` — a
/// remount would only change the top mount and leave submounts writable.
fn bind_share(
    share_fd: &OwnedFd,
    share: &Path,
    target: &Path,
    readonly: bool,
) -> Result<(), MountError> {
    // The source goes through our fd, so it is the directory checked above even if the path
    // changed since. /proc is still the host's here (or our fresh one): either resolves it.
    let source = format!("/proc/self/fd/{}", share_fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| MountError::BindShare {
        share: share.to_owned(),
        target: target.to_owned(),
        source,
    })?;

    let mut attr_set = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    let mut what = "nosuid,nodev";
    if readonly {
        attr_set |= libc::MOUNT_ATTR_RDONLY;
        what = "ro,nosuid,nodev";
    }
    mount_setattr_recursive(target, attr_set).map_err(|source| MountError::ShareAttributes {
        path: target.to_owned(),
        what,
        source,
    })
}

/// `mount_setattr(2)` (Linux 5.12) on `path` and every mount below it. Only sets flags, never
/// clears one, so the flags the kernel locks in a user namespace are kept as they are.
fn mount_setattr_recursive(path: &Path, attr_set: u64) -> Result<(), Errno> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `c_path` is a valid NUL-terminated string and `attr` a valid mount_attr whose
    // size we pass; the kernel only reads both during the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// A proc of our pid namespace. `subset=pid` (Linux 5.8) leaves out everything but the
/// per-process directories (no /proc/sys, /proc/sysrq-trigger, /proc/kcore, ...): the
/// passthrough only needs `/proc/self/fd` and `/proc/self/mountinfo`. Older kernels reject the
/// option; the full proc of our own pid namespace is the fallback.
fn mount_proc(target: &Path) -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(
        Some("proc"),
        target,
        Some("proc"),
        flags,
        Some("subset=pid"),
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => mount(Some("proc"), target, Some("proc"), flags, None::<&str>)
            .map_err(|source| MountError::Proc {
                path: target.to_owned(),
                source,
            }),
        Err(source) => Err(MountError::Proc {
            path: target.to_owned(),
            source,
        }),
    }
}

/// `pivot_root(".", ".")` from inside the new root: the old root ends up stacked on top of the
/// new one at `/`, and detaching the top mount drops it, with no put_old directory to create
/// (the tmpfs stays two directories).
fn pivot_into(new_root: &Path) -> Result<(), MountError> {
    chdir(new_root).map_err(|source| MountError::EnterNewRoot {
        path: new_root.to_owned(),
        source,
    })?;
    pivot_root(".", ".").map_err(|source| MountError::PivotRoot {
        path: new_root.to_owned(),
        source,
    })?;
    umount2(".", MntFlags::MNT_DETACH).map_err(MountError::DetachOldRoot)?;
    chdir("/").map_err(|source| MountError::EnterNewRoot {
        path: new_root.to_owned(),
        source,
    })
}
