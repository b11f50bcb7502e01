//! Shared harness code for fsjail's fuzz targets (see `fuzz_targets/`).

pub mod fuse;
pub mod guest;
pub mod readonly;
pub mod record;
pub mod vhost;
pub mod window;
