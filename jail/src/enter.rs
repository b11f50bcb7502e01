//! The worker's side of the jail: steps 3 to 10, in their order, in one call.
//!
//! The order is fixed by what each step takes away:
//! - mounts first: the share is opened between the pivot into the tmpfs root (where the jail's
//!   own `/proc` is reachable) and the chroot into the share, because the passthrough
//!   filesystem opens `/proc/self/fd` by path; its root is imported after the chroot, as `/`;
//! - rlimits while CAP_SYS_RESOURCE may still be needed to set NOFILE;
//! - closing fds once everything the worker keeps is open;
//! - groups and capabilities after every privileged operation;
//! - no_new_privs and the parent-death check after that;
//! - Landlock (it needs no_new_privs, and must come before any thread);
//! - seccomp very last: the filter forbids what every step above needed.
//!
//! Step 4 (PID 1 duties) runs before the handover is even received, so that a SIGTERM during
//! setup is not lost: the worker calls [`crate::steps::pid1::install`] first.
//!
//! Steps 5 to 10 set per-thread state, so [`enter`] must run before the worker starts any
//! thread; threads started later (the vhost-user daemon's) inherit the finished jail.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use thiserror::Error;

use crate::policy::{SandboxMode, ShareConfig};
use crate::steps::{creds, fds, landlock, mounts, privs, rlimits, JailError};

/// What the worker brings to its jail.
pub struct Jail<'a> {
    pub share: &'a ShareConfig,
    /// The control socket to the broker (kept open, and watched for the broker's death).
    pub control: BorrowedFd<'a>,
    /// Other descriptors the worker holds and keeps (the vhost-user listener).
    pub keep: &'a [RawFd],
    /// The broker wrote "deny" to the worker's setgroups file.
    pub setgroups_denied: bool,
}

/// Where the share is while the worker opens it.
#[derive(Clone, Copy, Debug)]
pub struct SharePaths<'a> {
    /// The share's directory now, while `/proc` is still reachable.
    pub now: &'a Path,
    /// The share's directory once the jail is complete (`/` when jailed: the root is the share).
    pub served: &'a Path,
}

/// A step failed, or the worker's own opening (or building) of its share did.
#[derive(Debug, Error)]
pub enum EnterError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error(transparent)]
    Open(E),
}

/// Jails the calling process and returns what `build` made of the share.
///
/// `open_share` runs with the share at [`SharePaths::now`] and `/proc` reachable: it opens what needs
/// either (the passthrough filesystem and the share's root descriptor). `import_share` runs after the
/// chroot, when the root is the share. Every descriptor the two open stays open; every other
/// one not in [`Jail::keep`] is closed (step 6). `build` runs after steps 3 to 8, just before the
/// seccomp filter: what it sets up (the device, its threads) may still make calls the filter
/// forbids, but only with the jail's credentials. With sandbox `none` there is no chroot and no
/// steps 5 to 8, but the seccomp filter (step 9) is still installed as the share says.
pub fn enter<P, S, T, E>(
    jail: &Jail<'_>,
    open_share: impl FnOnce(SharePaths<'_>) -> Result<P, E>,
    import_share: impl FnOnce(P) -> Result<S, E>,
    build: impl FnOnce(S) -> Result<T, E>,
) -> Result<T, EnterError<E>>
where
    E: std::error::Error + 'static,
{
    let share = jail.share;
    let opened = match share.sandbox {
        SandboxMode::None => {
            let paths = SharePaths {
                now: &share.path,
                served: &share.path,
            };
            import_share(open_share(paths).map_err(EnterError::Open)?).map_err(EnterError::Open)?
        }
        SandboxMode::Namespace => {
            let dir =
                mounts::enter_new_root(&share.path, share.readonly).map_err(JailError::from)?;
            open_then_chroot(jail, &dir, open_share, import_share)?
        }
        SandboxMode::Chroot => {
            mounts::private_share(&share.path, share.readonly).map_err(JailError::from)?;
            open_then_chroot(jail, &share.path, open_share, import_share)?
        }
    };
    let built = build(opened).map_err(EnterError::Open)?;
    seccomp::install(share.seccomp).map_err(JailError::from)?;
    Ok(built)
}

/// Step 3's second half with the share opened around it, then steps 5 to 9.
fn open_then_chroot<P, S, E>(
    jail: &Jail<'_>,
    dir: &Path,
    open_share: impl FnOnce(SharePaths<'_>) -> Result<P, E>,
    import_share: impl FnOnce(P) -> Result<S, E>,
) -> Result<S, EnterError<E>>
where
    E: std::error::Error + 'static,
{
    let share = jail.share;
    // Listed before and after the share is opened, to learn which descriptors it opened (the
    // passthrough filesystem does not say). After the chroot no /proc is reachable by path,
    // so the second listing goes through a descriptor opened now; step 6 closes it.
    let before = fds::open_fds().map_err(JailError::from)?;
    let proc_fds = File::open("/proc/self/fd")
        .map_err(|e| JailError::from(fds::FdsError::List(errno_of(&e))))?;
    // Landlock's rule is anchored on the share's directory; held until step 9 applies it.
    let share_dir = File::open(dir).map_err(|e| {
        JailError::from(mounts::MountError::OpenShare {
            path: dir.to_owned(),
            source: errno_of(&e),
        })
    })?;
    let prepared = open_share(SharePaths {
        now: dir,
        served: Path::new("/"),
    })
    .map_err(EnterError::Open)?;
    mounts::enter_share(dir).map_err(JailError::from)?;
    let opened = import_share(prepared).map_err(EnterError::Open)?;
    let after = fds::open_fds_at(proc_fds.as_raw_fd()).map_err(JailError::from)?;

    rlimits::apply(rlimits::Limits::for_share(
        share.rlimit_nofile,
        share.serving_threads(),
    ))
    .map_err(JailError::from)?;

    let mut keep: Vec<RawFd> = vec![0, 1, 2, jail.control.as_raw_fd(), share_dir.as_raw_fd()];
    keep.extend_from_slice(jail.keep);
    keep.extend(
        after
            .into_iter()
            .filter(|fd| !before.contains(fd) && *fd != proc_fds.as_raw_fd()),
    );
    fds::close_all_except(&keep).map_err(JailError::from)?;
    // Closed by step 6 with the rest: forget it rather than close a reused number.
    std::mem::forget(proc_fds);

    creds::drop_groups(jail.setgroups_denied).map_err(JailError::from)?;
    creds::limit_caps(&creds::worker_caps(share.allow_devices())).map_err(JailError::from)?;
    privs::apply(jail.control).map_err(JailError::from)?;

    let outcome = landlock::apply(share_dir.as_fd(), share.readonly, share.landlock)
        .map_err(JailError::from)?;
    log_landlock(&share.tag, outcome);
    drop(share_dir);
    Ok(opened)
}

/// The errno of a failed open, for the steps' errno-based errors.
fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn log_landlock(tag: &str, outcome: landlock::Outcome) {
    match outcome {
        landlock::Outcome::Enforced(rights) => log::info!(
            "share {tag:?}: Landlock ABI {} enforced: read{} beneath the share only",
            rights.abi,
            if rights
                .fs_beneath_share
                .contains(landlock::AccessFs::WriteFile)
            {
                "/write"
            } else {
                ""
            }
        ),
        landlock::Outcome::Skipped(why) => log::warn!(
            "share {tag:?}: landlock = \"best-effort\": {why}; running without Landlock"
        ),
        landlock::Outcome::Off => log::warn!(
            "share {tag:?}: landlock = \"off\": a directory moved out of the share by the host stays reachable"
        ),
    }
}
