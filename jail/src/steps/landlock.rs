//! Step 9: Landlock. The worker may read and write beneath the share (only read beneath a
//! read-only share) and nothing else, whatever path a descriptor it holds has come to have.
//!
//! Why, on top of the mounts of step 3: the worker reaches files through O_PATH descriptors,
//! and a descriptor outlives the path it was opened by. When a process on the host moves a
//! directory out of the share while the guest holds its node, the worker's descriptor follows
//! the directory out, and a CREATE, MKDIR or OPEN under that node would act outside the share:
//! a mount namespace, pivot_root and chroot confine path lookups, not descriptors. Landlock
//! checks the real hierarchy of the file at every access (file opens, creations, removals,
//! links, renames, truncation), so a ruleset that allows only beneath the share refuses those.
//!
//! What Landlock does not cover (the kernel has no such rights): chmod, chown, utimes, xattrs,
//! stat and readlink. The share policy checks that a node still lies beneath the share before
//! the calls it makes for SETATTR and the xattr requests (`devices::fs::confine`).
//!
//! The ruleset uses the highest ABI the running kernel offers (read with
//! `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`); every right of that ABI
//! is handled, so anything not granted beneath the share is denied. ABI 1 is not used: it
//! cannot express REFER, so every rename or link across directories would fail (EXDEV) inside
//! the share too. Since ABI 4 the ruleset also denies TCP bind and connect, since ABI 6 it
//! scopes abstract unix sockets and signals to the worker.
//!
//! The worker's own needs: descriptors opened before the ruleset (the passthrough's
//! `/proc/self/fd` directory and `/proc/self/mountinfo`, the control socket, the listener) are
//! not checked again, since Landlock checks at open time. The passthrough opens a file by
//! reopening its O_PATH descriptor through `/proc/self/fd/N`; the kernel checks that open
//! against the file the magic link names, not against /proc, so reopens beneath the share pass
//! and the reopen of a file the host moved out is refused (this is how OPEN under a moved
//! directory fails). `readlink` of those links (the xattr and confinement paths) is not a
//! Landlock access. The whole test suite runs with `FSJAIL_LANDLOCK_DEFAULT=require` in CI.
//!
//! `restrict_self` applies to the calling thread only (and the threads it starts later): the
//! worker runs this step while it is still single-threaded, after no_new_privs (step 8), which
//! an unprivileged process needs for it, and before seccomp (step 10), whose filter does not
//! allow the Landlock calls.
//!
//! Built on the `landlock` crate (crates.io, maintained by the Landlock authors), with the ABI
//! fixed from the kernel's answer so the rights are exactly those `fsjail check` prints.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::str::FromStr;

pub use ::landlock::AccessFs;
use ::landlock::{
    Access, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The lowest kernel ABI the worker uses: ABI 2 added REFER (see the module doc).
pub const MIN_ABI: i32 = 2;

/// The `landlock` policy key (`fsjail serve --landlock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    /// The worker refuses to start unless the kernel enforces the ruleset.
    Require,
    /// Enforced when the kernel offers ABI 2 or later; otherwise the worker warns and starts.
    #[default]
    BestEffort,
    /// No Landlock ruleset.
    Off,
}

impl LandlockMode {
    pub const NAMES: &'static [&'static str] = &["require", "best-effort", "off"];

    /// The default of a share that does not say: best-effort, unless the environment variable
    /// `FSJAIL_LANDLOCK_DEFAULT=require` asks for the stricter default (used to run the whole
    /// test suite under `require`). Only the stricter value is honoured: an environment
    /// variable can never turn Landlock off.
    pub fn default_from_env() -> LandlockMode {
        match std::env::var("FSJAIL_LANDLOCK_DEFAULT").as_deref() {
            Ok("require") => LandlockMode::Require,
            _ => LandlockMode::BestEffort,
        }
    }
}

impl fmt::Display for LandlockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LandlockMode::Require => "require",
            LandlockMode::BestEffort => "best-effort",
            LandlockMode::Off => "off",
        })
    }
}

/// A value that is none of [`LandlockMode::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid landlock {0:?}: expected one of \"require\", \"best-effort\", \"off\"")]
pub struct ParseLandlockError(pub String);

impl FromStr for LandlockMode {
    type Err = ParseLandlockError;
    fn from_str(s: &str) -> Result<Self, ParseLandlockError> {
        match s {
            "require" => Ok(LandlockMode::Require),
            "best-effort" => Ok(LandlockMode::BestEffort),
            "off" => Ok(LandlockMode::Off),
            _ => Err(ParseLandlockError(s.to_owned())),
        }
    }
}

#[derive(Debug, Error)]
pub enum LandlockError {
    #[error("landlock = \"require\", but {0}")]
    Unavailable(Support),
    #[error("building the ruleset (ABI {abi}): {source}")]
    Ruleset {
        abi: i32,
        source: ::landlock::RulesetError,
    },
    #[error("the kernel did not fully enforce the ruleset (ABI {abi}): {status:?}")]
    NotEnforced { abi: i32, status: RulesetStatus },
}

/// What the running kernel offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// `landlock_create_ruleset` failed: ENOSYS (not built in), EOPNOTSUPP (built in but not
    /// enabled at boot, `lsm=`), or something else.
    Missing(i32),
    /// An ABI below [`MIN_ABI`].
    TooOld(i32),
    /// This ABI, used as it is.
    Abi(i32),
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Missing(e) if *e == libc::ENOSYS => {
                f.write_str("the kernel has no Landlock (ENOSYS)")
            }
            Support::Missing(e) if *e == libc::EOPNOTSUPP => f.write_str(
                "Landlock is not enabled in this kernel (EOPNOTSUPP: add it to the lsm= boot parameter)",
            ),
            Support::Missing(e) => write!(
                f,
                "the kernel's Landlock ABI cannot be read: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
            Support::TooOld(abi) => write!(
                f,
                "the kernel offers Landlock ABI {abi}, below {MIN_ABI} (no REFER right: renames across directories would fail)"
            ),
            Support::Abi(abi) => write!(f, "the kernel offers Landlock ABI {abi}"),
        }
    }
}

/// Asks the kernel for its Landlock ABI.
pub fn kernel_support() -> Support {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the call reads and
    // writes no memory; it returns the ABI version or -1 with errno.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        return Support::Missing(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    let abi = i32::try_from(abi).unwrap_or(i32::MAX);
    if abi < MIN_ABI {
        Support::TooOld(abi)
    } else {
        Support::Abi(abi)
    }
}

/// The rights of one ruleset: what is handled (denied unless granted) and what is granted
/// beneath the share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    pub abi: i32,
    pub fs_handled: BitFlags<AccessFs>,
    pub fs_beneath_share: BitFlags<AccessFs>,
    pub net_denied: BitFlags<AccessNet>,
    pub scopes: BitFlags<Scope>,
}

impl Rights {
    /// Every right `abi` knows is handled; beneath the share all of them are granted, or only
    /// reading files and listing directories when the share is read-only.
    pub fn for_share(abi: i32, readonly: bool) -> Rights {
        let v = ABI::from(abi);
        let fs_handled = AccessFs::from_all(v);
        let fs_beneath_share = if readonly {
            fs_handled & (AccessFs::ReadFile | AccessFs::ReadDir)
        } else {
            fs_handled
        };
        Rights {
            abi,
            fs_handled,
            fs_beneath_share,
            net_denied: AccessNet::from_all(v),
            scopes: Scope::from_all(v),
        }
    }

    /// For `fsjail check`: each right beneath the share with what it covers, then what is
    /// denied everywhere.
    pub fn describe(&self, share: &str) -> String {
        let granted: Vec<String> = self
            .fs_beneath_share
            .iter()
            .map(|r| format!("{} ({})", fs_right_name(r), fs_right_covers(r)))
            .collect();
        let mut text = format!(
            "ABI {} (the kernel's highest); beneath {share}: {}",
            self.abi,
            granted.join(", ")
        );
        let refused: Vec<&str> = (self.fs_handled & !self.fs_beneath_share)
            .iter()
            .map(fs_right_name)
            .collect();
        if !refused.is_empty() {
            text.push_str(&format!(
                "; refused beneath the read-only share: {}",
                refused.join(", ")
            ));
        }
        text.push_str("; everywhere else: none of these");
        if !self.net_denied.is_empty() {
            text.push_str("; TCP bind and connect: denied");
        }
        if !self.scopes.is_empty() {
            text.push_str("; abstract unix sockets and signals: scoped to the worker");
        }
        text
    }
}

fn fs_right_name(r: AccessFs) -> &'static str {
    match r {
        AccessFs::Execute => "execute",
        AccessFs::WriteFile => "write_file",
        AccessFs::ReadFile => "read_file",
        AccessFs::ReadDir => "read_dir",
        AccessFs::RemoveDir => "remove_dir",
        AccessFs::RemoveFile => "remove_file",
        AccessFs::MakeChar => "make_char",
        AccessFs::MakeDir => "make_dir",
        AccessFs::MakeReg => "make_reg",
        AccessFs::MakeSock => "make_sock",
        AccessFs::MakeFifo => "make_fifo",
        AccessFs::MakeBlock => "make_block",
        AccessFs::MakeSym => "make_sym",
        AccessFs::Refer => "refer",
        AccessFs::Truncate => "truncate",
        AccessFs::IoctlDev => "ioctl_dev",
        _ => "newer right",
    }
}

fn fs_right_covers(r: AccessFs) -> &'static str {
    match r {
        AccessFs::Execute => "execute files",
        AccessFs::WriteFile => "open files for writing",
        AccessFs::ReadFile => "open files for reading",
        AccessFs::ReadDir => "open and list directories",
        AccessFs::RemoveDir => "remove or rename away directories",
        AccessFs::RemoveFile => "unlink or rename away files",
        AccessFs::MakeChar => "create character devices",
        AccessFs::MakeDir => "create directories",
        AccessFs::MakeReg => "create regular files",
        AccessFs::MakeSock => "create unix sockets",
        AccessFs::MakeFifo => "create FIFOs",
        AccessFs::MakeBlock => "create block devices",
        AccessFs::MakeSym => "create symlinks",
        AccessFs::Refer => "link or rename across directories",
        AccessFs::Truncate => "truncate files",
        AccessFs::IoctlDev => "ioctl on device files",
        _ => "a right this build does not describe",
    }
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The ruleset is enforced on this thread (and the threads it starts).
    Enforced(Rights),
    /// Best-effort, and the kernel cannot: the worker runs without Landlock.
    Skipped(Support),
    /// `landlock = "off"`.
    Off,
}

/// What [`apply`] will do on this kernel, for `fsjail check`.
pub fn plan(mode: LandlockMode, readonly: bool) -> Result<Outcome, LandlockError> {
    decide(mode, kernel_support(), readonly)
}

fn decide(mode: LandlockMode, support: Support, readonly: bool) -> Result<Outcome, LandlockError> {
    match (mode, support) {
        (LandlockMode::Off, _) => Ok(Outcome::Off),
        (_, Support::Abi(abi)) => Ok(Outcome::Enforced(Rights::for_share(abi, readonly))),
        (LandlockMode::Require, s) => Err(LandlockError::Unavailable(s)),
        (LandlockMode::BestEffort, s) => Ok(Outcome::Skipped(s)),
    }
}

/// Restricts the calling thread (and the threads it starts later) to `share`, a descriptor of
/// the share's root directory (any kind, O_PATH included).
pub fn apply(
    share: BorrowedFd<'_>,
    readonly: bool,
    mode: LandlockMode,
) -> Result<Outcome, LandlockError> {
    let outcome = plan(mode, readonly)?;
    let Outcome::Enforced(rights) = outcome else {
        return Ok(outcome);
    };
    let err = |source| LandlockError::Ruleset {
        abi: rights.abi,
        source,
    };
    // Hard requirement: the rights come from the kernel's own ABI, so a right it refuses is a
    // bug to report, not something to drop silently.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(rights.fs_handled)
        .map_err(err)?;
    if !rights.net_denied.is_empty() {
        ruleset = ruleset.handle_access(rights.net_denied).map_err(err)?;
    }
    if !rights.scopes.is_empty() {
        ruleset = ruleset.scope(rights.scopes).map_err(err)?;
    }
    let status = ruleset
        .create()
        .map_err(err)?
        .add_rule(PathBeneath::new(share, rights.fs_beneath_share))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(LandlockError::NotEnforced {
            abi: rights.abi,
            status: status.ruleset,
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;

    #[test]
    fn modes_parse_and_print() {
        for s in LandlockMode::NAMES {
            assert_eq!(s.parse::<LandlockMode>().unwrap().to_string(), *s);
        }
        assert!("Require".parse::<LandlockMode>().is_err());
        assert_eq!(LandlockMode::default(), LandlockMode::BestEffort);
    }

    #[test]
    fn decisions() {
        let ro = |m, s| decide(m, s, true);
        assert_eq!(
            ro(LandlockMode::Off, Support::Abi(7)).unwrap(),
            Outcome::Off
        );
        assert!(matches!(
            ro(LandlockMode::Require, Support::TooOld(1)),
            Err(LandlockError::Unavailable(Support::TooOld(1)))
        ));
        assert_eq!(
            ro(LandlockMode::BestEffort, Support::Missing(libc::ENOSYS)).unwrap(),
            Outcome::Skipped(Support::Missing(libc::ENOSYS))
        );
        let Outcome::Enforced(r) = ro(LandlockMode::Require, Support::Abi(7)).unwrap() else {
            panic!("ABI 7 must be enforced");
        };
        assert_eq!(r.fs_beneath_share, AccessFs::ReadFile | AccessFs::ReadDir);
        assert!(r
            .fs_handled
            .contains(AccessFs::Refer | AccessFs::Truncate | AccessFs::IoctlDev));
        assert!(!r.scopes.is_empty() && !r.net_denied.is_empty());
        let rw = Rights::for_share(2, false);
        assert_eq!(rw.fs_beneath_share, rw.fs_handled);
        assert!(rw.fs_handled.contains(AccessFs::Refer));
        assert!(!rw.fs_handled.contains(AccessFs::Truncate));
        assert!(rw.scopes.is_empty() && rw.net_denied.is_empty());
        assert!(rw
            .describe("/s")
            .contains("refer (link or rename across directories)"));
    }

    /// The ruleset on a real kernel, on one thread (Landlock restricts the calling thread, so
    /// the test process's other threads are untouched): inside the share everything works,
    /// outside every handled access is refused, and a directory moved out of the share is
    /// outside even through a descriptor opened while it was inside.
    #[test]
    fn enforced_on_this_kernel() {
        let Support::Abi(_) = kernel_support() else {
            panic!(
                "this test needs Landlock ABI {MIN_ABI}+: {} (CI runs on a kernel with it)",
                kernel_support()
            );
        };
        let top = tempfile::tempdir().unwrap();
        let share = top.path().join("share");
        let outside = top.path().join("outside");
        fs::create_dir_all(share.join("held")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        fs::write(share.join("file"), b"inside").unwrap();
        let (share2, outside2) = (share.clone(), outside.clone());
        std::thread::spawn(move || {
            let root = fs::File::open(&share2).unwrap();
            let outcome = apply(root.as_fd(), false, LandlockMode::Require).unwrap();
            assert!(matches!(outcome, Outcome::Enforced(_)));
            assert_eq!(fs::read(share2.join("file")).unwrap(), b"inside");
            fs::write(share2.join("new"), b"x").unwrap();
            fs::create_dir(share2.join("d")).unwrap();
            fs::rename(share2.join("new"), share2.join("d/new")).unwrap();
            let denied = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
            assert_eq!(
                denied(fs::read(outside2.join("secret")).map(drop)),
                Some(libc::EACCES)
            );
            assert_eq!(
                denied(fs::write(outside2.join("new"), b"x")),
                Some(libc::EACCES)
            );
            // Moving something out of the share is a creation outside: refused as well.
            assert_eq!(
                denied(fs::rename(share2.join("file"), outside2.join("file"))),
                Some(libc::EACCES)
            );
        })
        .join()
        .unwrap();
        // This thread is not restricted: move the directory out, then check from a new
        // restricted thread through a descriptor opened before the move.
        let held = fs::File::open(share.join("held")).unwrap();
        fs::rename(share.join("held"), outside.join("held")).unwrap();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let root = fs::File::open(&share).unwrap();
            apply(root.as_fd(), false, LandlockMode::Require).unwrap();
            // SAFETY: a valid directory fd and a NUL-terminated name; O_CREAT with a mode.
            let fd = unsafe {
                libc::openat(
                    held.as_raw_fd(),
                    c"escaped".as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            assert_eq!(fd, -1, "created a file outside the share");
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EACCES)
            );
        })
        .join()
        .unwrap();
        assert!(!outside.join("held/escaped").exists());
    }
}
