//! The FUSE session's negotiated settings, read out for a migration's saved state and put back
//! on the destination, where the guest will not send INIT again.

use std::sync::atomic::Ordering;

use fuse_backend_rs::api::filesystem::{FileSystem, FsOptions};
use thiserror::Error;

use super::{Server, FS_CAPABILITIES, SERVER_CAPABILITIES};
use crate::fuse::abi::{self, init_flags};
use crate::migration::format::FuseSettings;

/// Why a saved session cannot continue on this server.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("this device already serves a guest (INIT was received)")]
    AlreadyInitialized,
    #[error("the source granted max_write {source_max}, above this share's {ours}")]
    MaxWrite { source_max: u32, ours: u32 },
    #[error("the source granted FUSE minor {0}, which this server does not speak")]
    Minor(u32),
    #[error(
        "the source granted capabilities {0:#x} this share cannot honour (its settings differ)"
    )]
    Capabilities(u64),
    #[error("the filesystem refused the saved capabilities: {0}")]
    Filesystem(std::io::Error),
}

impl<F> Server<F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Sync,
{
    /// What INIT negotiated; all zero before INIT (a guest that never mounted the share).
    pub fn session(&self) -> FuseSettings {
        if !self.initialized.load(Ordering::Acquire) {
            return FuseSettings {
                minor: 0,
                flags: 0,
                max_write: 0,
            };
        }
        FuseSettings {
            minor: self.minor.load(Ordering::Acquire),
            flags: self.granted.load(Ordering::Acquire),
            max_write: self.options.max_write,
        }
    }

    /// Checks that a saved session can continue here: what INIT would grant with this share's
    /// settings covers what the source granted. Lets the filesystem configure itself for those
    /// capabilities, as INIT does. Commits nothing; [`Server::commit_session`] does.
    pub fn check_session(&self, s: &FuseSettings) -> Result<(), SessionError> {
        if self.initialized.load(Ordering::Acquire) {
            return Err(SessionError::AlreadyInitialized);
        }
        if s.minor == 0 {
            return Ok(());
        }
        if !(abi::MIN_KERNEL_MINOR_VERSION..=abi::KERNEL_MINOR_VERSION).contains(&s.minor) {
            return Err(SessionError::Minor(s.minor));
        }
        if s.max_write > self.options.max_write {
            return Err(SessionError::MaxWrite {
                source_max: s.max_write,
                ours: self.options.max_write,
            });
        }
        let fs_wants = self
            .fs
            .init(FsOptions::from_bits_truncate(s.flags))
            .map_err(SessionError::Filesystem)?
            .bits();
        let mut allowed = SERVER_CAPABILITIES | (fs_wants & FS_CAPABILITIES);
        if self.dax.is_some() {
            allowed |= init_flags::MAP_ALIGNMENT;
        }
        if self.options.announce_submounts {
            allowed |= init_flags::SUBMOUNTS;
        }
        let extra = s.flags & !allowed;
        if extra != 0 {
            return Err(SessionError::Capabilities(extra));
        }
        Ok(())
    }

    /// Continues a saved session (checked with [`Server::check_session`]): requests are served
    /// as after that INIT.
    pub fn commit_session(&self, s: &FuseSettings) {
        if s.minor == 0 {
            return;
        }
        self.minor.store(s.minor, Ordering::Release);
        self.granted.store(s.flags, Ordering::Release);
        self.submounts
            .store(s.flags & init_flags::SUBMOUNTS != 0, Ordering::Release);
        self.initialized.store(true, Ordering::Release);
    }
}
