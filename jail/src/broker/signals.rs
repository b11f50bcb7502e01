//! The broker's signals, read from a signalfd in the event loop instead of handlers.
//!
//! SIGTERM, SIGINT and SIGHUP are blocked in the calling thread and read as events. No handler
//! means nothing runs asynchronously in the broker, and nothing of ours runs in a freshly
//! forked worker before it execs. The mask is inherited across fork and exec, so the spawner
//! must reset it in the child (it does: an empty mask before exec); the original mask is put
//! back when [`Signals`] is dropped.
//!
//! Blocking works for the process only while the broker is its one thread (a process-directed
//! signal goes to any thread that does not block it), which `run_policy` requires anyway for a
//! safe fork.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};

pub struct Signals {
    fd: SignalFd,
    old_mask: SigSet,
}

impl Signals {
    pub fn new() -> Result<Signals, Errno> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        let old_mask = mask.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            Ok(fd) => Ok(Signals { fd, old_mask }),
            Err(e) => {
                let _ = old_mask.thread_set_mask();
                Err(e)
            }
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending signal, if any.
    pub fn next(&self) -> Result<Option<Signal>, Errno> {
        loop {
            match self.fd.read_signal()? {
                None => return Ok(None),
                Some(info) => {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        return Ok(Some(signal));
                    }
                }
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // The broker is done with them: discard what is pending, so a second SIGTERM that raced
        // the shutdown does not kill the process on its way to exiting 0.
        while let Ok(Some(_)) = self.fd.read_signal() {}
        let _ = self.old_mask.thread_set_mask();
    }
}
