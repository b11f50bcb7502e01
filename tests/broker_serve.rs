//! `jail::broker::run_policy` in `fsjail serve` mode (`exit_when_all_done`), called in this
//! process as `fsjail serve` will call it, with real jailed workers. One test, so no other
//! test's workers appear among this process's children.

mod broker_support;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use broker_support::{children_of, guest_reads, wait_dead, wait_path, Dir, FSJAIL, TIMEOUT};
use jail::broker::{run_policy, BrokerError, RunOptions};
use jail::policy::{self, RestartPolicy, ShareConfig};

/// Runs the broker for one share on a thread; returns the receiver of its result.
fn serve(dir: &Path, restart: RestartPolicy) -> mpsc::Receiver<Result<(), BrokerError>> {
    let mut share = ShareConfig::new("s", dir.join("s"), dir.join("s.sock"));
    share.restart = restart;
    let mut policy = policy::single_share(share);
    policy.broker.runtime_dir = dir.join("run");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let opts = RunOptions {
            exit_when_all_done: true,
            exe: Some(FSJAIL.into()),
            listener: None,
        };
        let _ = tx.send(run_policy(policy, opts));
    });
    rx
}

/// The `fsjail worker` children of this process.
fn workers() -> Vec<i32> {
    children_of(std::process::id() as i32)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"worker"))
        })
        .collect()
}

fn one_worker() -> i32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let [pid] = workers()[..] {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_mode() {
    // A worker that fails with restart = "never" ends the broker with the failure.
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("s")).unwrap();
    let done = serve(&dir.path(), RestartPolicy::Never);
    wait_path(&dir.path().join("s.sock"), true);
    let pid = one_worker();
    // SAFETY: kill(2) on the worker the broker started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    match done.recv_timeout(TIMEOUT).unwrap() {
        Err(BrokerError::WorkerFailed { tag, how }) => {
            assert_eq!(tag, "s");
            assert_eq!(how, "killed by SIGKILL");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !dir.path().join("s.sock").exists(),
        "the socket outlived the broker"
    );

    // A frontend that disconnects ends its share, and the broker returns Ok.
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("s")).unwrap();
    std::fs::write(dir.path().join("s/hello.txt"), b"hello\n").unwrap();
    let done = serve(&dir.path(), RestartPolicy::OnFailure);
    wait_path(&dir.path().join("s.sock"), true);
    let pid = one_worker();
    assert_eq!(
        guest_reads(&dir.path().join("s.sock"), "hello.txt"),
        b"hello\n"
    );
    done.recv_timeout(TIMEOUT).unwrap().unwrap();
    wait_dead(pid);
    assert!(!dir.path().join("s.sock").exists());
}
