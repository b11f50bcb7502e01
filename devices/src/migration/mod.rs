//! Live migration of a share's device state (the vhost-user DEVICE_STATE protocol feature).
//!
//! - [`format`]: the versioned wire format of the state, and its checks.
//! - [`tracked`]: the `FileSystem` wrapper that hands the guest its node ids and handles and
//!   records what the guest knows, so a state can be written, and re-creates the same ids from
//!   a state on the destination.
//! - [`transfer`]: SAVE and LOAD over the frontend's pipe, on their own thread.

pub mod format;
pub mod tracked;
pub mod transfer;

pub use format::{DeviceState, StateError};
pub use tracked::{MigrationOnError, Tracked};
