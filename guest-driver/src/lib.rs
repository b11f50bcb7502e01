//! A vhost-user frontend and FUSE client that plays the guest of a virtio-fs device.
//!
//! Layer 1 ([`Device`], [`VirtQueue`], [`GuestRam`]): connects to any vhost-user-fs backend,
//! shares a memfd as guest RAM, lays out split virtqueues in it and moves descriptor chains.
//! Layer 2 ([`Session`]): typed FUSE requests over those queues, with every reply checked,
//! plus raw entry points for hostile tests.
//!
//! Hostile tests have three levels of escape hatch:
//! - [`Session::send_raw`]: arbitrary bytes, arbitrary descriptor split, nothing checked;
//! - [`Session::submit_on`] + [`Session::complete_raw`]: any opcode/queue with a real header;
//! - [`VirtQueue::post_raw`] / [`VirtQueue::publish_raw`] / [`VirtQueue::write_desc`] and
//!   [`GuestRam::write`] on [`VirtQueue::ring_addresses`]: hand-made descriptors (loops,
//!   addresses outside RAM, INDIRECT flags, rewriting a published chain) and raw ring pokes;
//!   [`Device::frontend`] sends arbitrary vhost-user control messages.
//!
//! A backend that closes its socket makes waits fail fast with [`Error::Disconnected`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use guest_driver::{Device, Session};
//! let dev = Arc::new(Device::connect("/tmp/vfsd.sock")?);
//! let fs = Session::new(dev);
//! fs.init()?;
//! let e = fs.lookup(1, "hello.txt")?;
//! # Ok::<(), guest_driver::Error>(())
//! ```

pub mod backend_channel;
pub mod dirent;
pub mod dirty_log;
pub mod error;
pub mod frontend;
pub mod fuse_client;
pub mod fuse_io;
pub mod fuse_ops;
pub mod memory;
pub mod migration;
pub mod virtqueue;

pub use backend_channel::{BackendRequestHandler, RefuseAll};
pub use dirent::{DirEntry, DirEntryPlus};
pub use dirty_log::DirtyLog;
pub use error::{Error, Result};
pub use frontend::{Device, Options};
pub use fuse_client::{Context, Layout, Pending, RawReply, Session};
pub use fuse_io::XattrReply;
pub use fuse_ops::{InitOptions, Setattr};
pub use memory::{GuestBuf, GuestRam};
pub use virtqueue::{Completion, Descriptor, RawDesc, RingAddresses, Token, UsedElem, VirtQueue};

/// The FUSE wire structures, re-exported for callers.
pub use devices::fuse::abi;
/// vhost-user types callers need for handlers and features.
pub use vhost::vhost_user::{
    message::VhostUserMMap, VhostUserFrontendReqHandler, VhostUserProtocolFeatures,
};
