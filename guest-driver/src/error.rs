//! The crate's error type.

use std::time::Duration;

/// Everything that can go wrong while driving a vhost-user-fs backend.
///
/// `Errno` is the only variant that means "the backend answered, and the answer was an error";
/// every other variant is a transport or protocol failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The FUSE server replied with `-errno` in `OutHeader.error` (the value stored is positive).
    #[error("FUSE error reply: errno {0} ({msg})", msg = std::io::Error::from_raw_os_error(*.0))]
    Errno(i32),
    /// A vhost-user message exchange failed.
    #[error("vhost-user: {0}")]
    Vhost(#[from] vhost::Error),
    /// Connecting to the backend's socket did not succeed before the deadline.
    #[error("could not connect to {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: vhost::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Guest memory could not be mapped or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The guest-memory allocator has no free block large enough.
    #[error("guest memory exhausted: wanted {0} bytes")]
    OutOfMemory(usize),
    /// The backend does not offer something the frontend needs.
    #[error("backend lacks {0}")]
    Unsupported(String),
    /// A caller-supplied parameter is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No used element for the request arrived in time.
    #[error("queue {queue}: no reply within {timeout:?}")]
    Timeout { queue: u16, timeout: Duration },
    /// The backend closed the vhost-user socket (it exited or crashed).
    #[error("backend disconnected")]
    Disconnected,
    /// The device put something impossible in the used ring or a reply.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl Error {
    /// The errno of a FUSE error reply, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Errno(e) => Some(*e),
            _ => None,
        }
    }

    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        Error::Io { what, source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
