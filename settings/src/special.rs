//! Device nodes and owners a guest asks for that the host should not or cannot hold: the
//! `special_files` and `ownership` settings (the device's `fs::special` does the emulation).

use std::fmt;
use std::str::FromStr;

/// What a guest `mknod` of a character or block device does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SpecialFiles {
    /// An empty regular host file (mode 0600) with the device recorded in the attribute; the
    /// guest sees the device. The host never holds a device node.
    #[default]
    Emulate,
    /// A real device node on the host (the worker keeps CAP_MKNOD). Only for a guest trusted
    /// with the host's devices.
    Host,
    /// EPERM, as a worker without CAP_MKNOD answers.
    Refuse,
}

impl SpecialFiles {
    pub const NAMES: [&'static str; 3] = ["emulate", "host", "refuse"];
}

/// A `special_files` value that is none of [`SpecialFiles::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid special_files {0:?}: expected one of \"emulate\", \"host\", \"refuse\"")]
pub struct ParseSpecialFilesError(pub String);

impl FromStr for SpecialFiles {
    type Err = ParseSpecialFilesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "emulate" => Ok(SpecialFiles::Emulate),
            "host" => Ok(SpecialFiles::Host),
            "refuse" => Ok(SpecialFiles::Refuse),
            _ => Err(ParseSpecialFilesError(s.to_owned())),
        }
    }
}

impl fmt::Display for SpecialFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialFiles::Emulate => "emulate",
            SpecialFiles::Host => "host",
            SpecialFiles::Refuse => "refuse",
        })
    }
}

/// Where a guest's chown, and mode bits the host would not keep, go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// To the host file (chown(2), chmod(2)); what the host refuses, the guest is refused.
    Host,
    /// To the attribute when the host cannot hold it: an id outside the share's id map, a
    /// setuid/setgid bit the host strips. The host file stays owned by the worker's user.
    Emulate,
}

impl Ownership {
    pub const NAMES: [&'static str; 2] = ["host", "emulate"];

    /// The default: `host` for a root broker, `emulate` for one without root (which can map
    /// no id but its own).
    pub fn default_for_euid(euid: u32) -> Ownership {
        if euid == 0 {
            Ownership::Host
        } else {
            Ownership::Emulate
        }
    }
}

/// An `ownership` value that is none of [`Ownership::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ownership {0:?}: expected one of \"host\", \"emulate\"")]
pub struct ParseOwnershipError(pub String);

impl FromStr for Ownership {
    type Err = ParseOwnershipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Ownership::Host),
            "emulate" => Ok(Ownership::Emulate),
            _ => Err(ParseOwnershipError(s.to_owned())),
        }
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ownership::Host => "host",
            Ownership::Emulate => "emulate",
        })
    }
}
