//! The broker's event loop: one `poll` over the signalfd and every worker's pidfd, stderr and
//! control socket, then timers (restarts, kills). See the module docs of [`super`] for the
//! lifecycle it implements.

use std::fs;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::child::{Child, Ending};
use super::error::BrokerError;
use super::restart::{Decision, RestartTracker, FAILURE_WINDOW, MAX_FAILURES};
use super::signals::Signals;
use super::socket::BoundSocket;
use crate::policy::{BrokerSettings, Policy, RestartPolicy, ShareConfig};
use crate::sd_notify;

/// The longest single wait: a bound on how stale `Instant::now()` can get between checks.
const MAX_POLL: Duration = Duration::from_secs(60);

pub(super) struct Share {
    pub config: ShareConfig,
    /// `None` only when binding a changed socket failed on reload (the share is then down).
    pub socket: Option<BoundSocket>,
    pub worker: Option<Child>,
    pub restart_at: Option<Instant>,
    /// New settings from a reload, applied when the running worker has stopped.
    pub pending: Option<ShareConfig>,
    pub tracker: RestartTracker,
    pub down: Option<Down>,
}

/// Why a share has no worker and none is scheduled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Down {
    /// `fsjail serve`: the worker exited 0.
    Done,
    /// It failed and will not be restarted (`restart = "never"`, gave up, cannot start).
    Failed(String),
}

pub(super) struct Supervisor {
    pub file: PathBuf,
    pub broker: BrokerSettings,
    pub exe: PathBuf,
    /// `RunOptions::exit_when_all_done`.
    pub serve: bool,
    signals: Signals,
    pub shares: Vec<Share>,
    /// Workers of shares removed by a reload, being stopped.
    pub retiring: Vec<Child>,
    stopping: bool,
}

/// What a ready poll entry belongs to.
#[derive(Clone, Copy, Debug)]
enum Token {
    Signal,
    Exit(Owner),
    Stderr(Owner),
    Control(Owner),
}

#[derive(Clone, Copy, Debug)]
enum Owner {
    Share(usize),
    Retiring(usize),
}

impl Share {
    fn new(config: ShareConfig, socket: BoundSocket) -> Share {
        Share {
            config,
            socket: Some(socket),
            worker: None,
            restart_at: None,
            pending: None,
            tracker: RestartTracker::default(),
            down: None,
        }
    }
}

impl Supervisor {
    /// Binds every socket and starts every worker, or stops what it started and fails.
    pub fn start(
        policy: Policy,
        exe: PathBuf,
        serve: bool,
        mut listener: Option<OwnedFd>,
    ) -> Result<Supervisor, BrokerError> {
        let signals = Signals::new().map_err(BrokerError::Signals)?;
        ensure_runtime_dir(&policy.broker.runtime_dir)?;
        let mut sup = Supervisor {
            file: policy.file,
            broker: policy.broker,
            exe,
            serve,
            signals,
            shares: Vec::new(),
            retiring: Vec::new(),
            stopping: false,
        };
        info!(
            "starting {} share{} from {}",
            policy.shares.len(),
            if policy.shares.len() == 1 { "" } else { "s" },
            sup.file.display()
        );
        for config in policy.shares {
            let bound = listener
                .take()
                .map(|fd| BoundSocket::inherited(fd, &config.socket));
            if let Err(e) = sup.add_share_on(config, bound) {
                sup.abort();
                return Err(e);
            }
        }
        notify("READY=1");
        Ok(sup)
    }

    /// Binds the share's socket and starts its worker.
    pub fn add_share(&mut self, config: ShareConfig) -> Result<(), BrokerError> {
        self.add_share_on(config, None)
    }

    /// Starts the share's worker on `bound`, or on a socket bound now when `None`.
    fn add_share_on(
        &mut self,
        config: ShareConfig,
        bound: Option<BoundSocket>,
    ) -> Result<(), BrokerError> {
        config
            .ensure_path()
            .map_err(|source| BrokerError::ShareDir {
                tag: config.tag.clone(),
                path: config.path.clone(),
                source,
            })?;
        let socket = match bound {
            Some(socket) => socket,
            None => BoundSocket::bind(&config.socket).map_err(|source| BrokerError::Socket {
                tag: config.tag.clone(),
                source,
            })?,
        };
        info!(
            "share {:?}: listening on {}",
            config.tag,
            config.socket.display()
        );
        let child = match Child::spawn(&config, socket.listener(), &self.exe) {
            Ok(child) => child,
            Err(source) => {
                socket.remove();
                return Err(BrokerError::Spawn {
                    tag: config.tag.clone(),
                    source,
                });
            }
        };
        let mut share = Share::new(config, socket);
        share.worker = Some(child);
        self.shares.push(share);
        Ok(())
    }

    /// Runs until stopped by a signal, or (serve) until every share is done.
    pub fn run(mut self) -> Result<(), BrokerError> {
        loop {
            if self.stopping && !self.any_child() {
                info!("all workers stopped");
                self.remove_sockets();
                return Ok(());
            }
            if self.serve && !self.stopping && !self.any_child() && self.all_down() {
                self.remove_sockets();
                return self.serve_result();
            }
            self.step()?;
        }
    }

    /// Stops everything started so far, waiting for the workers; used when a start fails.
    fn abort(&mut self) {
        self.begin_stop();
        while self.any_child() {
            if let Err(e) = self.step() {
                error!("while stopping after a failed start: {e}");
                for child in self.children_mut() {
                    child.kill();
                }
                break;
            }
        }
        self.remove_sockets();
    }

    /// One wait and everything that became ready.
    fn step(&mut self) -> Result<(), BrokerError> {
        let ready = self.wait()?;
        // Output first (so a worker's last words come before the news of its end), then
        // exits, then signals (a reload reorders the shares, so it goes last).
        for (token, _) in &ready {
            match *token {
                Token::Stderr(owner) => {
                    if let Some(child) = self.child_mut(owner) {
                        child.drain_stderr();
                    }
                }
                Token::Control(owner) => {
                    if let Some(child) = self.child_mut(owner) {
                        child.read_control();
                    }
                }
                _ => {}
            }
        }
        let mut retired = Vec::new();
        for (token, _) in &ready {
            match *token {
                Token::Exit(Owner::Share(i)) => self.share_exited(i),
                Token::Exit(Owner::Retiring(i)) => retired.push(i),
                _ => {}
            }
        }
        retired.sort_unstable();
        for i in retired.into_iter().rev() {
            if i < self.retiring.len() {
                let child = self.retiring.swap_remove(i);
                child.reap();
            }
        }
        if ready.iter().any(|(t, _)| matches!(t, Token::Signal)) {
            self.handle_signals()?;
        }
        self.tick(Instant::now());
        Ok(())
    }

    fn wait<'a>(&'a self) -> Result<Vec<(Token, PollFlags)>, BrokerError> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut fds: Vec<PollFd<'a>> = Vec::new();
        let mut add = |fd: BorrowedFd<'a>, token| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            tokens.push(token);
        };
        add(self.signals.fd(), Token::Signal);
        let children = self
            .shares
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.worker.as_ref().map(|c| (Owner::Share(i), c)))
            .chain(
                self.retiring
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (Owner::Retiring(i), c)),
            );
        for (owner, child) in children {
            add(child.pidfd(), Token::Exit(owner));
            if let Some(fd) = child.stderr_fd() {
                add(fd, Token::Stderr(owner));
            }
            if let Some(fd) = child.control_fd() {
                add(fd, Token::Control(owner));
            }
        }
        let timeout = match self.next_deadline() {
            None => PollTimeout::try_from(MAX_POLL).unwrap_or(PollTimeout::MAX),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now()).min(MAX_POLL);
                // Round up: waking a little early would only spin until the deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(BrokerError::Poll(e)),
        }
        Ok(fds
            .iter()
            .zip(tokens)
            .filter_map(|(fd, token)| {
                let revents = fd.revents().unwrap_or(PollFlags::empty());
                (!revents.is_empty()).then_some((token, revents))
            })
            .collect())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self
            .shares
            .iter()
            .filter_map(|s| s.restart_at)
            .filter(|_| !self.stopping);
        let kills = self.children().filter_map(|c| c.kill_at);
        restarts.chain(kills).min()
    }

    fn tick(&mut self, now: Instant) {
        for child in self.children_mut() {
            child.kill_if_due(now);
        }
        if self.stopping {
            return;
        }
        for i in 0..self.shares.len() {
            if self.shares[i].restart_at.is_some_and(|t| t <= now) {
                self.shares[i].restart_at = None;
                self.start_worker(i);
            }
        }
    }

    fn handle_signals(&mut self) -> Result<(), BrokerError> {
        while let Some(signal) = self.signals.next().map_err(BrokerError::Signals)? {
            match signal {
                Signal::SIGTERM | Signal::SIGINT if self.stopping => {
                    warn!("{signal} again: killing every worker now");
                    for child in self.children_mut() {
                        child.kill();
                    }
                }
                Signal::SIGTERM | Signal::SIGINT => {
                    let n = self.children().count();
                    info!(
                        "{signal}: stopping {n} worker{}",
                        if n == 1 { "" } else { "s" }
                    );
                    self.begin_stop();
                }
                Signal::SIGHUP if self.serve => info!("SIGHUP: no policy file to reload"),
                Signal::SIGHUP if self.stopping => info!("SIGHUP: stopping; not reloading"),
                Signal::SIGHUP => self.reload(),
                other => warn!("ignoring unexpected {other}"),
            }
        }
        Ok(())
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        notify("STOPPING=1");
        let now = Instant::now();
        for share in &mut self.shares {
            share.restart_at = None;
            share.pending = None;
        }
        for child in self.children_mut() {
            child.stop(now);
        }
    }

    /// The share's worker ended: decide whether and when it comes back.
    fn share_exited(&mut self, i: usize) {
        let Some(share) = self.shares.get_mut(i) else {
            return;
        };
        let Some(child) = share.worker.take() else {
            return;
        };
        let (ending, uptime, was_ready) = child.reap();
        if self.stopping {
            return;
        }
        if let Some(config) = share.pending.take() {
            info!("share {:?}: starting with its new settings", config.tag);
            share.config = config;
            share.tracker.reset();
            share.down = None;
            self.start_worker(i);
            return;
        }
        if share.down.is_some() {
            // Marked down while it was being stopped (a reload that could not rebind).
            return;
        }
        if ending.is_clean() && self.serve {
            info!(
                "share {:?}: frontend disconnected; share done",
                share.config.tag
            );
            share.down = Some(Down::Done);
            return;
        }
        if ending.is_clean() && was_ready {
            info!(
                "share {:?}: frontend disconnected; a fresh worker takes over {}",
                share.config.tag,
                share.config.socket.display()
            );
            self.start_worker(i);
            return;
        }
        let why = if ending.is_clean() {
            "exited with status 0 before reporting ready (counted as a failure)".to_owned()
        } else {
            strip_failed(&ending)
        };
        self.failed(i, uptime, why);
    }

    /// Applies the share's restart policy after a failure.
    fn failed(&mut self, i: usize, uptime: Duration, why: String) {
        let Some(share) = self.shares.get_mut(i) else {
            return;
        };
        let tag = &share.config.tag;
        match share.config.restart {
            RestartPolicy::Never => {
                error!("share {tag:?}: {why}; restart = \"never\": the share stays down");
                share.down = Some(Down::Failed(why));
            }
            RestartPolicy::OnFailure => match share.tracker.failed(Instant::now(), uptime) {
                Decision::RestartAfter(delay) => {
                    info!("share {tag:?}: restarting in {} ms", delay.as_millis());
                    share.restart_at = Some(Instant::now() + delay);
                }
                Decision::GiveUp => {
                    error!(
                        "share {tag:?}: {why}; {MAX_FAILURES} failures within {} s: giving up, the share stays down (fix the cause, then SIGHUP the broker)",
                        FAILURE_WINDOW.as_secs()
                    );
                    share.down = Some(Down::Failed(why));
                }
            },
        }
    }

    /// Starts a worker for share `i` on its existing socket; a failure to start counts as a
    /// failure of the share.
    pub fn start_worker(&mut self, i: usize) {
        let Some(share) = self.shares.get_mut(i) else {
            return;
        };
        share.down = None;
        let Some(socket) = &share.socket else {
            share.down = Some(Down::Failed("no socket".to_owned()));
            return;
        };
        if let Err(e) = share.config.ensure_path() {
            if e.kind() == std::io::ErrorKind::NotFound {
                // Gone from the host (removed under a running worker, say): no worker could
                // start, so none is tried and nothing is counted; one line says why.
                let why = format!("path {} is gone", share.config.path.display());
                error!(
                    "share {:?}: {why}: no worker until it is back (recreate it, then SIGHUP the broker)",
                    share.config.tag
                );
                share.down = Some(Down::Failed(why));
                return;
            }
        }
        let result = share
            .config
            .ensure_path()
            .map_err(|e| format!("path {:?}: {e}", share.config.path))
            .and_then(|()| {
                Child::spawn(&share.config, socket.listener(), &self.exe)
                    .map_err(|e| format!("starting the worker: {e}"))
            });
        match result {
            Ok(child) => share.worker = Some(child),
            Err(why) => {
                error!("share {:?}: {why}", share.config.tag);
                self.failed(i, Duration::ZERO, why);
            }
        }
    }

    fn serve_result(&self) -> Result<(), BrokerError> {
        for share in &self.shares {
            if let Some(Down::Failed(how)) = &share.down {
                return Err(BrokerError::WorkerFailed {
                    tag: share.config.tag.clone(),
                    how: how.clone(),
                });
            }
        }
        info!("every share is done");
        Ok(())
    }

    fn all_down(&self) -> bool {
        self.shares.iter().all(|s| s.down.is_some())
    }

    fn remove_sockets(&mut self) {
        for share in &mut self.shares {
            if let Some(socket) = share.socket.take() {
                socket.remove();
            }
        }
    }

    fn any_child(&self) -> bool {
        self.children().next().is_some()
    }

    fn children(&self) -> impl Iterator<Item = &Child> {
        self.shares
            .iter()
            .filter_map(|s| s.worker.as_ref())
            .chain(self.retiring.iter())
    }

    fn children_mut(&mut self) -> impl Iterator<Item = &mut Child> {
        self.shares
            .iter_mut()
            .filter_map(|s| s.worker.as_mut())
            .chain(self.retiring.iter_mut())
    }

    fn child_mut(&mut self, owner: Owner) -> Option<&mut Child> {
        match owner {
            Owner::Share(i) => self.shares.get_mut(i)?.worker.as_mut(),
            Owner::Retiring(i) => self.retiring.get_mut(i),
        }
    }
}

/// "failed: killed by SIGKILL" → "killed by SIGKILL", for "share x: killed by SIGKILL; ...".
fn strip_failed(ending: &Ending) -> String {
    let text = ending.to_string();
    text.strip_prefix("failed: ").unwrap_or(&text).to_owned()
}

/// Creates the runtime directory (mode 0700, one level) if missing. The policy check already
/// refused one that exists but is not private to this user.
pub(super) fn ensure_runtime_dir(path: &Path) -> Result<(), BrokerError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(BrokerError::RuntimeDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Tells systemd (when it is watching) about a state change; failures are logged only.
pub(super) fn notify(state: &str) {
    if let Err(e) = sd_notify::notify(state) {
        warn!("{e}");
    }
}
