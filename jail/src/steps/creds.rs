//! Step 7: supplementary groups and capabilities.
//!
//! Groups: all dropped. The worker switches its uid/gid to the guest's for each creating
//! request but not its groups, so any group it kept would be granted to every guest user — a
//! guest could create files in (or read) whatever the broker's groups could (CVE-2022-0358).
//! When the broker is unprivileged, the kernel made it deny setgroups in the worker's user
//! namespace and the groups cannot be dropped; they are then the invoking user's own groups,
//! which the user's processes hold anyway, and the step says so in the log instead of failing.
//!
//! Capabilities: what the passthrough needs to act for any guest user on any file of the share
//! — CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETGID, SETUID, and MKNOD only when the policy lets
//! the guest create device nodes. The bounding set is cut first (that needs CAP_SETPCAP, which
//! goes with it), then ambient and inheritable are emptied and effective and permitted set to
//! exactly the kept ones. Everything runs before the worker has threads: capabilities are
//! per-thread, and threads created later inherit these.

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::unistd::{getgroups, setgroups};
use thiserror::Error;

/// What every worker keeps.
pub const WORKER_CAPS: [Capability; 6] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
];

#[derive(Debug, Error)]
pub enum CredsError {
    #[error("dropping supplementary groups: {0}")]
    Groups(Errno),
    #[error("dropping capability {cap} from the bounding set: {source}")]
    Bounding { cap: u32, source: Errno },
    #[error("setting the {set:?} capability set: {source}")]
    Set {
        set: CapSet,
        source: caps::errors::CapsError,
    },
    #[error("the {set:?} capability set is {got:#x} after the drop, expected {expected:#x}")]
    Verify {
        set: CapSet,
        got: u64,
        expected: u64,
    },
}

/// The capabilities a worker keeps under a policy.
pub fn worker_caps(allow_devices: bool) -> CapsHashSet {
    let mut set: CapsHashSet = WORKER_CAPS.into_iter().collect();
    if allow_devices {
        set.insert(Capability::CAP_MKNOD);
    }
    set
}

/// The kept set as the bitmask `/proc/PID/status` shows (CapEff, CapPrm, CapBnd).
pub fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

/// Drops every supplementary group; see the module doc for `setgroups_denied`.
pub fn drop_groups(setgroups_denied: bool) -> Result<(), CredsError> {
    match setgroups(&[]) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) if setgroups_denied => {
            let kept = getgroups().map(|g| g.len()).unwrap_or(0);
            if kept > 0 {
                log::warn!(
                    "keeping {kept} supplementary group(s): an unprivileged broker's user \
                     namespace denies setgroups; they are the invoking user's own"
                );
            }
            Ok(())
        }
        Err(e) => Err(CredsError::Groups(e)),
    }
}

/// Reduces the bounding, permitted and effective sets to `keep`; empties ambient and
/// inheritable. Verifies the result.
pub fn limit_caps(keep: &CapsHashSet) -> Result<(), CredsError> {
    let keep_mask = mask(keep);
    // The bounding set by number rather than caps::all(): a kernel newer than the caps crate
    // has capabilities the crate cannot name, and they must go too. PR_CAPBSET_READ fails with
    // EINVAL past the kernel's last capability.
    for cap in 0..64u32 {
        // SAFETY: PR_CAPBSET_READ takes a capability number and reads our own state.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if present < 0 {
            break;
        }
        if present == 1 && keep_mask & (1u64 << cap) == 0 {
            // SAFETY: PR_CAPBSET_DROP takes a capability number and changes only our own
            // bounding set.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc < 0 {
                return Err(CredsError::Bounding {
                    cap,
                    source: Errno::last(),
                });
            }
        }
    }

    let empty = CapsHashSet::new();
    for (set, value) in [
        (CapSet::Ambient, &empty),
        (CapSet::Inheritable, &empty),
        // Effective before permitted: effective must stay a subset of permitted at each call.
        (CapSet::Effective, keep),
        (CapSet::Permitted, keep),
    ] {
        let result = match set {
            CapSet::Ambient => caps::clear(None, set),
            _ => caps::set(None, set, value),
        };
        result.map_err(|source| CredsError::Set { set, source })?;
    }

    for (set, expected) in [
        (CapSet::Ambient, 0),
        (CapSet::Inheritable, 0),
        (CapSet::Effective, keep_mask),
        (CapSet::Permitted, keep_mask),
        (CapSet::Bounding, keep_mask),
    ] {
        let got = caps::read(None, set).map_err(|source| CredsError::Set { set, source })?;
        let got = mask(&got);
        if got != expected {
            return Err(CredsError::Verify { set, got, expected });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_proc_status() {
        // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, SETGID 6, SETUID 7; MKNOD 27.
        assert_eq!(mask(&worker_caps(false)), 0xdb);
        assert_eq!(mask(&worker_caps(true)), 0x0800_00db);
    }
}
