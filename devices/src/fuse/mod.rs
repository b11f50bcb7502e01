//! The FUSE protocol side of the device: wire structures and the request server.

pub mod abi;
pub mod server;
