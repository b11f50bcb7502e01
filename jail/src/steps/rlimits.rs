//! Step 5: resource limits.
//!
//! - NOFILE, soft = hard = the policy's value: every inode the guest looks up holds a host fd
//!   in the passthrough, so this is the guest's fd budget (CVE-2020-10717: a guest opening
//!   files without end exhausts the host's). Hard too, so the worker cannot raise it back.
//! - CORE 0: a core dump of the worker would write guest file contents and host paths to
//!   wherever the host's core pattern points.
//! - NPROC: the worker's threads (one per request queue plus the vhost-user daemon's) and a
//!   small margin. Linux counts threads as processes of the real uid, per user namespace, so
//!   when the worker has its own namespace the limit bounds only its own tasks; it stops a
//!   compromised worker from forking or spawning threads without end. (The kernel does not
//!   enforce NPROC for the host's root user; a worker running as host root is bounded by its
//!   pid namespace instead.)

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use thiserror::Error;

/// Threads the worker runs besides its request-queue threads (main thread, the vhost-user
/// daemon's handler thread) plus headroom for the libraries' own.
pub const NPROC_BASE: u64 = 8;

#[derive(Debug, Error)]
pub enum RlimitError {
    #[error("setting {resource} to {value}: {source}")]
    Set {
        resource: &'static str,
        value: u64,
        source: Errno,
    },
}

/// The limits the worker of a share runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub nofile: u64,
    pub nproc: u64,
}

impl Limits {
    pub fn for_share(rlimit_nofile: u64, serving_threads: usize) -> Limits {
        Limits {
            nofile: rlimit_nofile,
            nproc: NPROC_BASE + serving_threads as u64,
        }
    }
}

/// Sets NOFILE, CORE and NPROC (soft and hard).
pub fn apply(limits: Limits) -> Result<(), RlimitError> {
    set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.nofile)?;
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    set(Resource::RLIMIT_NPROC, "RLIMIT_NPROC", limits.nproc)
}

fn set(resource: Resource, name: &'static str, value: u64) -> Result<(), RlimitError> {
    setrlimit(resource, value, value).map_err(|source| RlimitError::Set {
        resource: name,
        value,
        source,
    })
}
