//! The fsjail virtio-fs device: the vhost-user backend, the FUSE server, the descriptor chain
//! transport and the per-share filesystem policy.

pub mod dax;
pub mod fs;
pub mod fuse;
pub mod id_hash;
pub mod migration;
pub mod ratelimit;
pub mod share;
pub mod transport;
pub mod vhost_user;
