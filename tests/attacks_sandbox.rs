//! Attack catalogue, sandbox: a worker that makes a system call outside its seccomp
//! filter is killed, and the broker restarts it, filtered again, never unfiltered.
//!
//! No guest request is known to reach a system call outside the filter: IOCTL is refused by the
//! share policy before any syscall (ENOTTY, no allowlist), locks answer ENOSYS, COPY_FILE_RANGE
//! copies with pread/pwrite, and every other opcode maps to allowlisted calls. The evidence is
//! [`every_fuzz_corpus_input_leaves_the_filtered_worker_alive`]: every input of the
//! `fuse_server` fuzz corpus (the committed seeds; the whole local corpus with
//! `FSJAIL_REPLAY_CORPUS=all`) is replayed against the real jailed worker under
//! `--seccomp kill`, which would die of SIGSYS on any call outside the list.
//!
//! So the kill path is proven from outside (no test-only hook in the product): SIGSYS is sent to
//! the worker, the signal a filter violation delivers. In the namespace sandbox the worker is
//! PID 1 of its PID namespace and the kernel drops such a signal from outside (default action,
//! no handler; a real SECCOMP_RET_KILL_PROCESS kills it regardless), so `seccomp = "kill"` is
//! shown with `sandbox = "chroot"`, and the namespace sandbox with `seccomp = "trap"`, whose
//! handler exits 159.

#[path = "attacks/mod.rs"]
mod attacks;
mod broker_support;
mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use attacks::{assert_no_worker_crash, status_field, worker_pid, Arena};
use broker_support::{alive, guest_reads, Broker, Dir};
use common::Config;

fn seccomp_status(pid: i32) -> (String, String, String) {
    let f = |k| status_field(pid as u32, k).unwrap_or_default();
    (f("Seccomp:"), f("Seccomp_filters:"), f("NoNewPrivs:"))
}

/// The worker's seccomp status once it reported READY ("jailed and accepting"): the filter is
/// its last jail step, before READY and before it reads a byte from a frontend, so a worker
/// still setting up its jail is not yet expected to be filtered.
fn seccomp_status_when_ready(broker: &Broker, pid: i32) -> (String, String, String) {
    broker.wait_log(&format!("[{pid}]: jailed and accepting"));
    seccomp_status(pid)
}

/// Starts a broker for one share with `extra` policy keys, lets a first frontend come and go
/// (so the worker we kill has served), and returns the broker and the current worker's pid.
fn broker_with(dir: &Dir, extra: &str) -> (Broker, i32) {
    dir.write_policy(&dir.shares_policy(&["a"], extra));
    let mut broker = Broker::start(dir);
    let first = broker.wait_worker("a", 1);
    let (mode, filters, nnp) = seccomp_status_when_ready(&broker, first);
    assert_eq!(mode, "2", "the worker runs filtered (SECCOMP_MODE_FILTER)");
    assert_ne!(filters, "0");
    assert_eq!(nnp, "1");
    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
    // That frontend went away, so a fresh worker took over.
    let second = broker.wait_worker("a", 2);
    (broker, second)
}

/// After `victim` died: the broker logged `ending`, started a third worker, filtered before it
/// serves anything, and that worker serves.
fn restarted_filtered(dir: &Dir, broker: &mut Broker, victim: i32, ending: &str) {
    let third = broker.wait_worker("a", 3);
    assert!(!alive(victim));
    let log = broker.log();
    let line = format!("share \"a\" [{victim}]: worker failed: {ending}");
    assert!(log.contains(&line), "no {line:?} in:\n{log}");
    let (mode, filters, nnp) = seccomp_status_when_ready(broker, third);
    assert_eq!(
        (mode.as_str(), nnp.as_str()),
        ("2", "1"),
        "restarted worker unfiltered"
    );
    assert_ne!(filters, "0");
    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
    // No worker of the broker serves unfiltered (the fresh worker that took over after that
    // frontend left is checked once it is ready).
    for pid in broker.children() {
        let mode = seccomp_status_when_ready(broker, pid).0;
        // A worker whose frontend left (the read above) may be gone since the list was taken:
        // it serves nothing, filtered or not.
        if mode.is_empty() && !alive(pid) {
            continue;
        }
        assert_eq!(mode, "2", "child {pid}");
    }
}

/// `seccomp = "kill"`: a filter violation is SECCOMP_RET_KILL_PROCESS, the worker dies of
/// SIGSYS. In the namespace sandbox the worker is PID 1 of its PID namespace, so the kernel
/// drops an outside SIGSYS (default action, no handler); the chroot sandbox has no PID
/// namespace, and there `kill -SYS` ends the worker just as the filter would.
#[test]
fn kill_mode_a_worker_killed_by_sigsys_is_restarted_filtered() {
    let dir = Dir::new();
    let (mut broker, victim) = broker_with(&dir, "seccomp = \"kill\"\nsandbox = \"chroot\"\n");
    // SAFETY: kill(2) on the worker the broker started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGSYS) }, 0);
    restarted_filtered(&dir, &mut broker, victim, "killed by SIGSYS");
}

/// `seccomp = "trap"` in the default namespace sandbox: the worker's SIGSYS handler names the
/// blocked call and exits 159 (128 + SIGSYS); a SIGSYS from outside takes the same exit.
#[test]
fn trap_mode_a_worker_ended_by_sigsys_is_restarted_filtered() {
    let dir = Dir::new();
    let (mut broker, victim) = broker_with(&dir, "seccomp = \"trap\"\n");
    // SAFETY: kill(2) on the worker the broker started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGSYS) }, 0);
    restarted_filtered(&dir, &mut broker, victim, "exited with status 159");
}

/// Decodes the `fuse_server` fuzz input format (`fuzz/src/record.rs`): a config byte, then
/// records of flags:u8, wlen:u32le, rlen:u32le and rlen bytes.
fn records(data: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 9 && out.len() < 64 {
        let flags = rest[0];
        let wlen = u32::from_le_bytes(rest[1..5].try_into().unwrap()).min((1 << 20) + 8192);
        let rlen = u32::from_le_bytes(rest[5..9].try_into().unwrap()) as usize;
        rest = &rest[9..];
        let mut bytes = rest[..rlen.min(rest.len())].to_vec();
        rest = &rest[rlen.min(rest.len())..];
        if flags & 0x10 != 0 && bytes.len() >= 4 {
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        out.push((wlen, bytes));
    }
    out
}

#[test]
fn every_fuzz_corpus_input_leaves_the_filtered_worker_alive() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fuse_server");
    let all = std::env::var("FSJAIL_REPLAY_CORPUS").is_ok_and(|v| v == "all");
    let mut inputs: Vec<_> = fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            all || p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no seeds in {}", corpus.display());
    let cfg = Config {
        xattr: true,
        fsjail_args: vec![
            "--seccomp".into(),
            "kill".into(),
            "--dax-window".into(),
            "4M".into(),
        ],
        ..Config::default()
    };
    let mut a = Arena::new(&cfg);
    let worker = worker_pid(&a.b);
    assert_eq!(status_field(worker, "Seccomp:").as_deref(), Some("2"));
    a.s.set_timeout(Duration::from_secs(10));
    let mut sent = 0;
    for path in &inputs {
        for (wlen, bytes) in records(&fs::read(path).unwrap()) {
            // The driver needs at least one descriptor; guest RAM is 64 MiB.
            if bytes.is_empty() && wlen == 0 {
                continue;
            }
            let w: &[u32] = if wlen == 0 {
                &[]
            } else {
                std::slice::from_ref(&wlen)
            };
            let one = [&bytes[..]];
            let r: &[&[u8]] = if bytes.is_empty() { &[] } else { &one };
            if let Err(e) = a.s.send_raw(1, r, w) {
                panic!("{}: {e}\n{}", path.display(), a.b.log());
            }
            sent += 1;
        }
        assert!(
            alive(worker as i32),
            "{}: the filtered worker died\n{}",
            path.display(),
            a.b.log()
        );
    }
    eprintln!(
        "replayed {sent} requests from {} corpus inputs",
        inputs.len()
    );
    assert_no_worker_crash(&a.b, "corpus replay");
    // The corpus may have unmounted the probe's view (DESTROY): INIT again if needed.
    let _ = a.s.init();
    a.b.assert_alive();
    a.sentinel.assert_unchanged("corpus replay");
}
