//! `fsjail serve`: one share, one frontend connection.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use devices::fs::{self, SharePolicy, ShareOptions};
use devices::fuse::server::{Server, ServerOptions};
use devices::vhost_user::{self, FsBackend};
use log::info;
use thiserror::Error;
use vhost::vhost_user::Listener;

use crate::cli::ServeArgs;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("--shared-dir {path:?}: {source}")]
    SharedDir { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Share(#[from] fs::Error),
    #[error("--socket-path {path:?}: {source}")]
    Socket { path: PathBuf, source: vhost::vhost_user::Error },
    #[error("--thread-pool-size {0}: not supported; fsjail serves each request queue on its own thread (use --num-request-queues)")]
    ThreadPool(usize),
    #[error("--max-write {0}: must be between 4096 and 16 MiB")]
    MaxWrite(u32),
    #[error(transparent)]
    VhostUser(#[from] vhost_user::Error),
}

pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    if args.thread_pool_size != 0 {
        return Err(ServeError::ThreadPool(args.thread_pool_size));
    }
    if !(4096..=(16 << 20)).contains(&args.max_write) {
        return Err(ServeError::MaxWrite(args.max_write));
    }
    let root = std::fs::canonicalize(&args.shared_dir)
        .map_err(|source| ServeError::SharedDir { path: args.shared_dir.clone(), source })?;
    let mut share = ShareOptions::new(&root);
    share.readonly = args.readonly;
    share.cache = args.cache;
    share.xattr = args.xattr;

    // The socket is bound before the filesystem is built: building it sets the process umask
    // to 0 (fuse-backend-rs does), and the socket should keep the caller's umask.
    let mut listener = Listener::new(&args.socket_path, true)
        .map_err(|source| ServeError::Socket { path: args.socket_path.clone(), source })?;

    let passthrough = fs::new_passthrough(&share)?;
    let policy = SharePolicy::new(passthrough, args.readonly);
    let share_root = fs::open_share_root(&root)
        .map_err(|source| ServeError::SharedDir { path: root.clone(), source })?;
    let options = ServerOptions { max_write: args.max_write, ..ServerOptions::default() };
    let server = Arc::new(Server::new(policy, options, Some(share_root)));
    let backend = Arc::new(FsBackend::new(server, args.num_request_queues)?);

    info!("serving {} on {}", root.display(), args.socket_path.display());
    vhost_user::serve_connection(backend, &mut listener)?;
    info!("frontend disconnected; exiting");
    Ok(())
}

pub fn main(args: ServeArgs) -> std::process::ExitCode {
    crate::logger::init(args.log_level);
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsjail serve: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
