//! Submounts: a share holding another host filesystem (a tmpfs mounted inside it before the
//! backend starts). With `--announce-submounts` the directory that is the mount point carries
//! FUSE_ATTR_SUBMOUNT in LOOKUP and READDIRPLUS, so a Linux guest mounts it separately with its
//! own st_dev; without it, nothing is marked (the guest sees one filesystem). Either way the
//! jailed worker sees the mount (its jail binds the share recursively) and keeps it read-only
//! when the share is.
//!
//! Needs root (the tmpfs); it fails rather than skips without it.

mod common;

use std::fs;

use common::{Backend, Config, Kind};
use guest_driver::abi::{init_flags, ROOT_ID};

const ATTR_SUBMOUNT: u32 = 1;

fn start(announce: bool, readonly: bool) -> Backend {
    let mut cfg = Config {
        tmpfs_at: Some("vol"),
        readonly,
        ..Config::default()
    };
    if announce {
        cfg.fsjail_args.push("--announce-submounts".into());
    }
    let b = Backend::start(Kind::Fsjail, &cfg);
    assert!(
        b.has_tmpfs(),
        "this test needs root to mount a tmpfs inside the share"
    );
    b
}

/// The backend's share with a plain directory beside the mount and a file in each.
fn populate(b: &Backend) {
    fs::create_dir(b.host("dir")).unwrap();
    fs::write(b.host("dir/a"), b"on the share").unwrap();
    fs::write(b.host("vol/b"), b"on the tmpfs").unwrap();
}

#[test]
fn announced_submount_is_marked() {
    let b = start(true, false);
    populate(&b);
    let s = b.session();
    assert_ne!(
        s.granted_flags() & init_flags::SUBMOUNTS,
        0,
        "FUSE_SUBMOUNTS granted in INIT"
    );

    let vol = s.lookup(ROOT_ID, "vol").unwrap();
    assert_eq!(vol.attr.flags & ATTR_SUBMOUNT, ATTR_SUBMOUNT, "the tmpfs");
    let dir = s.lookup(ROOT_ID, "dir").unwrap();
    assert_eq!(dir.attr.flags & ATTR_SUBMOUNT, 0, "a plain directory");
    // Files are never submounts, on either side of the mount point.
    let a = s.lookup(dir.nodeid, "a").unwrap();
    let inner = s.lookup(vol.nodeid, "b").unwrap();
    assert_eq!(a.attr.flags | inner.attr.flags, 0);

    // The mount's content is what the host put there: the jail saw the mount.
    let o = s.open(inner.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(s.read(inner.nodeid, o.fh, 0, 64).unwrap(), b"on the tmpfs");
    s.release(inner.nodeid, o.fh, 0, 0, 0).unwrap();

    // READDIRPLUS marks the same directory and only it.
    let d = s.opendir(ROOT_ID, libc::O_RDONLY as u32).unwrap();
    let entries = s.readdirplus(ROOT_ID, d.fh, 0, 16384).unwrap();
    s.releasedir(ROOT_ID, d.fh, 0).unwrap();
    let mut seen = Vec::new();
    for e in &entries {
        let name = String::from_utf8_lossy(&e.dirent.name).into_owned();
        let marked = e.entry.attr.flags & ATTR_SUBMOUNT != 0;
        assert_eq!(marked, name == "vol", "{name}: marked {marked}");
        seen.push(name);
    }
    assert!(
        seen.iter().any(|n| n == "vol") && seen.iter().any(|n| n == "dir"),
        "{seen:?}"
    );

    // Inside the tmpfs nothing is marked again (same device as its root).
    fs::create_dir(b.host("vol/sub")).unwrap();
    let sub = s.lookup(vol.nodeid, "sub").unwrap();
    assert_eq!(sub.attr.flags & ATTR_SUBMOUNT, 0);
}

#[test]
fn guest_without_submounts_gets_no_mark() {
    // The guest does not offer FUSE_SUBMOUNTS: the flag must not appear in attributes.
    let b = start(true, false);
    populate(&b);
    let s = b.connect(b.options());
    let o = guest_driver::InitOptions {
        flags: guest_driver::InitOptions::default().flags & !init_flags::SUBMOUNTS,
        ..Default::default()
    };
    s.init_with(o).unwrap();
    assert_eq!(s.granted_flags() & init_flags::SUBMOUNTS, 0);
    assert_eq!(s.lookup(ROOT_ID, "vol").unwrap().attr.flags, 0);
}

#[test]
fn without_the_option_nothing_is_announced() {
    let b = start(false, false);
    populate(&b);
    let s = b.session();
    assert_eq!(s.granted_flags() & init_flags::SUBMOUNTS, 0);
    let vol = s.lookup(ROOT_ID, "vol").unwrap();
    assert_eq!(vol.attr.flags, 0);
    // Still served: the guest just sees one filesystem.
    let inner = s.lookup(vol.nodeid, "b").unwrap();
    assert_eq!(inner.attr.size, 12);
}

#[test]
fn readonly_share_keeps_its_submounts_readonly() {
    let b = start(true, true);
    populate(&b);
    let s = b.session();
    let vol = s.lookup(ROOT_ID, "vol").unwrap();
    assert_eq!(vol.attr.flags & ATTR_SUBMOUNT, ATTR_SUBMOUNT);

    // The worker's own mount table: the tmpfs at "/vol", and every mount the worker can see,
    // read-only (the jail binds the share recursively and sets ro on every mount under it).
    // The share itself is at "/" only when it is a mount root: otherwise the jail binds its
    // parent (so Landlock judges a directory moved out of the share by the parent), and that
    // mount lies outside the worker's root.
    let mountinfo = fs::read_to_string(format!("/proc/{}/mountinfo", b.server_pid())).unwrap();
    let mut points = Vec::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let opts: Vec<&str> = f[5].split(',').collect();
        assert!(
            opts.contains(&"ro") && opts.contains(&"nosuid") && opts.contains(&"nodev"),
            "{mountinfo}"
        );
        points.push(f[4].to_owned());
    }
    points.sort();
    points.retain(|p| p != "/");
    assert_eq!(points, ["/vol"], "{mountinfo}");
    // And the policy answers EROFS inside the submount too.
    match s.mkdir(vol.nodeid, "x", 0o755, 0) {
        Err(guest_driver::Error::Errno(e)) => assert_eq!(e, libc::EROFS),
        other => panic!("mkdir in a read-only submount: {other:?}"),
    }
    assert!(!b.host("vol/x").exists());
}
