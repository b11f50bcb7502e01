//! The facts about the running broker that the checks depend on (ids, capabilities, limits,
//! current directory), and the defaults derived from them.

use std::fs;
use std::path::PathBuf;

use super::defaults;

/// Facts about the running broker the checks depend on. Captured once so the unit tests can
/// check a policy as an unprivileged broker would while running as root.
#[derive(Clone, Debug)]
pub(crate) struct Env {
    pub euid: u32,
    pub egid: u32,
    /// Relative paths in a policy resolve against the broker's current directory (the one the
    /// operator ran `fsjail run` from), as they do on a command line.
    pub cwd: Option<PathBuf>,
    /// Hard RLIMIT_NOFILE, inherited by the worker: its ceiling unless it may raise it.
    pub nofile_hard: u64,
    /// The broker holds CAP_SYS_RESOURCE, so a worker *without* a user namespace may raise
    /// its hard RLIMIT_NOFILE (up to `fs.nr_open`). Root is not enough: containers often drop
    /// the capability. In a user namespace the worker's own capability does not count: rlimits
    /// are checked against the initial namespace.
    pub sys_resource: bool,
    /// `fs.nr_open`: the kernel's ceiling even for root.
    pub nr_open: u64,
}

impl Env {
    pub fn current() -> Env {
        // SAFETY: geteuid and getegid take no arguments, touch no memory and cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
        let nofile_hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_max
        } else {
            1024
        };
        let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
        let sys_resource = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap_or(false);
        Env {
            euid,
            egid,
            cwd: std::env::current_dir().ok(),
            nofile_hard,
            sys_resource,
            nr_open,
        }
    }

    pub fn root(&self) -> bool {
        self.euid == 0
    }

    pub fn default_runtime_dir(&self) -> PathBuf {
        if self.root() {
            return PathBuf::from("/run/fsjail");
        }
        match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir.join("fsjail"),
            _ => PathBuf::from(format!("/tmp/fsjail-{}", self.euid)),
        }
    }

    /// The largest RLIMIT_NOFILE a worker can set.
    pub fn nofile_ceiling(&self, user_ns: bool) -> u64 {
        if self.sys_resource && !user_ns {
            self.nr_open
        } else {
            self.nofile_hard.min(self.nr_open)
        }
    }

    pub fn default_rlimit_nofile(&self, user_ns: bool) -> u64 {
        defaults::RLIMIT_NOFILE.min(self.nofile_ceiling(user_ns))
    }
}

pub(crate) fn default_runtime_dir() -> PathBuf {
    Env::current().default_runtime_dir()
}

/// The default RLIMIT_NOFILE of a namespace-sandboxed share without id maps.
pub(crate) fn default_rlimit_nofile() -> u64 {
    let env = Env::current();
    let user_ns = !env.root();
    env.default_rlimit_nofile(user_ns)
}
