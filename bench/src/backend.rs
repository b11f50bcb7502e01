//! Backends: command templates, starting and stopping their processes, connecting the guest
//! driver, and reading their memory use.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_driver::{BackendRequestHandler, Device, Options, Session};

use crate::error::{BenchError, DriverContext, Result};

/// Placeholders a template may use.
pub const SOCKET: &str = "{socket}";
pub const SHARED_DIR: &str = "{shared_dir}";
/// Optional: the number of request queues the workload wants.
pub const QUEUES: &str = "{queues}";
/// Optional: the DAX window size in bytes the workload wants (0 outside the DAX figures).
pub const DAX_WINDOW: &str = "{dax_window}";

/// Values for a template's placeholders.
#[derive(Clone, Copy, Debug)]
pub struct Fill<'a> {
    pub shared_dir: &'a Path,
    pub queues: u16,
    pub dax_window: u64,
}

/// How long a backend gets to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A named backend and its command template.
#[derive(Clone, Debug)]
pub struct BackendSpec {
    pub name: String,
    pub template: String,
    argv: Vec<String>,
}

impl BackendSpec {
    /// Parses `template` (shell-like words; single and double quotes and backslashes work).
    pub fn new(name: &str, template: &str) -> Result<Self> {
        let bad = |reason: &str| BenchError::Template {
            name: name.to_string(),
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let word = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || name.len() > 32 || !name.chars().all(word) {
            return Err(bad(
                "the name must be a word of letters, digits, '-', '_' or '.'",
            ));
        }
        let argv = split_words(template).map_err(|r| bad(&r))?;
        if argv.is_empty() {
            return Err(bad("no program"));
        }
        if !argv.iter().any(|a| a.contains(SOCKET)) {
            return Err(bad("it must contain {socket}"));
        }
        Ok(BackendSpec {
            name: name.to_string(),
            template: template.to_string(),
            argv,
        })
    }

    /// Parses `NAME=TEMPLATE` (the `--backend` syntax).
    pub fn parse_assignment(arg: &str) -> Result<Self> {
        let (name, template) = arg.split_once('=').ok_or_else(|| {
            BenchError::Usage(format!(
                "--backend {arg:?}: expected NAME='TEMPLATE with {{socket}} and {{shared_dir}}'"
            ))
        })?;
        Self::new(name.trim(), template)
    }

    /// The program the template runs.
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// A copy under another name with option `--opt` (as `--opt=V` or `--opt V`) set to
    /// `value`: the sandboxed variants for the jailed start-time figure.
    pub fn with_option(&self, name: &str, opt: &str, value: &str) -> Self {
        let mut argv = Vec::with_capacity(self.argv.len() + 2);
        let mut args = self.argv.iter();
        while let Some(a) = args.next() {
            if a == opt {
                args.next();
            } else if !a.starts_with(&format!("{opt}=")) {
                argv.push(a.clone());
            }
        }
        argv.push(opt.to_string());
        argv.push(value.to_string());
        let template = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        BackendSpec {
            name: name.to_string(),
            template,
            argv,
        }
    }

    fn command(&self, socket: &Path, v: Fill<'_>) -> Command {
        let fill = |a: &str| {
            a.replace(SOCKET, &socket.to_string_lossy())
                .replace(SHARED_DIR, &v.shared_dir.to_string_lossy())
                .replace(QUEUES, &v.queues.to_string())
                .replace(DAX_WINDOW, &v.dax_window.to_string())
        };
        let mut cmd = Command::new(fill(&self.argv[0]));
        cmd.args(self.argv[1..].iter().map(|a| fill(a)));
        cmd
    }
}

/// Splits a command line into words the way a POSIX shell would for plain words and quotes.
pub fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("trailing backslash".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => {
                    in_word = true;
                    cur.push(c)
                }
                None => return Err("trailing backslash".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c)
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:{},+@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Where spawned backends put their sockets and logs.
#[derive(Debug)]
pub struct SpawnDirs {
    pub sockets: PathBuf,
    pub logs: PathBuf,
    counter: std::sync::atomic::AtomicU32,
}

impl SpawnDirs {
    pub fn new(sockets: PathBuf, logs: PathBuf) -> Self {
        SpawnDirs {
            sockets,
            logs,
            counter: Default::default(),
        }
    }

    fn next(&self, name: &str) -> (PathBuf, PathBuf) {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (
            self.sockets.join(format!("{n}.sock")),
            self.logs.join(format!("{name}-{n}.log")),
        )
    }
}

/// A running backend process (its own process group), stopped on drop.
pub struct Process {
    pub name: String,
    pub socket: PathBuf,
    child: Child,
    log: PathBuf,
    started: Instant,
}

impl Process {
    /// Starts `spec` with its placeholders filled from `fill` and a fresh socket path.
    pub fn spawn(spec: &BackendSpec, dirs: &SpawnDirs, fill: Fill<'_>) -> Result<Self> {
        let (socket, log) = dirs.next(&spec.name);
        let cmd = spec.command(&socket, fill);
        Self::start(&spec.name, spec.program(), cmd, socket, log)
    }

    /// Starts any command as a supervised process (the broker); `socket` is only removed on
    /// drop.
    pub fn spawn_command(
        name: &str,
        program: &str,
        cmd: Command,
        dirs: &SpawnDirs,
    ) -> Result<Self> {
        let (socket, log) = dirs.next(name);
        Self::start(name, program, cmd, socket, log)
    }

    fn start(
        name: &str,
        program: &str,
        mut cmd: Command,
        socket: PathBuf,
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::create(&log).map_err(|e| BenchError::io("create log", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError::io("dup log", &log, e))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| BenchError::Spawn {
            name: name.to_string(),
            program: program.to_string(),
            source,
        })?;
        Ok(Process {
            name: name.to_string(),
            socket,
            child,
            log,
            started,
        })
    }

    /// The process id of the program the template started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the process was spawned.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines the process printed.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log, lines)
    }

    /// An error naming the backend, with the tail of its output.
    pub fn failure(&self, what: impl Into<String>) -> BenchError {
        BenchError::Backend {
            name: self.name.clone(),
            what: what.into(),
            log: self.log_tail(12),
        }
    }

    /// Waits for the socket file to appear (without connecting: a backend serves only one
    /// connection). Fails early if the process exits.
    pub fn wait_for_socket(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.socket.exists() {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                return Err(self.failure(format!("exited ({st}) before opening its socket")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "no socket at {} after {START_TIMEOUT:?}",
                    self.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Polls until a connection to the socket succeeds; returns the time since spawn. The
    /// connection is closed at once, which ends a one-connection backend.
    pub fn wait_connectable(&mut self) -> Result<Duration> {
        let deadline = self.started + START_TIMEOUT;
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(self.started.elapsed());
            }
            if let Some(st) = self.exited() {
                return Err(
                    self.failure(format!("exited ({st}) before its socket took a connection"))
                );
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!("socket not connectable after {START_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Sum of VmRSS over this process and all its descendants, in KiB.
    pub fn tree_rss_kib(&self) -> Result<u64> {
        let pids = descendants(self.pid());
        let mut total = 0;
        for pid in pids {
            // A process may exit between listing and reading; count what is there.
            if let Some(kib) = status_field_kib(pid, "VmRSS:") {
                total += kib;
            }
        }
        if total == 0 {
            return Err(self.failure("no VmRSS in /proc (process gone?)"));
        }
        Ok(total)
    }

    /// VmRSS of the serving process, in KiB: the process of the tree with no children of its
    /// own (the backend itself, or the jailed worker below `fsjail serve`'s broker), summed if
    /// there are several. The whole tree is [`Process::tree_rss_kib`].
    pub fn worker_rss_kib(&self) -> Result<u64> {
        let tree = tree_links(self.pid());
        let mut total = 0;
        for &(pid, _) in &tree {
            if tree.iter().any(|&(_, parent)| parent == pid) {
                continue;
            }
            if let Some(kib) = status_field_kib(pid, "VmRSS:") {
                total += kib;
            }
        }
        if total == 0 {
            return Err(self.failure("no VmRSS in /proc (process gone?)"));
        }
        Ok(total)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pgid = self.child.id();
        crate::sys::kill_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        crate::sys::kill_group(pgid, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn read_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `pid` and every process below it (from /proc/*/stat parent links).
pub fn descendants(pid: u32) -> Vec<u32> {
    tree_links(pid).into_iter().map(|(p, _)| p).collect()
}

/// `(pid, parent)` for `pid` (parent 0 here) and every process below it.
fn tree_links(pid: u32) -> Vec<(u32, u32)> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = parent_pid(p) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = vec![(pid, 0)];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i].0;
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == cur).copied());
        i += 1;
    }
    out
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; cut at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A `Name:   123 kB` line of /proc/PID/status, in KiB.
pub fn status_field_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// How the guest driver connects.
#[derive(Clone)]
pub struct ConnectOptions {
    pub queues: u16,
    pub dax_window: u64,
    pub mem_size: usize,
    pub handler: Option<Arc<BackendRequestHandler>>,
}

/// Connects the guest driver to `socket`, served by `process`, and sends INIT.
pub fn attach(process: &mut Process, socket: &Path, opts: ConnectOptions) -> Result<Session> {
    let options = Options {
        num_request_queues: opts.queues,
        queue_size: 256,
        mem_size: opts.mem_size,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
        backend_handler: opts.handler,
        ..Options::default()
    };
    let name = process.name.clone();
    let dev = match Device::connect_with(socket, options) {
        Ok(d) => d,
        Err(guest_driver::Error::Unsupported(what)) => {
            return Err(BenchError::Skip(format!("{name} does not offer {what}")))
        }
        Err(e) => return Err(process.failure(format!("connecting the guest driver: {e}"))),
    };
    let session = Session::new(Arc::new(dev));
    session.init().ctx(|| format!("{name}: FUSE INIT"))?;
    Ok(session)
}

/// A backend process with an initialised FUSE session on it. The session is dropped (the
/// frontend disconnects) before the process is stopped.
pub struct Connection {
    pub session: Session,
    pub process: Process,
}

impl Connection {
    /// Starts `spec`, connects with `opts.queues` request queues and sends INIT.
    pub fn open(
        spec: &BackendSpec,
        dirs: &SpawnDirs,
        shared_dir: &Path,
        opts: ConnectOptions,
    ) -> Result<Self> {
        let fill = Fill {
            shared_dir,
            queues: opts.queues,
            dax_window: opts.dax_window,
        };
        let mut process = Process::spawn(spec, dirs, fill)?;
        process.wait_for_socket()?;
        let socket = process.socket.clone();
        let session = attach(&mut process, &socket, opts)?;
        Ok(Connection { session, process })
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.process.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let w = split_words(r#"a 'b c' "d \" e" f\ g  {socket}"#).unwrap();
        assert_eq!(w, ["a", "b c", "d \" e", "f g", "{socket}"]);
        assert!(split_words("'open").is_err());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn templates_need_a_socket() {
        assert!(BackendSpec::new("x", "prog --shared-dir {shared_dir}").is_err());
        assert!(BackendSpec::new("x", "").is_err());
        assert!(BackendSpec::parse_assignment("x prog {socket}").is_err());
        let s =
            BackendSpec::parse_assignment("v=prog --socket-path={socket} --sandbox=none").unwrap();
        assert_eq!(s.name, "v");
        let ns = s.with_option("v-ns", "--sandbox", "namespace");
        assert_eq!(
            ns.template,
            "prog --socket-path={socket} --sandbox namespace"
        );
        let t = BackendSpec::new("f", "f serve --sandbox none --socket-path {socket}").unwrap();
        assert_eq!(
            t.with_option("f-ns", "--sandbox", "namespace").template,
            "f serve --socket-path {socket} --sandbox namespace"
        );
    }

    #[test]
    fn finds_itself_in_proc() {
        let me = std::process::id();
        assert!(descendants(me).contains(&me));
        assert!(status_field_kib(me, "VmRSS:").unwrap() > 0);
        // A child shows up below us, as our child.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let links = tree_links(me);
        assert!(links.contains(&(child.id(), me)), "{links:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
