//! A running worker as the broker sees it: its pidfd (to wait on and signal without pid-reuse
//! races), the read end of its stderr, its control socket, and when it must be killed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use log::{debug, error, info, log, warn, Level};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};

use super::logpipe::{Drained, LinePipe};
use crate::handover;
use crate::policy::ShareConfig;
use crate::spawn::{self, SpawnError};

/// How long a worker has between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Child {
    pub tag: String,
    pub pid: i32,
    pidfd: OwnedFd,
    stderr: Option<LinePipe>,
    control: OwnedFd,
    /// READY arrived, or the control socket failed: it is no longer polled. The socket stays
    /// open for the worker's life (its EOF is the worker's cue that the broker is gone).
    control_done: bool,
    /// The worker reported READY: it may be serving a frontend.
    ready: bool,
    pub started: Instant,
    /// Set once SIGTERM was sent: SIGKILL follows at this time.
    pub kill_at: Option<Instant>,
}

/// How a worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
    /// It was reaped elsewhere or waitid failed: nothing is known.
    Unknown,
}

impl Ending {
    /// Exit 0: the worker's frontend disconnected and it finished cleanly.
    pub fn is_clean(self) -> bool {
        self == Ending::Exited(0)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited(0) => f.write_str("exited with status 0"),
            Ending::Exited(code) => write!(f, "failed: exited with status {code}"),
            Ending::Signaled(sig, true) => write!(f, "failed: killed by {sig} (core dumped)"),
            Ending::Signaled(sig, false) => write!(f, "failed: killed by {sig}"),
            Ending::Unknown => f.write_str("ended (status unknown)"),
        }
    }
}

impl Child {
    /// Starts a jailed worker for `share` on `listener` (see [`crate::spawn`]).
    pub fn spawn(share: &ShareConfig, listener: &OwnedFd, exe: &Path) -> Result<Child, SpawnError> {
        let worker = spawn::spawn_worker(share, listener, exe)?;
        let stderr = match LinePipe::new(worker.stderr) {
            Ok(pipe) => Some(pipe),
            Err(e) => {
                warn!(
                    "share {:?} [{}]: cannot read its stderr: {e}",
                    share.tag, worker.pid
                );
                None
            }
        };
        // Our end only (a socketpair's ends are separate open files): reading READY must never
        // block the event loop, even after the worker is gone.
        if let Err(e) = super::logpipe::set_nonblocking(&worker.control) {
            warn!(
                "share {:?} [{}]: control socket: {e}",
                share.tag, worker.pid
            );
        }
        info!("share {:?} [{}]: worker started", share.tag, worker.pid);
        Ok(Child {
            tag: share.tag.clone(),
            pid: worker.pid,
            pidfd: worker.pidfd,
            stderr,
            control: worker.control,
            control_done: false,
            ready: false,
            started: Instant::now(),
            kill_at: None,
        })
    }

    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn stderr_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.stderr.as_ref().map(LinePipe::fd)
    }

    pub fn control_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (!self.control_done).then(|| self.control.as_fd())
    }

    /// Logs what the worker wrote to stderr; closes the pipe at EOF.
    pub fn drain_stderr(&mut self) {
        let Some(pipe) = &mut self.stderr else { return };
        let (tag, pid) = (&self.tag, self.pid);
        match pipe.drain(|line| log_worker_line(tag, pid, line)) {
            Ok(Drained::Pending) => {}
            Ok(Drained::Eof) => self.stderr = None,
            Err(e) => {
                warn!("share {tag:?} [{pid}]: reading its stderr: {e}");
                self.stderr = None;
            }
        }
    }

    /// The control socket is readable: the worker reports that its jail is complete (or it
    /// closed the socket, which ends our interest in it).
    pub fn read_control(&mut self) {
        self.control_done = true;
        match handover::recv_ready(self.control.as_fd()) {
            Ok(()) => {
                self.ready = true;
                info!("share {:?} [{}]: jailed and accepting", self.tag, self.pid);
            }
            Err(e) => debug!("share {:?} [{}]: control socket: {e}", self.tag, self.pid),
        }
    }

    /// SIGTERM now, SIGKILL at `now + STOP_TIMEOUT` (see [`Child::kill_if_due`]). A worker
    /// that has not reported READY serves nobody and may not handle SIGTERM yet (PID 1 of a
    /// pid namespace ignores signals it has no handler for): it is killed at once.
    pub fn stop(&mut self, now: Instant) {
        if !self.ready {
            self.kill();
            return;
        }
        if self.kill_at.is_none() {
            self.signal(Signal::SIGTERM);
            self.kill_at = Some(now + STOP_TIMEOUT);
        }
    }

    /// SIGKILL if the stop timeout ran out.
    pub fn kill_if_due(&mut self, now: Instant) {
        if self.kill_at.is_some_and(|t| t <= now) {
            warn!(
                "share {:?} [{}]: still running {} s after SIGTERM; sending SIGKILL",
                self.tag,
                self.pid,
                STOP_TIMEOUT.as_secs()
            );
            self.kill();
        }
    }

    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        // Far in the future: no second SIGKILL; the exit arrives on the pidfd.
        self.kill_at = Some(Instant::now() + Duration::from_secs(3600));
    }

    fn signal(&self, signal: Signal) {
        // SAFETY: pidfd_send_signal takes a pidfd we own, a signal number and a null siginfo
        // (the kernel then fills it as for kill(2)); it touches no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc != 0 {
            // ESRCH: it already exited; its pidfd will say so.
            debug!(
                "share {:?} [{}]: {signal}: {}",
                self.tag,
                self.pid,
                std::io::Error::last_os_error()
            );
        }
    }

    /// Reaps the worker (its pidfd is readable), logs the rest of its stderr and how it ended.
    /// Returns how it ended, how long it ran, and whether it had reported READY.
    pub fn reap(mut self) -> (Ending, Duration, bool) {
        let ending = match waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => Ending::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, core)) => Ending::Signaled(sig, core),
            Ok(other) => {
                debug!("share {:?} [{}]: waitid: {other:?}", self.tag, self.pid);
                Ending::Unknown
            }
            Err(e) => {
                error!("share {:?} [{}]: waitid: {e}", self.tag, self.pid);
                Ending::Unknown
            }
        };
        self.drain_stderr();
        // A READY sent just before a quick exit may still be unread.
        if !self.control_done {
            self.read_control();
        }
        let uptime = self.started.elapsed();
        let level = if ending.is_clean() || self.kill_at.is_some() {
            Level::Info
        } else {
            Level::Warn
        };
        log!(
            level,
            "share {:?} [{}]: worker {ending} after {:.1} s",
            self.tag,
            self.pid,
            uptime.as_secs_f64()
        );
        (ending, uptime, self.ready)
    }
}

/// Logs one line of a worker's stderr under its share. Lines in the format of fsjail's own
/// logger (`fsjail[PID] LEVEL: message`) keep their level; anything else (a panic message,
/// a library writing to stderr) is unusual enough to be a warning.
fn log_worker_line(tag: &str, pid: i32, line: &str) {
    let (level, message) = parse_logger_line(line).unwrap_or((Level::Warn, line));
    log!(level, "share {tag:?} [{pid}]: {message}");
}

fn parse_logger_line(line: &str) -> Option<(Level, &str)> {
    let rest = line.strip_prefix("fsjail[")?;
    let (_, rest) = rest.split_once("] ")?;
    let (level, message) = rest.split_once(": ")?;
    Some((level.parse().ok()?, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_log_lines_keep_their_level() {
        assert_eq!(
            parse_logger_line("fsjail[12] WARN: low on fds"),
            Some((Level::Warn, "low on fds"))
        );
        assert_eq!(
            parse_logger_line("fsjail[12] DEBUG: a: b"),
            Some((Level::Debug, "a: b"))
        );
        assert_eq!(parse_logger_line("thread 'main' panicked at x"), None);
        assert_eq!(parse_logger_line("fsjail[1] LOUD: x"), None);
    }
}
