//! `fsjail serve`: one share, one frontend connection.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use devices::dax::{settings, SettingsError};
use devices::fs::{self, ShareOptions, SharePolicy};
use devices::fuse::server::{Server, ServerOptions};
use devices::vhost_user::{self, FsBackend};
use log::info;
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
    #[error("{0}")]
    Share(#[from] fs::Error),
    #[error("--socket-path {path:?}: {source}")]
    Socket {
        path: PathBuf,
        source: vhost::vhost_user::Error,
    },
    #[error("--thread-pool-size {0}: must be between 0 and {max}", max = vhost_user::MAX_POOL_THREADS)]
    ThreadPool(usize),
    #[error("--poll-max-us {0}: must be between 0 and {max}", max = jail::policy::defaults::POLL_MAX_US_LIMIT)]
    PollMax(u32),
    #[error("--max-write {0}: must be between 4096 and 16 MiB")]
    MaxWrite(u32),
    #[error("--dax-window {0}: {1}")]
    DaxWindow(u64, SettingsError),
    #[error("--blksize {0}: {1}")]
    Blksize(u32, SettingsError),
    #[error(transparent)]
    VhostUser(#[from] vhost_user::Error),
    #[error("exactly one of --socket-path and --fd is required")]
    SocketChoice,
    #[error("--socket-group applies to the socket fsjail creates at --socket-path; with --fd the caller created the socket and sets its owner")]
    SocketGroupWithFd,
    #[error("--num-request-queues {0}: must be between 1 and 64")]
    Queues(usize),
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
    if args.thread_pool_size > vhost_user::MAX_POOL_THREADS {
        return Err(ServeError::ThreadPool(args.thread_pool_size));
    }
    if args.poll_max_us > jail::policy::defaults::POLL_MAX_US_LIMIT {
        return Err(ServeError::PollMax(args.poll_max_us));
    }
    if !(4096..=(16 << 20)).contains(&args.max_write) {
        return Err(ServeError::MaxWrite(args.max_write));
    }
    let max_queues = vhost_user::MAX_REQUEST_QUEUES;
    if !(1..=max_queues).contains(&args.num_request_queues) {
        return Err(ServeError::Queues(args.num_request_queues));
    }
    let options = ServerOptions {
        max_write: args.max_write,
        blksize: args.blksize,
        dax_window: args.dax_window.0,
        ..ServerOptions::default()
    };
    settings::check_blksize(options.blksize)
        .map_err(|e| ServeError::Blksize(options.blksize, e))?;
    settings::check_window(options.dax_window, options.host_page_size)
        .map_err(|e| ServeError::DaxWindow(options.dax_window, e))?;
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
        SandboxMode::None => serve_unjailed(args, root, options, listener, &socket_name),
        _ => serve_jailed(args, root, listener),
    }
}

/// The jailed path: a one-share policy built from the flags, run by the broker exactly as
/// `fsjail run` would, except that the broker returns when the frontend disconnects (and a
/// crash is not retried), as virtiofsd does.
fn serve_jailed(args: &ServeArgs, root: PathBuf, listener: Listener) -> Result<(), ServeError> {
    let tag = crate::serve_setup::share_tag(&args.shared_dir);
    let socket = match (&args.socket_path, args.fd) {
        (Some(path), _) => path.clone(),
        (None, Some(fd)) => PathBuf::from(format!("inherited fd {fd}")),
        (None, None) => return Err(ServeError::SocketChoice),
    };
    let mut share = ShareConfig::new(&tag, root, socket);
    share.readonly = args.readonly;
    share.cache = args.cache;
    share.xattr = args.xattr;
    share.sandbox = args.sandbox;
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
    root: PathBuf,
    options: ServerOptions,
    mut listener: Listener,
    socket_name: &str,
) -> Result<(), ServeError> {
    log::warn!("--sandbox none: this process serves the share unjailed (debugging only)");
    let mut share = ShareOptions::new(&root);
    share.readonly = args.readonly;
    share.cache = args.cache;
    share.xattr = args.xattr;
    // Before the passthrough filesystem opens its first descriptors.
    let nofile = crate::serve_setup::apply_rlimit_nofile(args.rlimit_nofile)?;
    log::debug!("open-file limit {nofile}");

    let passthrough = fs::new_passthrough(&share)?;
    let policy = SharePolicy::new(passthrough, args.readonly);
    let share_root = fs::open_share_root(&root).map_err(|source| ServeError::SharedDir {
        path: root.clone(),
        source,
    })?;
    let dax_window = options.dax_window;
    let server = Server::try_new(policy, options, Some(share_root))
        .map_err(|e| ServeError::DaxWindow(dax_window, e))?;
    let server = Arc::new(server);
    let backend = Arc::new(
        FsBackend::new(server, args.num_request_queues)?
            .with_tuning(args.thread_pool_size, args.poll_max_us)?,
    );

    info!("serving {} on {socket_name}", root.display());
    // READY=1 goes out before the filter: sd_notify needs socket(2), which the filter forbids.
    notify_ready();
    if dax_window != 0 {
        info!("DAX window of {dax_window} bytes");
    }
    crate::logger::seal();
    seccomp::install(args.seccomp)?;
    vhost_user::serve_connection(backend, &mut listener)?;
    info!("frontend disconnected; exiting");
    Ok(())
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
