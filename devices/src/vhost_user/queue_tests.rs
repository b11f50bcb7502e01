//! Regression tests for rings a hostile guest broke (found by the attack catalogue and the
//! fuzzers, docs/security-testing.md): the queue thread must keep
//! serving, not end with an error (vhost-user-backend ends a queue thread on its first
//! error) nor spin.

use std::sync::Arc;

use crate::vhost_user::{GuestMem as GuestMemoryMmap, Vring as VringRwLock};
use vhost_user_backend::VringT;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemoryAtomic};

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::Duration;

use super::queue::process;
use crate::fs::{new_passthrough, ShareOptions, SharePolicy};
use crate::fuse::abi::{GetattrIn, InHeader, Opcode};
use crate::fuse::server::{Server, ServerOptions};
use fuse_backend_rs::passthrough::PassthroughFs;

const SIZE: u16 = 16;
const REQ: u64 = 0x10000;
const REPLY: u64 = 0x20000;
const WRITE: u16 = 2;

type TestServer = Arc<Server<SharePolicy<PassthroughFs>>>;

/// A FUSE server over a passthrough share of `dir`.
fn server(dir: &Path) -> TestServer {
    let fs = SharePolicy::new(new_passthrough(&ShareOptions::new(dir)).unwrap(), false);
    Arc::new(Server::try_new(fs, ServerOptions::default(), None).unwrap())
}

/// A ready vring of `SIZE` entries at those addresses, whose own memory object is `mem`.
fn ready_vring(mem: &GuestMemoryMmap, desc: u64, avail: u64, used: u64) -> VringRwLock {
    let vring = VringRwLock::new(GuestMemoryAtomic::new(mem.clone()), SIZE).unwrap();
    vring.set_queue_info(desc, avail, used).unwrap();
    vring.set_queue_size(SIZE);
    vring.set_queue_ready(true);
    vring
}

/// A ready vring on `mock`'s rings.
fn mock_vring(mem: &GuestMemoryMmap, mock: &MockSplitQueue<GuestMemoryMmap>) -> VringRwLock {
    ready_vring(
        mem,
        mock.desc_table_addr().0,
        mock.avail_addr().0,
        mock.used_addr().0,
    )
}

/// Gives `vring` a kick eventfd and returns another handle on it, to see re-kicks.
fn watch_kicks(vring: &VringRwLock) -> File {
    // SAFETY: eventfd(2) returns a fresh descriptor (checked), owned by the File at once.
    let kick = unsafe {
        let fd = libc::eventfd(0, libc::EFD_NONBLOCK);
        assert!(fd >= 0);
        File::from_raw_fd(fd)
    };
    let observer = kick.try_clone().unwrap();
    vring.set_kick(Some(kick));
    observer
}

/// Whether the queue kicked itself since the last look.
fn was_rekicked(observer: &File) -> bool {
    let mut count = [0u8; 8];
    // SAFETY: reads 8 bytes into a live local buffer from the eventfd we hold.
    let n = unsafe { libc::read(observer.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    n == 8
}

/// Runs one wake-up of the queue loop on another thread; fails the test if it has not
/// returned within 10 seconds (a queue thread that spins).
fn process_within_limit(
    server: &TestServer,
    mem: &GuestMemoryMmap,
    vring: &VringRwLock,
    event_idx: bool,
) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (s2, a2, v2) = (
        server.clone(),
        GuestMemoryAtomic::new(mem.clone()),
        vring.clone(),
    );
    std::thread::spawn(move || {
        let r = process(&s2, &a2, &v2, event_idx);
        let _ = done_tx.send(r.is_ok());
    });
    let ok = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("process() never returned: the queue thread spins");
    assert!(ok);
}

/// Posts the GETATTR request and a reply buffer as chain 0 of `mock`'s table.
fn post_getattr(mem: &GuestMemoryMmap, mock: &MockSplitQueue<GuestMemoryMmap>) {
    mem.write_slice(&request(), GuestAddress(REQ)).unwrap();
    let descs = [
        RawDescriptor::from(Descriptor::new(REQ, 56, 1, 1)),
        RawDescriptor::from(Descriptor::new(REPLY, 4096, WRITE, 0)),
    ];
    for (i, d) in descs.iter().enumerate() {
        mock.desc_table().store(i as u16, *d).unwrap();
    }
}

fn request() -> Vec<u8> {
    let h = InHeader {
        len: 56,
        opcode: Opcode::Getattr as u32,
        unique: 7,
        nodeid: 1,
        ..Default::default()
    };
    let mut v = h.as_slice().to_vec();
    v.extend_from_slice(GetattrIn::default().as_slice());
    v
}

#[test]
fn a_broken_ring_does_not_end_the_queue_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
    let mock = MockSplitQueue::new(&mem, SIZE);
    post_getattr(&mem, &mock);
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let vring = mock_vring(&mem, &mock);
    let avail = mock.avail_addr();
    let used = mock.used_addr();
    let used_idx = || mem.read_obj::<u16>(used.unchecked_add(2)).unwrap();

    // A head beyond the queue, then a good chain: the good one is still served.
    mem.write_obj(200u16, avail.unchecked_add(4)).unwrap();
    mem.write_obj(0u16, avail.unchecked_add(6)).unwrap();
    mem.write_obj(2u16, avail.unchecked_add(2)).unwrap();
    process(&server, &atomic, &vring, false).expect("a bad head is skipped, not fatal");
    assert_eq!(used_idx(), 1, "the good chain was returned");
    let reply: [u8; 16] = mem.read_obj(GuestAddress(REPLY)).unwrap();
    assert_eq!(
        u64::from_le_bytes(reply[8..16].try_into().unwrap()),
        7,
        "its reply"
    );

    // An avail index more than a queue ahead: nothing is served, no error, no spinning
    // (with EVENT_IDX, enable_notification would report more work forever).
    mem.write_obj(2u16 + 100, avail.unchecked_add(2)).unwrap();
    process(&server, &atomic, &vring, true).expect("a runaway index is not fatal");
    process(&server, &atomic, &vring, false).expect("a runaway index is not fatal");
    assert_eq!(used_idx(), 1);
    // The guest fixes its index: serving resumes.
    mem.write_obj(0u16, avail.unchecked_add(8)).unwrap();
    mem.write_obj(3u16, avail.unchecked_add(2)).unwrap();
    process(&server, &atomic, &vring, false).unwrap();
    assert_eq!(used_idx(), 2);
}

/// A used ring laid over the avail ring: each completion publishes a new available entry.
/// One call serves one ring's worth, re-kicks its own queue and returns, so the thread's
/// event loop still sees the exit event (found by the vhost_user_messages fuzz target: the
/// worker spun forever, even after the frontend left).
#[test]
fn overlapping_rings_do_not_spin_the_queue_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
    // A chain outside guest memory: returned with nothing written, its used element is
    // all zeros, so the avail entries it overwrites all name head 0 again.
    let descs = [
        RawDescriptor::from(Descriptor::new(0x10_0000, 56, 1, 1)),
        RawDescriptor::from(Descriptor::new(REPLY, 4096, WRITE, 0)),
    ];
    for (i, d) in descs.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(0x1000 + 16 * i as u64))
            .unwrap();
    }
    let vring = ready_vring(&mem, 0x1000, 0x2000, 0x2000);
    let observer = watch_kicks(&vring);
    // avail: flags 0, idx 1, ring[0] = head 0; the used index is the same two bytes, and
    // the device's used count is one ahead of its avail count (as a SET_VRING_ADDR that
    // read a used index of 1 leaves it): every completion makes the next chain available.
    mem.write_slice(&[0, 0, 1, 0, 0, 0], GuestAddress(0x2000))
        .unwrap();
    virtio_queue::QueueT::set_next_used(vring.get_mut().get_queue_mut(), 1);

    process_within_limit(&server, &mem, &vring, false);
    // It stopped after one ring's worth and asked to be woken again.
    let used: u16 = mem.read_obj(GuestAddress(0x2002)).unwrap();
    assert_eq!(used, SIZE + 1, "one ring's worth, then a pause");
    assert!(was_rekicked(&observer), "the queue was not re-kicked");
}

/// The vring's own memory object (vhost-user-backend's, which holds a frontend's new table
/// before the device accepted or refused it) disagrees with the table the device checked:
/// the queue thread serves through the checked one only. It used to ask the vring's object
/// whether more chains were waiting, got "yes" from the other table while the checked one
/// had none, and spun, so the worker never exited (a rare hang of attacks_transport's
/// refused-table test; with a table past the end of its file, a SIGBUS).
#[test]
fn the_queue_thread_never_reads_the_rings_through_the_vrings_own_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let checked = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
    let mock = MockSplitQueue::new(&checked, SIZE);
    post_getattr(&checked, &mock);
    let (avail, used) = (mock.avail_addr(), mock.used_addr());
    checked.write_obj(0u16, avail.unchecked_add(4)).unwrap();
    checked.write_obj(1u16, avail.unchecked_add(2)).unwrap();
    // The other table: same layout, other pages, whose avail index says 9 chains wait.
    let other = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
    other.write_obj(9u16, avail.unchecked_add(2)).unwrap();
    let vring = mock_vring(&other, &mock);
    vring.set_queue_event_idx(true);

    process_within_limit(&server, &checked, &vring, true);
    let used_idx: u16 = checked.read_obj(used.unchecked_add(2)).unwrap();
    assert_eq!(used_idx, 1, "the chain went back through the checked table");
    let reply: [u8; 16] = checked.read_obj(GuestAddress(REPLY)).unwrap();
    assert_eq!(u64::from_le_bytes(reply[8..16].try_into().unwrap()), 7);
    let untouched: u16 = other.read_obj(used.unchecked_add(2)).unwrap();
    assert_eq!(untouched, 0, "nothing was written through the other table");
}

/// Chains of tens of thousands of descriptors (an indirect table whose entries all say
/// NEXT) in every slot of the ring: one wake-up walks at most `DESCRIPTORS_PER_WAKE` of
/// them, then re-kicks its queue and returns (found by the vhost_user_messages fuzz target: a
/// ring of 32768 such chains kept the queue thread in one wake-up for minutes, so the worker
/// did not exit when the frontend left).
#[test]
fn one_wake_up_walks_a_bounded_number_of_descriptors() {
    const TABLE: u64 = 0x10_0000;
    const ENTRIES: u64 = 65_535;
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
    let mock = MockSplitQueue::new(&mem, SIZE);
    // Head 0 is an indirect table of 65535 readable descriptors, each naming the next.
    const NEXT: u16 = 1;
    const INDIRECT: u16 = 4;
    let head = Descriptor::new(TABLE, (ENTRIES * 16) as u32, INDIRECT, 0);
    mock.desc_table()
        .store(0, RawDescriptor::from(head))
        .unwrap();
    for i in 0..ENTRIES {
        let d = Descriptor::new(REQ, 0, NEXT, (i + 1) as u16);
        mem.write_obj(RawDescriptor::from(d), GuestAddress(TABLE + 16 * i))
            .unwrap();
    }
    // Every avail slot names head 0.
    let avail = mock.avail_addr();
    for slot in 0..u64::from(SIZE) {
        mem.write_obj(0u16, avail.unchecked_add(4 + 2 * slot))
            .unwrap();
    }
    mem.write_obj(SIZE, avail.unchecked_add(2)).unwrap();
    let atomic = GuestMemoryAtomic::new(mem.clone());
    let vring = mock_vring(&mem, &mock);
    let observer = watch_kicks(&vring);

    process(&server, &atomic, &vring, false).unwrap();
    // Each chain walks MAX_DESCRIPTORS (32768) before it is refused as too long, so the
    // budget of one wake-up covers two of them.
    let per_chain = crate::transport::MAX_DESCRIPTORS;
    let expect = super::queue::DESCRIPTORS_PER_WAKE.div_ceil(per_chain) as u16;
    let used: u16 = mem.read_obj(mock.used_addr().unchecked_add(2)).unwrap();
    assert_eq!(used, expect, "a bounded walk, then a pause");
    assert!(was_rekicked(&observer), "the queue was not re-kicked");
    // The next wake-ups serve the rest.
    while mem
        .read_obj::<u16>(mock.used_addr().unchecked_add(2))
        .unwrap()
        < SIZE
    {
        process(&server, &atomic, &vring, false).unwrap();
    }
}

/// An avail ring whose index is in guest memory but whose entries are not (a frontend that
/// put it against a hole): the index says a chain waits, no chain can be popped. With
/// EVENT_IDX, re-enabling notifications keeps saying "more"; the queue thread asks twice,
/// then returns instead of spinning.
#[test]
fn an_avail_index_with_nothing_behind_it_does_not_spin_the_queue_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    // Guest memory with a hole at 0x1000..0x2000; the avail ring's flags and index are
    // the last four bytes before it, its entries in it.
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000), (GuestAddress(0x2000), 0x3e000)])
            .unwrap();
    let avail = GuestAddress(0xffc);
    mem.write_obj(1u16, avail.unchecked_add(2)).unwrap();
    let vring = ready_vring(&mem, 0x2000, avail.0, 0x3000);
    vring.set_queue_event_idx(true);

    process_within_limit(&server, &mem, &vring, true);
    let used: u16 = mem.read_obj(GuestAddress(0x3002)).unwrap();
    assert_eq!(used, 0, "nothing was popped, nothing returned");
}
