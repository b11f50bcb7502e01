//! DAX: the virtio-fs cache window, safe and coherent on any host page size.
//!
//! A Linux guest with `-o dax` maps files into the device's shared memory window with
//! FUSE_SETUPMAPPING / FUSE_REMOVEMAPPING, in 2 MiB blocks, often past the end of the file. Only
//! the window's owner (the VMM) can mmap into it, so every request is checked twice:
//!
//! 1. the worker (this device) runs [`validate::check_map`] with the host page size, checks
//!    the handle ([`handles::OpenHandles`]) and the share policy, lets the filesystem open the
//!    file, checks the fd ([`fd_check::check_fd`]), records the mapping ([`table::MappingTable`])
//!    and sends SHMEM_MAP with the fd to the owner ([`channel::DaxChannel`]), as the exact
//!    steps the owner accepts ([`plan`]: never a map over a live mapping, never an unmap of
//!    part of one, as QEMU 11.1 requires);
//! 2. the owner ([`window::WindowMapper`], or QEMU) runs the same checks again, since it does
//!    not trust the worker, and maps with MAP_SHARED | MAP_FIXED into its reserved range.
//!
//! [`settings`] holds the startup checks of the window size and `st_blksize`.

pub mod channel;
pub mod fd_check;
pub mod handles;
pub mod plan;
pub mod settings;
pub mod table;
pub mod validate;
pub mod window;

pub use channel::{DaxChannel, DaxError, WindowOwner};
pub use settings::{host_page_size, ByteSize, SettingsError, DAX_BLOCK, MAX_WINDOW};
pub use validate::{check_map, check_range, Access, CheckError, MapRequest, Window};
pub use window::{Overlaps, WindowError, WindowMapper, CACHE_SHMID};
