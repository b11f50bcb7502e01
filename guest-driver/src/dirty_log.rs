//! The frontend's half of dirty-page logging (vhost-user protocol feature LOG_SHMFD): a memfd
//! bitmap with one bit per 4 KiB page of guest physical address, handed to the backend with
//! SET_LOG_BASE, and VHOST_F_LOG_ALL turned on with SET_FEATURES, as QEMU does while it copies
//! a running guest's RAM. The bitmap is read back with plain `pread`.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use vhost::{VhostBackend, VhostUserDirtyLogRegion};

use crate::error::{Error, Result};
use crate::frontend::Device;

/// Guest bytes per bit of the log (the spec's VHOST_LOG_PAGE).
pub const LOG_PAGE: u64 = 4096;
/// VHOST_F_LOG_ALL.
pub const VHOST_F_LOG_ALL: u64 = 1 << 26;

/// A dirty-page log shared with the backend.
#[derive(Debug)]
pub struct DirtyLog {
    file: File,
    len: u64,
}

/// An anonymous shared-memory file of `len` bytes (zeroed).
pub fn log_file(len: u64) -> Result<File> {
    // SAFETY: a NUL-terminated name and valid flags; the result is checked below.
    let fd = unsafe { libc::memfd_create(c"dirty-log".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create just returned this descriptor; nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)
        .map_err(|e| Error::io("sizing the dirty log", e))?;
    Ok(file)
}

impl DirtyLog {
    /// Whether the page holding guest physical address `gpa` is marked.
    pub fn is_dirty(&self, gpa: u64) -> Result<bool> {
        let page = gpa / LOG_PAGE;
        let mut byte = [0u8; 1];
        self.file
            .read_exact_at(&mut byte, page / 8)
            .map_err(|e| Error::io("reading the dirty log", e))?;
        Ok(byte[0] & (1 << (page % 8)) != 0)
    }

    /// Guest physical addresses of every marked page, in order.
    pub fn dirty_pages(&self) -> Result<Vec<u64>> {
        let mut bytes = vec![0u8; self.len as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| Error::io("reading the dirty log", e))?;
        let mut pages = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    pages.push((i as u64 * 8 + bit) * LOG_PAGE);
                }
            }
        }
        Ok(pages)
    }

    /// Clears every bit, as QEMU does after each pass over guest RAM.
    pub fn clear(&self) -> Result<()> {
        self.file
            .write_all_at(&vec![0u8; self.len as usize], 0)
            .map_err(|e| Error::io("clearing the dirty log", e))
    }
}

impl Device {
    /// Starts logging: a log covering all of guest RAM goes to the backend (SET_LOG_BASE),
    /// then SET_FEATURES adds VHOST_F_LOG_ALL. Needs LOG_SHMFD negotiated.
    pub fn start_dirty_log(&self) -> Result<DirtyLog> {
        let end = self.ram().base() + self.ram().size();
        let len = end.div_ceil(LOG_PAGE).div_ceil(8);
        let file = log_file(len)?;
        self.set_log_base(&file, 0, len)?;
        self.frontend()
            .set_features(self.acked_features() | VHOST_F_LOG_ALL)?;
        Ok(DirtyLog { file, len })
    }

    /// Stops logging: SET_FEATURES without VHOST_F_LOG_ALL.
    pub fn stop_dirty_log(&self) -> Result<()> {
        self.frontend().set_features(self.acked_features())?;
        Ok(())
    }

    /// SET_LOG_BASE with any `file`, `offset` and `size`, for hostile tests.
    pub fn set_log_base(&self, file: &File, offset: u64, size: u64) -> Result<()> {
        let region = VhostUserDirtyLogRegion {
            mmap_size: size,
            mmap_offset: offset,
            mmap_handle: file.as_raw_fd(),
        };
        self.frontend().set_log_base(0, Some(region))?;
        Ok(())
    }
}
