//! The jail a share gets, in words, for `fsjail check`. Every fact comes from the code that
//! builds the jail (the namespace plan of [`crate::spawn::plan`], the capability set of
//! [`crate::steps::creds`], the limits of [`crate::steps::rlimits`], the step list of
//! [`crate::steps::Step`]), so the printed plan cannot drift from the jail.

use crate::spawn;
use crate::steps::landlock::{self, Outcome};
use crate::steps::{creds, mounts, rlimits, Step};

use super::{IdMap, SandboxMode, ShareConfig};

/// The broker's effective uid and gid, what the plan depends on.
pub fn current_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid take no arguments, touch no memory and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The jail of `share` under a broker running as `euid`/`egid`, one line per step, each
/// starting with the step's number.
pub fn describe(share: &ShareConfig, euid: u32, egid: u32) -> Vec<String> {
    Step::ALL
        .iter()
        .map(|&step| format!("{step}: {}", describe_step(step, share, euid, egid)))
        .collect()
}

fn describe_step(step: Step, share: &ShareConfig, euid: u32, egid: u32) -> String {
    match step {
        Step::StartChild => {
            "clone3 with a pidfd; only async-signal-safe calls until exec; empty environment"
                .to_owned()
        }
        Step::Namespaces => match spawn::plan(share, euid, egid) {
            Err(e) => format!("cannot be built: {e}"),
            Ok(plan) if plan.names().is_empty() => {
                "none (sandbox = \"none\": for debugging only)".to_owned()
            }
            Ok(plan) => {
                let mut text = format!("new {}", plan.names().join(", "));
                if let Some(user) = &plan.user {
                    text.push_str(&format!(
                        "; uid map {}; gid map {}; setgroups {}",
                        maps(&user.uid_map),
                        maps(&user.gid_map),
                        if user.deny_setgroups { "denied" } else { "allowed" }
                    ));
                }
                text
            }
        },
        Step::Mounts => match share.sandbox {
            SandboxMode::Namespace => format!(
                "/ recursively private; new root on tmpfs (nosuid, nodev, noexec) holding the parent of {} bind-mounted at {} ({}) and a fresh /proc; pivot_root; old root detached; chroot into the share",
                share.path.display(),
                mounts::SHARE_DIR,
                access(share)
            ),
            SandboxMode::Chroot => {
                format!("the share's parent bind-mounted privately ({}); chroot into {}", access(share), share.path.display())
            }
            SandboxMode::None => "unchanged (sandbox = \"none\")".to_owned(),
        },
        Step::Pid1 => "the worker is PID 1 of its pid namespace: reaps children, exits on SIGTERM".to_owned(),
        Step::Rlimits => {
            let limits = rlimits::Limits::for_share(
                share.rlimit_nofile,
                share.serving_threads(),
            );
            format!("NOFILE {}, CORE 0, NPROC {}", limits.nofile, limits.nproc)
        }
        Step::CloseFds => "every fd closed but the listener, the control socket and the filesystem's own".to_owned(),
        Step::Credentials => {
            let mut caps: Vec<String> =
                creds::worker_caps(share.allow_devices()).iter().map(|c| c.to_string()).collect();
            caps.sort();
            format!(
                "supplementary groups dropped; bounding, permitted and effective capabilities: {}; ambient and inheritable empty",
                caps.join(", ")
            )
        }
        Step::Privileges => "no_new_privs; parent-death signal (the worker dies with the broker); not dumpable".to_owned(),
        Step::Landlock => describe_landlock(share),
        Step::Seccomp => match share.seccomp {
            seccomp::Mode::None => "none: no filter (seccomp = \"none\", debugging only)".to_owned(),
            mode => {
                let allowed = seccomp::Arch::host()
                    .and_then(seccomp::allowlist)
                    .map_or_else(|| "no filter for this architecture".to_owned(), |f| {
                        format!("{} calls", f.syscall_count())
                    });
                format!(
                    "the worker allowlist ({allowed}) on every thread (TSYNC), other calls: {mode}; clone3 answers ENOSYS"
                )
            }
        },
    }
}

/// Landlock as the worker will apply it on this kernel (the ABI is read now, from the kernel
/// `fsjail check` runs on).
fn describe_landlock(share: &ShareConfig) -> String {
    if share.sandbox == SandboxMode::None {
        return "not applied (sandbox = \"none\")".to_owned();
    }
    let mode = share.landlock;
    match landlock::plan(mode, share.readonly) {
        Ok(Outcome::Off) => "off (landlock = \"off\"): a directory the host moves out of the share stays reachable through the worker's descriptors".to_owned(),
        Ok(Outcome::Enforced(rights)) => format!(
            "landlock = \"{mode}\": {}",
            rights.describe(&share.path.display().to_string())
        ),
        Ok(Outcome::Skipped(why)) => {
            format!("landlock = \"{mode}\": {why}; the worker runs without Landlock")
        }
        Err(e) => format!("{e}; the worker will refuse to start"),
    }
}

fn access(share: &ShareConfig) -> &'static str {
    if share.readonly {
        "read-only"
    } else {
        "read-write"
    }
}

fn maps(maps: &[IdMap]) -> String {
    let parts: Vec<String> = maps
        .iter()
        .map(|m| {
            if m.count == 1 {
                format!("{} -> {}", m.guest, m.host)
            } else {
                format!(
                    "{}..={} -> {}..={}",
                    m.guest,
                    u64::from(m.guest) + u64::from(m.count) - 1,
                    m.host,
                    u64::from(m.host) + u64::from(m.count) - 1
                )
            }
        })
        .collect();
    parts.join(", ")
}
