//! What one share's virtio-fs device is asked to do, and the checks that say whether it can.
//!
//! The device (`devices`) builds a share from these settings; the jail's policy file (`jail`)
//! and the command line (`fsjail serve`) fill them in and check them here, naming the file,
//! line and key (or the flag) in their own messages. Keeping them in this small crate lets the
//! sandbox crate check a policy without linking the device's vhost-user and FUSE stack.

pub mod cache;
pub mod dax;
pub mod limits;
pub mod migration;
pub mod special;

pub use cache::{CachePolicy, ParseCachePolicyError};
pub use dax::{host_page_size, ByteSize, ParseSizeError, SettingsError};
pub use limits::{
    check_max_write, check_poll_max_us, check_pool_threads, check_request_queues, LimitError,
    MAX_POLL_US, MAX_POOL_THREADS, MAX_REQUEST_QUEUES,
};
pub use migration::{MigrationOnError, ParseMigrationOnError};
pub use special::{Ownership, ParseOwnershipError, ParseSpecialFilesError, SpecialFiles};

/// The settings of one share's device: everything the device needs besides the filesystem
/// itself. Built by the jailed worker from its policy and by `fsjail serve --sandbox none` from
/// its flags; [`DeviceSettings::check`] is the one place they are checked together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSettings {
    /// Refuse every change (EROFS).
    pub readonly: bool,
    /// How long the guest may cache entries, attributes and data.
    pub cache: CachePolicy,
    /// Serve extended attributes.
    pub xattr: bool,
    /// Request queues, one thread each.
    pub num_request_queues: usize,
    /// Threads of the request pool serving requests that may block (0: none).
    pub thread_pool_size: usize,
    /// Ceiling of the adaptive poll of each request queue after serving, µs (0: off).
    pub poll_max_us: u32,
    /// Size of the DAX window in bytes; 0 turns DAX off.
    pub dax_window: u64,
    /// The guest page size every attribute reply's `st_blksize` is clamped to.
    pub blksize: u32,
    /// Largest READ/WRITE payload offered in FUSE INIT.
    pub max_write: u32,
    /// What a guest `mknod` of a device does: emulated, a real host node, or refused.
    pub special_files: SpecialFiles,
    /// Where a guest's chown goes: the host file, or a record when the host cannot hold it.
    pub ownership: Ownership,
    /// Mark directories that are other host mounts (FUSE_ATTR_SUBMOUNT).
    pub announce_submounts: bool,
    /// On a migration's destination: what to do with a node or handle that is gone.
    pub migration_on_error: MigrationOnError,
    /// The tag GET_CONFIG answers with; `None` keeps protocol feature CONFIG off (QEMU 7.1 to
    /// 8.0 crash when a virtio-fs backend offers it).
    pub config_tag: Option<String>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            readonly: false,
            cache: CachePolicy::Auto,
            xattr: false,
            num_request_queues: 1,
            thread_pool_size: limits::DEFAULT_POOL_THREADS,
            poll_max_us: limits::DEFAULT_POLL_MAX_US,
            dax_window: 0,
            blksize: dax::DEFAULT_BLKSIZE,
            max_write: limits::DEFAULT_MAX_WRITE,
            special_files: SpecialFiles::Emulate,
            ownership: Ownership::Host,
            announce_submounts: false,
            migration_on_error: MigrationOnError::Abort,
            config_tag: None,
        }
    }
}

/// One setting that cannot work, naming it as the policy file does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceSettingsError {
    #[error("num_request_queues: {0}")]
    Queues(LimitError),
    #[error("max_write: {0}")]
    MaxWrite(LimitError),
    #[error("thread_pool_size: {0}")]
    PoolThreads(LimitError),
    #[error("poll_max_us: {0}")]
    PollMax(LimitError),
    #[error("dax_window: {0}")]
    DaxWindow(SettingsError),
    #[error("blksize: {0}")]
    Blksize(SettingsError),
}

impl DeviceSettingsError {
    /// The setting's name as the policy file spells it (`--` and dashes make the flag).
    pub fn key(&self) -> &'static str {
        match self {
            DeviceSettingsError::Queues(_) => "num_request_queues",
            DeviceSettingsError::MaxWrite(_) => "max_write",
            DeviceSettingsError::PoolThreads(_) => "thread_pool_size",
            DeviceSettingsError::PollMax(_) => "poll_max_us",
            DeviceSettingsError::DaxWindow(_) => "dax_window",
            DeviceSettingsError::Blksize(_) => "blksize",
        }
    }

    /// What is wrong, without the setting's name.
    pub fn reason(&self) -> String {
        match self {
            DeviceSettingsError::Queues(e)
            | DeviceSettingsError::MaxWrite(e)
            | DeviceSettingsError::PoolThreads(e)
            | DeviceSettingsError::PollMax(e) => e.to_string(),
            DeviceSettingsError::DaxWindow(e) | DeviceSettingsError::Blksize(e) => e.to_string(),
        }
    }
}

impl DeviceSettings {
    /// Whether the share makes real device nodes on the host (and so needs CAP_MKNOD).
    pub fn allow_devices(&self) -> bool {
        self.special_files == SpecialFiles::Host
    }

    /// Checks every setting against this host (its page size for the DAX window).
    pub fn check(&self) -> Result<(), DeviceSettingsError> {
        check_request_queues(self.num_request_queues).map_err(DeviceSettingsError::Queues)?;
        check_max_write(self.max_write).map_err(DeviceSettingsError::MaxWrite)?;
        check_pool_threads(self.thread_pool_size).map_err(DeviceSettingsError::PoolThreads)?;
        check_poll_max_us(self.poll_max_us).map_err(DeviceSettingsError::PollMax)?;
        dax::check_blksize(self.blksize).map_err(DeviceSettingsError::Blksize)?;
        dax::check_window(self.dax_window, host_page_size()).map_err(DeviceSettingsError::DaxWindow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bad_field_is_named() {
        DeviceSettings::default().check().unwrap();
        let bad = [
            DeviceSettings {
                num_request_queues: 0,
                ..Default::default()
            },
            DeviceSettings {
                max_write: 100,
                ..Default::default()
            },
            DeviceSettings {
                dax_window: 12345,
                ..Default::default()
            },
            DeviceSettings {
                blksize: 1000,
                ..Default::default()
            },
        ];
        let names = ["num_request_queues", "max_write", "dax_window", "blksize"];
        for (settings, name) in bad.iter().zip(names) {
            let err = settings.check().unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(name), "{msg}");
            assert_eq!(err.key(), name);
            assert_eq!(msg, format!("{name}: {}", err.reason()));
        }
    }
}
