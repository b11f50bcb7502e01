//! Why the broker could not start a policy, or (under `fsjail serve`) why a share ended badly.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use thiserror::Error;

use super::socket::SocketError;
use crate::spawn::SpawnError;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot find the fsjail executable for the workers: {0}")]
    Exe(io::Error),
    #[error("receiving signals (signalfd): {0}")]
    Signals(Errno),
    #[error("poll: {0}")]
    Poll(Errno),
    #[error("runtime_dir {path:?}: {source}")]
    RuntimeDir { path: PathBuf, source: io::Error },
    #[error("share {tag:?}: path {path:?}: {source}")]
    ShareDir {
        tag: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("share {tag:?}: {source}")]
    Socket { tag: String, source: SocketError },
    #[error("share {tag:?}: starting the worker: {source}")]
    Spawn { tag: String, source: SpawnError },
    /// `fsjail serve`: the share ended without a clean exit and will not be restarted.
    #[error("share {tag:?}: the worker {how}")]
    WorkerFailed { tag: String, how: String },
}
