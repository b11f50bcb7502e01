//! Live migration's settings (virtiofsd's names; the device's `migration` module does it).

use std::fmt;
use std::str::FromStr;

/// What the destination does with a node or handle it cannot re-open (virtiofsd's
/// `--migration-on-error`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationOnError {
    /// Fail the load: CHECK_DEVICE_STATE fails and the migration is aborted.
    #[default]
    Abort,
    /// Load anyway; every request on that node or handle answers EIO.
    GuestError,
}

impl MigrationOnError {
    pub const NAMES: &'static [&'static str] = &["abort", "guest-error"];
}

impl fmt::Display for MigrationOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationOnError::Abort => "abort",
            MigrationOnError::GuestError => "guest-error",
        })
    }
}

/// A `migration_on_error` value that is none of [`MigrationOnError::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid migration error policy {0:?}: expected \"abort\" or \"guest-error\"")]
pub struct ParseMigrationOnError(pub String);

impl FromStr for MigrationOnError {
    type Err = ParseMigrationOnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "abort" => Ok(MigrationOnError::Abort),
            "guest-error" => Ok(MigrationOnError::GuestError),
            _ => Err(ParseMigrationOnError(s.to_owned())),
        }
    }
}
