//! Live migration's device state, end to end through our own vhost-user frontend: two jailed
//! `fsjail serve` workers (seccomp kill) on the same directory. The source's guest holds a file
//! open mid-read, a directory handle mid-listing and a file written without fsync; its state is
//! saved (SET_DEVICE_STATE_FD SAVE, CHECK_DEVICE_STATE) and loaded into the destination, where
//! the same node ids and handles finish the read with the right bytes, list the rest, fsync,
//! and the host sees the data. A file deleted on the host in between follows
//! `--migration-on-error`; a hostile stream fails CHECK_DEVICE_STATE and changes nothing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{Backend, Config, Kind};
use guest_driver::abi::ROOT_ID;
use guest_driver::{Session, VhostUserProtocolFeatures};

const RDONLY: u32 = libc::O_RDONLY as u32;
const RDWR: u32 = libc::O_RDWR as u32;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn start_on(share: &Path, on_error: &str) -> Backend {
    Backend::start(
        Kind::Fsjail,
        &Config {
            share_dir: Some(share.to_owned()),
            fsjail_args: vec!["--migration-on-error".into(), on_error.into()],
            ..Config::default()
        },
    )
}

/// What the source's guest holds when it is migrated.
struct Held {
    dir: u64,
    dir_fh: u64,
    listed: Vec<String>,
    next_off: u64,
    big: u64,
    big_fh: u64,
    new: u64,
    new_fh: u64,
    gone: u64,
    gone_fh: u64,
}

fn populate(share: &Path) -> BTreeSet<String> {
    fs::create_dir(share.join("dir")).unwrap();
    let mut names = BTreeSet::new();
    for i in 0..40 {
        let name = format!("entry-{i:02}-{}", "x".repeat(40));
        fs::write(share.join("dir").join(&name), b"e").unwrap();
        names.insert(name);
    }
    fs::write(share.join("big"), pattern(256 << 10)).unwrap();
    fs::write(share.join("gone"), b"about to vanish").unwrap();
    names
}

/// The source's guest: a read stopped at 64 KiB, a listing stopped after one small buffer, a
/// write without fsync, and an open file that the host will delete.
fn hold(s: &Session) -> Held {
    let dir = s.lookup(ROOT_ID, "dir").unwrap().nodeid;
    let dir_fh = s.opendir(dir, RDONLY).unwrap().fh;
    let first = s.readdirplus(dir, dir_fh, 0, 1024).unwrap();
    assert!(!first.is_empty() && first.len() < 40, "{}", first.len());
    let listed: Vec<String> = first
        .iter()
        .map(|e| String::from_utf8_lossy(&e.dirent.name).into_owned())
        .collect();
    let next_off = first.last().unwrap().dirent.off;

    let big = s.lookup(ROOT_ID, "big").unwrap().nodeid;
    let big_fh = s.open(big, RDONLY).unwrap().fh;
    assert_eq!(
        s.read(big, big_fh, 0, 65536).unwrap(),
        pattern(256 << 10)[..65536]
    );

    let (e, o) = s.create(ROOT_ID, "new", 0o644, RDWR, 0).unwrap();
    s.write(e.nodeid, o.fh, 0, b"written before the migration|")
        .unwrap();

    let gone = s.lookup(ROOT_ID, "gone").unwrap().nodeid;
    let gone_fh = s.open(gone, RDONLY).unwrap().fh;
    Held {
        dir,
        dir_fh,
        listed,
        next_off,
        big,
        big_fh,
        new: e.nodeid,
        new_fh: o.fh,
        gone,
        gone_fh,
    }
}

/// Saves the source's state after its guest reached `hold`.
fn migrate_out(src: &Backend) -> (Session, Held, Vec<u8>) {
    let s = src.session();
    assert!(s
        .device()
        .acked_protocol_features()
        .contains(VhostUserProtocolFeatures::DEVICE_STATE));
    let held = hold(&s);
    let state = s.device().save_state().unwrap();
    assert!(
        state.starts_with(b"FSJAILMS"),
        "{:?}",
        &state[..8.min(state.len())]
    );
    (s, held, state)
}

/// The destination's guest: the same ids, no INIT.
fn adopt(dst: &Backend, src_session: &Session) -> Session {
    let s = dst.connect(dst.options());
    s.adopt_init(src_session.init_out().unwrap());
    s
}

/// Everything but the vanished file works on the destination with the source's ids.
fn finish(s: &Session, h: &Held, names: &BTreeSet<String>, share: &Path) {
    // The read continues with the right bytes.
    let want = pattern(256 << 10);
    let mut off = 65536;
    while off < want.len() {
        let got = s.read(h.big, h.big_fh, off as u64, 65536).unwrap();
        assert_eq!(got, want[off..off + got.len()], "bytes at {off}");
        assert!(!got.is_empty());
        off += got.len();
    }
    s.release(h.big, h.big_fh, 0, 0, 0).unwrap();

    // The listing continues where it stopped and ends with every name seen once.
    let mut seen: Vec<String> = h.listed.clone();
    let mut next = h.next_off;
    loop {
        let more = s.readdirplus(h.dir, h.dir_fh, next, 4096).unwrap();
        if more.is_empty() {
            break;
        }
        next = more.last().unwrap().dirent.off;
        seen.extend(
            more.iter()
                .map(|e| String::from_utf8_lossy(&e.dirent.name).into_owned()),
        );
    }
    let set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(set.len(), seen.len(), "a name listed twice: {seen:?}");
    assert_eq!(&set, names);
    s.releasedir(h.dir, h.dir_fh, 0).unwrap();

    // The unsynced file: more data, fsync, and the host has all of it.
    s.write(h.new, h.new_fh, 29, b"and after").unwrap();
    s.fsync(h.new, h.new_fh, false).unwrap();
    s.release(h.new, h.new_fh, 0, 0, 0).unwrap();
    assert_eq!(
        fs::read(share.join("new")).unwrap(),
        b"written before the migration|and after"
    );
    // New lookups get ids that do not collide with the migrated ones.
    let again = s.lookup(ROOT_ID, "big").unwrap();
    assert_eq!(again.nodeid, h.big, "the same file keeps its id");
    fs::write(share.join("later"), b"l").unwrap();
    let later = s.lookup(ROOT_ID, "later").unwrap().nodeid;
    for id in [h.dir, h.big, h.new, h.gone, ROOT_ID] {
        assert_ne!(later, id);
    }
}

#[test]
fn open_files_and_listing_survive_with_guest_error_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    let names = populate(&share);

    let src = start_on(&share, "guest-error");
    let (src_session, held, state) = migrate_out(&src);

    // Deleted on the host while the migration runs.
    fs::remove_file(share.join("gone")).unwrap();

    let dst = start_on(&share, "guest-error");
    let s = adopt(&dst, &src_session);
    s.device().load_state(&state).unwrap();
    drop(src_session);
    drop(src);

    finish(&s, &held, &names, &share);
    // The vanished file answers EIO on its handle and node; releasing and forgetting work.
    assert_eq!(
        s.read(held.gone, held.gone_fh, 0, 16).unwrap_err().errno(),
        Some(libc::EIO)
    );
    assert_eq!(
        s.getattr(held.gone, None).unwrap_err().errno(),
        Some(libc::EIO)
    );
    s.release(held.gone, held.gone_fh, 0, 0, 0).unwrap();
    s.forget(held.gone, 1).unwrap();
    // The destination still serves.
    s.getattr(ROOT_ID, None).unwrap();
}

#[test]
fn vanished_file_aborts_with_abort_policy_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    let names = populate(&share);

    let src = start_on(&share, "abort");
    let (src_session, held, state) = migrate_out(&src);
    fs::remove_file(share.join("gone")).unwrap();
    let before = listing(&share);

    let dst = start_on(&share, "abort");
    let s = adopt(&dst, &src_session);
    let e = s.device().load_state(&state).unwrap_err();
    assert!(e.to_string().contains("vhost"), "{e}");
    // The worker names the file (its log reaches us through the broker, line by line).
    let t = std::time::Instant::now();
    while !dst.log().contains("gone") {
        assert!(t.elapsed().as_secs() < 10, "{}", dst.log());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Nothing on the host changed, and the destination is still a fresh device: the guest's
    // ids mean nothing there.
    assert_eq!(listing(&share), before);
    assert_eq!(
        s.getattr(held.big, None).unwrap_err().errno(),
        Some(libc::EIO),
        "not initialised"
    );

    // The migration was aborted: the source carries on with everything it had, the deleted
    // file included (its handle still reads the old content).
    let s_src = src_session;
    assert_eq!(
        s_src.read(held.big, held.big_fh, 65536, 16).unwrap(),
        pattern(256 << 10)[65536..65536 + 16]
    );
    assert_eq!(
        s_src.read(held.gone, held.gone_fh, 0, 64).unwrap(),
        b"about to vanish"
    );
    // A file of the same name made later is another file: the next attempt still fails, until
    // the guest lets go of the deleted one.
    fs::write(share.join("gone"), b"back again").unwrap();
    let state = s_src.device().save_state().unwrap();
    drop(s);
    drop(dst);
    let dst = start_on(&share, "abort");
    let s = adopt(&dst, &s_src);
    assert!(s.device().load_state(&state).is_err());
    s_src.release(held.gone, held.gone_fh, 0, 0, 0).unwrap();
    s_src.forget(held.gone, 1).unwrap();
    // FORGET goes over the hiprio queue without a reply: save until the state shows it.
    let t = std::time::Instant::now();
    let state = loop {
        let state = s_src.device().save_state().unwrap();
        let decoded = devices::migration::DeviceState::decode(&state).unwrap();
        if decoded.nodes.iter().all(|n| n.id != held.gone) {
            assert!(decoded.handles.iter().all(|h| h.fh != held.gone_fh));
            break state;
        }
        assert!(
            t.elapsed().as_secs() < 10,
            "FORGET never reached the source"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    drop(s);
    drop(dst);
    let dst = start_on(&share, "abort");
    let s = adopt(&dst, &s_src);
    s.device().load_state(&state).unwrap();
    drop(s_src);
    drop(src);
    finish(&s, &held, &names, &share);
}

#[test]
fn hostile_streams_fail_check_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    let names = populate(&share);
    let src = start_on(&share, "abort");
    let (src_session, held, state) = migrate_out(&src);
    let before = listing(&share);

    let mut dst = start_on(&share, "guest-error");
    let s = adopt(&dst, &src_session);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"not a state at all".to_vec()),
        ("truncated", state[..state.len() / 2].to_vec()),
        ("trailing", [state.clone(), vec![0]].concat()),
    ];
    // A path that climbs out of the share, with a valid checksum: refused by the checks.
    let mut escape = state.clone();
    if let Some(at) = escape.windows(3).position(|w| w == b"big") {
        escape[at..at + 3].copy_from_slice(b"../");
        devices::migration::DeviceState::reseal(&mut escape);
        cases.push(("path escape", escape));
    }
    // A huge count.
    let mut huge = state.clone();
    huge[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
    devices::migration::DeviceState::reseal(&mut huge);
    cases.push(("huge node count", huge));
    for (what, bytes) in cases {
        assert!(s.device().load_state(&bytes).is_err(), "{what}: loaded");
        dst.assert_alive();
        assert_eq!(listing(&share), before, "{what}: the share changed");
    }
    // Still a fresh device after all that: the good state loads.
    s.device().load_state(&state).unwrap();
    drop(src_session);
    drop(src);
    finish(&s, &held, &names, &share);
}

/// Names, sizes and modes of everything in the share.
fn listing(dir: &Path) -> Vec<(String, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in walk(dir) {
        let m = fs::symlink_metadata(&e).unwrap();
        out.push((
            e.strip_prefix(dir).unwrap().display().to_string(),
            m.len(),
            m.mode(),
        ));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
