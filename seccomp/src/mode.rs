//! What happens to a call the filter does not allow. The names are virtiofsd's `--seccomp`
//! values, so scripts and policies carry over.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SECCOMP_RET_KILL_PROCESS: the whole worker dies by SIGSYS. The default.
    #[default]
    Kill,
    /// SECCOMP_RET_TRAP: a SIGSYS handler names the call on stderr, then the worker exits
    /// (status 159). For finding which call a workload needs.
    Trap,
    /// SECCOMP_RET_LOG: the call goes through and the kernel logs it (audit / dmesg). For
    /// policy work only: nothing is enforced.
    Log,
    /// No filter at all.
    None,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Kill, Mode::Trap, Mode::Log, Mode::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kill => "kill",
            Mode::Trap => "trap",
            Mode::Log => "log",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown seccomp mode {0:?}: expected kill, trap, log or none")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseModeError(s.to_owned()))
    }
}
