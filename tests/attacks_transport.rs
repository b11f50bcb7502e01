//! Attack catalogue, transport: descriptor chains that loop back to their head
//! (directly, through every slot, among the writable descriptors, inside an indirect table),
//! chains whose addresses overflow or lie outside guest memory, vring settings changed after
//! the ring started (SET_VRING_NUM / SET_VRING_ADDR / SET_VRING_BASE, the CVE-2026-5747 class),
//! a used ring laid over the avail ring, and guest memory past the end of its file, sent as raw
//! vhost-user messages through `Device::frontend()`.
//!
//! The worker must never crash or touch memory outside the guest's: every case ends with the
//! worker alive and serving (a malformed chain is returned with nothing written), or, for the
//! vring cases where the protocol allows it, with the connection dropped and the process gone
//! with an exit status (1 when vhost-user-backend refused a message) — never a signal. `guest-driver/tests/driver.rs`
//! (`hostile_descriptors_do_not_hang_the_driver`) has the simplest loop and address cases from
//! the driver's point of view.

#[path = "attacks/mod.rs"]
mod attacks;
mod common;

use std::time::Duration;

use attacks::{assert_no_worker_crash, cname, request, Arena};
use common::Config;
use guest_driver::abi::{GetattrIn, Opcode, ROOT_ID};
use guest_driver::virtqueue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use guest_driver::{Descriptor, GuestBuf, Options, RawDesc, Session};
use vhost::{VhostBackend, VringConfigData};
use vm_memory::ByteValued;

const INDIRECT_DESC: u64 = 1 << 28;
const R: u16 = 0;
const W: u16 = VIRTQ_DESC_F_WRITE;
const N: u16 = VIRTQ_DESC_F_NEXT;

fn arena(queues: u16) -> Arena {
    let cfg = Config {
        num_request_queues: Some(queues),
        ..Config::default()
    };
    let b = Arena::backend(&cfg);
    let s = b.session_with(Options {
        num_request_queues: queues,
        extra_features: INDIRECT_DESC,
        ..b.options()
    });
    s.set_timeout(Duration::from_secs(5));
    Arena::with(b, s)
}

fn getattr_request() -> Vec<u8> {
    request(Opcode::Getattr, ROOT_ID, &[GetattrIn::default().as_slice()]).0
}

fn d(index: u16, addr: u64, len: u32, flags: u16, next: u16) -> RawDesc {
    RawDesc {
        index,
        desc: Descriptor {
            addr,
            len,
            flags,
            next,
        },
    }
}

/// Posts hand-made descriptors with `head` on request queue 1 and waits for the device to
/// return the chain. Returns the used length.
fn post(a: &Arena, descs: &[RawDesc], head: u16, keep: Vec<GuestBuf>, what: &str) -> u32 {
    let q = a.s.device().queue(1).unwrap();
    let t = q.post_raw(descs, head, keep).unwrap();
    let c = q
        .wait(t, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{what}: the chain never came back: {e}\n{}", a.b.log()));
    c.used_len
}

#[test]
fn looping_chains_are_cut_and_the_worker_serves_on() {
    let mut a = arena(1);
    let ram = a.s.device().ram().clone();
    let size = a.s.device().queue(1).unwrap().size();
    let req = ram.alloc_with(&getattr_request()).unwrap();
    let reply = ram.alloc(4096, 64).unwrap();
    let (ra, rl, wa) = (req.addr(), req.len() as u32, reply.addr());

    // The head points at itself.
    let used = post(&a, &[d(0, ra, rl, N, 0)], 0, vec![], "self loop");
    assert_eq!(used, 0, "self loop: no writable part, no reply");
    a.verify("self loop");

    // A ring through every slot back to the head.
    let ring: Vec<RawDesc> = (0..size).map(|i| d(i, ra, rl, N, (i + 1) % size)).collect();
    let used = post(&a, &ring, 0, vec![], "ring through every slot");
    assert_eq!(used, 0);
    a.verify("ring through every slot");

    // A good request whose writable descriptors loop among themselves: the reply lands in
    // the (aliased) buffer, the used length stays within what one pass of the loop holds.
    let descs = [
        d(0, ra, rl, N, 1),
        d(1, wa, 64, W | N, 2),
        d(2, wa + 64, 64, W | N, 1),
    ];
    let used = post(&a, &descs, 0, vec![], "writable loop");
    assert!(used as usize <= 64 * size as usize, "used {used}");
    a.verify("writable loop");

    // An indirect table whose last entry points back at its first.
    let mut table = Vec::new();
    for (i, (addr, len, flags)) in [(ra, rl, N), (wa, 2048, W | N), (wa + 2048, 2048, W | N)]
        .into_iter()
        .enumerate()
    {
        let next = ((i + 1) % 3) as u16;
        table.extend_from_slice(
            Descriptor {
                addr,
                len,
                flags,
                next,
            }
            .as_slice(),
        );
    }
    let t = ram.alloc_with(&table).unwrap();
    post(
        &a,
        &[d(0, t.addr(), 48, VIRTQ_DESC_F_INDIRECT, 0)],
        0,
        vec![t],
        "indirect loop",
    );
    a.verify("indirect loop");

    // An indirect table that points at another indirect table (forbidden), and one whose
    // length is no multiple of a descriptor, or 0, or beyond any table.
    let inner = Descriptor {
        addr: ra,
        len: 16,
        flags: VIRTQ_DESC_F_INDIRECT,
        next: 0,
    };
    let t = ram.alloc_with(inner.as_slice()).unwrap();
    for (len, what) in [
        (16u32, "nested indirect"),
        (24, "ragged table"),
        (0, "empty table"),
        (1 << 24, "huge table"),
    ] {
        let used = post(
            &a,
            &[d(0, t.addr(), len, VIRTQ_DESC_F_INDIRECT, 0)],
            0,
            vec![],
            what,
        );
        assert_eq!(used, 0, "{what}");
        a.verify(what);
    }
    drop((req, reply, t));
    assert_no_worker_crash(&a.b, "looping chains");
}

#[test]
fn addresses_outside_guest_memory_or_overflowing() {
    let mut a = arena(1);
    let ram = a.s.device().ram().clone();
    let end = ram.base() + ram.size();
    let req = ram.alloc_with(&getattr_request()).unwrap();
    let reply = ram.alloc(4096, 64).unwrap();
    let (ra, rl, wa) = (req.addr(), req.len() as u32, reply.addr());
    let cases: Vec<(&str, Vec<RawDesc>)> = vec![
        ("straddles the end of RAM", vec![d(0, end - 8, 64, R, 0)]),
        (
            "wraps the address space",
            vec![d(0, u64::MAX - 15, 64, R, 0)],
        ),
        ("far outside RAM", vec![d(0, 1 << 40, 64, R, 0)]),
        ("length u32::MAX", vec![d(0, ra, u32::MAX, R, 0)]),
        (
            "writable part outside RAM",
            vec![d(0, ra, rl, N, 1), d(1, end + 4096, 4096, W, 0)],
        ),
        (
            "writable part wraps",
            vec![d(0, ra, rl, N, 1), d(1, u64::MAX - 100, 4096, W, 0)],
        ),
        (
            "readable after writable",
            vec![d(0, wa, 64, W | N, 1), d(1, ra, rl, R, 0)],
        ),
        (
            "indirect table outside RAM",
            vec![d(0, end + 0x1000, 64, VIRTQ_DESC_F_INDIRECT, 0)],
        ),
        (
            "sides overflow u32 together",
            vec![
                d(0, ra, rl, N, 1),
                d(1, ra, u32::MAX, N, 2),
                d(2, wa, 64, W, 0),
            ],
        ),
    ];
    for (what, descs) in cases {
        // Whatever is there is no request fsjail could have read: nothing is written back.
        let used = post(&a, &descs, descs[0].index, vec![], what);
        assert_eq!(used, 0, "{what}: used {used}");
        a.verify(what);
    }
    // A head index beyond the queue in the avail ring: no chain to return, and the next good
    // request still gets through.
    let q = a.s.device().queue(1).unwrap();
    q.publish_raw(q.size() + 7).unwrap();
    q.publish_raw(u16::MAX).unwrap();
    a.verify("head index beyond the queue");
    drop((req, reply));
    assert_no_worker_crash(&a.b, "addresses outside guest memory");
}

/// After a vhost-user message the worker refused: vhost-user-backend ends the connection on
/// it, so the worker exits with a status (never a signal) and the sentinel is intact. Its
/// queue threads may still answer a request kicked while the connection winds down, so whether
/// it "still serves" is no test of this.
fn dropped(a: &mut Arena, what: &str) {
    assert_no_worker_crash(&a.b, what);
    let status = a.b.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "{what}: refused, yet the worker did not exit\n{}",
            a.b.log()
        )
    });
    assert!(status.code().is_some(), "{what}: {status}\n{}", a.b.log());
    assert_no_worker_crash(&a.b, what);
    a.sentinel.assert_unchanged(what);
    eprintln!("{what}: connection dropped");
}

/// After an attack on request queue 2: the worker either serves on queue 1 or dropped the
/// connection and exited 0. Never a crash; the sentinel is intact either way.
fn survived(a: &mut Arena, what: &str) -> bool {
    assert_no_worker_crash(&a.b, what);
    let (bytes, unique) = request(Opcode::Lookup, ROOT_ID, &[&cname(b"probe")]);
    let served = a.s.device().backend_alive()
        && a.s
            .send_raw(1, &[&bytes], &[4096])
            .is_ok_and(|r| r.used_len > 16 && r.bytes[8..16] == unique.to_le_bytes());
    if !served {
        let status =
            a.b.wait_exit(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{what}: neither serving nor gone\n{}", a.b.log()));
        // vhost-user-backend ends the connection on a message it refuses (a size of 0, say):
        // the worker reports the error and exits 1. An exit, never a signal.
        assert!(status.code().is_some(), "{what}: {status}\n{}", a.b.log());
    }
    assert_no_worker_crash(&a.b, what);
    a.sentinel.assert_unchanged(what);
    eprintln!(
        "{what}: {}",
        if served {
            "still serving"
        } else {
            "connection dropped"
        }
    );
    served
}

/// Kicks request queue 2 with a chain posted and waits briefly for its return.
fn kick_queue2(s: &Session) {
    let q = s.device().queue(2).unwrap();
    let bytes = getattr_request();
    let ram = s.device().ram();
    let r = ram.alloc_with(&bytes).unwrap();
    let w = ram.alloc(4096, 64).unwrap();
    if let Ok(t) = q.submit(vec![r], vec![w], Duration::from_secs(1)) {
        q.kick().expect("kick: a write to our own eventfd");
        // Any answer is possible here and none is wrong: the attack may have left queue 2
        // serving, ignoring its bad ring, or the connection gone. `survived` judges the worker.
        match q.wait(t, Duration::from_millis(500)) {
            Ok(_)
            | Err(guest_driver::Error::Timeout { .. } | guest_driver::Error::Disconnected) => {}
            Err(e) => panic!("waiting on queue 2: {e}"),
        }
    }
}

#[test]
fn vring_settings_changed_after_the_ring_started() {
    // Each attack returns the backend's answer to each message it sent (REPLY_ACK is on).
    type Attack = Box<dyn Fn(&Session) -> Vec<Result<(), String>>>;
    fn answer(r: vhost::Result<()>) -> Result<(), String> {
        r.map_err(|e| e.to_string())
    }
    // (what, the backend must refuse it, attack)
    let cases: Vec<(&str, bool, Attack)> = vec![
        (
            "SET_VRING_NUM 32768 while running",
            false,
            Box::new(|s| vec![answer(s.device().frontend().set_vring_num(2, 32768))]),
        ),
        (
            "SET_VRING_NUM 3 (not a power of two)",
            false,
            Box::new(|s| vec![answer(s.device().frontend().set_vring_num(2, 3))]),
        ),
        (
            "SET_VRING_NUM 0",
            true,
            Box::new(|s| vec![answer(s.device().frontend().set_vring_num(2, 0))]),
        ),
        (
            "SET_VRING_ADDR outside every region",
            true,
            Box::new(|s| {
                let cfg = VringConfigData {
                    queue_max_size: 128,
                    queue_size: 128,
                    flags: 0,
                    desc_table_addr: 0x1000,
                    used_ring_addr: 0x2000,
                    avail_ring_addr: 0x3000,
                    log_addr: None,
                };
                vec![answer(s.device().frontend().set_vring_addr(2, &cfg))]
            }),
        ),
        (
            "SET_VRING_ADDR running off the end of RAM",
            false,
            Box::new(|s| {
                let ram = s.device().ram();
                let last = ram.host_address(ram.base() + ram.size() - 16).unwrap();
                let cfg = VringConfigData {
                    queue_max_size: 128,
                    queue_size: 128,
                    flags: 0,
                    desc_table_addr: last,
                    used_ring_addr: last,
                    avail_ring_addr: last,
                    log_addr: None,
                };
                vec![answer(s.device().frontend().set_vring_addr(2, &cfg))]
            }),
        ),
        (
            "SET_VRING_NUM 32768 with the rings at the end of RAM",
            false,
            Box::new(|s| {
                let ram = s.device().ram();
                let near = ram.host_address(ram.base() + ram.size() - 4096).unwrap();
                let cfg = VringConfigData {
                    queue_max_size: 128,
                    queue_size: 128,
                    flags: 0,
                    desc_table_addr: near,
                    used_ring_addr: near,
                    avail_ring_addr: near,
                    log_addr: None,
                };
                // One statement each: the frontend's lock guard lives to the end of one.
                let addr = answer(s.device().frontend().set_vring_addr(2, &cfg));
                let num = answer(s.device().frontend().set_vring_num(2, 32768));
                vec![addr, num]
            }),
        ),
        (
            "SET_VRING_BASE far ahead while running",
            false,
            Box::new(|s| vec![answer(s.device().frontend().set_vring_base(2, 40000))]),
        ),
        (
            "GET_VRING_BASE (stop) then kick",
            false,
            Box::new(|s| vec![answer(s.device().frontend().get_vring_base(2).map(|_| ()))]),
        ),
    ];
    for (what, must_refuse, attack) in cases {
        let mut a = arena(2);
        a.verify("setup");
        let answers = attack(&a.s);
        kick_queue2(&a.s);
        // A refused message ends the connection (vhost-user-backend stops on the first error);
        // an accepted one, applied or ignored, leaves queue 1 serving.
        if answers.iter().any(Result::is_err) {
            dropped(&mut a, what);
        } else {
            assert!(
                survived(&mut a, what),
                "{what}: accepted ({answers:?}), yet the worker dropped the connection"
            );
        }
        if must_refuse {
            assert!(answers[0].is_err(), "{what}: accepted");
        }
    }
}

/// SET_MEM_TABLE whose region runs past the end of its file (found by the
/// `vhost_user_messages` fuzz target): the next SET_VRING_ADDR read the used index from a page
/// beyond the end of the memfd and the worker died of SIGBUS. Now the table is refused and the
/// connection ends before anything touches it.
#[test]
fn a_memory_table_past_the_end_of_its_file_is_refused() {
    for (what, grow, offset) in [
        ("region twice the file", 2u64, 0u64),
        ("offset beyond the file", 1, 0x200_0000_0000),
        ("one page too long", 0, 4096),
    ] {
        let mut a = arena(2);
        a.verify("setup");
        let ram = a.s.device().ram().clone();
        let mut info = ram.region_info().unwrap();
        if grow > 0 {
            info.memory_size *= grow;
        }
        info.mmap_offset += offset;
        let refused = a.s.device().frontend().set_mem_table(&[info]);
        assert!(refused.is_err(), "{what}: SET_MEM_TABLE accepted");
        // The messages that touch guest memory right away.
        let near = ram.host_address(ram.base() + 0x1000).unwrap();
        let cfg = VringConfigData {
            queue_max_size: 128,
            queue_size: 128,
            flags: 0,
            desc_table_addr: near,
            used_ring_addr: near + 0x800,
            avail_ring_addr: near + 0x1000,
            log_addr: None,
        };
        let after = a.s.device().frontend().set_vring_addr(2, &cfg);
        assert!(
            after.is_err(),
            "{what}: the connection outlived the refused table"
        );
        kick_queue2(&a.s);
        dropped(&mut a, what);
        assert!(
            a.b.log_shows(
                "refusing the frontend's guest memory table",
                std::time::Duration::from_secs(10)
            ),
            "{}",
            a.b.log()
        );
    }
}

/// A used ring laid over the avail ring, with the device's used count one ahead: every
/// completion publishes a new available entry (found by the `vhost_user_messages` fuzz target).
/// The queue thread used to serve that forever, never returning to its event loop, so the
/// worker spun at full CPU and never exited when the frontend left. Now it serves one ring's
/// worth per wake-up, and the worker exits when the frontend goes.
#[test]
fn a_used_ring_over_the_avail_ring_does_not_pin_the_worker() {
    let mut a = arena(2);
    a.verify("setup");
    let dev = a.s.device().clone();
    let ram = dev.ram().clone();
    let q = dev.queue(2).unwrap();
    let rings = q.ring_addresses();
    // Head 0: a chain outside guest memory, returned with nothing written, so each used
    // element is zeros and every avail entry it overwrites names head 0 again.
    q.write_desc(
        0,
        Descriptor {
            addr: ram.base() + ram.size() + 0x1000,
            len: 64,
            flags: 0,
            next: 0,
        },
    )
    .unwrap();
    // The next avail entry names head 0 (earlier requests went through this queue: the
    // device's avail count is the driver's avail index).
    let idx = u16::from_le_bytes(ram.read(rings.avail + 2, 2).unwrap().try_into().unwrap());
    let slot = rings.avail + 4 + 2 * u64::from(idx % q.size());
    ram.write(slot, &[0, 0]).unwrap();
    ram.write(rings.avail + 2, &idx.wrapping_add(1).to_le_bytes())
        .unwrap();
    let host = |gpa| ram.host_address(gpa).unwrap();
    let cfg = VringConfigData {
        queue_max_size: q.size(),
        queue_size: q.size(),
        flags: 0,
        desc_table_addr: host(rings.desc),
        used_ring_addr: host(rings.avail),
        avail_ring_addr: host(rings.avail),
        log_addr: None,
    };
    // The backend takes the used index (the avail index, one ahead) as its used count.
    dev.frontend().set_vring_addr(2, &cfg).unwrap();
    q.kick().unwrap();
    drop(dev);
    queue_1_serves_and_the_worker_follows_the_frontend_out(a, "overlapping rings");
}

/// Every slot of a 32768-entry ring names one chain of 65,535 indirect descriptors, each with
/// NEXT set: every pop walks 32,768 descriptors before the chain is refused as too long (found
/// by the `vhost_user_messages` campaign). One wake-up of the queue thread used to pop the whole
/// ring, about a billion descriptor reads, and the worker did not exit when the frontend left.
/// Now a wake-up walks a bounded number and returns to its event loop: the other queue serves
/// meanwhile and the worker follows the frontend out.
#[test]
fn a_ring_of_endless_chains_does_not_hold_the_queue_thread() {
    const ENTRIES: u64 = 65_535;
    let cfg = Config {
        num_request_queues: Some(2),
        ..Config::default()
    };
    let b = Arena::backend(&cfg);
    let s = b.session_with(Options {
        num_request_queues: 2,
        queue_size: 32768,
        extra_features: INDIRECT_DESC,
        ..b.options()
    });
    s.set_timeout(Duration::from_secs(5));
    let mut a = Arena::with(b, s);
    a.verify("setup");
    let dev = a.s.device().clone();
    let ram = dev.ram().clone();
    let q = dev.queue(2).unwrap();
    assert_eq!(q.size(), 32768);
    // A zeroed byte for every descriptor to point at, then the table.
    let byte = ram.alloc(1, 64).unwrap();
    let mut table = Vec::with_capacity(ENTRIES as usize * 16);
    for i in 0..ENTRIES {
        let d = Descriptor {
            addr: byte.addr(),
            len: 1,
            flags: VIRTQ_DESC_F_NEXT,
            next: (i + 1) as u16,
        };
        table.extend_from_slice(d.as_slice());
    }
    let table = ram.alloc_with(&table).unwrap();
    q.write_desc(
        0,
        Descriptor {
            addr: table.addr(),
            len: (ENTRIES * 16) as u32,
            flags: VIRTQ_DESC_F_INDIRECT,
            next: 0,
        },
    )
    .unwrap();
    for _ in 0..q.size() {
        q.publish_raw(0).unwrap();
    }
    q.kick().unwrap();
    drop((table, byte, dev));
    queue_1_serves_and_the_worker_follows_the_frontend_out(a, "endless chains");
}

/// After an attack that keeps queue 2's thread busy (the caller has kicked it and let go of
/// its own handles on the device): queue 1, on its own thread, still serves; when the frontend
/// leaves, the worker exits with a status, never a signal, and the sentinel is intact.
fn queue_1_serves_and_the_worker_follows_the_frontend_out(a: Arena, what: &str) {
    std::thread::sleep(Duration::from_millis(300));
    assert_no_worker_crash(&a.b, what);
    let (bytes, unique) = request(Opcode::Lookup, ROOT_ID, &[&cname(b"probe")]);
    let r = a.s.send_raw(1, &[&bytes], &[4096]).unwrap();
    assert_eq!(r.bytes[8..16], unique.to_le_bytes(), "{what}");
    let Arena { mut b, s, sentinel } = a;
    drop(s);
    let status = b.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "{what}: the worker still runs after the frontend left\n{}",
            b.log()
        )
    });
    assert!(status.code().is_some(), "{what}: {status}");
    assert_no_worker_crash(&b, what);
    sentinel.assert_unchanged(what);
}
