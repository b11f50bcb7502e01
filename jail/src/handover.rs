//! What the broker tells a new worker, and what the worker answers, on their control socket.
//!
//! Broker → worker, once, right after the spawn: a [`Handover`] (JSON) with the listening
//! socket attached (`SCM_RIGHTS`). The worker takes its whole configuration from this message
//! and nothing from its command line or environment, so nothing about a share is visible in
//! `/proc/PID/cmdline` or `environ`, and the broker is the only place policy is read.
//!
//! Worker → broker, once, when every jail step is done and it is about to accept the frontend:
//! [`READY`]. The broker may use it to log that the share is up; tests use it to know that what
//! they read in `/proc/PID/` is the final jail.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fdpass::{self, FdPassError};
use crate::policy::ShareConfig;

/// Bumped on any incompatible change; a worker refuses a handover of another version (a broker
/// and a worker from different builds after an upgrade in place).
pub const VERSION: u32 = 1;

/// The worker's one message to the broker once it is jailed.
pub const READY: &[u8] = b"ready";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub version: u32,
    pub share: ShareConfig,
    /// The broker's log level (`log::LevelFilter` as text), so the worker logs alike.
    pub log_level: String,
    /// The broker wrote "deny" to the worker's `/proc/PID/setgroups` (an unprivileged broker
    /// must), so the worker cannot drop its supplementary groups and says so instead of failing.
    pub setgroups_denied: bool,
}

#[derive(Debug, Error)]
pub enum HandoverError {
    #[error("encoding the handover: {0}")]
    Encode(serde_json::Error),
    #[error("decoding the handover: {0}")]
    Decode(serde_json::Error),
    #[error("handover version {got}, this worker speaks {VERSION}: broker and worker are different builds")]
    Version { got: u32 },
    #[error(transparent)]
    Transport(#[from] FdPassError),
    #[error(
        "expected {:?} from the worker, got {got:?}",
        String::from_utf8_lossy(READY)
    )]
    NotReady { got: String },
}

/// Broker side: sends the handover with the listener attached.
pub fn send(
    control: BorrowedFd<'_>,
    handover: &Handover,
    listener: BorrowedFd<'_>,
) -> Result<(), HandoverError> {
    let bytes = serde_json::to_vec(handover).map_err(HandoverError::Encode)?;
    fdpass::send(control, &bytes, &[listener])?;
    Ok(())
}

/// Worker side: receives the handover and the listener.
pub fn recv(control: BorrowedFd<'_>) -> Result<(Handover, OwnedFd), HandoverError> {
    let (bytes, mut fds) = fdpass::recv(control, fdpass::MAX_PAYLOAD, 1)?;
    // The peek at `version` first gives a clear message for a mismatched build instead of a
    // serde error about some field.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(&bytes).map_err(HandoverError::Decode)?;
    if v.version != VERSION {
        return Err(HandoverError::Version { got: v.version });
    }
    let handover: Handover = serde_json::from_slice(&bytes).map_err(HandoverError::Decode)?;
    // fdpass::recv checked the count: exactly one.
    let listener = fds.pop().ok_or(FdPassError::FdCount {
        expected: 1,
        received: 0,
    })?;
    Ok((handover, listener))
}

/// Worker side: tells the broker the jail is complete.
pub fn send_ready(control: impl AsFd) -> Result<(), HandoverError> {
    fdpass::send(control.as_fd(), READY, &[])?;
    Ok(())
}

/// Broker side: waits for the worker's [`READY`] (blocking).
pub fn recv_ready(control: BorrowedFd<'_>) -> Result<(), HandoverError> {
    let (bytes, _) = fdpass::recv(control, 64, 0)?;
    if bytes != READY {
        return Err(HandoverError::NotReady {
            got: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(())
}
