//! `fsjail worker`: internal; the broker execs it inside the new namespaces (see
//! `jail::spawn`), with its control socket on fd 3 and nothing else.
//!
//! The worker receives its share's settings and the listening socket from the broker, jails
//! itself in the order of `jail::steps` (3 to 8; 9, seccomp, is a later issue), tells the
//! broker it is ready, and serves one frontend connection. It exits 0 when the frontend
//! disconnects (the broker then starts a fresh worker on the same socket) or on SIGTERM.
//!
//! The order is fixed by what each step takes away:
//! - PID 1 duties first, so that a SIGTERM during setup is not lost;
//! - mounts: the passthrough filesystem is built between the pivot into the tmpfs root and the
//!   chroot into the share, because it opens `/proc/self/fd` by path and only the tmpfs root
//!   has a `/proc`; its root is imported after the chroot, as `/`;
//! - rlimits while CAP_SYS_RESOURCE may still be needed to set NOFILE;
//! - closing fds once everything the worker keeps is open;
//! - groups and capabilities after every privileged operation;
//! - no_new_privs and the parent-death check last but seccomp, which must be the very last.
//!
//! Steps 5 to 8 set per-thread state, so they run before the vhost-user daemon starts its
//! threads, which inherit the jail.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use argh::FromArgs;
use devices::fs::{self, ShareOptions, SharePolicy};
use devices::fuse::server::{Server, ServerOptions};
use devices::vhost_user::{self, FsBackend};
use fuse_backend_rs::passthrough::PassthroughFs;
use jail::handover::{self, HandoverError};
use jail::policy::{SandboxMode, ShareConfig};
use jail::steps::{creds, fds, mounts, pid1, privs, rlimits, JailError};
use log::{info, warn, LevelFilter};
use thiserror::Error;
use vhost::vhost_user::Listener;

/// Internal: a jailed worker started by the broker. Not for direct use.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "worker",
    note = "\
    The broker (`fsjail run`, `fsjail serve`) starts this inside the new namespaces with the \
    control socket on the given fd; the share's settings and the listening socket arrive over \
    it. The worker then takes jail steps 3 to 9 and serves one frontend connection."
)]
pub struct WorkerArgs {
    /// the control socket fd inherited from the broker
    #[argh(option)]
    pub control_fd: i32,
}

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("--control-fd {fd}: {reason}")]
    ControlFd { fd: RawFd, reason: String },
    #[error("receiving the handover: {0}")]
    Handover(HandoverError),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error("share {tag:?}: {source}")]
    Share { tag: String, source: fs::Error },
    #[error("share {tag:?}: opening its root: {source}")]
    ShareRoot { tag: String, source: io::Error },
    #[error("share {tag:?}: importing its root into the passthrough filesystem: {source}")]
    Import { tag: String, source: io::Error },
    #[error("telling the broker the worker is ready: {0}")]
    Ready(HandoverError),
    #[error(transparent)]
    VhostUser(#[from] vhost_user::Error),
    #[error("share {tag:?}: {source}")]
    Settings {
        tag: String,
        source: devices::dax::settings::SettingsError,
    },
    #[error("installing the seccomp filter: {0}")]
    Seccomp(#[from] seccomp::Error),
}

pub fn main(args: WorkerArgs) -> ExitCode {
    crate::logger::init(LevelFilter::Info);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsjail worker: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The filesystem of a share, built inside the jail.
struct Prepared {
    passthrough: PassthroughFs,
    /// For the server's syncfs.
    share_root: File,
    /// Descriptors `PassthroughFs::new` opened (its `/proc/self/fd` and `/proc/self/mountinfo`).
    passthrough_fds: Vec<RawFd>,
}

fn run(args: &WorkerArgs) -> Result<(), WorkerError> {
    // Step 4 comes first; see the module doc.
    pid1::install().map_err(JailError::from)?;

    let control = take_control_fd(args.control_fd)?;
    let (handover, listener) = handover::recv(control.as_fd()).map_err(WorkerError::Handover)?;
    if let Ok(level) = handover.log_level.parse::<LevelFilter>() {
        log::set_max_level(level);
    }
    let share = handover.share;

    let prepared = match share.sandbox {
        SandboxMode::Namespace => prepare_namespace(&share)?,
        SandboxMode::Chroot => prepare_chroot(&share)?,
        SandboxMode::None => {
            warn!(
                "share {:?}: sandbox \"none\": the worker is not jailed (debugging only)",
                share.tag
            );
            prepare_unjailed(&share)?
        }
    };
    let listener = Listener::from(UnixListener::from(listener));

    if share.sandbox != SandboxMode::None {
        rlimits::apply(rlimits::Limits::for_share(
            share.rlimit_nofile,
            // The request pool's threads count against NPROC like the queue threads.
            share.num_request_queues + share.thread_pool_size,
        ))
        .map_err(JailError::from)?;

        let mut keep = vec![
            0,
            1,
            2,
            control.as_raw_fd(),
            listener.as_raw_fd(),
            prepared.share_root.as_raw_fd(),
        ];
        keep.extend_from_slice(&prepared.passthrough_fds);
        fds::close_all_except(&keep).map_err(JailError::from)?;

        creds::drop_groups(handover.setgroups_denied).map_err(JailError::from)?;
        creds::limit_caps(&creds::worker_caps(share.allow_devices)).map_err(JailError::from)?;

        privs::apply(control.as_fd()).map_err(JailError::from)?;
    }

    let passthrough = Arc::new(prepared.passthrough);
    let mut policy = SharePolicy::new(passthrough.clone(), share.readonly)
        .with_allow_devices(share.allow_devices);
    if share.xattr && share.sandbox != SandboxMode::None {
        // The share is our root now, so fuse-backend-rs's "/proc/self/fd/N" xattr paths do not
        // resolve; name the inode through its own proc fd instead (see with_xattr_paths).
        let resolver = passthrough.clone();
        policy =
            policy.with_xattr_paths(Box::new(move |inode| resolver.readlinkat_proc_file(inode)));
    }
    let options = ServerOptions {
        dax_window: share.dax_window,
        blksize: share.blksize,
        max_write: share.max_write,
        ..ServerOptions::default()
    };
    let server = Server::try_new(policy, options, Some(prepared.share_root)).map_err(|source| {
        WorkerError::Settings {
            tag: share.tag.clone(),
            source,
        }
    })?;
    // The pool threads start here, before the filter below, which covers them too (TSYNC).
    let backend = Arc::new(
        FsBackend::new(Arc::new(server), share.num_request_queues)?
            .with_tuning(share.thread_pool_size, share.poll_max_us)?,
    );

    // Step 9, last: the filter forbids what the steps above needed (mount, setgroups, ...).
    // Installed on every thread (TSYNC) before the first byte from a frontend is read; the
    // queue threads started later inherit it.
    seccomp::install(share.seccomp)?;
    handover::send_ready(&control).map_err(WorkerError::Ready)?;
    info!(
        "share {:?}: jailed ({} sandbox); waiting for the frontend",
        share.tag, share.sandbox
    );
    let mut listener = listener;
    vhost_user::serve_connection(backend, &mut listener)?;
    info!("share {:?}: frontend disconnected; exiting", share.tag);
    Ok(())
}

/// Namespace sandbox: tmpfs root, passthrough built with our `/proc`, chroot into the share.
fn prepare_namespace(share: &ShareConfig) -> Result<Prepared, WorkerError> {
    mounts::enter_new_root(&share.path, share.readonly).map_err(JailError::from)?;
    let share_dir = Path::new(mounts::SHARE_DIR);
    let share_root = open_root(share, share_dir)?;
    build_passthrough(share, share_root, || mounts::enter_share(share_dir))
}

/// Chroot sandbox (virtiofsd's `--sandbox chroot`): the host's `/proc`, chroot into the share.
fn prepare_chroot(share: &ShareConfig) -> Result<Prepared, WorkerError> {
    mounts::private_share(&share.path, share.readonly).map_err(JailError::from)?;
    let share_root = open_root(share, &share.path)?;
    build_passthrough(share, share_root, || mounts::enter_share(&share.path))
}

/// No sandbox: serve the share's host path as `fsjail serve` did before the jail.
fn prepare_unjailed(share: &ShareConfig) -> Result<Prepared, WorkerError> {
    let opts = share_options(share, &share.path);
    let passthrough = fs::new_passthrough(&opts).map_err(|source| WorkerError::Share {
        tag: share.tag.clone(),
        source,
    })?;
    let share_root = open_root(share, &share.path)?;
    Ok(Prepared {
        passthrough,
        share_root,
        passthrough_fds: Vec::new(),
    })
}

/// Builds the passthrough with root `/` while `/proc` is reachable, runs `enter_share` (the
/// chroot), then imports the root — now the share. Returns it with the descriptors it opened,
/// found by listing ours before and after (it exposes only one of them).
fn build_passthrough(
    share: &ShareConfig,
    share_root: File,
    enter_share: impl FnOnce() -> Result<(), mounts::MountError>,
) -> Result<Prepared, WorkerError> {
    let tag = || share.tag.clone();
    let before = fds::open_fds().map_err(JailError::from)?;
    let passthrough = fs::new_passthrough_unimported(&share_options(share, Path::new("/")))
        .map_err(|source| WorkerError::Share { tag: tag(), source })?;
    enter_share().map_err(JailError::from)?;
    passthrough
        .import()
        .map_err(|source| WorkerError::Import { tag: tag(), source })?;
    // After the chroot our /proc is reachable only through the passthrough's own descriptor.
    let proc_self_fd =
        passthrough
            .keep_fds()
            .first()
            .copied()
            .ok_or_else(|| WorkerError::Import {
                tag: tag(),
                source: io::Error::other("the passthrough filesystem holds no /proc/self/fd"),
            })?;
    let after = fds::open_fds_at(proc_self_fd).map_err(JailError::from)?;
    let passthrough_fds = after
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    Ok(Prepared {
        passthrough,
        share_root,
        passthrough_fds,
    })
}

fn open_root(share: &ShareConfig, dir: &Path) -> Result<File, WorkerError> {
    fs::open_share_root(dir).map_err(|source| WorkerError::ShareRoot {
        tag: share.tag.clone(),
        source,
    })
}

fn share_options(share: &ShareConfig, root: &Path) -> ShareOptions {
    let mut opts = ShareOptions::new(root);
    opts.readonly = share.readonly;
    opts.cache = share.cache;
    opts.xattr = share.xattr;
    opts
}

/// Takes ownership of the control socket the broker put on `fd`, after checking it is an open
/// socket: a wrong number on the command line must not make us adopt (and later close) some
/// other descriptor.
fn take_control_fd(fd: RawFd) -> Result<OwnedFd, WorkerError> {
    let bad = |reason: String| WorkerError::ControlFd { fd, reason };
    if fd <= 2 {
        return Err(bad("must not be stdin, stdout or stderr".to_owned()));
    }
    // SAFETY: fstat writes only into `st`, a plain C struct for which zeroes are valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an invalid fd gives EBADF.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(bad(format!(
            "not an open descriptor ({})",
            io::Error::last_os_error()
        )));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(bad("not a socket".to_owned()));
    }
    // SAFETY: the broker placed the control socket on this number before exec (checked open
    // and a socket above); nothing else in this process refers to it, so we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
