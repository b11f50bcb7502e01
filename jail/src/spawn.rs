//! Steps 1 and 2: the broker starts a worker in its namespaces.
//!
//! Design (step 1). The broker `clone3`s the child straight into its new namespaces and the
//! child runs only async-signal-safe syscalls until it `exec`s the fsjail binary as
//! `fsjail worker --control-fd 3`. Everything the child needs — argv and envp as C strings, the
//! descriptors, the empty signal mask — is built in the parent before the clone, so the child
//! never allocates nor takes a lock: after a fork-like clone only the calling thread exists in
//! the child, and a lock held by another thread of the broker (malloc's, the logger's) would
//! stay held forever. Heavier work (mounts, capabilities) waits until after `exec`, in a fresh
//! process image, where it runs as ordinary Rust (see `src/worker.rs` and [`crate::steps`]).
//! A spawner process forked before the broker starts threads would work too, but needs its own
//! protocol and supervision; the broker stays single-threaded when it spawns, and this file
//! would be correct even if it did not.
//!
//! `clone3` rather than `fork`: `CLONE_PIDFD` returns a pidfd atomically with the child (no pid
//! reuse race), the namespaces are created in the same call, and `CLONE_CLEAR_SIGHAND` resets
//! the broker's signal handlers in the child, so no broker handler can ever run there.
//!
//! Between clone and exec the child:
//! 1. waits for one byte on a pipe: the broker writes it once the uid/gid maps are in place
//!    (EOF instead means the broker died: the child exits);
//! 2. in a user namespace, becomes uid/gid 0 there — before exec, or exec would drop its
//!    capabilities;
//! 3. leaves the broker's session (`setsid`), so a terminal's ^C reaches the broker only, which
//!    then stops its workers in order;
//! 4. arms `PR_SET_PDEATHSIG(SIGKILL)` and checks the broker is still alive (control socket
//!    not hung up), closing the race where the broker died before the signal was armed;
//! 5. resets ignored signals to their default and unblocks all (both survive exec);
//! 6. puts /dev/null on 0, the stderr pipe on 1 and 2, the control socket on 3, and marks
//!    every other descriptor close-on-exec (`close_range`);
//! 7. `execveat`s the fsjail binary through a descriptor opened by the broker, with an empty
//!    environment.
//!
//! A failure writes one line to the stderr pipe and exits with [`CHILD_FAILED`].
//!
//! Step 2, the namespaces: mount, pid, net, ipc, uts, cgroup and time for the namespace sandbox; a
//! user namespace too when the broker is not root or the policy maps ids. The broker writes
//! the maps from outside. Setgroups: an unprivileged broker must deny it (the kernel requires
//! it before an unprivileged gid_map); a root broker leaves it allowed, because dropping the
//! supplementary groups the worker inherited from the broker (CVE-2022-0358) needs it, and a
//! worker holding CAP_SETGID could become any mapped gid anyway, so denying would add nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;
use thiserror::Error;

use crate::handover::{self, Handover, HandoverError};
use crate::policy::{IdMap, SandboxMode, ShareConfig};

mod child;

use child::ChildPlan;
pub use child::{CHILD_FAILED, WORKER_CONTROL_FD};

// Not (all) in the libc crate's Linux headers; values from include/uapi/linux/sched.h.
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
/// clone3 accepts it (Linux 5.8) and puts the child itself in the new time namespace.
const CLONE_NEWTIME: u64 = 0x80;

/// A started worker, as the broker supervises it.
#[derive(Debug)]
pub struct Worker {
    /// Its pid in the broker's pid namespace.
    pub pid: i32,
    /// Its pidfd: poll it for exit, `waitid(P_PIDFD)` to reap, `pidfd_send_signal` to stop.
    pub pidfd: OwnedFd,
    /// Read end of the pipe that is the worker's stderr (and stdout). Must be drained: a
    /// worker whose pipe is full blocks on its next log line.
    pub stderr: OwnedFd,
    /// The broker's end of the worker's SOCK_SEQPACKET control socket. Keep it open for the
    /// worker's lifetime: the worker takes a hangup as the broker's death.
    pub control: OwnedFd,
}

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("step 1 (start the child): {what}: {source}")]
    Prepare { what: &'static str, source: Errno },
    #[error("step 1 (start the child): fsjail binary {}: {source}", path.display())]
    Exe { path: PathBuf, source: Errno },
    #[error("step 1 (start the child): clone3: {0}")]
    Clone(Errno),
    #[error("step 1 (start the child): releasing the child: {0}")]
    Release(Errno),
    #[error("step 1 (start the child): handing over the listener and the share's settings: {0}")]
    Handover(#[from] HandoverError),
    #[error("step 2 (namespaces): {0}")]
    Plan(#[from] PlanError),
    #[error("step 2 (namespaces): writing {}: {source}", path.display())]
    IdMap { path: PathBuf, source: io::Error },
}

/// Why a share's namespaces cannot be built as asked (checked before anything starts).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{kind}: no line maps guest id 0; the worker runs as root in its user namespace")]
    RootUnmapped { kind: &'static str },
    #[error(
        "{kind}: an unprivileged broker can only map its own id ({own}) with one line of count 1 \
         (the kernel refuses anything else without CAP_SET{}ID)",
        if *kind == "uid_map" { "U" } else { "G" }
    )]
    UnprivilegedMap { kind: &'static str, own: u32 },
}

/// The user namespace of a worker: maps written by the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNamespace {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// Write "deny" to `/proc/PID/setgroups` (unprivileged broker).
    pub deny_setgroups: bool,
}

/// The namespaces a share's worker gets (step 2). `fsjail check` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespacePlan {
    /// `CLONE_NEW*` flags.
    pub flags: u64,
    pub user: Option<UserNamespace>,
}

impl NamespacePlan {
    /// The namespaces by their `/proc/PID/ns/` names, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let table: [(u64, &'static str); 8] = [
            (libc::CLONE_NEWUSER as u64, "user"),
            (libc::CLONE_NEWNS as u64, "mnt"),
            (libc::CLONE_NEWPID as u64, "pid"),
            (libc::CLONE_NEWNET as u64, "net"),
            (libc::CLONE_NEWIPC as u64, "ipc"),
            (libc::CLONE_NEWUTS as u64, "uts"),
            (libc::CLONE_NEWCGROUP as u64, "cgroup"),
            (CLONE_NEWTIME, "time"),
        ];
        table
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Decides the namespaces of `share`'s worker for a broker running as `euid`/`egid`.
pub fn plan(share: &ShareConfig, euid: u32, egid: u32) -> Result<NamespacePlan, PlanError> {
    let base = match share.sandbox {
        SandboxMode::None => {
            return Ok(NamespacePlan {
                flags: 0,
                user: None,
            })
        }
        // virtiofsd's chroot sandbox uses no namespace; ours keeps a mount namespace so that
        // making the share read-only and nosuid does not touch the host's mount table.
        SandboxMode::Chroot => libc::CLONE_NEWNS as u64,
        // cgroup and time too: nothing of the host's cgroup paths or clocks' offsets leaks,
        // and every namespace of the worker differs from the broker's.
        SandboxMode::Namespace => {
            (libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWCGROUP) as u64
                | CLONE_NEWTIME
        }
    };

    let privileged = euid == 0;
    let mapped = !share.uid_map.is_empty() || !share.gid_map.is_empty();
    if privileged && !mapped {
        // Root with host ids: no user namespace, the worker is real root with few capabilities.
        return Ok(NamespacePlan {
            flags: base,
            user: None,
        });
    }
    let own = |id: u32| {
        vec![IdMap {
            guest: 0,
            host: id,
            count: 1,
        }]
    };
    let uid_map = if share.uid_map.is_empty() {
        own(euid)
    } else {
        share.uid_map.clone()
    };
    let gid_map = if share.gid_map.is_empty() {
        own(egid)
    } else {
        share.gid_map.clone()
    };
    for (kind, map, own_id) in [("uid_map", &uid_map, euid), ("gid_map", &gid_map, egid)] {
        if !map.iter().any(|m| m.guest == 0 && m.count > 0) {
            return Err(PlanError::RootUnmapped { kind });
        }
        if !privileged && (map.len() != 1 || map[0].host != own_id || map[0].count != 1) {
            return Err(PlanError::UnprivilegedMap { kind, own: own_id });
        }
    }
    Ok(NamespacePlan {
        flags: base | libc::CLONE_NEWUSER as u64,
        user: Some(UserNamespace {
            uid_map,
            gid_map,
            deny_setgroups: !privileged,
        }),
    })
}

/// Starts the worker for `share`, hands it `listener`, and returns it. `exe` is the fsjail
/// binary (the caller resolves `/proc/self/exe`).
///
/// Safe from a multi-threaded process too (the child runs only async-signal-safe code), but
/// call it from the thread that lives as long as the workers: the parent-death signal fires
/// when the *thread* that spawned a worker exits, not the process.
pub fn spawn_worker(
    share: &ShareConfig,
    listener: &OwnedFd,
    exe: &Path,
) -> Result<Worker, SpawnError> {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let plan = plan(share, euid, egid)?;

    // Everything fallible happens before the child exists.
    let handover_msg = Handover {
        version: handover::VERSION,
        share: share.clone(),
        log_level: log::max_level().to_string(),
        setgroups_denied: plan.user.as_ref().is_some_and(|u| u.deny_setgroups),
    };
    let prepare = |what| move |source| SpawnError::Prepare { what, source };
    // Opened first, so that in a process whose lowest free descriptor is 3 the binary sits on
    // the number the child gives the control socket: the child must move it out of the way
    // (tests/spawn_fd_numbers.rs holds it to that).
    let exe_fd =
        open_owned(exe, OFlag::O_PATH | OFlag::O_CLOEXEC).map_err(|source| SpawnError::Exe {
            path: exe.to_owned(),
            source,
        })?;
    let (control, worker_control) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(prepare("socketpair"))?;
    let (stderr_r, stderr_w) = pipe2(OFlag::O_CLOEXEC).map_err(prepare("stderr pipe"))?;
    let (sync_r, sync_w) = pipe2(OFlag::O_CLOEXEC).map_err(prepare("sync pipe"))?;
    let devnull = open_owned("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .map_err(prepare("/dev/null"))?;
    let child = ChildPlan::new(
        &sync_r,
        &sync_w,
        &devnull,
        &stderr_w,
        &worker_control,
        &exe_fd,
        plan.user.is_some(),
    );

    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: plan.flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed. Without CLONE_VM and with no
    // stack given, clone3 behaves as fork: the child gets a copy of our memory and continues
    // here on its copy of this stack. The child branch runs `child.run()`, which never
    // returns and calls only async-signal-safe functions on data prepared above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(SpawnError::Clone(Errno::last()));
    }
    if ret == 0 {
        // SAFETY: we are the child of a fork-like clone; see ChildPlan::run.
        unsafe { child.run() }
    }
    let pid = ret as i32;
    // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd here, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut guard = KillOnError {
        pidfd: &pidfd,
        armed: true,
    };
    drop((worker_control, stderr_w, sync_r, devnull, exe_fd));

    if let Some(user) = &plan.user {
        write_id_maps(pid, user)?;
    }
    // The child continues only once this byte arrives: after the maps, so that it becomes
    // root in its namespace with them in place.
    write_byte(&sync_w).map_err(SpawnError::Release)?;
    drop(sync_w);
    handover::send(control.as_fd(), &handover_msg, listener.as_fd())?;
    guard.armed = false;
    drop(guard);

    Ok(Worker {
        pid,
        pidfd,
        stderr: stderr_r,
        control,
    })
}

/// Writes setgroups (when denied), uid_map and gid_map of the child `pid`. Each map goes in a
/// single write, as the kernel requires.
fn write_id_maps(pid: i32, user: &UserNamespace) -> Result<(), SpawnError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let write = |name: &str, text: String| {
        let path = proc_dir.join(name);
        std::fs::write(&path, text).map_err(|source| SpawnError::IdMap { path, source })
    };
    if user.deny_setgroups {
        write("setgroups", "deny".to_owned())?;
    }
    write("uid_map", map_text(&user.uid_map))?;
    write("gid_map", map_text(&user.gid_map))
}

/// A map in `/proc/PID/uid_map` syntax: "inside outside count" per line.
pub fn map_text(map: &[IdMap]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.guest, m.host, m.count))
        .collect()
}

fn open_owned(path: impl AsRef<Path>, flags: OFlag) -> Result<OwnedFd, Errno> {
    let fd = open(path.as_ref(), flags, Mode::empty())?;
    // SAFETY: `open` just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn write_byte(fd: &OwnedFd) -> Result<(), Errno> {
    loop {
        match nix::unistd::write(fd, b"1") {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Errno::EIO),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Kills and reaps the child if spawning fails after the clone, so that no half-started
/// worker (or zombie) is left behind.
struct KillOnError<'a> {
    pidfd: &'a OwnedFd,
    armed: bool,
}

impl Drop for KillOnError<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // SAFETY: pidfd_send_signal and waitid on a pidfd we own; a null siginfo is allowed
        // for pidfd_send_signal, and `info` is a valid siginfo_t for waitid to fill.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            );
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            );
        }
    }
}

/// `struct clone_args` (include/uapi/linux/sched.h, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ShareConfig;

    fn share(sandbox: SandboxMode, uid_map: Vec<IdMap>, gid_map: Vec<IdMap>) -> ShareConfig {
        let mut s = ShareConfig::new("t", PathBuf::from("/srv"), PathBuf::from("/run/t.sock"));
        s.sandbox = sandbox;
        s.uid_map = uid_map;
        s.gid_map = gid_map;
        s
    }

    const NS_NO_USER: [&str; 7] = ["mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];

    #[test]
    fn root_without_maps_has_no_user_namespace() {
        let p = plan(&share(SandboxMode::Namespace, vec![], vec![]), 0, 0).unwrap();
        assert!(p.user.is_none());
        assert_eq!(p.names(), NS_NO_USER);
    }

    #[test]
    fn root_with_maps_allows_setgroups() {
        let m = vec![IdMap {
            guest: 0,
            host: 100000,
            count: 65536,
        }];
        let p = plan(&share(SandboxMode::Namespace, m.clone(), m.clone()), 0, 0).unwrap();
        let user = p.user.clone().unwrap();
        assert_eq!(user.uid_map, m);
        assert!(!user.deny_setgroups);
        assert_eq!(p.names()[0], "user");
        assert_eq!(map_text(&m), "0 100000 65536\n");
    }

    #[test]
    fn unprivileged_maps_itself_and_denies_setgroups() {
        let p = plan(&share(SandboxMode::Namespace, vec![], vec![]), 1000, 100).unwrap();
        let user = p.user.unwrap();
        assert_eq!(
            user.uid_map,
            vec![IdMap {
                guest: 0,
                host: 1000,
                count: 1
            }]
        );
        assert_eq!(
            user.gid_map,
            vec![IdMap {
                guest: 0,
                host: 100,
                count: 1
            }]
        );
        assert!(user.deny_setgroups);
    }

    #[test]
    fn unprivileged_cannot_map_others() {
        let m = vec![IdMap {
            guest: 0,
            host: 100000,
            count: 65536,
        }];
        let err = plan(&share(SandboxMode::Namespace, m.clone(), vec![]), 1000, 100).unwrap_err();
        assert_eq!(
            err,
            PlanError::UnprivilegedMap {
                kind: "uid_map",
                own: 1000
            }
        );
        assert!(err.to_string().contains("CAP_SETUID"), "{err}");
    }

    #[test]
    fn guest_root_must_be_mapped() {
        let m = vec![IdMap {
            guest: 1,
            host: 100000,
            count: 10,
        }];
        let err = plan(&share(SandboxMode::Namespace, m.clone(), m), 0, 0).unwrap_err();
        assert_eq!(err, PlanError::RootUnmapped { kind: "uid_map" });
    }

    #[test]
    fn chroot_and_none() {
        let p = plan(&share(SandboxMode::Chroot, vec![], vec![]), 0, 0).unwrap();
        assert_eq!(p.names(), ["mnt"]);
        let p = plan(&share(SandboxMode::None, vec![], vec![]), 1000, 1000).unwrap();
        assert_eq!(p.flags, 0);
        assert!(p.user.is_none());
    }
}
