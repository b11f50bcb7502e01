//! The check every DAX request passes, twice: in the worker before anything reaches the
//! filesystem, and again in the window owner before it calls `mmap`. It is pure (no system
//! calls) and takes the host page size as a parameter, so it is tested for 4K, 16K and 64K
//! hosts on any machine.
//!
//! What the check cannot see (the handle, the file's type and open mode) is checked where it is
//! known: the handle by the server, the file descriptor by the worker's channel and the owner.

use thiserror::Error;

use super::settings::{self, SettingsError};
use crate::fuse::abi::{SETUPMAPPING_FLAG_READ, SETUPMAPPING_FLAG_WRITE};

/// Flags a SETUPMAPPING may carry. Anything else is refused rather than ignored: an unknown bit
/// may one day mean something we do not do.
pub const KNOWN_FLAGS: u64 = SETUPMAPPING_FLAG_READ | SETUPMAPPING_FLAG_WRITE;

/// The geometry every request is checked against: the window's length and the host page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    len: u64,
    page: u64,
}

impl Window {
    /// A window of `len` bytes on a host with `page`-byte pages. `len` must be a valid, non-zero
    /// window size (see [`settings::check_window`]).
    pub fn new(len: u64, page: u64) -> Result<Self, SettingsError> {
        settings::check_window(len, page)?;
        if len == 0 {
            return Err(SettingsError::WindowNotBlockMultiple(0));
        }
        Ok(Window { len, page })
    }

    /// The window's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: a window has at least one 2 MiB block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host page size the window is checked against.
    pub fn page_size(&self) -> u64 {
        self.page
    }

    /// `log2(page)`, which FUSE INIT reports as `map_alignment`.
    pub fn map_alignment(&self) -> u16 {
        self.page.trailing_zeros() as u16
    }
}

/// One SETUPMAPPING (or SHMEM_MAP) request, as the guest sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    pub foffset: u64,
    pub moffset: u64,
    pub len: u64,
    pub flags: u64,
}

/// What a checked mapping may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

impl Access {
    pub fn writable(self) -> bool {
        self == Access::ReadWrite
    }
}

/// Why a request failed the check. The guest gets EINVAL for all of them.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CheckError {
    #[error("length 0")]
    ZeroLength,
    #[error("{field} {value:#x} is not a multiple of the host page size {page:#x}")]
    Misaligned {
        field: &'static str,
        value: u64,
        page: u64,
    },
    #[error("window range {moffset:#x}+{len:#x} is outside the {window:#x}-byte window")]
    OutsideWindow { moffset: u64, len: u64, window: u64 },
    #[error("file range {foffset:#x}+{len:#x} overflows a file offset")]
    FileRangeOverflow { foffset: u64, len: u64 },
    #[error("unknown mapping flags {0:#x}")]
    UnknownFlags(u64),
    #[error("mapping flags {0:#x} lack READ")]
    NotReadable(u64),
}

impl CheckError {
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

fn aligned(field: &'static str, value: u64, page: u64) -> Result<(), CheckError> {
    // The page is a power of two (Window::new checked it), so the mask is exact.
    if value & (page - 1) == 0 {
        Ok(())
    } else {
        Err(CheckError::Misaligned { field, value, page })
    }
}

/// Checks a window range: non-empty, page-aligned at both ends, inside the window.
pub fn check_range(win: &Window, moffset: u64, len: u64) -> Result<(), CheckError> {
    if len == 0 {
        return Err(CheckError::ZeroLength);
    }
    aligned("moffset", moffset, win.page)?;
    aligned("len", len, win.page)?;
    match moffset.checked_add(len) {
        Some(end) if end <= win.len => Ok(()),
        _ => Err(CheckError::OutsideWindow {
            moffset,
            len,
            window: win.len,
        }),
    }
}

/// Checks a mapping request. Mapping past the end of the file is allowed: Linux guests map
/// whole 2 MiB blocks of short files. Flags must include READ (a Linux guest always sets it, and
/// a mapping nobody can read is no mapping).
pub fn check_map(win: &Window, req: &MapRequest) -> Result<Access, CheckError> {
    if req.flags & !KNOWN_FLAGS != 0 {
        return Err(CheckError::UnknownFlags(req.flags));
    }
    if req.flags & SETUPMAPPING_FLAG_READ == 0 {
        return Err(CheckError::NotReadable(req.flags));
    }
    check_range(win, req.moffset, req.len)?;
    aligned("foffset", req.foffset, win.page)?;
    // mmap takes the file offset as off_t: the whole range must fit in an i64.
    match req.foffset.checked_add(req.len) {
        Some(end) if end <= i64::MAX as u64 => {}
        _ => {
            return Err(CheckError::FileRangeOverflow {
                foffset: req.foffset,
                len: req.len,
            })
        }
    }
    Ok(if req.flags & SETUPMAPPING_FLAG_WRITE != 0 {
        Access::ReadWrite
    } else {
        Access::Read
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dax::settings::DAX_BLOCK;

    const R: u64 = SETUPMAPPING_FLAG_READ;
    const W: u64 = SETUPMAPPING_FLAG_WRITE;
    const K4: u64 = 4 << 10;
    const K16: u64 = 16 << 10;
    const K64: u64 = 64 << 10;
    const MB2: u64 = DAX_BLOCK;
    /// Eight blocks: small enough to name its last block.
    const WINDOW: u64 = 8 * MB2;

    fn req(foffset: u64, moffset: u64, len: u64, flags: u64) -> MapRequest {
        MapRequest {
            foffset,
            moffset,
            len,
            flags,
        }
    }

    fn misaligned(field: &'static str, value: u64, page: u64) -> Result<Access, CheckError> {
        Err(CheckError::Misaligned { field, value, page })
    }

    /// Every row states the host page, the request and the expected outcome.
    #[test]
    fn check_table_for_4k_16k_64k_hosts() {
        use Access::*;
        let outside = |moffset, len| {
            Err(CheckError::OutsideWindow {
                moffset,
                len,
                window: WINDOW,
            })
        };
        let rows: Vec<(u64, MapRequest, Result<Access, CheckError>)> = vec![
            // 2 MiB-aligned requests, the way Linux sends them: accepted on every host.
            (K4, req(0, 0, MB2, R), Ok(Read)),
            (K16, req(0, 0, MB2, R), Ok(Read)),
            (K64, req(0, 0, MB2, R), Ok(Read)),
            (K4, req(3 * MB2, MB2, MB2, R | W), Ok(ReadWrite)),
            (K16, req(3 * MB2, MB2, MB2, R | W), Ok(ReadWrite)),
            (K64, req(3 * MB2, MB2, MB2, R | W), Ok(ReadWrite)),
            // A 4K-aligned foffset: fine on a 4K host, refused on a 16K host.
            (K4, req(K4, 0, MB2, R), Ok(Read)),
            (K16, req(K4, 0, MB2, R), misaligned("foffset", K4, K16)),
            // A 16K-aligned foffset: fine on a 16K host, refused on a 64K host.
            (K16, req(K16, 0, MB2, R), Ok(Read)),
            (K64, req(K16, 0, MB2, R), misaligned("foffset", K16, K64)),
            // Misaligned window offset and length.
            (K16, req(0, K4, MB2, R), misaligned("moffset", K4, K16)),
            (
                K64,
                req(0, 0, MB2 + K16, R),
                misaligned("len", MB2 + K16, K64),
            ),
            (K4, req(0, 0, 100, R), misaligned("len", 100, K4)),
            // The last block that fits the window is accepted; one past it is refused.
            (K4, req(0, WINDOW - MB2, MB2, R), Ok(Read)),
            (K16, req(0, WINDOW - MB2, MB2, R), Ok(Read)),
            (K64, req(0, WINDOW - MB2, MB2, R), Ok(Read)),
            (K4, req(0, WINDOW, MB2, R), outside(WINDOW, MB2)),
            (K64, req(0, WINDOW, MB2, R), outside(WINDOW, MB2)),
            (
                K64,
                req(0, WINDOW - MB2, 2 * MB2, R),
                outside(WINDOW - MB2, 2 * MB2),
            ),
            (K64, req(0, 0, WINDOW, R), Ok(Read)),
            // The last 4K-aligned block whose file range still fits an off_t (the kernel wants
            // foffset + len <= i64::MAX).
            (K4, req((1 << 63) - MB2 - K4, 0, MB2, R), Ok(Read)),
            // Past end of file is the filesystem's business: a huge but valid foffset is fine.
            (K4, req(1 << 40, 0, MB2, R), Ok(Read)),
            // Length 0.
            (K4, req(0, 0, 0, R), Err(CheckError::ZeroLength)),
            (K64, req(0, 0, 0, R | W), Err(CheckError::ZeroLength)),
            // Unknown flags, and no READ.
            (
                K4,
                req(0, 0, MB2, R | 4),
                Err(CheckError::UnknownFlags(R | 4)),
            ),
            (
                K16,
                req(0, 0, MB2, 1 << 63),
                Err(CheckError::UnknownFlags(1 << 63)),
            ),
            (K4, req(0, 0, MB2, 0), Err(CheckError::NotReadable(0))),
            (K4, req(0, 0, MB2, W), Err(CheckError::NotReadable(W))),
            // Overflowing values: window end wraps, file end wraps or passes off_t.
            (
                K4,
                req(0, u64::MAX - K4 + 1, MB2, R),
                outside(u64::MAX - K4 + 1, MB2),
            ),
            (
                K64,
                req(0, MB2, u64::MAX - K64 + 1, R),
                outside(MB2, u64::MAX - K64 + 1),
            ),
            (
                K4,
                req(u64::MAX - K4 + 1, 0, MB2, R),
                Err(CheckError::FileRangeOverflow {
                    foffset: u64::MAX - K4 + 1,
                    len: MB2,
                }),
            ),
            (
                K64,
                req(1 << 63, 0, MB2, R),
                Err(CheckError::FileRangeOverflow {
                    foffset: 1 << 63,
                    len: MB2,
                }),
            ),
            (
                K4,
                req((1 << 63) - MB2, 0, MB2, R),
                Err(CheckError::FileRangeOverflow {
                    foffset: (1 << 63) - MB2,
                    len: MB2,
                }),
            ),
        ];
        for (page, r, want) in rows {
            let win = Window::new(WINDOW, page).unwrap();
            assert_eq!(check_map(&win, &r), want, "host page {page:#x}, {r:x?}");
            if let Err(e) = want {
                assert_eq!(e.errno(), libc::EINVAL);
            }
        }
    }

    #[test]
    fn range_table() {
        let win = Window::new(WINDOW, K16).unwrap();
        assert_eq!(check_range(&win, 0, WINDOW), Ok(()));
        assert_eq!(check_range(&win, WINDOW - K16, K16), Ok(()));
        assert_eq!(check_range(&win, 0, 0), Err(CheckError::ZeroLength));
        assert!(matches!(
            check_range(&win, K4, K16),
            Err(CheckError::Misaligned { .. })
        ));
        assert!(matches!(
            check_range(&win, WINDOW, K16),
            Err(CheckError::OutsideWindow { .. })
        ));
        assert!(matches!(
            check_range(&win, K16, !(K16 - 1)),
            Err(CheckError::OutsideWindow { .. })
        ));
    }

    #[test]
    fn window_geometry() {
        assert_eq!(Window::new(MB2, K4).unwrap().map_alignment(), 12);
        assert_eq!(Window::new(MB2, K16).unwrap().map_alignment(), 14);
        assert_eq!(Window::new(MB2, K64).unwrap().map_alignment(), 16);
        assert!(Window::new(0, K4).is_err());
        assert!(Window::new(MB2 + K4, K4).is_err());
        assert!(Window::new(MB2, 12288).is_err());
    }
}
