//! Step 8: no new privileges, death with the broker, not dumpable.
//!
//! - `PR_SET_NO_NEW_PRIVS`: nothing the worker could exec (it execs nothing) would gain
//!   privileges through setuid bits or file capabilities; also a prerequisite for an
//!   unprivileged seccomp filter (step 9).
//! - `PR_SET_PDEATHSIG(SIGKILL)`: set again here although the spawn set it before exec,
//!   because the kernel clears it on every credential change (the switch to uid 0 inside a user
//!   namespace). Then the broker is checked alive, closing the race where it died before the
//!   signal was armed. `getppid()` cannot tell inside a new pid namespace (it returns 0), so the
//!   check is the control socket: the broker holds the other end until it dies, and then the
//!   kernel reports a hangup.
//! - `PR_SET_DUMPABLE 0`: other processes of the same uid cannot ptrace the worker or read its
//!   memory, and no core dump is written. Its `/proc/PID/` files become root-owned.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PrivsError {
    #[error("prctl({what}): {source}")]
    Prctl { what: &'static str, source: Errno },
    #[error("polling the control socket: {0}")]
    Poll(Errno),
    #[error("the broker is gone (control socket hung up)")]
    BrokerGone,
}

/// Applies the three settings; `control` is the worker's end of the control socket.
pub fn apply(control: BorrowedFd<'_>) -> Result<(), PrivsError> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        "PR_SET_PDEATHSIG",
    )?;
    if broker_gone(control)? {
        return Err(PrivsError::BrokerGone);
    }
    prctl(libc::PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
}

/// Whether the broker's end of the control socket is closed (it died or gave up on us).
pub fn broker_gone(control: BorrowedFd<'_>) -> Result<bool, PrivsError> {
    // No events asked: POLLHUP and POLLERR are always reported.
    let mut fds = [PollFd::new(control, PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO).map_err(PrivsError::Poll)?;
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    Ok(revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

fn prctl(option: libc::c_int, arg: libc::c_ulong, what: &'static str) -> Result<(), PrivsError> {
    // SAFETY: the options used here take one integer argument and change only our own state.
    let rc = unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(PrivsError::Prctl {
            what,
            source: Errno::last(),
        });
    }
    Ok(())
}
