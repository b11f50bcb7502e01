//! Step 4: the duties of PID 1.
//!
//! The worker is the first process of its pid namespace. The kernel delivers a signal to a
//! namespace's init only if init handles it (SIGKILL from an ancestor namespace excepted), so
//! without a handler the broker's SIGTERM would be silently dropped and every stop would wait
//! for the SIGKILL timeout. And init inherits every orphan of its namespace, so it must reap.
//!
//! SIGTERM: the handler calls `_exit(0)` at once. That is async-signal-safe and loses nothing:
//! the worker has no buffered state (every guest write is a syscall already made, logs go
//! unbuffered to stderr), and the kernel closes every descriptor. A clean "stop serving"
//! through the vhost-user daemon would need its cooperation from a signal context, for no gain.
//!
//! SIGCHLD: set to SIG_IGN, which makes the kernel reap every child (POSIX), including orphans
//! re-parented to us, without a handler — so no signal ever interrupts the queue threads'
//! `epoll_wait` with EINTR. The worker starts no child itself, so nothing waits for one.
//!
//! The worker installs these first, before the handover, so that a SIGTERM arriving while the
//! jail is being built is not lost. Outside a pid namespace (chroot sandbox) they are harmless
//! and make SIGTERM end the worker with status 0 there too.

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Pid1Error {
    #[error("installing the {signal} handler: {source}")]
    Handler { signal: Signal, source: Errno },
}

extern "C" fn exit_on_sigterm(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the process without running any user code.
    unsafe { libc::_exit(0) }
}

/// Installs the SIGTERM handler and auto-reaping of children.
pub fn install() -> Result<(), Pid1Error> {
    let term = SigAction::new(
        SigHandler::Handler(exit_on_sigterm),
        SaFlags::SA_RESTART,
        SigSet::all(),
    );
    // SAFETY: the handler only calls _exit, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGTERM, &term) }.map_err(|source| Pid1Error::Handler {
        signal: Signal::SIGTERM,
        source,
    })?;

    let chld = SigAction::new(SigHandler::SigIgn, SaFlags::SA_NOCLDWAIT, SigSet::empty());
    // SAFETY: SIG_IGN runs no code.
    unsafe { sigaction(Signal::SIGCHLD, &chld) }.map_err(|source| Pid1Error::Handler {
        signal: Signal::SIGCHLD,
        source,
    })?;
    Ok(())
}
