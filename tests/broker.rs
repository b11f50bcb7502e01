//! The broker (`fsjail run`) with real processes: real jailed workers, real sockets, real
//! signals, a real guest (guest-driver) to prove a worker serves.

mod broker_support;
#[path = "common/skip.rs"]
mod skip;

use std::fs;
use std::os::unix::fs::FileTypeExt;

use broker_support::{alive, guest_reads, wait_dead, wait_path, Broker, Dir};

#[test]
fn sigkill_of_a_worker_restarts_it_and_a_new_frontend_is_served() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let first = broker.wait_worker("a", 1);
    assert_eq!(broker.children(), vec![first]);

    // SAFETY: kill(2) on the worker the broker started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = broker.wait_worker("a", 2);
    assert_ne!(first, second);
    let log = broker.log();
    assert!(
        log.contains(&format!(
            "share \"a\" [{first}]: worker failed: killed by SIGKILL"
        )),
        "{log}"
    );
    assert!(log.contains("share \"a\": restarting in 100 ms"), "{log}");
    assert!(!alive(first));

    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
}

#[test]
fn sigterm_stops_every_worker_removes_the_sockets_and_exits_0() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a", "b"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    let b = broker.wait_worker("b", 1);
    assert!(fs::symlink_metadata(dir.socket("a"))
        .unwrap()
        .file_type()
        .is_socket());

    broker.signal(libc::SIGTERM);
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", broker.log());
    assert!(!alive(a) && !alive(b));
    assert!(!dir.socket("a").exists() && !dir.socket("b").exists());
    let log = broker.log();
    assert!(log.contains("SIGTERM: stopping 2 workers"), "{log}");
    assert!(log.contains("all workers stopped"), "{log}");
}

#[test]
fn sigint_does_the_same() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    broker.signal(libc::SIGINT);
    assert_eq!(broker.wait_exit().code(), Some(0));
    assert!(!alive(a));
    assert!(!dir.socket("a").exists());
}

#[test]
fn every_worker_dies_with_the_broker() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a", "b"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    let b = broker.wait_worker("b", 1);
    broker.signal(libc::SIGKILL);
    broker.wait_exit();
    wait_dead(a);
    wait_dead(b);
}

#[test]
fn a_frontend_that_disconnects_is_replaced_by_a_fresh_worker() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], "restart = \"never\"\n"));
    let mut broker = Broker::start(&dir);
    let first = broker.wait_worker("a", 1);
    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
    // The guest is gone (dropped): the worker exits 0 and, even with restart = "never" (which
    // is about failures), a fresh one takes over the socket for the next frontend.
    let second = broker.wait_worker("a", 2);
    assert_ne!(first, second);
    let log = broker.log();
    assert!(
        log.contains(&format!(
            "share \"a\" [{first}]: worker exited with status 0"
        )),
        "{log}"
    );
    assert!(
        log.contains("share \"a\": frontend disconnected; a fresh worker takes over"),
        "{log}"
    );
    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
}

#[test]
fn restart_never_leaves_a_crashed_share_down() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], "restart = \"never\"\n"));
    let mut broker = Broker::start(&dir);
    let first = broker.wait_worker("a", 1);
    // SAFETY: kill(2) on the worker the broker started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    broker.wait_log("share \"a\": killed by SIGKILL; restart = \"never\": the share stays down");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(broker.workers("a"), vec![first]);
    assert!(broker.children().is_empty());
}

#[test]
fn five_failures_in_a_minute_give_up() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let first = broker.wait_worker("a", 1);
    // Every restart now fails: the share's directory is a file now. (A share that is gone
    // altogether is not retried at all: see tests/faults.rs.)
    fs::remove_dir_all(dir.path().join("a")).unwrap();
    fs::write(dir.path().join("a"), b"not a directory").unwrap();
    // SAFETY: kill(2) on the worker the broker started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    broker.wait_log("5 failures within 60 s: giving up, the share stays down");
    let log = broker.log();
    for delay in ["100 ms", "200 ms", "400 ms", "800 ms"] {
        assert!(
            log.contains(&format!("share \"a\": restarting in {delay}")),
            "{log}"
        );
    }
    // The broker itself keeps running (other shares, a later SIGHUP).
    assert!(alive(broker.pid));
}

#[test]
fn sighup_adds_and_removes_shares_and_leaves_the_others_alone() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a", "b"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    let b = broker.wait_worker("b", 1);

    dir.write_policy(&dir.shares_policy(&["a", "c"], ""));
    broker.signal(libc::SIGHUP);
    let c = broker.wait_worker("c", 1);
    wait_dead(b);
    wait_path(&dir.socket("b"), false);
    assert!(alive(a), "an unchanged share was touched");
    assert_eq!(broker.workers("a"), vec![a]);
    let mut children = broker.children();
    children.sort();
    let mut want = vec![a, c];
    want.sort();
    assert_eq!(children, want);
    assert_eq!(
        guest_reads(&dir.socket("c"), "hello.txt"),
        b"hello from c\n"
    );
}

#[test]
fn sighup_restarts_a_changed_share_with_its_new_settings() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let first = broker.wait_worker("a", 1);
    dir.write_policy(&dir.shares_policy(&["a"], "readonly = true\n"));
    broker.signal(libc::SIGHUP);
    let second = broker.wait_worker("a", 2);
    assert_ne!(first, second);
    wait_dead(first);
    broker.wait_log("share \"a\": settings changed; restarting it");
    assert_eq!(
        guest_reads(&dir.socket("a"), "hello.txt"),
        b"hello from a\n"
    );
}

#[test]
fn sighup_with_an_invalid_policy_changes_nothing() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    fs::write(dir.policy(), "[[share]]\ntag = \"a\"\npath = \"/nope\"\n").unwrap();
    broker.signal(libc::SIGHUP);
    broker.wait_log("SIGHUP: the policy was not reloaded; the running shares are unchanged");
    assert!(broker
        .log()
        .contains("policy.toml:3: share \"a\": path \"/nope\" does not exist"));
    assert!(alive(a));
    assert_eq!(broker.workers("a"), vec![a]);
}

#[test]
fn a_live_socket_of_someone_else_is_not_taken_over() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let _other = std::os::unix::net::UnixListener::bind(dir.socket("a")).unwrap();
    let mut broker = Broker::start(&dir);
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = broker.log();
    assert!(
        log.contains(&format!(
            "share \"a\": socket {:?}: a process is listening on it (another broker?)",
            dir.socket("a")
        )),
        "{log}"
    );
    assert!(
        dir.socket("a").exists(),
        "someone else's socket was removed"
    );
}

#[test]
fn a_share_that_cannot_start_stops_the_ones_already_started() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a", "b"], ""));
    // b's socket passes the policy check (it is a socket) but is live: binding it fails
    // after a has started.
    let _other = std::os::unix::net::UnixListener::bind(dir.socket("b")).unwrap();
    let mut broker = Broker::start(&dir);
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", broker.log());
    let a = broker.workers("a");
    assert_eq!(a.len(), 1, "{}", broker.log());
    assert!(!alive(a[0]), "a's worker outlived the failed start");
    assert!(!dir.socket("a").exists(), "a's socket was left behind");
    assert!(
        dir.socket("b").exists(),
        "someone else's socket was removed"
    );
}

#[test]
fn the_example_directory_is_created_when_missing() {
    let dir = Dir::new();
    dir.write_policy(
        "[broker]\nruntime_dir = \"$D/run\"\n[[share]]\ntag = \"new\"\npath = \"new\"\ncreate = true\n",
    );
    let mut broker = Broker::start(&dir);
    broker.wait_worker("new", 1);
    let meta = fs::metadata(dir.path().join("new")).unwrap();
    assert!(meta.is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    // The default socket lives in the runtime directory, created private.
    assert!(dir.path().join("run/new.sock").exists());
    assert_eq!(
        fs::metadata(dir.path().join("run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn worker_stderr_is_logged_with_the_tag_and_pid() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    // The worker's own log lines arrive through its pipe, prefixed by the broker.
    let prefix = format!("share \"a\" [{a}]: ");
    let log = broker.log();
    assert!(
        log.lines().any(|l| l.contains(&prefix)
            && !l.ends_with("worker started")
            && !l.ends_with("jailed and accepting")),
        "{log}"
    );
}

#[test]
fn an_unprivileged_broker_maps_its_own_uid() {
    const NOBODY: u32 = 65534;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip::skip(
            "the unprivileged broker",
            "needs root to hand the share to uid 65534",
        );
        return;
    }
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a"], ""));
    for entry in walk(&dir.path()) {
        std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let ids = NOBODY.to_string();
    let mut broker =
        Broker::start_with(&dir, &["--reuid", &ids, "--regid", &ids, "--clear-groups"]);
    let a = broker.wait_worker("a", 1);
    let status = fs::read_to_string(format!("/proc/{a}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        field("Uid:"),
        vec![ids.as_str(); 4],
        "the worker runs as the caller's uid on the host"
    );
    assert_eq!(field("Gid:"), vec![ids.as_str(); 4]);
    let map = fs::read_to_string(format!("/proc/{a}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", ids.as_str(), "1"]
    );
    broker.signal(libc::SIGTERM);
    assert_eq!(broker.wait_exit().code(), Some(0), "{}", broker.log());
    assert!(!dir.socket("a").exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Two shares, two workers: each worker's root is its own share, its mount table holds nothing
/// of the other, and its guest cannot name the other share's files.
#[test]
fn two_shares_worker_a_cannot_see_share_b() {
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["a", "b"], ""));
    fs::write(dir.path().join("b/secret-of-b"), b"b only\n").unwrap();
    let mut broker = Broker::start(&dir);
    let a = broker.wait_worker("a", 1);
    let b = broker.wait_worker("b", 1);
    assert_ne!(a, b);
    // Their jails are complete once each reported READY.
    broker.wait_log(&format!("[{a}]: jailed and accepting"));
    broker.wait_log(&format!("[{b}]: jailed and accepting"));

    let root_of = |pid: i32| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(root_of(a), vec!["hello.txt"]);
    assert_eq!(root_of(b), vec!["hello.txt", "secret-of-b"]);

    let b_path = fs::canonicalize(dir.path().join("b")).unwrap();
    let mountinfo = fs::read_to_string(format!("/proc/{a}/mountinfo")).unwrap();
    assert!(
        !mountinfo.contains(b_path.to_str().unwrap()),
        "worker a's mount table names share b:\n{mountinfo}"
    );
    for ns in ["mnt", "pid", "net"] {
        let na = fs::read_link(format!("/proc/{a}/ns/{ns}")).unwrap();
        let nb = fs::read_link(format!("/proc/{b}/ns/{ns}")).unwrap();
        assert_ne!(na, nb, "workers a and b share their {ns} namespace");
    }

    // Through the guest side of a: neither b's file nor a way up to it.
    use guest_driver::{Device, Error, Session};
    let dev = std::sync::Arc::new(Device::connect(dir.socket("a")).unwrap());
    let s = Session::new(dev);
    s.init().unwrap();
    assert!(matches!(
        s.lookup(1, "secret-of-b"),
        Err(Error::Errno(libc::ENOENT))
    ));
    assert!(matches!(s.lookup(1, ".."), Err(Error::Errno(libc::EINVAL))));
    assert_eq!(guest_reads(&dir.socket("b"), "secret-of-b"), b"b only\n");
}
