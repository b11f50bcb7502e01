//! The request pool, through the guest driver against `fsjail serve` (jailed, under its
//! seccomp filter): requests on one node keep their order through it; FSYNCs of dirty data
//! run beside LOOKUPs. Facts about order and liveness only, never speed. (That a request
//! blocked in the pool does not hold up others is checked deterministically in the device's
//! own tests, `vhost_user::pool_tests`, with a filesystem whose FSYNC waits on a gate: the
//! passthrough filesystem has no request that blocks for as long as a test wants.)

mod common;

use std::time::Duration;

use common::{Backend, Config, Kind};
use guest_driver::abi::{AttrOut, GetattrIn, Opcode};
use guest_driver::fuse_client::parse_exact;
use guest_driver::Session;
use vm_memory::ByteValued;

/// At least the pool's threshold for READ and WRITE (128 KiB).
const LARGE: usize = 256 << 10;

fn start(pool: usize) -> Backend {
    Backend::start(
        Kind::Fsjail,
        &Config {
            fsjail_args: vec!["--thread-pool-size".into(), pool.to_string()],
            ..Config::default()
        },
    )
}

fn getattr(s: &Session, nodeid: u64) -> guest_driver::Pending {
    s.submit(
        Opcode::Getattr,
        nodeid,
        &[GetattrIn::default().as_slice()],
        &[std::mem::size_of::<AttrOut>()],
    )
    .expect("submit GETATTR")
}

/// A large WRITE goes to the pool; the small WRITE, GETATTR and large READ of the same node
/// sent right behind it (without waiting for its reply) are ordered after it: the READ
/// returns what both WRITEs wrote, the GETATTR the size the large one made. Many rounds,
/// each with new bytes.
#[test]
fn requests_on_one_node_keep_their_order_through_the_pool() {
    let b = start(4);
    std::fs::write(b.host("f"), b"").unwrap();
    let s = b.session();
    let f = s.lookup(1, "f").expect("LOOKUP");
    let fh = s.open(f.nodeid, libc::O_RDWR as u32).expect("OPEN").fh;
    for round in 0..200u32 {
        let big = vec![(round % 251) as u8; LARGE];
        let small = vec![(round % 251) as u8 ^ 0xff; 4096];
        let size = LARGE as u64 + u64::from(round);
        let w1 = s
            .submit_write(f.nodeid, fh, u64::from(round), &big, 0)
            .unwrap();
        let w2 = s
            .submit_write(f.nodeid, fh, u64::from(round), &small, 0)
            .unwrap();
        let g = getattr(&s, f.nodeid);
        let r = s
            .submit_read(f.nodeid, fh, u64::from(round), LARGE as u32)
            .unwrap();
        s.complete(w1).expect("large WRITE");
        s.complete(w2).expect("small WRITE");
        let a: AttrOut = parse_exact(Opcode::Getattr, &s.complete(g).unwrap()).unwrap();
        assert!(
            a.attr.size >= size,
            "round {round}: GETATTR saw size {} before the WRITE of {size}",
            a.attr.size
        );
        let got = s.complete(r).expect("READ");
        assert_eq!(got.len(), LARGE, "round {round}");
        assert_eq!(
            &got[..4096],
            &small[..],
            "round {round}: the READ overtook the small WRITE"
        );
        assert!(
            got[4096..].iter().all(|&x| x == big[0]),
            "round {round}: the READ overtook the large WRITE"
        );
    }
}

/// FSYNCs of files with dirty data (sent without waiting) and LOOKUPs in the meantime: every
/// one is answered, correctly.
#[test]
fn fsyncs_of_dirty_files_and_lookups_are_all_answered() {
    let b = start(4);
    let s = b.session();
    let chunk = vec![0x5au8; 1 << 20];
    let mut files = Vec::new();
    for i in 0..3 {
        let name = format!("dirty{i}");
        std::fs::write(b.host(&name), b"").unwrap();
        let e = s.lookup(1, &name).unwrap();
        let fh = s.open(e.nodeid, libc::O_RDWR as u32).unwrap().fh;
        for k in 0..16u64 {
            s.write(e.nodeid, fh, k << 20, &chunk).unwrap();
        }
        files.push((e.nodeid, fh));
    }
    std::fs::write(b.host("meta"), b"abc").unwrap();
    s.set_timeout(Duration::from_secs(120));
    let fsyncs: Vec<_> = files
        .iter()
        .map(|&(n, fh)| {
            let arg = guest_driver::abi::FsyncIn {
                fh,
                fsync_flags: 0,
                padding: 0,
            };
            s.submit(Opcode::Fsync, n, &[arg.as_slice()], &[]).unwrap()
        })
        .collect();
    for _ in 0..50 {
        let e = s.lookup(1, "meta").expect("LOOKUP during the FSYNCs");
        let a: AttrOut =
            parse_exact(Opcode::Getattr, &s.complete(getattr(&s, e.nodeid)).unwrap()).unwrap();
        assert_eq!(a.attr.size, 3);
        s.forget(e.nodeid, 1).unwrap();
    }
    for p in fsyncs {
        s.complete(p).expect("FSYNC");
    }
    for (i, _) in files.iter().enumerate() {
        let len = std::fs::metadata(b.host(format!("dirty{i}")))
            .unwrap()
            .len();
        assert_eq!(len, 16 << 20);
    }
}

/// `--thread-pool-size 0` (no pool) still serves everything, in order, on the queue thread.
#[test]
fn no_pool_serves_everything_inline() {
    let b = start(0);
    std::fs::write(b.host("f"), b"").unwrap();
    let s = b.session();
    let f = s.lookup(1, "f").unwrap();
    let fh = s.open(f.nodeid, libc::O_RDWR as u32).unwrap().fh;
    let big = vec![7u8; LARGE];
    let w = s.submit_write(f.nodeid, fh, 0, &big, 0).unwrap();
    let r = s.submit_read(f.nodeid, fh, 0, LARGE as u32).unwrap();
    s.complete(w).unwrap();
    assert_eq!(s.complete(r).unwrap(), big);
}
