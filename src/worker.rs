//! `fsjail worker`: internal; the broker execs it inside the new namespaces (see
//! `jail::spawn`), with its control socket on fd 3 and nothing else.
//!
//! The worker receives its share's settings and the listening socket from the broker, enters
//! its jail (`jail::enter`: steps 3 to 9, seccomp last), building the share's device
//! (`devices::share::ShareDevice`) inside it just before the filter, tells the broker it is
//! ready, and serves one frontend connection. It exits 0 when the frontend disconnects (the broker then starts a fresh worker
//! on the same socket) or on SIGTERM.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use devices::fs::{self, ShareOptions};
use devices::share::{DeviceError, ShareDevice, ShareFs};
use fuse_backend_rs::passthrough::PassthroughFs;
use jail::enter::{self, EnterError, Jail, SharePaths};
use jail::handover::{self, HandoverError};
use jail::policy::{SandboxMode, ShareConfig};
use jail::steps::{pid1, JailError};
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
    Share { tag: String, source: ShareError },
    #[error("telling the broker the worker is ready: {0}")]
    Ready(HandoverError),
    #[error(transparent)]
    VhostUser(#[from] devices::vhost_user::Error),
}

/// Opening the share inside the jail failed.
#[derive(Debug, Error)]
pub enum ShareError {
    #[error(transparent)]
    Passthrough(#[from] fs::Error),
    #[error("opening its root: {0}")]
    Root(io::Error),
    #[error("importing its root into the passthrough filesystem: {0}")]
    Import(io::Error),
    #[error(transparent)]
    Device(DeviceError),
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

fn run(args: &WorkerArgs) -> Result<(), WorkerError> {
    // Step 4 comes first, so that a SIGTERM during setup is not lost.
    pid1::install().map_err(JailError::from)?;

    let control = take_control_fd(args.control_fd)?;
    let (handover, listener) = handover::recv(control.as_fd()).map_err(WorkerError::Handover)?;
    if let Ok(level) = handover.log_level.parse::<LevelFilter>() {
        log::set_max_level(level);
    }
    let share = handover.share;
    if share.sandbox == SandboxMode::None {
        warn!(
            "share {:?}: sandbox \"none\": the worker is not jailed (debugging only)",
            share.tag
        );
    }
    let mut listener = Listener::from(UnixListener::from(listener));
    let settings = share.device_settings();

    let jail = Jail {
        share: &share,
        control: control.as_fd(),
        keep: &[listener.as_raw_fd()],
        setgroups_denied: handover.setgroups_denied,
    };
    let build = |share_fs| ShareDevice::build(&settings, share_fs).map_err(ShareError::Device);
    let device = enter::enter(
        &jail,
        |paths| open_share(&share, paths),
        import_share,
        build,
    )
    .map_err(|e| match e {
        EnterError::Jail(e) => WorkerError::Jail(e),
        EnterError::Open(source) => WorkerError::Share {
            tag: share.tag.clone(),
            source,
        },
    })?;

    handover::send_ready(&control).map_err(WorkerError::Ready)?;
    info!(
        "share {:?}: jailed ({} sandbox); waiting for the frontend",
        share.tag, share.sandbox
    );
    device.serve(&mut listener)?;
    info!("share {:?}: frontend disconnected; exiting", share.tag);
    Ok(())
}

/// The share, opened inside the jail but not yet imported.
struct OpenedShare {
    passthrough: PassthroughFs,
    served_root: PathBuf,
    share_root: std::fs::File,
    jailed: bool,
}

/// Opens what needs `/proc` or the share's path as it is now: the passthrough filesystem
/// (rooted where the share will be served from) and the share's root descriptor.
fn open_share(share: &ShareConfig, paths: SharePaths<'_>) -> Result<OpenedShare, ShareError> {
    let options = ShareOptions::for_settings(paths.served, &share.device_settings());
    let passthrough = fs::new_passthrough_unimported(&options)?;
    let share_root = fs::open_share_root(paths.now).map_err(ShareError::Root)?;
    Ok(OpenedShare {
        passthrough,
        served_root: paths.served.to_path_buf(),
        share_root,
        jailed: share.sandbox != SandboxMode::None,
    })
}

/// Imports the passthrough filesystem's root, now that the jail's root is the share.
fn import_share(opened: OpenedShare) -> Result<ShareFs, ShareError> {
    opened.passthrough.import().map_err(ShareError::Import)?;
    Ok(ShareFs {
        passthrough: opened.passthrough,
        share_root: opened.share_root,
        served_root: opened.served_root,
        jailed: opened.jailed,
    })
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
