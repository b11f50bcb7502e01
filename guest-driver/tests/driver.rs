//! Tests of the driver itself: vhost-user negotiation, pipelining and threads, descriptor
//! layouts, hostile descriptors, and disconnects. Each runs against fsjail (built on demand)
//! and, when `FSJAIL_PEER` names a virtiofsd binary, against that too: the driver must work
//! against any vhost-user-fs backend. What the backends answer, opcode by opcode, is tested in
//! the workspace's `tests/functional.rs`.

#[macro_use]
#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, Config, Kind};
use guest_driver::abi::ROOT_ID;
use guest_driver::{Error, Layout, Options, VhostUserProtocolFeatures};

per_backend!(
    negotiation_reports_features,
    pipelined_requests_and_threads,
    layouts_and_raw_requests,
    hostile_descriptors_do_not_hang_the_driver,
    many_threads_on_a_small_queue,
    drop_disconnects_and_backend_exits,
    backend_death_is_reported_not_timed_out,
);

/// fsjail serves each request queue on one thread; virtiofsd can add a pool.
fn threaded(pool: usize) -> Config {
    Config {
        peer_args: vec![format!("--thread-pool-size={pool}")],
        ..Config::default()
    }
}

fn negotiation_reports_features(kind: Kind) {
    let b = Backend::start(kind, &Config::default());
    let dev = guest_driver::Device::connect_with(b.socket(), Options::default()).unwrap();
    let offered = dev.backend_protocol_features();
    assert!(offered.contains(VhostUserProtocolFeatures::MQ));
    assert!(dev
        .acked_protocol_features()
        .contains(VhostUserProtocolFeatures::REPLY_ACK));
    assert_eq!(
        dev.backend_queue_num(),
        Some(2),
        "hiprio + one request queue"
    );
    assert!(dev.has_backend_channel());
    assert_ne!(
        dev.acked_features() & guest_driver::frontend::VIRTIO_RING_F_EVENT_IDX,
        0
    );
    assert_ne!(
        dev.acked_features() & guest_driver::frontend::VIRTIO_F_VERSION_1,
        0
    );
    if kind == Kind::Fsjail {
        // QEMU 7.1 to 8.0 crash on CONFIG: fsjail never offers it.
        assert!(!offered.contains(VhostUserProtocolFeatures::CONFIG));
        assert!(offered.contains(VhostUserProtocolFeatures::BACKEND_SEND_FD));
    }
    // Without EVENT_IDX the same backend still serves.
    drop(dev);
    let b = Backend::start(kind, &Config::default());
    let fs = b.session_with(Options {
        event_idx: false,
        ..Options::default()
    });
    assert_eq!(
        fs.device().acked_features() & guest_driver::frontend::VIRTIO_RING_F_EVENT_IDX,
        0
    );
    fs.getattr(ROOT_ID, None).unwrap();
}

fn pipelined_requests_and_threads(kind: Kind) {
    let b = Backend::start(kind, &threaded(4));
    let fs = Arc::new(b.session_with(Options {
        queue_size: 64,
        ..Options::default()
    }));
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7) as u8).collect();
    std::fs::write(b.host("big"), &data).unwrap();
    let e = fs.lookup(ROOT_ID, "big").unwrap();
    let o = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();

    // 16 reads in flight at once on one queue (32 descriptors of 64), completed in reverse.
    let pend: Vec<_> = (0..16u64)
        .map(|i| fs.submit_read(e.nodeid, o.fh, i * 65536, 65536).unwrap())
        .collect();
    for (i, p) in pend.into_iter().enumerate().rev() {
        let got = fs.complete(p).unwrap();
        assert_eq!(got, &data[i * 65536..(i + 1) * 65536]);
    }

    // More requests than descriptors: submit waits for free slots.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = Arc::clone(&fs);
            let data = data.clone();
            let (node, fh) = (e.nodeid, o.fh);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let off = ((t * 50 + i) * 4093) % (1 << 19);
                    let got = fs.read(node, fh, off, 8192).unwrap();
                    assert_eq!(got, &data[off as usize..off as usize + 8192]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let q = fs.device().queue(1).unwrap();
    assert_eq!(q.in_flight(), 0);
    assert_eq!(q.free_descriptors(), 64);
    fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
}

fn layouts_and_raw_requests(kind: Kind) {
    // A backend serves a single connection, so each session gets its own instance.
    for layout in [
        Layout::Single,
        Layout::Fragmented(7),
        Layout::Fragmented(3),
        Layout::PerArg,
    ] {
        let b = Backend::start(kind, &Config::default());
        std::fs::write(b.host("x"), b"0123456789").unwrap();
        let fs = b.session_with(Options {
            event_idx: layout != Layout::Single,
            ..Options::default()
        });
        fs.set_layout(layout);
        let e = fs.lookup(ROOT_ID, "x").unwrap();
        let o = fs.open(e.nodeid, libc::O_RDWR as u32).unwrap();
        assert_eq!(
            fs.read(e.nodeid, o.fh, 2, 5).unwrap(),
            b"23456",
            "{layout:?}"
        );
        assert_eq!(fs.write(e.nodeid, o.fh, 8, b"AB").unwrap(), 2, "{layout:?}");
        assert_eq!(
            std::fs::read(b.host("x")).unwrap(),
            b"01234567AB",
            "{layout:?}"
        );
        fs.release(e.nodeid, o.fh, 0, 0, 0).unwrap();
    }

    let b = Backend::start(kind, &Config::default());
    let fs = b.session();
    // send_raw: an unknown opcode, the header split over two descriptors and the reply
    // buffer over three, gets ENOSYS with its unique.
    let unique = 0xabcdu64;
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&40u32.to_le_bytes());
    hdr.extend_from_slice(&9999u32.to_le_bytes());
    hdr.extend_from_slice(&unique.to_le_bytes());
    hdr.extend_from_slice(&ROOT_ID.to_le_bytes());
    hdr.extend_from_slice(&[0u8; 16]);
    let r = fs
        .send_raw(1, &[&hdr[..10], &hdr[10..]], &[8, 8, 100])
        .unwrap();
    assert_eq!(r.used_len, 16);
    assert_eq!(
        i32::from_le_bytes(r.bytes[4..8].try_into().unwrap()),
        -libc::ENOSYS
    );
    assert_eq!(
        u64::from_le_bytes(r.bytes[8..16].try_into().unwrap()),
        unique
    );

    // The session still works afterwards.
    fs.getattr(ROOT_ID, None).unwrap();
    match fs.lookup(ROOT_ID, "nope") {
        Err(Error::Errno(e)) => assert_eq!(e, libc::ENOENT),
        r => panic!("{r:?}"),
    }
}

fn hostile_descriptors_do_not_hang_the_driver(kind: Kind) {
    use guest_driver::virtqueue::VIRTQ_DESC_F_NEXT;
    use guest_driver::{Descriptor, RawDesc};
    let mut b = Backend::start(kind, &Config::default());
    let fs = b.session();
    let dev = fs.device();
    let q = dev.queue(1).unwrap();
    // A chain whose `next` loops back to itself.
    let looped = [
        RawDesc {
            index: 0,
            desc: Descriptor {
                addr: 0x10000,
                len: 40,
                flags: VIRTQ_DESC_F_NEXT,
                next: 1,
            },
        },
        RawDesc {
            index: 1,
            desc: Descriptor {
                addr: 0x10000,
                len: 40,
                flags: VIRTQ_DESC_F_NEXT,
                next: 0,
            },
        },
    ];
    let t = q.post_raw(&looped, 0, Vec::new()).unwrap();
    let started = Instant::now();
    let looped_r = q.wait(t, Duration::from_secs(1)).map(|c| c.used_len);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "wait overran its timeout"
    );
    eprintln!("{kind:?} looped chain: {looped_r:?}");
    // An address outside guest memory.
    let outside = [RawDesc {
        index: 5,
        desc: Descriptor {
            addr: 1 << 40,
            len: 40,
            flags: 0,
            next: 0,
        },
    }];
    let t = q.post_raw(&outside, 5, Vec::new()).unwrap();
    let started = Instant::now();
    let outside_r = q.wait(t, Duration::from_secs(1)).map(|c| c.used_len);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "wait overran its timeout"
    );
    eprintln!("{kind:?} outside chain: {outside_r:?}");
    fs.set_timeout(Duration::from_secs(1));
    let after = fs.getattr(ROOT_ID, None);
    eprintln!("{kind:?} after: {:?}", after.as_ref().map(|a| a.attr.ino));
    if kind == Kind::Fsjail {
        // fsjail returns chains it cannot use to the used ring with nothing written, and
        // keeps serving.
        assert_eq!(looped_r.unwrap(), 0, "looped chain");
        assert_eq!(outside_r.unwrap(), 0, "chain outside guest memory");
        after.unwrap_or_else(|e| panic!("fsjail stopped serving after hostile chains: {e}"));
        b.assert_alive();
    }
}

fn many_threads_on_a_small_queue(kind: Kind) {
    let b = Backend::start(kind, &threaded(8));
    let fs = Arc::new(b.session_with(Options {
        queue_size: 8,
        ..Options::default()
    }));
    fs.set_timeout(Duration::from_secs(5));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                for i in 0..300 {
                    if (t + i) % 3 == 0 {
                        assert_eq!(
                            fs.lookup(ROOT_ID, "none").unwrap_err().errno(),
                            Some(libc::ENOENT)
                        );
                    } else {
                        fs.getattr(ROOT_ID, None).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let q = fs.device().queue(1).unwrap();
    assert_eq!(q.free_descriptors(), 8);
    assert!(q.take_unexpected().is_empty());
    let s = q.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&s.submitted), load(&s.completed));
    eprintln!(
        "{kind:?}: submitted {} completed {} kicks {} suppressed {} calls {}",
        load(&s.submitted),
        load(&s.completed),
        load(&s.kicks),
        load(&s.kicks_suppressed),
        load(&s.calls),
    );
}

fn drop_disconnects_and_backend_exits(kind: Kind) {
    let mut b = Backend::start(kind, &Config::default());
    let fs = b.session();
    fs.getattr(ROOT_ID, None).unwrap();
    drop(fs);
    let status = b
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{kind:?} still running 10 s after the frontend went away"));
    eprintln!("{kind:?} exited: {status}");
    if kind == Kind::Fsjail {
        assert!(status.success(), "fsjail exit status {status}\n{}", b.log());
    }
}

fn backend_death_is_reported_not_timed_out(kind: Kind) {
    let mut b = Backend::start(kind, &Config::default());
    let fs = b.session();
    assert!(fs.device().backend_alive());
    b.child().kill().unwrap();
    b.child().wait().unwrap();
    let t = Instant::now();
    let err = fs.getattr(ROOT_ID, None).unwrap_err();
    assert!(matches!(err, Error::Disconnected), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!fs.device().backend_alive());
}
