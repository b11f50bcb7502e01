//! The queue loop with a request pool, on a real split ring in guest memory, against a
//! filesystem whose FSYNC and FALLOCATE block until the test opens a gate: so "a slow
//! request does not hold up a cheap one" and "a request on a busy node waits behind it" are
//! facts checked in the used ring, independent of timing.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{GuestMem as GuestMemoryMmap, Vring as VringRwLock};
use fuse_backend_rs::abi::fuse_abi::stat64;
use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use vhost_user_backend::VringT;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress, GuestMemoryAtomic};

use super::pool::Pool;
use super::queue::{process_with, Tuning};
use crate::fuse::abi::{FallocateIn, FsyncIn, GetattrIn, InHeader, InitIn, Opcode};
use crate::fuse::server::{Server, ServerOptions};

const SIZE: u16 = 64;
const WRITE: u16 = 2;
const NEXT: u16 = 1;

/// FSYNC and FALLOCATE wait for the gate; GETATTR answers at once.
#[derive(Default)]
struct Gated {
    open: Mutex<bool>,
    cv: Condvar,
    entered: Mutex<u32>,
    entered_cv: Condvar,
}

impl Gated {
    fn block(&self) {
        *self.entered.lock().unwrap() += 1;
        self.entered_cv.notify_all();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    fn wait_entered(&self, n: u32) {
        let mut e = self.entered.lock().unwrap();
        while *e < n {
            let (g, t) = self
                .entered_cv
                .wait_timeout(e, Duration::from_secs(10))
                .unwrap();
            assert!(
                !t.timed_out(),
                "the blocking request never reached the filesystem"
            );
            e = g;
        }
    }

    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl FileSystem for Gated {
    type Inode = u64;
    type Handle = u64;

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> std::io::Result<(stat64, Duration)> {
        // SAFETY: stat64 is a plain C struct of integers; all-zero is a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_ino = inode;
        st.st_mode = libc::S_IFREG | 0o644;
        Ok((st, Duration::from_secs(1)))
    }

    fn fsync(&self, _ctx: &Context, _inode: u64, _datasync: bool, _h: u64) -> std::io::Result<()> {
        self.block();
        Ok(())
    }

    fn fallocate(
        &self,
        _ctx: &Context,
        _inode: u64,
        _h: u64,
        _mode: u32,
        _offset: u64,
        _length: u64,
    ) -> std::io::Result<()> {
        self.block();
        Ok(())
    }
}

/// Gates the server's filesystem through an Arc so the test keeps a handle on it.
struct Shared(Arc<Gated>);

impl FileSystem for Shared {
    type Inode = u64;
    type Handle = u64;

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> std::io::Result<(stat64, Duration)> {
        self.0.getattr(ctx, inode, handle)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, h: u64) -> std::io::Result<()> {
        self.0.fsync(ctx, inode, datasync, h)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        h: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> std::io::Result<()> {
        self.0.fallocate(ctx, inode, h, mode, offset, length)
    }
}

/// A ring in guest memory and a way to post requests on it.
struct Ring {
    mem: GuestMemoryMmap,
    atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    vring: VringRwLock,
    avail: GuestAddress,
    used: GuestAddress,
    desc: GuestAddress,
    posted: u16,
}

impl Ring {
    fn new() -> Ring {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100000)]).unwrap();
        let mock = MockSplitQueue::new(&mem, SIZE);
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let vring = VringRwLock::new(atomic.clone(), SIZE).unwrap();
        vring
            .set_queue_info(
                mock.desc_table_addr().0,
                mock.avail_addr().0,
                mock.used_addr().0,
            )
            .unwrap();
        vring.set_queue_size(SIZE);
        vring.set_queue_ready(true);
        Ring {
            avail: mock.avail_addr(),
            used: mock.used_addr(),
            desc: mock.desc_table_addr(),
            mem,
            atomic,
            vring,
            posted: 0,
        }
    }

    /// Posts `opcode` on `nodeid` with `body`; returns the chain's head.
    fn post<T: ByteValued>(&mut self, opcode: Opcode, unique: u64, nodeid: u64, body: T) -> u16 {
        let n = self.posted;
        let head = 2 * n;
        let req = GuestAddress(0x40000 + 0x1000 * u64::from(n));
        let reply = GuestAddress(0x80000 + 0x1000 * u64::from(n));
        let len = (std::mem::size_of::<InHeader>() + std::mem::size_of::<T>()) as u32;
        let h = InHeader {
            len,
            opcode: opcode as u32,
            unique,
            nodeid,
            ..Default::default()
        };
        self.mem.write_obj(h, req).unwrap();
        self.mem
            .write_slice(body.as_slice(), req.unchecked_add(40))
            .unwrap();
        let descs = [
            Descriptor::new(req.0, len, NEXT, head + 1),
            Descriptor::new(reply.0, 0x1000, WRITE, 0),
        ];
        for (i, d) in descs.iter().enumerate() {
            let at = self.desc.unchecked_add(16 * (u64::from(head) + i as u64));
            self.mem.write_obj(RawDescriptor::from(*d), at).unwrap();
        }
        self.mem
            .write_obj(head, self.avail.unchecked_add(4 + 2 * u64::from(n)))
            .unwrap();
        self.posted += 1;
        self.mem
            .write_obj(self.posted, self.avail.unchecked_add(2))
            .unwrap();
        head
    }

    /// Heads in the used ring, in the order they were returned.
    fn used_heads(&self) -> Vec<u16> {
        let idx: u16 = self.mem.read_obj(self.used.unchecked_add(2)).unwrap();
        (0..u64::from(idx))
            .map(|i| {
                let id: u32 = self
                    .mem
                    .read_obj(self.used.unchecked_add(4 + 8 * i))
                    .unwrap();
                id as u16
            })
            .collect()
    }

    /// The `unique` and error of the reply to the `n`th posted request.
    fn reply(&self, head: u16) -> (u64, i32) {
        let at = GuestAddress(0x80000 + 0x1000 * u64::from(head / 2));
        let error: i32 = self.mem.read_obj(at.unchecked_add(4)).unwrap();
        let unique: u64 = self.mem.read_obj(at.unchecked_add(8)).unwrap();
        (unique, error)
    }
}

fn init_in() -> InitIn {
    InitIn {
        major: 7,
        minor: 38,
        ..Default::default()
    }
}

/// Opens the gate when dropped, so that a failed assertion unwinds instead of leaving the pool's
/// drop waiting forever on a request blocked at a gate nobody opens.
struct OpenOnDrop(Arc<Gated>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open_gate();
    }
}

fn setup() -> (Arc<Gated>, Arc<Server<Shared>>, Pool, Ring) {
    let gated = Arc::new(Gated::default());
    let server = Arc::new(
        Server::try_new(Shared(gated.clone()), ServerOptions::default(), None)
            .expect("default options"),
    );
    (gated, server, Pool::new(2).unwrap(), Ring::new())
}

#[test]
fn a_blocked_fsync_does_not_hold_up_a_getattr_of_another_node() {
    let (gated, server, pool, mut ring) = setup();
    // Declared after the pool, so dropped (the gate opened) before it.
    let _open_on_failure = OpenOnDrop(gated.clone());
    let tuning = Tuning {
        pool: Some(&pool),
        poller: None,
    };
    let init = ring.post(Opcode::Init, 1, 0, init_in());
    let fsync = ring.post(Opcode::Fsync, 2, 5, FsyncIn::default());
    let getattr = ring.post(Opcode::Getattr, 3, 6, GetattrIn::default());
    process_with(&server, &ring.atomic, &ring.vring, false, tuning).unwrap();
    gated.wait_entered(1);
    assert_eq!(
        ring.used_heads(),
        [init, getattr],
        "the GETATTR was answered while the FSYNC blocks in the pool"
    );
    assert_eq!(ring.reply(getattr), (3, 0));
    gated.open_gate();
    pool.wait_idle();
    assert_eq!(ring.used_heads(), [init, getattr, fsync]);
    assert_eq!(ring.reply(fsync), (2, 0), "the FSYNC's own reply");
}

#[test]
fn a_request_on_a_node_busy_in_the_pool_waits_behind_it() {
    let (gated, server, pool, mut ring) = setup();
    // Declared after the pool, so dropped (the gate opened) before it.
    let _open_on_failure = OpenOnDrop(gated.clone());
    let tuning = Tuning {
        pool: Some(&pool),
        poller: None,
    };
    let init = ring.post(Opcode::Init, 1, 0, init_in());
    let falloc = ring.post(Opcode::Fallocate, 2, 5, FallocateIn::default());
    let same = ring.post(Opcode::Getattr, 3, 5, GetattrIn::default());
    let other = ring.post(Opcode::Getattr, 4, 6, GetattrIn::default());
    process_with(&server, &ring.atomic, &ring.vring, false, tuning).unwrap();
    gated.wait_entered(1);
    // Give a wrongly ordered GETATTR of node 5 every chance to overtake.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ring.used_heads(), [init, other]);
    gated.open_gate();
    pool.wait_idle();
    assert_eq!(
        ring.used_heads(),
        [init, other, falloc, same],
        "node 5's GETATTR came back after its FALLOCATE"
    );
    assert_eq!(ring.reply(same), (3, 0));
}
