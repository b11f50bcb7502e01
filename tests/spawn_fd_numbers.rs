//! A broker whose lowest free descriptor is 3 when it spawns a worker: the fsjail binary's
//! descriptor then sits on 3, the number the worker's control socket must take before exec.
//! The child used to overwrite it there and exec the control socket (EACCES); whole-suite runs
//! hit it now and then, when a parallel test had just closed fd 3. This binary holds one test
//! only, so nothing else opens or closes descriptors while it arranges its own.
//!
//! Runs as root (the jail needs it).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use guest_driver::{Device, Session};
use jail::handover;
use jail::policy::ShareConfig;
use jail::spawn::spawn_worker;

#[path = "common/skip.rs"]
mod skip;

#[test]
fn a_worker_spawned_with_descriptor_3_free_still_starts() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip::skip("a jailed worker", "the jail needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello.txt"), "hello\n").unwrap();
    let share = share.canonicalize().unwrap();
    let socket = dir.path().join("vfs.sock");
    let listener: OwnedFd = UnixListener::bind(&socket).unwrap().into();
    let mut cfg = ShareConfig::new("lowfd", share, socket.clone());
    cfg.uid_map = vec![];
    cfg.gid_map = vec![];

    // Free descriptor 3, so that spawn_worker's first open, the binary, lands on it. What
    // held it (likely the listener just bound) moves above 10 and is used from there.
    let listener = free_descriptor_3(listener);
    // SAFETY: F_GETFD takes an integer and touches no memory; on a closed descriptor it
    // fails with EBADF.
    let fd3_flags = unsafe { libc::fcntl(3, libc::F_GETFD) };
    assert!(fd3_flags < 0, "fd 3 is still open");

    let exe = Path::new(env!("CARGO_BIN_EXE_fsjail"));
    let worker = spawn_worker(&cfg, &listener, exe).unwrap();
    drop(listener);

    let mut pfd = libc::pollfd {
        fd: worker.control.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, a live local; the control socket is owned by `worker`.
    let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
    assert_eq!(n, 1, "worker not ready in 20 s");
    handover::recv_ready(worker.control.as_fd())
        .unwrap_or_else(|e| panic!("the worker did not start: {e}"));

    let fs = Session::new(Arc::new(Device::connect(&socket).unwrap()));
    fs.init().unwrap();
    let attr = fs.lookup(1, "hello.txt").unwrap();
    assert_eq!(attr.attr.size, 6);
}

/// Moves whatever sits on descriptor 3 elsewhere and closes 3. `listener` is returned under
/// its new number if it was the one on 3; anything else on 3 (a test harness's) stays open
/// under its new number.
fn free_descriptor_3(listener: OwnedFd) -> OwnedFd {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: F_GETFD takes an integer and touches no memory.
    if unsafe { libc::fcntl(3, libc::F_GETFD) } < 0 {
        return listener;
    }
    // SAFETY: F_DUPFD_CLOEXEC takes integers and touches no memory.
    let moved = unsafe { libc::fcntl(3, libc::F_DUPFD_CLOEXEC, 10) };
    assert!(moved >= 0, "could not move descriptor 3");
    if listener.as_raw_fd() == 3 {
        // The listener's number is closed through `into_raw_fd` + close below, and its copy
        // takes its place.
        let _ = listener.into_raw_fd();
        // SAFETY: closes descriptor 3, whose only owner gave it up just above.
        unsafe { libc::close(3) };
        // SAFETY: `moved` is a fresh descriptor this function just made and nobody else owns.
        return unsafe { OwnedFd::from_raw_fd(moved) };
    }
    // SAFETY: descriptor 3 is not ours (nothing else in this one-test binary should hold
    // it); its open file stays open as `moved`, which is left unclosed.
    unsafe { libc::close(3) };
    listener
}
