//! Faults on the host side, each checked for the errno the guest gets, liveness (the worker
//! keeps serving: the attack catalogue's probe read) and no loss (what the guest had fsynced
//! is intact; the sentinel beside the share is untouched):
//!
//! - a share holding a small tmpfs that fills up: WRITE and FALLOCATE get ENOSPC;
//! - a share holding a FUSE filesystem of the tests' own (`faults/faultfs.rs`) that fails
//!   chosen calls: the guest gets that errno for exactly those calls, and a write-back failure
//!   (ENOSPC when the host kernel flushes cached data) is reported by FSYNC;
//! - a filesystem in the share remounted read-only under the running worker: EROFS, reads
//!   still served, writable again after a remount;
//! - the share directory removed on the host: ENOENT, the worker keeps running, and the broker
//!   logs once and starts no worker until the directory is back (no crash loop).
//!
//! Needs root (mounts) and /dev/fuse; fails loudly without them.

#[path = "attacks/mod.rs"]
mod attacks;
#[path = "broker_support/mod.rs"]
mod broker_support;
mod common;
#[path = "faults/faultfs.rs"]
mod faultfs;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use attacks::{errno_of, Arena};
use common::Config;
use guest_driver::abi::ROOT_ID;
use guest_driver::{Session, Setattr};

const RDWR: u32 = libc::O_RDWR as u32;
const REG: u32 = libc::S_IFREG | 0o644;

/// CREATE + WRITE + FSYNC + RELEASE of `name` in `dir`; its nodeid.
fn write_synced(s: &Session, dir: u64, name: &str, data: &[u8]) -> u64 {
    let (e, o) = s.create(dir, name, REG, RDWR, 0).unwrap();
    let mut off = 0;
    for chunk in data.chunks(64 * 1024) {
        assert_eq!(
            s.write(e.nodeid, o.fh, off, chunk).unwrap() as usize,
            chunk.len()
        );
        off += chunk.len() as u64;
    }
    s.fsync(e.nodeid, o.fh, false).unwrap();
    s.release(e.nodeid, o.fh, RDWR, 0, 0).unwrap();
    e.nodeid
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

#[track_caller]
fn assert_file(path: &Path, want: &[u8]) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        got == want,
        "{}: {} bytes, want {} (contents differ)",
        path.display(),
        got.len(),
        want.len()
    );
}

#[test]
fn full_tmpfs_gives_enospc_and_keeps_what_was_synced() {
    let mut a = Arena::new(&Config {
        tmpfs_at: Some("small"),
        tmpfs_options: Some("size=1m"),
        ..Config::default()
    });
    assert!(a.b.has_tmpfs(), "could not mount the small tmpfs");
    let small = a.lookup("small");
    let kept = pattern(1, 200 * 1024);
    write_synced(&a.s, small, "kept", &kept);

    // Fill it: writes succeed (perhaps short) until one gets ENOSPC.
    let (e, o) = a.s.create(small, "filler", REG, RDWR, 0).unwrap();
    let chunk = pattern(2, 128 * 1024);
    let mut off = 0u64;
    let errno = loop {
        match a.s.write(e.nodeid, o.fh, off, &chunk) {
            Ok(n) => {
                assert!(n > 0, "a zero-byte write");
                off += u64::from(n);
                assert!(off < 4 << 20, "wrote {off} bytes into a 1 MiB tmpfs");
            }
            Err(err) => break err.errno().unwrap_or_else(|| panic!("WRITE: {err}")),
        }
    };
    assert_eq!(errno, libc::ENOSPC, "WRITE on a full filesystem");
    assert_eq!(
        errno_of(a.s.fallocate(e.nodeid, o.fh, off, 1 << 20, 0), "FALLOCATE"),
        libc::ENOSPC
    );
    // tmpfs reports ENOSPC at write time and has nothing left to flush: FSYNC succeeds and
    // what was acknowledged is there (the write-back case is below, with the FUSE fs).
    a.s.fsync(e.nodeid, o.fh, false).unwrap();
    assert_eq!(fs::metadata(a.b.host("small/filler")).unwrap().len(), off);
    assert_file(&a.b.host("small/kept"), &kept);
    a.verify("a full filesystem");

    // Room again (truncated: an unlinked file keeps its blocks while the worker holds the
    // node), and writes work.
    a.s.setattr(e.nodeid, &Setattr::new().size(0)).unwrap();
    a.s.release(e.nodeid, o.fh, RDWR, 0, 0).unwrap();
    write_synced(&a.s, small, "after", b"room again");
    assert_file(&a.b.host("small/after"), b"room again");
    assert_file(&a.b.host("small/kept"), &kept);
}

/// A share whose `faulty/` is a FaultFs over `backing/`, both in one temporary directory; the
/// arena's sentinel sits beside the share. Fields drop in order: the backend (whose worker
/// uses the FUSE mount) before the mount, the directory last.
struct FaultShare {
    a: Arena,
    m: faultfs::Mounted,
    backing: std::path::PathBuf,
    _top: tempfile::TempDir,
}

fn fault_share(writeback: bool) -> FaultShare {
    let top = tempfile::Builder::new()
        .prefix("fsjail-faults.")
        .tempdir()
        .unwrap();
    let share = top.path().join("share");
    let backing = top.path().join("backing");
    fs::create_dir_all(share.join("faulty")).unwrap();
    fs::create_dir(&backing).unwrap();
    let m = faultfs::mount(&backing, &share.join("faulty"), writeback);
    let a = Arena::new(&Config {
        share_dir: Some(share),
        ..Config::default()
    });
    FaultShare {
        a,
        m,
        backing,
        _top: top,
    }
}

#[test]
fn failing_disk_gives_eio_for_exactly_the_failing_calls() {
    let mut f = fault_share(false);
    let s = &f.a.s;
    let dir = f.a.lookup("faulty");
    let good = pattern(3, 100 * 1024);
    let node = write_synced(s, dir, "good", &good);
    let wfh = s.open(node, RDWR).unwrap().fh;

    // Each fault alone: that call gets EIO, its neighbours still work.
    let faults = f.m.faults.clone();
    faults.fail("write", libc::EIO);
    assert_eq!(errno_of(s.write(node, wfh, 0, b"lost"), "WRITE"), libc::EIO);
    assert_eq!(s.read(node, wfh, 0, 16).unwrap(), &good[..16]);
    faults.clear();

    faults.fail("read", libc::EIO);
    assert_eq!(errno_of(s.read(node, wfh, 0, 16), "READ"), libc::EIO);
    s.write(node, wfh, 0, &good[..4]).unwrap();
    faults.clear();

    faults.fail("fsync", libc::EIO);
    assert_eq!(errno_of(s.fsync(node, wfh, false), "FSYNC"), libc::EIO);
    faults.clear();
    s.fsync(node, wfh, false).unwrap();

    faults.fail("fallocate", libc::EIO);
    assert_eq!(
        errno_of(s.fallocate(node, wfh, 0, 4096, 0), "FALLOCATE"),
        libc::EIO
    );
    faults.clear();

    faults.fail("create", libc::EIO);
    assert_eq!(
        errno_of(s.create(dir, "new", REG, RDWR, 0), "CREATE"),
        libc::EIO
    );
    s.mkdir(dir, "made", 0o755, 0).unwrap();
    faults.clear();

    faults.fail("mkdir", libc::EIO);
    assert_eq!(
        errno_of(s.mkdir(dir, "made2", 0o755, 0), "MKDIR"),
        libc::EIO
    );
    faults.clear();

    faults.fail("setattr", libc::EIO);
    assert_eq!(
        errno_of(s.setattr(node, &Setattr::new().mode(0o600)), "SETATTR"),
        libc::EIO
    );
    faults.clear();

    faults.fail("unlink", libc::EIO);
    assert_eq!(errno_of(s.unlink(dir, "good"), "UNLINK"), libc::EIO);
    faults.clear();

    // Healthy again: everything works, and nothing acknowledged was lost.
    s.release(node, wfh, RDWR, 0, 0).unwrap();
    write_synced(s, dir, "new", b"after the faults");
    s.setattr(node, &Setattr::new().mode(0o600)).unwrap();
    assert_file(&f.backing.join("good"), &good);
    assert_file(&f.backing.join("new"), b"after the faults");
    assert!(f.backing.join("made").is_dir() && !f.backing.join("made2").exists());
    f.a.verify("a failing disk");
}

#[test]
fn write_back_failure_is_reported_by_fsync() {
    let mut f = fault_share(true);
    let s = &f.a.s;
    let dir = f.a.lookup("faulty");
    let kept = pattern(4, 64 * 1024);
    write_synced(s, dir, "kept", &kept);

    // The host kernel caches the write (write-back); the disk fills up when it flushes.
    let (e, o) = s.create(dir, "late", REG, RDWR, 0).unwrap();
    f.m.faults.fail("write", libc::ENOSPC);
    assert_eq!(s.write(e.nodeid, o.fh, 0, &pattern(5, 8192)).unwrap(), 8192);
    assert_eq!(
        errno_of(s.fsync(e.nodeid, o.fh, false), "FSYNC"),
        libc::ENOSPC
    );
    f.m.faults.clear();
    s.release(e.nodeid, o.fh, RDWR, 0, 0).unwrap();
    assert_file(&f.backing.join("kept"), &kept);
    f.a.verify("a write-back failure");
}

#[test]
fn share_remounted_read_only_gives_erofs_and_still_reads() {
    let mut a = Arena::new(&Config {
        tmpfs_at: Some("vol"),
        ..Config::default()
    });
    assert!(a.b.has_tmpfs(), "could not mount the tmpfs");
    let vol = a.lookup("vol");
    let data = pattern(6, 50 * 1024);
    let node = write_synced(&a.s, vol, "data", &data);

    remount(&a.b.host("vol"), true);
    let s = &a.s;
    assert_eq!(
        errno_of(s.create(vol, "new", REG, RDWR, 0), "CREATE"),
        libc::EROFS
    );
    assert_eq!(errno_of(s.mkdir(vol, "d", 0o755, 0), "MKDIR"), libc::EROFS);
    assert_eq!(errno_of(s.open(node, RDWR), "OPEN rw"), libc::EROFS);
    assert_eq!(
        errno_of(s.setattr(node, &Setattr::new().mode(0o600)), "SETATTR"),
        libc::EROFS
    );
    assert_eq!(errno_of(s.unlink(vol, "data"), "UNLINK"), libc::EROFS);
    let o = s.open(node, libc::O_RDONLY as u32).unwrap();
    assert_eq!(s.read(node, o.fh, 0, 50 * 1024).unwrap(), data);
    s.release(node, o.fh, libc::O_RDONLY as u32, 0, 0).unwrap();
    a.verify("a read-only remount");

    remount(&a.b.host("vol"), false);
    write_synced(&a.s, vol, "new", b"writable again");
    assert_file(&a.b.host("vol/new"), b"writable again");
    assert_file(&a.b.host("vol/data"), &data);
}

/// `mount -o remount,ro|rw`: the superblock's flag, so the worker's view changes too.
fn remount(at: &Path, readonly: bool) {
    let c = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).unwrap();
    let flags = libc::MS_REMOUNT | if readonly { libc::MS_RDONLY } else { 0 };
    // SAFETY: a NUL-terminated path; no source, type or data.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "remount {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn share_removed_on_the_host() {
    use broker_support::{Broker, Dir};
    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["gone"], ""));
    let mut broker = Broker::start(&dir);
    let worker = broker.wait_worker("gone", 1);
    let dev = std::sync::Arc::new(guest_driver::Device::connect(dir.socket("gone")).unwrap());
    let s = Session::new(dev);
    s.init().unwrap();
    let hello = s.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;

    fs::remove_dir_all(dir.path().join("gone")).unwrap();
    assert_eq!(
        errno_of(s.lookup(ROOT_ID, "hello.txt"), "LOOKUP"),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(s.create(ROOT_ID, "new", REG, RDWR, 0), "CREATE"),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(s.mkdir(ROOT_ID, "d", 0o755, 0), "MKDIR"),
        libc::ENOENT
    );
    // What the guest still holds answers for itself: the root and a file, both unlinked.
    assert_eq!(s.getattr(ROOT_ID, None).unwrap().attr.nlink, 0);
    assert_eq!(s.getattr(hello, None).unwrap().attr.nlink, 0);
    assert!(broker_support::alive(worker), "the worker died");

    // The frontend goes; the broker would start a fresh worker, but the share is gone: it says
    // so once and waits, instead of failing five times and giving up.
    drop(s);
    broker.wait_log("is gone");
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = broker.log();
    assert_eq!(log.matches("is gone").count(), 1, "{log}");
    assert_eq!(broker.workers("gone").len(), 1, "{log}");
    assert!(!log.contains("restarting in"), "{log}");
    assert!(broker_support::alive(broker.pid), "the broker died:\n{log}");

    // Back, and a reload revives it.
    fs::create_dir(dir.path().join("gone")).unwrap();
    fs::write(dir.path().join("gone/hello.txt"), b"back\n").unwrap();
    broker.signal(libc::SIGHUP);
    broker.wait_worker("gone", 2);
    assert_eq!(
        broker_support::guest_reads(&dir.socket("gone"), "hello.txt"),
        b"back\n"
    );
}
