//! The virtio-fs device configuration space, for frontends that read it over vhost-user
//! (GET_CONFIG, protocol feature CONFIG) instead of holding it themselves.
//!
//! `vhost-user-fs-pci` keeps the tag in QEMU (`tag=`) and never asks; QEMU's generic
//! `vhost-user-test-device-pci,virtio-id=26` (the device that carries a DAX window in QEMU 11.1)
//! asks the backend. The feature stays off unless a tag is configured: QEMU 7.1 to 8.0 crash
//! when a virtio-fs backend offers it.

use std::io;

use thiserror::Error;

/// `struct virtio_fs_config`: `u8 tag[36]` (UTF-8, NUL-padded, not NUL-terminated when it
/// is 36 bytes long) then `le32 num_request_queues`.
pub const TAG_LEN: usize = 36;
pub const CONFIG_LEN: usize = TAG_LEN + 4;

/// A tag the guest could not mount by.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TagError {
    #[error("the virtio-fs tag is empty")]
    Empty,
    #[error("the virtio-fs tag {0:?} is longer than {TAG_LEN} bytes")]
    TooLong(String),
    #[error("the virtio-fs tag {0:?} contains a NUL byte")]
    Nul(String),
}

/// The configuration space of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    bytes: [u8; CONFIG_LEN],
}

impl FsConfig {
    /// The space for `tag` and `num_request_queues` request queues.
    pub fn new(tag: &str, num_request_queues: usize) -> Result<Self, TagError> {
        if tag.is_empty() {
            return Err(TagError::Empty);
        }
        if tag.len() > TAG_LEN {
            return Err(TagError::TooLong(tag.to_owned()));
        }
        if tag.as_bytes().contains(&0) {
            return Err(TagError::Nul(tag.to_owned()));
        }
        let mut bytes = [0u8; CONFIG_LEN];
        bytes[..tag.len()].copy_from_slice(tag.as_bytes());
        // The queue count is bounded by MAX_REQUEST_QUEUES long before u32.
        let queues = u32::try_from(num_request_queues).unwrap_or(u32::MAX);
        bytes[TAG_LEN..].copy_from_slice(&queues.to_le_bytes());
        Ok(FsConfig { bytes })
    }

    /// `size` bytes from `offset`, as GET_CONFIG asks. A range outside the space is an error
    /// (vhost answers it with an empty payload, which the frontend takes as a failure).
    pub fn read(&self, offset: u32, size: u32) -> io::Result<Vec<u8>> {
        let start = offset as usize;
        let end = start.checked_add(size as usize);
        match end {
            Some(end) if end <= CONFIG_LEN => Ok(self.bytes[start..end].to_vec()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// The whole space.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_ranges() {
        let c = FsConfig::new("vfs", 2).unwrap();
        let all = c.read(0, CONFIG_LEN as u32).unwrap();
        assert_eq!(&all[..4], b"vfs\0");
        assert!(all[3..TAG_LEN].iter().all(|b| *b == 0));
        assert_eq!(&all[TAG_LEN..], &2u32.to_le_bytes());
        assert_eq!(c.read(TAG_LEN as u32, 4).unwrap(), 2u32.to_le_bytes());
        assert_eq!(c.read(1, 2).unwrap(), b"fs");
        for (offset, size) in [(0, 41), (40, 1), (37, 4), (u32::MAX, 2), (0, u32::MAX)] {
            assert!(c.read(offset, size).is_err(), "{offset} {size}");
        }
        // 36 bytes fill the tag with no NUL, as the virtio spec allows.
        let long = "a".repeat(TAG_LEN);
        assert_eq!(
            &FsConfig::new(&long, 1).unwrap().as_bytes()[..TAG_LEN],
            long.as_bytes()
        );
        assert_eq!(FsConfig::new("", 1), Err(TagError::Empty));
        assert!(matches!(
            FsConfig::new(&"a".repeat(37), 1),
            Err(TagError::TooLong(_))
        ));
        assert!(matches!(FsConfig::new("a\0b", 1), Err(TagError::Nul(_))));
    }
}
