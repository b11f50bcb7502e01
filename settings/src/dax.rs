//! A share's DAX settings and `st_blksize`, checked once when the share is set up so that a bad
//! value is a clear startup error rather than a guest that cannot mount.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Linux guests map the window in blocks of `1 << FUSE_DAX_SHIFT` (2 MiB), so a window that is
/// not a multiple of it has an unusable tail.
pub const DAX_BLOCK: u64 = 1 << 21;
/// Largest window we accept. The window is reserved address space (not memory), but a typo of a
/// few zeroes should not reserve a terabyte.
pub const MAX_WINDOW: u64 = 64 << 30;
/// Smallest page a host may have (and the Linux guest's page).
pub const MIN_PAGE: u64 = 4096;
/// `st_blksize` bounds: a power of two from a disk sector to the largest Linux page.
pub const MIN_BLKSIZE: u32 = 512;
pub const MAX_BLKSIZE: u32 = 65536;
/// The default `st_blksize` cap: the page of a Linux x86-64 or arm64-4K guest.
pub const DEFAULT_BLKSIZE: u32 = 4096;

/// A DAX or `st_blksize` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("dax window of {0} bytes is not a multiple of 2 MiB (Linux guests map 2 MiB blocks)")]
    WindowNotBlockMultiple(u64),
    #[error("dax window of {window} bytes is not a multiple of the host page size ({page})")]
    WindowNotPageMultiple { window: u64, page: u64 },
    #[error("dax window of {0} bytes is larger than the maximum of 64 GiB")]
    WindowTooLarge(u64),
    #[error("host page size {0} is not a power of two between 4 KiB and 2 MiB")]
    BadPageSize(u64),
    #[error("blksize {0} is not a power of two between {MIN_BLKSIZE} and {MAX_BLKSIZE}")]
    BadBlksize(u32),
}

/// The host's page size, which every window offset, file offset and length must be a multiple
/// of: the window owner's `mmap` works in host pages whatever the guest's page is.
pub fn host_page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the running kernel and touches no memory.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page)
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or(MIN_PAGE)
}

/// Checks a page size: a power of two, at least 4 KiB, at most a DAX block (FUSE INIT carries
/// it as `map_alignment`, which Linux refuses above `FUSE_DAX_SHIFT`).
pub fn check_page_size(page: u64) -> Result<(), SettingsError> {
    if page.is_power_of_two() && (MIN_PAGE..=DAX_BLOCK).contains(&page) {
        Ok(())
    } else {
        Err(SettingsError::BadPageSize(page))
    }
}

/// Checks a window size against the host page. 0 means DAX is off and is always fine.
pub fn check_window(window: u64, page: u64) -> Result<(), SettingsError> {
    check_page_size(page)?;
    if window == 0 {
        return Ok(());
    }
    if window > MAX_WINDOW {
        return Err(SettingsError::WindowTooLarge(window));
    }
    // Both are powers of two (check_page_size passed), so masks test divisibility.
    if window & (DAX_BLOCK - 1) != 0 {
        return Err(SettingsError::WindowNotBlockMultiple(window));
    }
    if window & (page - 1) != 0 {
        return Err(SettingsError::WindowNotPageMultiple { window, page });
    }
    Ok(())
}

/// Checks the `st_blksize` cap.
pub fn check_blksize(blksize: u32) -> Result<(), SettingsError> {
    if blksize.is_power_of_two() && (MIN_BLKSIZE..=MAX_BLKSIZE).contains(&blksize) {
        Ok(())
    } else {
        Err(SettingsError::BadBlksize(blksize))
    }
}

/// A byte count given on the command line: plain bytes or with a binary suffix (`K`, `M`, `G`,
/// optionally followed by `iB` or `B`), e.g. `0`, `2097152`, `512M`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

/// A size string that is not a number with an optional K/M/G suffix, or overflows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid size {0:?}: expected bytes, optionally with a K, M or G suffix (e.g. 1G)")]
pub struct ParseSizeError(pub String);

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSizeError(s.to_owned());
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, suffix) = s.split_at(digits_end);
        if digits.is_empty() {
            return Err(bad());
        }
        let value: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match suffix.to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            _ => return Err(bad()),
        };
        value
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rules() {
        let rows: [(u64, u64, Result<(), SettingsError>); 9] = [
            // (window, host page, expected)
            (0, 4096, Ok(())),
            (DAX_BLOCK, 4096, Ok(())),
            (DAX_BLOCK, 65536, Ok(())),
            (MAX_WINDOW, 16384, Ok(())),
            (
                MAX_WINDOW + DAX_BLOCK,
                4096,
                Err(SettingsError::WindowTooLarge(MAX_WINDOW + DAX_BLOCK)),
            ),
            (
                DAX_BLOCK + 4096,
                4096,
                Err(SettingsError::WindowNotBlockMultiple(DAX_BLOCK + 4096)),
            ),
            (
                1 << 20,
                4096,
                Err(SettingsError::WindowNotBlockMultiple(1 << 20)),
            ),
            (DAX_BLOCK, 3000, Err(SettingsError::BadPageSize(3000))),
            (DAX_BLOCK, 4 << 20, Err(SettingsError::BadPageSize(4 << 20))),
        ];
        for (window, page, want) in rows {
            assert_eq!(
                check_window(window, page),
                want,
                "window {window} page {page}"
            );
        }
    }

    #[test]
    fn blksize_rules() {
        for ok in [512, 1024, 4096, 16384, 65536] {
            assert_eq!(check_blksize(ok), Ok(()), "{ok}");
        }
        for bad in [0, 1, 256, 1000, 4097, 131072, u32::MAX] {
            assert_eq!(
                check_blksize(bad),
                Err(SettingsError::BadBlksize(bad)),
                "{bad}"
            );
        }
        let msg = check_blksize(1000).unwrap_err().to_string();
        assert!(
            msg.contains("1000") && msg.contains("power of two"),
            "{msg}"
        );
    }

    #[test]
    fn sizes_parse() {
        let rows = [
            ("0", Some(0)),
            ("2097152", Some(2 << 20)),
            ("2M", Some(2 << 20)),
            ("2MiB", Some(2 << 20)),
            ("512m", Some(512 << 20)),
            ("1G", Some(1 << 30)),
            ("64GiB", Some(64 << 30)),
            ("4k", Some(4096)),
            ("", None),
            ("M", None),
            ("1T", None),
            ("-1", None),
            ("1.5G", None),
            ("99999999999999999999", None),
            ("17179869184G", None),
        ];
        for (s, want) in rows {
            assert_eq!(s.parse::<ByteSize>().ok().map(|b| b.0), want, "{s:?}");
        }
    }

    #[test]
    fn host_page_is_sane() {
        check_page_size(host_page_size()).unwrap();
    }
}
