//! The benchmark's error type.

use std::path::PathBuf;

/// What can stop a benchmark run or one subject of it.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Not applicable to this subject (a backend without DAX, too few queues...): the figure
    /// prints the reason instead of a number.
    #[error("{0}")]
    Skip(String),
    /// A command-line value that makes no sense.
    #[error("{0}")]
    Usage(String),
    /// A backend's command template is malformed (bad quoting, no program).
    #[error("backend {name}: template {template:?}: {reason}")]
    Template {
        name: String,
        template: String,
        reason: String,
    },
    /// The backend's program could not be started.
    #[error("backend {name}: cannot run {program:?}: {source}")]
    Spawn {
        name: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend exited or never opened its socket.
    #[error("backend {name}: {what}{log}", log = log_suffix(.log))]
    Backend {
        name: String,
        what: String,
        log: String,
    },
    /// The guest driver reported a failure while talking to a backend.
    #[error("{context}: {source}")]
    Driver {
        context: String,
        #[source]
        source: guest_driver::Error,
    },
    /// A backend answered, but not with what the workload expects.
    #[error("{0}")]
    Check(String),
    /// A host system call failed.
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn log_suffix(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{}", log.trim_end())
    }
}

impl BenchError {
    /// A host I/O error on `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A driver error with what was being done.
    pub fn driver(context: impl Into<String>, source: guest_driver::Error) -> Self {
        BenchError::Driver {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to guest-driver results.
pub trait DriverContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> DriverContext<T> for std::result::Result<T, guest_driver::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| BenchError::driver(context(), e))
    }
}

/// The benchmark's result type.
pub type Result<T> = std::result::Result<T, BenchError>;
