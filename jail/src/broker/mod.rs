//! The broker: binds every share's vhost-user socket, starts one jailed worker per share, and
//! supervises them until told to stop.
//!
//! It is one thread with one event loop (`poll` on a signalfd, every worker's pidfd, stderr
//! pipe and control socket, with timers for restarts and kills). One thread keeps `fork` safe
//! for the spawner and keeps the state in one place; nothing here blocks for long.
//!
//! Lifecycle, per share:
//! - a worker that exits 0 finished cleanly: its frontend disconnected. Under `fsjail run` a
//!   fresh worker takes over the same listening socket at once, whatever `restart` says, so a
//!   rebooted or restarted VM can connect again (`restart` is about failures). One that exits 0
//!   before it reported READY on its control socket never served anyone: that counts as a
//!   failure, so a worker that cannot serve does not respawn in a tight loop (it backs off and
//!   gives up like any other). Under `fsjail serve`
//!   ([`RunOptions::exit_when_all_done`]) the share is done instead, and the broker returns
//!   once every share is done, like virtiofsd exits when QEMU disconnects.
//! - a worker that fails (non-zero exit, killed by a signal) is restarted if `restart =
//!   "on-failure"`, after a backoff of 100 ms doubling to 5 s; 5 failures within 60 s give up
//!   and the share stays down (see [`restart`]). With `restart = "never"` it stays down.
//! - SIGTERM or SIGINT: every worker gets SIGTERM, then SIGKILL after 2 s; the sockets the
//!   broker bound are removed; `run_policy` returns `Ok`. A second SIGTERM/SIGINT kills at once.
//! - SIGHUP (`fsjail run` only): the policy file is read again. An invalid file changes
//!   nothing (the error is logged). Otherwise shares added start, shares removed stop (their
//!   sockets go at once), shares whose settings changed restart with the new settings, and
//!   unchanged shares with a running worker are not touched; a share that was down (gave up,
//!   or failed with `restart = "never"`) is started again.
//! - worker stderr is logged line by line as `share "TAG" [PID]: ...`.

mod child;
mod error;
mod logpipe;
mod reload;
pub mod restart;
mod signals;
mod socket;
mod supervisor;

use std::path::PathBuf;

pub use error::BrokerError;
pub use socket::SocketError;

use crate::policy::Policy;

/// How [`run_policy`] behaves.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// `fsjail serve`: a worker exiting 0 ends its share, and the broker returns once every
    /// share ended (`Ok` if all exited 0). SIGHUP is ignored (there is no file to reload).
    /// `fsjail run` leaves it false: workers are replaced and the broker runs until signalled.
    pub exit_when_all_done: bool,
    /// The fsjail executable the workers run; `None` means this process's own executable.
    pub exe: Option<PathBuf>,
    /// A listening socket the caller bound already (`fsjail serve`: its `--fd`, or the socket
    /// it bound with `--socket-group`), used by the policy's first share instead of binding
    /// that share's `socket`. The broker never removes its path: the caller owns it.
    pub listener: Option<std::os::fd::OwnedFd>,
}

/// Runs the broker for `policy` until SIGTERM/SIGINT (or, with `exit_when_all_done`, until
/// every share is done).
///
/// Must be called while the process has a single thread: signals are received by blocking
/// them (see the `signals` module), and workers are forked from this thread, which must live as
/// long as they do (their parent-death signal follows the thread). If any share cannot start
/// (its directory, socket or worker), everything started is stopped again and the error is
/// returned: a policy starts whole or not at all.
pub fn run_policy(policy: Policy, opts: RunOptions) -> Result<(), BrokerError> {
    let exe = match opts.exe {
        Some(exe) => exe,
        None => std::env::current_exe().map_err(BrokerError::Exe)?,
    };
    supervisor::Supervisor::start(policy, exe, opts.exit_when_all_done, opts.listener)?.run()
}
