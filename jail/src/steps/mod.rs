//! The jail, as numbered steps (README.md's "The jail" uses the same numbers).
//!
//! Steps 1 and 2 run in the broker, in [`crate::spawn`]: they create the worker. Steps 3 to 10
//! run in the worker, after `exec`, in the order [`crate::enter::enter`] calls them (step 4
//! first of all, see there): each is a function here with its own error type, wrapped in its
//! own [`JailError`] variant, so a failure names the step that failed and the syscall and path
//! inside it. Step 10 (seccomp) must stay last, since the filter forbids the syscalls the other
//! steps make.
//!
//! | # | step | where |
//! |---|------|-------|
//! | 1 | start the child safely (clone3 with a pidfd; async-signal-safe until exec) | [`crate::spawn`] |
//! | 2 | namespaces: user (when not root or ids mapped), mount, pid, net, ipc, uts, cgroup; id maps written by the broker | [`crate::spawn`] |
//! | 3 | mounts: `/` private, tmpfs root with the share and a fresh `/proc`, pivot_root, old root detached, chroot into the share | [`mounts`] |
//! | 4 | PID 1: exit 0 on SIGTERM, children reaped | [`pid1`] |
//! | 5 | rlimits: NOFILE from the policy, CORE 0, NPROC bounded | [`rlimits`] |
//! | 6 | close every fd but those handed over and the filesystem's own | [`fds`] |
//! | 7 | drop supplementary groups; bounding/permitted/effective caps reduced, ambient and inheritable empty | [`creds`] |
//! | 8 | no_new_privs, parent-death signal (and the broker checked alive), not dumpable | [`privs`] |
//! | 9 | Landlock: read/write beneath the share only (read-only beneath a read-only share), the kernel's highest ABI | [`landlock`] |
//! | 10 | seccomp filter: the worker allowlist on every thread (TSYNC), last | `seccomp::install`, called by [`crate::enter::enter`] |
//!
//! Steps 5 to 9 change per-thread state (capabilities, no_new_privs, the Landlock domain) that new threads inherit,
//! so the worker runs them before it starts any thread; threads started later by the
//! vhost-user daemon inherit the final jail.

pub mod creds;
pub mod fds;
pub mod landlock;
pub mod mounts;
pub mod pid1;
pub mod privs;
pub mod rlimits;

use std::fmt;

use thiserror::Error;

/// The jail steps, in order. Used in messages and by `fsjail check` to print the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    StartChild = 1,
    Namespaces = 2,
    Mounts = 3,
    Pid1 = 4,
    Rlimits = 5,
    CloseFds = 6,
    Credentials = 7,
    Privileges = 8,
    Landlock = 9,
    /// Last: the filter forbids the calls every other step makes.
    Seccomp = 10,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::StartChild,
        Step::Namespaces,
        Step::Mounts,
        Step::Pid1,
        Step::Rlimits,
        Step::CloseFds,
        Step::Credentials,
        Step::Privileges,
        Step::Landlock,
        Step::Seccomp,
    ];

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::StartChild => "start the child",
            Step::Namespaces => "namespaces",
            Step::Mounts => "mounts",
            Step::Pid1 => "pid 1",
            Step::Rlimits => "rlimits",
            Step::CloseFds => "close fds",
            Step::Credentials => "groups and capabilities",
            Step::Privileges => "no_new_privs, parent death, not dumpable",
            Step::Landlock => "landlock",
            Step::Seccomp => "seccomp",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({})", self.number(), self.name())
    }
}

/// A worker-side jail step failed. Steps 1 and 2 fail in the broker ([`crate::spawn::SpawnError`]).
#[derive(Debug, Error)]
pub enum JailError {
    #[error("step 3 (mounts): {0}")]
    Mounts(#[from] mounts::MountError),
    #[error("step 4 (pid 1): {0}")]
    Pid1(#[from] pid1::Pid1Error),
    #[error("step 5 (rlimits): {0}")]
    Rlimits(#[from] rlimits::RlimitError),
    #[error("step 6 (close fds): {0}")]
    CloseFds(#[from] fds::FdsError),
    #[error("step 7 (groups and capabilities): {0}")]
    Credentials(#[from] creds::CredsError),
    #[error("step 8 (no_new_privs, parent death, not dumpable): {0}")]
    Privileges(#[from] privs::PrivsError),
    #[error("step 9 (landlock): {0}")]
    Landlock(#[from] landlock::LandlockError),
    #[error("step 10 (seccomp): {0}")]
    Seccomp(#[from] seccomp::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_seccomp_is_last() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(s.number() as usize, i + 1);
        }
        assert_eq!(Step::ALL.last(), Some(&Step::Seccomp));
        assert_eq!(Step::Mounts.to_string(), "step 3 (mounts)");
    }
}
