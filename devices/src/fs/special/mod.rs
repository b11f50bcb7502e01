//! Special files and ownership the host does not hold, shown to the guest from one attribute.
//!
//! A guest expects a complete POSIX filesystem: root can `mknod` block and character devices,
//! `chown` files to any id, and set setuid bits; unpacking a root filesystem or a container
//! image does all three. A real device node on the host is a way into the host's devices (any
//! host process that opens it reaches the host's driver for those numbers, CVE-2020-35517),
//! and an unprivileged broker cannot chown at all. So with `special_files = "emulate"` a guest
//! `mknod` of a device makes an empty regular host file, mode 0600, and records what the guest
//! asked for in the attribute described in [`record`]; with `ownership = "emulate"` a chown or
//! mode the host cannot hold is recorded there too, and FIFOs and sockets are made the same way
//! as devices (a real one could not carry the record of its owner). [`Emulation`] is the `FileSystem` wrapper
//! that writes those records and shows them in every reply that carries attributes.
//!
//! The record is fsjail's alone: the guest can neither read, list, set nor remove it (it
//! answers as for a missing attribute), whether or not the share serves xattrs.
//!
//! A record is honoured only on a host file that only the worker's own user could have given
//! it: owned by the uid the worker runs as, and writable by neither group nor others (a
//! `user.` attribute can be set by anyone who can write the file). A device record further
//! needs an empty regular file, an owner/mode record a regular file or directory. Anything else
//! is shown as the plain host file, with a rate-limited warning when the value is malformed.

mod paths;
pub mod record;
mod records;
mod seen;
mod symlinks;
mod wrapper;

pub use settings::{Ownership, ParseOwnershipError, ParseSpecialFilesError, SpecialFiles};
pub use wrapper::Emulation;

#[cfg(test)]
mod tests;
