//! Runs `fsjail run` (the broker) as a real process in its own temporary directory, for the
//! broker and policy tests: writes the policy, follows the broker's log, finds its workers.
//!
//! Worker pids come from the broker's log (`share "TAG" [PID]: worker started`) and are
//! cross-checked against `/proc/BROKER/task/*/children`, so a test sees the processes the
//! broker really started.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FSJAIL: &str = env!("CARGO_BIN_EXE_fsjail");

/// How long any wait in these tests may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A temporary directory holding `policy.toml`, share directories and sockets.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        let dir = tempfile::Builder::new()
            .prefix("fsjail-broker.")
            .tempdir()
            .unwrap();
        // Reachable by an unprivileged broker too (tests that drop privileges chown it).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Dir { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn policy(&self) -> PathBuf {
        self.path().join("policy.toml")
    }

    /// `$D` in `text` is replaced by the directory.
    pub fn write_policy(&self, text: &str) {
        fs::write(
            self.policy(),
            text.replace("$D", &self.path().display().to_string()),
        )
        .unwrap();
    }

    /// A `[broker]` table with a private runtime dir, then one `[[share]]` per tag, each
    /// serving `$D/TAG` on `$D/TAG.sock` (created), with `extra` appended to every share.
    pub fn shares_policy(&self, tags: &[&str], extra: &str) -> String {
        let mut text = String::from("[broker]\nruntime_dir = \"$D/run\"\nlog_level = \"debug\"\n");
        for tag in tags {
            let dir = self.path().join(tag);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap();
                fs::write(dir.join("hello.txt"), format!("hello from {tag}\n")).unwrap();
            }
            text.push_str(&format!(
                "\n[[share]]\ntag = \"{tag}\"\npath = \"$D/{tag}\"\nsocket = \"$D/{tag}.sock\"\n{extra}"
            ));
        }
        text
    }

    pub fn socket(&self, tag: &str) -> PathBuf {
        self.path().join(format!("{tag}.sock"))
    }

    /// Runs `fsjail ARGS` to completion in the directory.
    pub fn fsjail(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let out = Command::new(FSJAIL)
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A running broker. Dropping it kills it and every worker it started.
pub struct Broker {
    child: Option<Child>,
    pub pid: i32,
    log: PathBuf,
    seen_workers: Vec<i32>,
}

impl Broker {
    /// Starts `fsjail run --policy policy.toml` in `dir` (optionally under `setpriv ARGS`).
    pub fn start(dir: &Dir) -> Broker {
        Broker::start_with(dir, &[])
    }

    pub fn start_with(dir: &Dir, setpriv: &[&str]) -> Broker {
        let log = dir.path().join("broker.log");
        let log_file = fs::File::create(&log).unwrap();
        let mut cmd = if setpriv.is_empty() {
            Command::new(FSJAIL)
        } else {
            let mut c = Command::new("setpriv");
            c.args(setpriv).arg("--").arg(FSJAIL);
            c
        };
        cmd.args(["run", "--policy", "policy.toml"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        Broker {
            child: Some(child),
            pid,
            log,
            seen_workers: Vec::new(),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `n` lines containing `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {n} x {needle:?} in the broker log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_log(&self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Every worker pid the broker logged for `tag`, oldest first.
    pub fn workers(&mut self, tag: &str) -> Vec<i32> {
        let prefix = format!("share {tag:?} [");
        let pids: Vec<i32> = self
            .log()
            .lines()
            .filter(|l| l.ends_with("]: worker started"))
            .filter_map(|l| l.split_once(&prefix))
            .filter_map(|(_, rest)| rest.split(']').next()?.parse().ok())
            .collect();
        for &p in &pids {
            if !self.seen_workers.contains(&p) {
                self.seen_workers.push(p);
            }
        }
        pids
    }

    /// Waits for the `n`-th worker of `tag` (1-based) to be jailed and accepting; its pid.
    pub fn wait_worker(&mut self, tag: &str, n: usize) -> i32 {
        self.wait_log_count(&format!("share {tag:?} ["), 1);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let workers = self.workers(tag);
            if let Some(&pid) = workers.get(n - 1) {
                self.wait_log(&format!("share {tag:?} [{pid}]: jailed and accepting"));
                return pid;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for worker #{n} of {tag:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's current children.
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }

    /// Waits for the broker to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("the broker did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let workers: Vec<i32> = self.seen_workers.clone();
        for pid in workers {
            if alive(pid) {
                // SAFETY: kill(2) on a worker pid the broker logged; it is ours to clean up.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if std::thread::panicking() {
            eprintln!("---- broker log ----\n{}", self.log());
        }
    }
}

/// Children of `pid` (all its threads).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|s| s.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
    }
}

pub fn wait_dead(pid: i32) {
    let deadline = Instant::now() + TIMEOUT;
    while alive(pid) {
        if Instant::now() > deadline {
            panic!("process {pid} is still alive");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_path(path: &Path, present: bool) {
    let deadline = Instant::now() + TIMEOUT;
    while path.exists() != present {
        if Instant::now() > deadline {
            panic!(
                "{} still {}",
                path.display(),
                if present { "missing" } else { "present" }
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects a guest (the guest-driver frontend) to `socket` and reads `name` from the share:
/// proof that a worker serves the socket, not just that the kernel queued the connection.
pub fn guest_reads(socket: &Path, name: &str) -> Vec<u8> {
    use guest_driver::{Device, Session};
    let dev = Arc::new(Device::connect(socket).unwrap());
    let fs = Session::new(dev);
    fs.init().unwrap();
    let entry = fs.lookup(1, name).unwrap();
    let open = fs.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();
    fs.read(entry.nodeid, open.fh, 0, 4096).unwrap()
}
