//! One share's device, assembled the same way for every entry point: the jailed worker,
//! `fsjail serve --sandbox none`, the benchmark and the fuzz targets.
//!
//! The caller brings the filesystem ([`ShareFs`]: a passthrough filesystem over the share and
//! a descriptor of its root), because where it can be opened depends on the jail; everything
//! layered on it (the share policy, the FUSE server with its DAX window, the vhost-user
//! backend) is built here from one [`DeviceSettings`].

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use fuse_backend_rs::passthrough::PassthroughFs;
use settings::{DeviceSettings, DeviceSettingsError};
use thiserror::Error;
use vhost::vhost_user::Listener;

use crate::dax::{DaxChannel, SettingsError};
use crate::fs::policy::InodePathFn;
use crate::fs::{self, Emulation, ShareOptions, SharePolicy};
use crate::fuse::server::{Server, ServerOptions};
use crate::migration::transfer::ShareState;
use crate::migration::Tracked;
use crate::vhost_user::{self, FsBackend};

/// The filesystem stack a share's server calls: the record of what the guest holds (for live
/// migration), over the emulation of special files and owners, over the policy wrapper, over
/// the passthrough.
pub type ShareStack = Tracked<Emulation<SharePolicy<Arc<PassthroughFs>>>>;
/// A share's FUSE server.
pub type ShareServer = Server<ShareStack>;

/// Why a share's device could not be built.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error(transparent)]
    Settings(#[from] DeviceSettingsError),
    #[error("{0}")]
    Server(SettingsError),
    #[error(transparent)]
    Share(#[from] fs::Error),
    #[error("opening the share's root: {0}")]
    Root(std::io::Error),
    #[error(transparent)]
    VhostUser(#[from] vhost_user::Error),
    #[error("config_tag: {0}")]
    ConfigTag(#[from] vhost_user::config::TagError),
}

/// A share's filesystem, opened where the caller's jail allows.
pub struct ShareFs {
    /// Imported: its root is the share.
    pub passthrough: PassthroughFs,
    /// The share's root directory, for SYNCFS.
    pub share_root: File,
    /// The share's root as this process names it: `/` in a jail, whose root is the share.
    pub served_root: PathBuf,
    /// The process's root is the share (a jailed worker). Inodes are then named through the
    /// passthrough's own `/proc` descriptor, for xattr calls (the guest's and the emulation's
    /// records: fuse-backend-rs names them "/proc/self/fd/N", which does not resolve there) and
    /// for the confinement check of the policy wrapper.
    pub jailed: bool,
}

impl ShareFs {
    /// Opens the share at `options.root` from an unconfined process.
    pub fn open(options: &ShareOptions) -> Result<ShareFs, DeviceError> {
        let passthrough = fs::new_passthrough(options)?;
        let share_root = fs::open_share_root(&options.root).map_err(DeviceError::Root)?;
        Ok(ShareFs {
            passthrough,
            share_root,
            served_root: options.root.clone(),
            jailed: false,
        })
    }
}

/// A share's device: the server and the vhost-user backend that feeds it.
pub struct ShareDevice {
    server: Arc<ShareServer>,
    backend: Arc<FsBackend<ShareStack>>,
}

impl ShareDevice {
    /// Checks `settings` and builds the device over `share`.
    pub fn build(settings: &DeviceSettings, share: ShareFs) -> Result<ShareDevice, DeviceError> {
        settings.check()?;
        let passthrough = Arc::new(share.passthrough);
        let mut policy = SharePolicy::new(passthrough.clone(), settings.readonly)
            .with_allow_devices(settings.allow_devices());
        if share.jailed {
            let resolver = passthrough.clone();
            policy = policy
                .with_confinement(Box::new(move |inode| resolver.readlinkat_proc_file(inode)));
        }
        if settings.xattr && share.jailed {
            let resolver = passthrough.clone();
            policy = policy
                .with_xattr_paths(Box::new(move |inode| resolver.readlinkat_proc_file(inode)));
        }
        let mut stack = Emulation::new(
            policy,
            settings.special_files,
            settings.ownership,
            settings.xattr,
        );
        let resolver = passthrough.clone();
        let resolve: InodePathFn = Box::new(move |inode| resolver.readlinkat_proc_file(inode));
        stack = if share.jailed {
            stack.with_record_paths(resolve)
        } else {
            stack.with_content_paths(resolve)
        };
        // Paths come from the passthrough's own descriptors, under the root as this process
        // names it.
        let names = passthrough;
        let stack = Tracked::new(stack, settings.migration_on_error).with_paths(
            Box::new(move |inode| names.readlinkat_proc_file(inode)),
            share.served_root,
        );
        let options = ServerOptions {
            dax_window: settings.dax_window,
            blksize: settings.blksize,
            max_write: settings.max_write,
            announce_submounts: settings.announce_submounts,
            ..ServerOptions::default()
        };
        let server =
            Server::try_new(stack, options, Some(share.share_root)).map_err(DeviceError::Server)?;
        let server = Arc::new(server);
        // The pool threads start here, before the worker's filter (which covers them too).
        let mut backend = FsBackend::new(server.clone(), settings.num_request_queues)?
            .with_migration(Arc::new(ShareState::new(server.clone())))
            .with_tuning(settings.thread_pool_size, settings.poll_max_us)?;
        if let Some(tag) = &settings.config_tag {
            backend = backend.with_config_tag(tag)?;
        }
        let backend = Arc::new(backend);
        Ok(ShareDevice { server, backend })
    }

    /// The FUSE server, for callers that feed it descriptor chains themselves (fuzz targets).
    pub fn server(&self) -> &Arc<ShareServer> {
        &self.server
    }

    /// The vhost-user backend, for callers that run the daemon themselves.
    pub fn backend(&self) -> &Arc<FsBackend<ShareStack>> {
        &self.backend
    }

    /// The DAX window's worker side, `None` when DAX is off.
    pub fn dax(&self) -> Option<&Arc<DaxChannel>> {
        self.server.dax()
    }

    /// Serves one frontend connection on `listener`; returns when it disconnects.
    pub fn serve(&self, listener: &mut Listener) -> Result<(), vhost_user::Error> {
        vhost_user::serve_connection(self.backend.clone(), listener)
    }
}
