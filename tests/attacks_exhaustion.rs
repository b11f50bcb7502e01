//! Attack catalogue, exhaustion: a guest that opens files until the worker's fd
//! budget (`--rlimit-nofile`) is spent gets EMFILE and the worker keeps serving once it lets
//! go; READDIRPLUS through a 100,000-entry directory in small replies is answered in bounded
//! memory (the worker's peak RSS, VmHWM, barely moves).

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::fs;
use std::time::Duration;

use attacks::{assert_no_worker_crash, errno_of, vm_hwm_kib, worker_pid, Arena};
use common::Config;
use guest_driver::abi::ROOT_ID;

const RDONLY: u32 = libc::O_RDONLY as u32;

#[test]
fn opening_files_until_the_fd_budget_is_spent_gives_emfile() {
    let cfg = Config {
        fsjail_args: vec!["--rlimit-nofile".into(), "64".into()],
        ..Config::default()
    };
    let b = Arena::backend(&cfg);
    fs::create_dir(b.host("many")).unwrap();
    for i in 0..200 {
        fs::write(b.host(format!("many/{i}")), b"x").unwrap();
    }
    let s = b.session();
    let mut a = Arena::with(b, s);
    let dir = a.lookup("many");
    // Every LOOKUP holds an O_PATH descriptor and every OPEN another: 64 run out quickly.
    let mut held = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let e = match a.s.lookup(dir, i.to_string()) {
            Ok(e) => e,
            Err(e) => {
                refused = Some((format!("LOOKUP {i}"), errno_of(Err::<(), _>(e), "LOOKUP")));
                break;
            }
        };
        match a.s.open(e.nodeid, RDONLY) {
            Ok(o) => held.push((e.nodeid, o.fh)),
            Err(err) => {
                refused = Some((format!("OPEN {i}"), errno_of(Err::<(), _>(err), "OPEN")));
                a.s.forget(e.nodeid, 1).unwrap();
                break;
            }
        }
    }
    let (what, errno) = refused.expect("64 descriptors never ran out");
    assert_eq!(errno, libc::EMFILE, "{what}: errno {errno}");
    assert!(
        held.len() < 64,
        "{} files open under a limit of 64",
        held.len()
    );
    // Out of descriptors, the worker still answers what needs none.
    a.s.getattr(ROOT_ID, None).unwrap();
    a.b.assert_alive();
    assert_no_worker_crash(&a.b, "EMFILE");
    // The guest lets go: everything works again.
    for (node, fh) in held.drain(..) {
        a.s.release(node, fh, RDONLY, 0, 0).unwrap();
        a.s.forget(node, 1).unwrap();
    }
    a.verify("fd budget spent and returned");
}

#[test]
fn readdirplus_of_100000_entries_in_small_replies_uses_bounded_memory() {
    const ENTRIES: usize = 100_000;
    let b = Arena::backend(&Config::default());
    fs::create_dir(b.host("big")).unwrap();
    for i in 0..ENTRIES {
        fs::File::create(b.host(format!("big/{i:06}"))).unwrap();
    }
    let s = b.session();
    s.set_timeout(Duration::from_secs(30));
    let mut a = Arena::with(b, s);
    let worker = worker_pid(&a.b);
    let dir = a.lookup("big");
    let dh = a.s.opendir(dir, RDONLY).unwrap();
    let before = vm_hwm_kib(worker);

    // Like a guest under memory pressure: 4 KiB at a time, forgetting each batch's nodes.
    let mut offset = 0;
    let mut seen = 0usize;
    let mut replies = 0usize;
    loop {
        let batch = a.s.readdirplus(dir, dh.fh, offset, 4096).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.dirent.off;
        replies += 1;
        let mut forget = Vec::new();
        for e in &batch {
            let name = e.dirent.name_str();
            if name != "." && name != ".." {
                seen += 1;
            }
            if e.entry.nodeid != 0 {
                forget.push((e.entry.nodeid, 1));
            }
        }
        a.s.batch_forget(&forget).unwrap();
    }
    a.s.releasedir(dir, dh.fh, 0).unwrap();
    let after = vm_hwm_kib(worker);
    assert_eq!(seen, ENTRIES, "entries listed");
    assert!(replies > ENTRIES / 64, "{replies} replies of at most 4 KiB");
    let grown = after.saturating_sub(before);
    eprintln!("worker VmHWM {before} KiB -> {after} KiB over {replies} READDIRPLUS replies");
    assert!(
        grown < 32 * 1024,
        "the worker's peak RSS grew by {grown} KiB listing {ENTRIES} entries"
    );
    a.verify("READDIRPLUS of 100,000 entries");
}
