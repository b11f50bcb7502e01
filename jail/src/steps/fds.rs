//! Step 6: close every descriptor the worker did not choose to keep.
//!
//! The spawn already marked everything above fd 3 close-on-exec, so a worker normally starts
//! with stdio and its control socket only. This step is the worker's own guarantee, made after
//! it has opened what it needs (the share's root, the passthrough's `/proc/self/fd` and
//! `/proc/self/mountinfo`), so that whatever else might be open — a descriptor inherited some
//! other way, one a step leaked — is gone before the worker meets the guest. A leaked
//! directory descriptor on the host's tree would undo the whole mount step.
//!
//! The caller lists what to keep; every descriptor kept must be owned by an object the worker
//! holds, and every one not listed is closed with `close_range(2)`.

use std::os::fd::{AsRawFd, RawFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FdsError {
    #[error("listing /proc/self/fd: {0}")]
    List(Errno),
    #[error("close_range({first}, {last}): {source}")]
    CloseRange {
        first: u32,
        last: u32,
        source: Errno,
    },
}

/// The descriptors open now, from `/proc/self/fd` (without the one used to list it).
///
/// The worker lists them around building the passthrough filesystem to learn which ones it
/// opened (`/proc/self/fd`, `/proc/self/mountinfo`, its root's inode): it exposes only the
/// first (`keep_fds`), and closing another under it would make a later drop close whatever
/// file reused the number.
pub fn open_fds() -> Result<Vec<RawFd>, FdsError> {
    let dir = Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(FdsError::List)?;
    list(dir)
}

/// Like [`open_fds`], through `proc_self_fd`, a descriptor (even `O_PATH`) of
/// `/proc/self/fd` opened earlier: after the chroot into the share, no `/proc` is reachable
/// by path.
pub fn open_fds_at(proc_self_fd: RawFd) -> Result<Vec<RawFd>, FdsError> {
    let dir = Dir::openat(
        Some(proc_self_fd),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(FdsError::List)?;
    list(dir)
}

fn list(mut dir: Dir) -> Result<Vec<RawFd>, FdsError> {
    let own = dir.as_raw_fd();
    let mut listed = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(FdsError::List)?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            if fd != own {
                listed.push(fd);
            }
        }
    }
    listed.sort_unstable();
    Ok(listed)
}

/// Closes every descriptor not in `keep`.
pub fn close_all_except(keep: &[RawFd]) -> Result<(), FdsError> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: u32 = 0;
    for &k in &keep {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = k + 1;
    }
    close_range(first, u32::MAX)
}

fn close_range(first: u32, last: u32) -> Result<(), FdsError> {
    // SAFETY: close_range only closes descriptors; the caller guarantees that none in the
    // range is owned by a live Rust object (they are all outside its keep list).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    if rc < 0 {
        return Err(FdsError::CloseRange {
            first,
            last,
            source: Errno::last(),
        });
    }
    Ok(())
}
