//! fsjail's seccomp-bpf filters.
//!
//! The policy lives in `policies/seccomp/<arch>/*.json` (seccompiler's JSON format, every rule
//! with a comment saying which operation needs it). build.rs compiles it for x86_64 and aarch64
//! in every build, so a bad or unknown name fails the build on any machine, and embeds:
//! the programs for the target arch, the rules as data ([`describe`]), and a number-to-name
//! table of all system calls ([`syscall_name`]).
//!
//! Two filters, installed on every thread of the process with TSYNC, in this order:
//! - `clone3_enosys` (stacked): `clone3` answers ENOSYS, so glibc falls back to `clone`, whose
//!   flags a filter can read (clone3 passes them in memory). seccompiler gives a filter one match
//!   action, so a per-call errno needs its own filter.
//! - `worker` (the allowlist): every other call not on it, or made with arguments off its rules,
//!   gets the [`Mode`]'s action.
//!
//! One allowlist serves every thread (the vhost-user message thread, the queue threads and the
//! main thread waiting for them). Per-thread filters would buy nothing: the threads share one
//! address space, so a thread that is taken over can make any other thread issue the calls
//! *its* filter allows; and TSYNC, the only way to filter threads already running, installs
//! one filter on all of them.
//!
//! [`install`] is meant to be the jail's last step, right before the worker reads the first
//! byte from a frontend (before it accepts the connection): after that only the calls a worker
//! makes while serving are allowed; no new sockets, no exec, no namespaces, no executable
//! memory.

mod mode;
mod policy;
mod sigsys;

use std::fmt;
use std::io;
use std::str::FromStr;

use thiserror::Error;

pub use mode::{Mode, ParseModeError};
pub use policy::{Action, ArgCheck, Filter, FilterKind, Op, Rule, Width};
pub use sigsys::TRAP_EXIT_STATUS;

/// The architectures the policy is written and compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The arch fsjail was built for, if the policy covers it.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown architecture {0:?}: the seccomp policy is written for x86_64 and aarch64")]
pub struct ParseArchError(String);

impl FromStr for Arch {
    type Err = ParseArchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(ParseArchError(other.to_owned())),
        }
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("no seccomp policy for this architecture ({0}); use --seccomp none")]
    UnsupportedArch(&'static str),
    #[error("installing the SIGSYS handler for --seccomp trap: {0}")]
    SigsysHandler(#[source] io::Error),
    #[error("installing seccomp filter {filter:?} on all threads: {source}")]
    Install {
        filter: &'static str,
        #[source]
        source: seccompiler::Error,
    },
}

/// The filters of one arch's policy, in install order (stacked filters first, the allowlist
/// last), as compiled at build time.
pub fn describe(arch: Arch) -> &'static [Filter] {
    match arch {
        Arch::X86_64 => policy::X86_64_FILTERS,
        Arch::Aarch64 => policy::AARCH64_FILTERS,
    }
}

/// The allowlist filter of one arch's policy (build.rs guarantees there is one).
pub fn allowlist(arch: Arch) -> Option<&'static Filter> {
    describe(arch)
        .iter()
        .find(|f| f.kind == FilterKind::Allowlist)
}

/// The name of system call `nr` on `arch` (seccompiler's tables, Linux 6.12).
pub fn syscall_name(arch: Arch, nr: u32) -> Option<&'static str> {
    let table = match arch {
        Arch::X86_64 => policy::X86_64_SYSCALL_NAMES,
        Arch::Aarch64 => policy::AARCH64_SYSCALL_NAMES,
    };
    table.get(nr as usize).copied().filter(|n| !n.is_empty())
}

/// Installs the filters on every thread of the process (TSYNC), after which they cannot be
/// removed. `Mode::None` installs nothing. In `Mode::Trap`, a SIGSYS handler is installed
/// first: it names the blocked call on stderr and exits with status 159 (128 + SIGSYS).
///
/// Call it once, as the jail's final step, before reading the first byte from a frontend:
/// threads that exist already are covered (TSYNC), and threads started later inherit the
/// filters. A second call is itself a forbidden call (prctl, seccomp) once the allowlist is on.
pub fn install(mode: Mode) -> Result<(), Error> {
    if mode == Mode::None {
        return Ok(());
    }
    let Some(programs) = policy::HOST_PROGRAMS.as_ref() else {
        return Err(Error::UnsupportedArch(std::env::consts::ARCH));
    };
    let allowlist = match mode {
        Mode::Kill => programs.kill,
        Mode::Trap => programs.trap,
        Mode::Log => programs.log,
        Mode::None => return Ok(()),
    };
    if mode == Mode::Trap {
        sigsys::install_handler().map_err(Error::SigsysHandler)?;
    }
    // Stacked filters first: once the allowlist is on, seccomp(2) is no longer allowed.
    for &(filter, program) in programs.stacked {
        seccompiler::apply_filter_all_threads(program)
            .map_err(|source| Error::Install { filter, source })?;
    }
    seccompiler::apply_filter_all_threads(allowlist).map_err(|source| Error::Install {
        filter: programs.allowlist_name,
        source,
    })
}

#[cfg(test)]
mod tests;
