//! A live migration's device state as a destination reads it (`DeviceState::decode`), then
//! loaded into a real tracking filesystem over a PassthroughFs on a temporary directory.
//!
//! Invariants: no panic; an accepted stream re-encodes to the same bytes (one encoding per
//! state, so nothing in it was skipped unchecked); loading it (with either error policy) only
//! looks up and opens: the directory's entries are unchanged afterwards, and a failed abort-
//! policy load leaves nothing held.

#![no_main]

use std::sync::{Arc, OnceLock};

use devices::fs::{new_passthrough, ShareOptions};
use devices::migration::{DeviceState, MigrationOnError, Tracked};
use fuse_backend_rs::api::filesystem::{FileSystem, FsOptions};
use libfuzzer_sys::fuzz_target;

/// A small tree the paths in a state may name: a directory, files, a symlink out of it.
fn share() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("d")).unwrap();
        std::fs::write(d.path().join("f"), b"f").unwrap();
        std::fs::write(d.path().join("d/g"), b"g").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("up")).unwrap();
        d
    })
    .path()
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(walk(&p));
        }
        out.push(format!("{} {}", p.display(), m.len()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with a correct checksum, so mutations get past it to the field checks
    // and the loader instead of stopping there.
    let mut sealed = data.to_vec();
    DeviceState::reseal(&mut sealed);
    if sealed != data {
        check(&sealed);
    }
});

fn check(data: &[u8]) {
    let Ok(state) = DeviceState::decode(data) else {
        return;
    };
    assert_eq!(state.encode().expect("a decoded state encodes"), data);
    let dir = share();
    let before = entries(dir);
    for policy in [MigrationOnError::Abort, MigrationOnError::GuestError] {
        let fs = Arc::new(new_passthrough(&ShareOptions::new(dir)).expect("passthrough"));
        fs.init(FsOptions::empty()).expect("init");
        let t = Tracked::new(fs, policy);
        let r = t.restore(&state.nodes, &state.handles, state.next_node, state.next_handle);
        if r.is_err() {
            assert_eq!(policy, MigrationOnError::Abort, "guest-error loads always: {r:?}");
            assert_eq!(t.known(), (0, 0), "a failed load holds nothing");
        }
        assert_eq!(entries(dir), before, "loading changed the share");
    }
}
