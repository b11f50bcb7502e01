//! Functional tests: every opcode a Linux virtiofs guest sends, driven through the guest driver
//! against a backend running as its own process, and checked on the host side (content, mode,
//! owner, times, link counts, xattrs, locks, statfs).
//!
//! Each test body is a function of the backend kind. `per_backend!` runs it against fsjail
//! (`fsjail::<name>`) and, when `FSJAIL_PEER` names a virtiofsd binary, against that reference
//! peer (`peer::<name>`); without `FSJAIL_PEER` the peer half is a counted skip (or a failure
//! under `FSJAIL_REQUIRE_PEER=1`, see `tests/common/skip.rs`). Where the two differ by design
//! (fsjail refuses device nodes, emulates TMPFILE, omits "." and ".."), the body says so and
//! asserts each side's documented behaviour.

#[macro_use]
mod common;

#[path = "functional/data.rs"]
mod data;
#[path = "functional/entries.rs"]
mod entries;
#[path = "functional/errors.rs"]
mod errors;
#[path = "functional/helpers.rs"]
mod helpers;
#[path = "functional/special.rs"]
mod special;
#[path = "functional/xattrs_dirs.rs"]
mod xattrs_dirs;

use std::fs;

use common::{Backend, Config, Kind};
use data::*;
use entries::*;
use errors::*;
use guest_driver::abi::{Opcode, ROOT_ID};
use helpers::{create_rw, RDONLY};
use special::device_nodes_as_the_guest_sees_them;
use vm_memory::ByteValued;
use xattrs_dirs::*;

per_backend!(
    init_and_destroy,
    lookup_and_forget,
    getattr_and_setattr,
    symlink_and_readlink,
    mknod,
    mkdir_and_rmdir,
    unlink,
    rename_and_rename2,
    link,
    open_read_write_flush_fsync_release,
    statfs_matches_host_statvfs,
    xattrs_round_trip_to_the_host,
    xattrs_off_by_default,
    readdir_and_readdirplus,
    locks_answer_enosys,
    access,
    create,
    interrupt_gets_no_reply,
    fallocate,
    lseek_data_and_hole,
    copy_file_range,
    syncfs,
    tmpfile,
    ioctl_unknown_opcode_and_dax_opcodes,
    errors_map_to_the_right_errno,
    readonly_refuses_every_change,
    device_nodes_as_the_guest_sees_them,
);

// ---------------------------------------------------------------------------------------------
// fsjail only

/// `--num-request-queues 2`: requests on both request queues are served, also concurrently.
#[test]
fn two_request_queues_both_work() {
    let cfg = Config {
        num_request_queues: Some(2),
        ..Config::default()
    };
    let b = Backend::start(Kind::Fsjail, &cfg);
    let s = b.session();
    let dev = s.device();
    assert_eq!(dev.num_request_queues(), 2);
    assert_eq!(
        dev.backend_queue_num(),
        Some(3),
        "hiprio + 2 request queues"
    );
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31) as u8).collect();
    fs::write(b.host("big"), &data).unwrap();
    let e = s.lookup(ROOT_ID, "big").unwrap();
    let o = s.open(e.nodeid, RDONLY).unwrap();
    let (w, wfh) = create_rw(&s, ROOT_ID, "written", 0o644);

    // Reads in flight on both queues at once, completed in reverse order.
    let mut pending = Vec::new();
    for i in 0..8u64 {
        let q = 1 + (i % 2) as u16;
        let arg = guest_driver::abi::ReadIn {
            fh: o.fh,
            offset: i * 65536,
            size: 65536,
            ..Default::default()
        };
        let p = s
            .submit_on(
                q,
                Opcode::Read as u32,
                e.nodeid,
                &[arg.as_slice()],
                Some(&[65536]),
            )
            .unwrap();
        pending.push((i, p));
    }
    for (i, p) in pending.into_iter().rev() {
        let got = s.complete(p).unwrap();
        assert_eq!(
            got,
            &data[(i * 65536) as usize..((i + 1) * 65536) as usize],
            "read {i}"
        );
    }
    // Writes on each queue land on the host.
    for (q, off, chunk) in [(1u16, 0u64, &b"queue one "[..]), (2, 10, &b"queue two"[..])] {
        let arg = guest_driver::abi::WriteIn {
            fh: wfh,
            offset: off,
            size: chunk.len() as u32,
            ..Default::default()
        };
        let p = s
            .submit_on(
                q,
                Opcode::Write as u32,
                w,
                &[arg.as_slice(), chunk],
                Some(&[8]),
            )
            .unwrap();
        s.complete(p).unwrap();
    }
    assert_eq!(fs::read(b.host("written")).unwrap(), b"queue one queue two");

    // Two threads, round-robin over both queues.
    let s = std::sync::Arc::new(s);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let name = format!("t{t}-{i}");
                    let (n, fh) = create_rw(&s, ROOT_ID, &name, 0o600);
                    s.write(n, fh, 0, name.as_bytes()).unwrap();
                    s.release(n, fh, 0, 0, 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..2 {
        for i in 0..100 {
            let name = format!("t{t}-{i}");
            assert_eq!(fs::read(b.host(&name)).unwrap(), name.as_bytes());
        }
    }
    for q in 1..=2u16 {
        let st = s.device().queue(q).unwrap().stats();
        let done = st.completed.load(std::sync::atomic::Ordering::Relaxed);
        assert!(done > 100, "queue {q} completed only {done}");
    }
    s.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

/// `--max-write` reaches the jailed worker: INIT offers it (default path, not `--sandbox none`).
#[test]
fn max_write_reaches_the_jailed_worker() {
    let cfg = Config {
        fsjail_args: vec!["--max-write".into(), "65536".into()],
        ..Config::default()
    };
    let b = Backend::start(Kind::Fsjail, &cfg);
    let s = b.connect(b.options());
    let init = s.init().unwrap();
    assert_eq!(init.max_write, 65536);
}
