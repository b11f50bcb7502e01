//! Special files and ownership the host does not hold, shown to the guest from one attribute.
//!
//! A guest expects a complete POSIX filesystem: root can `mknod` block and character devices,
//! `chown` files to any id, and set setuid bits; unpacking a root filesystem or a container
//! image does all three. A real device node on the host is a way into the host's devices (any
//! host process that opens it reaches the host's driver for those numbers, CVE-2020-35517),
//! and an unprivileged broker cannot chown at all. So with `special_files = "emulate"` a guest
//! `mknod` of a device makes an empty regular host file, mode 0600, and records what the guest
//! asked for in the attribute described in [`record`]; with `ownership = "emulate"` a chown or
//! mode the host cannot hold is recorded there too, and FIFOs and sockets are made the same way
//! as devices (a real one could not carry the record of its owner). [`Emulation`] is the `FileSystem` wrapper
//! that writes those records and shows them in every reply that carries attributes.
//!
//! The record is fsjail's alone: the guest can neither read, list, set nor remove it (it
//! answers as for a missing attribute), whether or not the share serves xattrs.
//!
//! A record is honoured only on a host file that only the worker's own user could have given
//! it: owned by the uid the worker runs as, and writable by neither group nor others (a
//! `user.` attribute can be set by anyone who can write the file). A device record further
//! needs an empty regular file, an owner/mode record a regular file or directory. Anything else
//! is shown as the plain host file, with a rate-limited warning when the value is malformed.

mod paths;
pub mod record;
mod records;
mod wrapper;

use std::fmt;
use std::str::FromStr;

pub use wrapper::Emulation;

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

#[cfg(test)]
mod tests;
