//! `fsjail serve`: one share, one frontend connection.

use std::io;
use std::path::PathBuf;

use devices::fs::ShareOptions;
use devices::share::{DeviceError, ShareDevice, ShareFs};
use devices::vhost_user;
use log::info;
use settings::{DeviceSettings, DeviceSettingsError, Ownership};
use thiserror::Error;
use vhost::vhost_user::Listener;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use jail::broker::{self, RunOptions};
use jail::policy::{RestartPolicy, SandboxMode, ShareConfig};

use crate::cli::ServeArgs;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("--shared-dir {path:?}: {source}")]
    SharedDir { path: PathBuf, source: io::Error },
    #[error("--landlock require: --sandbox none serves unconfined, without Landlock")]
    LandlockUnjailed,
    #[error("--tag: {0}")]
    Tag(#[from] vhost_user::config::TagError),
    #[error("--socket-path {path:?}: {source}")]
    Socket {
        path: PathBuf,
        source: vhost::vhost_user::Error,
    },
    #[error("--{}: {}", .0.key().replace('_', "-"), .0.reason())]
    Settings(DeviceSettingsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    VhostUser(#[from] vhost_user::Error),
    #[error("exactly one of --socket-path and --fd is required")]
    SocketChoice,
    #[error("--socket-group applies to the socket fsjail creates at --socket-path; with --fd the caller created the socket and sets its owner")]
    SocketGroupWithFd,
    #[error("handing the listening socket to the broker: {0}")]
    Dup(io::Error),
    #[error("{0}")]
    Broker(jail::broker::BrokerError),
    #[error("installing the seccomp filter: {0}")]
    Seccomp(#[from] seccomp::Error),
    #[error(transparent)]
    Setup(#[from] crate::serve_setup::SetupError),
}

pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    let settings = device_settings(args);
    settings.check().map_err(ServeError::Settings)?;
    if args.sandbox == SandboxMode::None
        && args.landlock == Some(jail::steps::landlock::LandlockMode::Require)
    {
        return Err(ServeError::LandlockUnjailed);
    }
    if let Some(tag) = &args.tag {
        // Checked before the socket exists, as the other flags are.
        vhost_user::config::FsConfig::new(tag, args.num_request_queues)?;
    }
    let root = std::fs::canonicalize(&args.shared_dir).map_err(|source| ServeError::SharedDir {
        path: args.shared_dir.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ServeError::SharedDir {
            path: args.shared_dir.clone(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }

    // The socket is bound here, before anything else: building the passthrough filesystem sets
    // the process umask to 0 (fuse-backend-rs does), and the socket should keep the caller's.
    let (listener, socket_name) = listen(args)?;
    match args.sandbox {
        SandboxMode::None => serve_unjailed(args, &settings, root, listener, &socket_name),
        _ => serve_jailed(args, root, listener),
    }
}

/// The jailed path: a one-share policy built from the flags, run by the broker exactly as
/// `fsjail run` would, except that the broker returns when the frontend disconnects (and a
/// crash is not retried), as virtiofsd does.
fn serve_jailed(args: &ServeArgs, root: PathBuf, listener: Listener) -> Result<(), ServeError> {
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| crate::serve_setup::share_tag(&args.shared_dir));
    let socket = match (&args.socket_path, args.fd) {
        (Some(path), _) => path.clone(),
        (None, Some(fd)) => PathBuf::from(format!("inherited fd {fd}")),
        (None, None) => return Err(ServeError::SocketChoice),
    };
    let mut share = ShareConfig::new(&tag, root, socket);
    share.readonly = args.readonly;
    share.cache = args.cache;
    share.xattr = args.xattr;
    share.special_files = args.special_files;
    if let Some(ownership) = args.ownership {
        share.ownership = ownership;
    }
    share.announce_submounts = args.announce_submounts;
    share.migration_on_error = args.migration_on_error;
    share.config_tag = args.tag.is_some();
    share.sandbox = args.sandbox;
    if let Some(landlock) = args.landlock {
        share.landlock = landlock;
    }
    share.seccomp = args.seccomp;
    share.num_request_queues = args.num_request_queues;
    share.thread_pool_size = args.thread_pool_size;
    share.poll_max_us = args.poll_max_us;
    share.dax_window = args.dax_window.0;
    share.blksize = args.blksize;
    share.max_write = args.max_write;
    share.restart = RestartPolicy::Never;
    if let Some(limit) = args.rlimit_nofile {
        share.rlimit_nofile = limit;
    }
    let mut policy = jail::policy::single_share(share);
    policy.broker.log_level = args.log_level;
    // The listener changes hands: the broker passes it to each worker, and the path (when we
    // bound one) is removed when `listener` is dropped at the end of this function.
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new descriptor or -1; it reads
    // no memory.
    let dup = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(ServeError::Dup(io::Error::last_os_error()));
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    let opts = RunOptions {
        exit_when_all_done: true,
        exe: None,
        listener: Some(fd),
    };
    let result = broker::run_policy(policy, opts);
    drop(listener);
    result.map_err(ServeError::Broker)
}

/// `--sandbox none`: serve from this process, unjailed (debugging only). The seccomp filter
/// still applies unless `--seccomp none`.
fn serve_unjailed(
    args: &ServeArgs,
    settings: &DeviceSettings,
    root: PathBuf,
    mut listener: Listener,
    socket_name: &str,
) -> Result<(), ServeError> {
    log::warn!("--sandbox none: this process serves the share unjailed (debugging only)");
    // Before the passthrough filesystem opens its first descriptors.
    let nofile = crate::serve_setup::apply_rlimit_nofile(args.rlimit_nofile)?;
    log::debug!("open-file limit {nofile}");

    let share = ShareFs::open(&ShareOptions::for_settings(&root, settings))?;
    let device = ShareDevice::build(settings, share)?;

    info!("serving {} on {socket_name}", root.display());
    // READY=1 goes out before the filter: sd_notify needs socket(2), which the filter forbids.
    notify_ready();
    if settings.dax_window != 0 {
        info!("DAX window of {} bytes", settings.dax_window);
    }
    crate::logger::seal();
    seccomp::install(args.seccomp)?;
    device.serve(&mut listener)?;
    info!("frontend disconnected; exiting");
    Ok(())
}

/// The device settings the flags ask for.
fn device_settings(args: &ServeArgs) -> DeviceSettings {
    // SAFETY: geteuid cannot fail and touches no memory.
    let default_ownership = Ownership::default_for_euid(unsafe { libc::geteuid() });
    DeviceSettings {
        readonly: args.readonly,
        cache: args.cache,
        xattr: args.xattr,
        num_request_queues: args.num_request_queues,
        thread_pool_size: args.thread_pool_size,
        poll_max_us: args.poll_max_us,
        dax_window: args.dax_window.0,
        blksize: args.blksize,
        max_write: args.max_write,
        special_files: args.special_files,
        ownership: args.ownership.unwrap_or(default_ownership),
        announce_submounts: args.announce_submounts,
        migration_on_error: args.migration_on_error,
        config_tag: args.tag.clone(),
    }
}

/// Binds --socket-path or takes over --fd; returns the listener and how to name it in logs.
fn listen(args: &ServeArgs) -> Result<(Listener, String), ServeError> {
    match (&args.socket_path, args.fd) {
        (Some(path), None) => {
            let listener = Listener::new(path, true).map_err(|source| ServeError::Socket {
                path: path.clone(),
                source,
            })?;
            if let Some(group) = &args.socket_group {
                crate::serve_setup::set_socket_group(path, group)?;
            }
            Ok((listener, path.display().to_string()))
        }
        (None, Some(_)) if args.socket_group.is_some() => Err(ServeError::SocketGroupWithFd),
        (None, Some(fd)) => Ok((
            crate::serve_setup::listener_from_fd(fd)?,
            format!("inherited fd {fd}"),
        )),
        _ => Err(ServeError::SocketChoice),
    }
}

/// Tells systemd (Type=notify) that the socket listens. Failing to notify is logged, not
/// fatal: the share works, and systemd will report the missing READY=1 itself.
fn notify_ready() {
    match jail::sd_notify::notify("READY=1") {
        Ok(sent) => {
            log::debug!(
                "READY=1 {}",
                if sent {
                    "sent"
                } else {
                    "not sent: no $NOTIFY_SOCKET"
                }
            )
        }
        Err(e) => log::warn!("{e}"),
    }
}

pub fn main(args: ServeArgs) -> std::process::ExitCode {
    let log = crate::logger::LogOptions {
        level: args.log_level,
        syslog: args.syslog,
        tag: Some(crate::serve_setup::share_tag(&args.shared_dir)),
    };
    if let Err(e) = crate::logger::init_with(log) {
        eprintln!("fsjail serve: error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsjail serve: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
