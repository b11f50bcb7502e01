//! The per-queue loop: pop descriptor chains, hand each to the FUSE server (on this thread, or
//! on the share's request pool for the ones that may block), return it to the used ring, and
//! notify the guest once per batch (EVENT_IDX tells us when it wants one).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use fuse_backend_rs::api::filesystem::FileSystem;
use vhost_user_backend::VringT;
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};

use super::dirty_log::{self, Written};
use super::order::{Keys, Mode};
use super::poll::Poller;
use super::pool::Pool;
use super::route::{self, Route};
use super::{GuestMem, Vring};
use crate::fuse::server::Server;
use crate::transport::{split_chain_logged, Reader, Writer};

/// What a queue thread may use besides the server: the share's request pool and this queue's
/// poller, each optional.
#[derive(Clone, Copy, Default)]
pub struct Tuning<'a> {
    pub pool: Option<&'a Pool>,
    pub poller: Option<&'a Poller>,
}

/// Drains `vring` on this thread alone (no pool, no polling).
#[cfg(test)]
pub fn process<F>(
    server: &Arc<Server<F>>,
    mem: &GuestMemoryAtomic<GuestMem>,
    vring: &Vring,
    event_idx: bool,
) -> io::Result<()>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    process_with(server, mem, vring, event_idx, Tuning::default())
}

/// Drains `vring`. With EVENT_IDX, re-enables notifications and drains again if the guest
/// added chains meanwhile, so none is left waiting for a kick that already happened; and
/// first polls the ring for the poller's window, with notifications still off.
pub fn process_with<F>(
    server: &Arc<Server<F>>,
    mem: &GuestMemoryAtomic<GuestMem>,
    vring: &Vring,
    event_idx: bool,
    tuning: Tuning<'_>,
) -> io::Result<()>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    if let Some(p) = tuning.poller {
        p.woken();
    }
    // One ring's worth of chains per call, and at most `DESCRIPTORS_PER_WAKE` descriptors
    // walked. A guest that lays its used ring over its avail ring turns every completion into a
    // new available entry; one that fills a large ring with chains of thousands of descriptors
    // makes each pop walk them all (a ring of 32768 such chains was over a billion descriptor
    // reads). Without the bounds this loop would not return to the thread's event loop for
    // seconds or forever, and the thread would not see the exit event either.
    let mut budget = Budget::new(vring.get_ref().get_queue().size());
    // Every ring access goes through the table the device checked, never through the vring's
    // own memory (vhost-user-backend's shared object, which holds a new table before the device
    // has accepted it): a ring read through a refused table gave SIGBUS, or an avail index that
    // disagreed with the one `drain` saw and so "more work" forever.
    let guard = mem.memory();
    let guest: &GuestMem = &guard;
    // Rounds in a row that served nothing although the ring said chains were waiting.
    let mut empty_rounds = 0u8;
    loop {
        if event_idx {
            if let Err(e) = vring.get_mut().get_queue_mut().disable_notification(guest) {
                return unusable(e);
            }
        }
        let before = budget.chains;
        if !drain(server, mem, vring, event_idx, &mut budget, tuning)? || !event_idx {
            // An unusable ring would make enable_notification report "more work" forever.
            break;
        }
        empty_rounds = if budget.chains == before {
            empty_rounds + 1
        } else {
            0
        };
        // One empty round is a race with the guest; two mean its avail index announces chains
        // that cannot be popped, and asking again would only spin.
        let stuck = empty_rounds >= 2;
        if let Some(p) = tuning.poller {
            if !stuck && poll_avail(mem, vring, p.window()) {
                continue;
            }
        }
        let more = vring.get_mut().get_queue_mut().enable_notification(guest);
        match more {
            Ok(true) if !stuck => {}
            Ok(true) => {
                crate::guest_warn!("queue's avail index announces chains that cannot be popped");
                break;
            }
            Ok(false) => break,
            Err(e) => return unusable(e),
        }
    }
    if budget.spent() {
        rekick(vring);
    }
    if let Some(p) = tuning.poller {
        p.sleeping();
    }
    Ok(())
}

/// Watches the avail ring for up to `window`; true as soon as the guest made a chain
/// available.
fn poll_avail(
    mem: &GuestMemoryAtomic<GuestMem>,
    vring: &Vring,
    window: std::time::Duration,
) -> bool {
    if window.is_zero() {
        return false;
    }
    let guard = mem.memory();
    let start = Instant::now();
    loop {
        {
            let state = vring.get_ref();
            let q = state.get_queue();
            match q.avail_idx(&*guard, std::sync::atomic::Ordering::Acquire) {
                Ok(idx) if idx.0 != q.next_avail() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        if start.elapsed() >= window {
            return false;
        }
        // Yield rather than spin: on an idle core sched_yield returns at once, but on a busy
        // machine the thread that would make the next request (the guest's vCPU, another
        // worker) runs first instead of waiting for the poll to end. A plain spin cost a
        // third of the metadata rate on a loaded machine (docs/performance.md).
        std::thread::yield_now();
    }
}

/// Wakes this queue's thread again, as a guest kick would, after a drain stopped at its budget:
/// the rest is served once the thread's other events (the exit event among them) had a turn.
fn rekick(vring: &Vring) {
    let state = vring.get_ref();
    if let Some(kick) = state.get_kick() {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to an eventfd the vring holds open.
        let n = unsafe { libc::write(kick.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n != one.len() as isize {
            log::warn!("re-kicking a queue: {}", io::Error::last_os_error());
        }
    }
}

/// A ring the guest (or frontend) broke: its avail index ran more than a queue ahead, or a
/// ring is not in guest memory. Nothing can be served until it is fixed, but the queue thread
/// must stay: an error from here would end it for good (vhost-user-backend's loop stops on the
/// first error), leaving the other queues of the thread dead too.
fn unusable(e: virtio_queue::Error) -> io::Result<()> {
    crate::guest_warn!("queue not usable until the guest fixes its ring: {e}");
    Ok(())
}

/// What one wake-up of a queue thread may still do before it gives its event loop a turn.
#[derive(Clone, Copy)]
struct Budget {
    /// Chains still to pop.
    chains: usize,
    /// Descriptors still to walk (a chain is walked whole, so one chain may overdraw it).
    descriptors: usize,
}

/// Descriptors one wake-up may walk: a few milliseconds of work, hundreds of full-size 1 MiB
/// requests in 4 KiB pages, far more than a ring of ordinary chains holds.
pub(super) const DESCRIPTORS_PER_WAKE: usize = 65_536;

impl Budget {
    fn new(queue_size: u16) -> Self {
        Budget {
            chains: usize::from(queue_size).max(1),
            descriptors: DESCRIPTORS_PER_WAKE,
        }
    }

    fn spent(&self) -> bool {
        self.chains == 0 || self.descriptors == 0
    }
}

/// Serves available chains within `budget` (counted down). `Ok(false)` when the ring is
/// unusable (see [`unusable`]) or the budget is spent.
fn drain<F>(
    server: &Arc<Server<F>>,
    mem: &GuestMemoryAtomic<GuestMem>,
    vring: &Vring,
    event_idx: bool,
    budget: &mut Budget,
    tuning: Tuning<'_>,
) -> io::Result<bool>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    let guard = mem.memory();
    // Chains borrow the memory for the whole drain, rather than each holding a clone of the
    // guard (an Arc clone and drop per chain).
    let guest: &GuestMem = &guard;
    // The chain served last, returned to the used ring when the lock is next taken.
    let mut finished: Option<(u16, u32)> = None;
    let mut served = 0usize;
    let mut usable = true;
    loop {
        // One lock round per chain: return the previous chain, notify the guest if it asked
        // for it, and pop the next chain. The lock is not held while a request is served, so
        // the vhost-user message thread (GET_VRING_BASE, SET_VRING_*) never waits on a slow
        // one; that is also why each chain comes from a fresh `iter` (an iterator borrows the
        // queue, and so the lock) rather than from one iterator for the whole drain.
        let chain = {
            let mut state = vring.get_mut();
            if let Some((head, used)) = finished.take() {
                match state.get_queue_mut().add_used(guest, head, used) {
                    Ok(()) => {
                        served += 1;
                        // With EVENT_IDX the guest says which used index it wants to hear
                        // about, so asking after every completion costs no extra interrupts
                        // and lets the guest start on early replies while later requests are
                        // still being served (a signal only at the end of the batch made guest
                        // and device take turns).
                        if event_idx {
                            match state.get_queue_mut().needs_notification(guest) {
                                Ok(true) => state.signal_used_queue()?,
                                Ok(false) => {}
                                Err(e) => {
                                    unusable(e)?;
                                    return Ok(false);
                                }
                            }
                        }
                    }
                    // The avail ring named a head beyond the queue (or the used ring is gone):
                    // there is no slot to return. Skip it; the chains after it are still served.
                    Err(e) => crate::guest_warn!("cannot return descriptor chain {head}: {e}"),
                }
            }
            if budget.spent() {
                break;
            }
            match state.get_queue_mut().iter(guest) {
                Ok(mut iter) => iter.next(),
                Err(e) => {
                    unusable(e)?;
                    usable = false;
                    None
                }
            }
        };
        let Some(chain) = chain else { break };
        budget.chains -= 1;
        let head = chain.head_index();
        // The writable descriptors, to mark in the dirty log after the reply is written.
        let mut written = Written::new();
        let mut walked = 0usize;
        let descriptors = chain.inspect(|_| walked += 1);
        let split = split_chain_logged(guest, descriptors, &mut written);
        budget.descriptors = budget.descriptors.saturating_sub(walked);
        let used = match split {
            Ok((reader, writer)) => match tuning.pool {
                None => {
                    let used = server.handle(reader, writer);
                    dirty_log::mark_written(guest, &written);
                    Some(used)
                }
                Some(pool) => {
                    let job = Job {
                        server,
                        mem: &guard,
                        vring,
                        event_idx,
                        head,
                        written,
                    };
                    job.serve_or_hand_over(pool, reader, writer)
                }
            },
            Err(e) => {
                // A chain we cannot even walk gets no reply; it is returned so the ring does
                // not leak the slot.
                crate::guest_warn!("dropping malformed descriptor chain {head}: {e}");
                Some(0)
            }
        };
        // A chain handed to the pool is returned by the pool thread that serves it.
        if let Some(used) = used {
            finished = Some((head, u32::try_from(used).unwrap_or(0)));
        }
    }
    if !event_idx && served > 0 {
        vring.signal_used_queue()?;
    }
    Ok(usable && !budget.spent())
}

/// One chain about to be served, and what is needed to serve it elsewhere.
struct Job<'a, F> {
    server: &'a Arc<Server<F>>,
    /// The very memory the chain was split against (not a fresh load of the atomic, which a
    /// memory update may have replaced since).
    mem: &'a vm_memory::GuestMemoryLoadGuard<GuestMem>,
    vring: &'a Vring,
    event_idx: bool,
    head: u16,
    /// The reply's guest ranges to mark in the dirty log once it is written.
    written: Written,
}

impl<F> Job<'_, F>
where
    F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static,
{
    /// Serves the request here and returns the used length, or hands it to the pool (`None`)
    /// when it may block or must wait behind a request already there.
    fn serve_or_hand_over(self, pool: &Pool, r: Reader<'_>, w: Writer<'_>) -> Option<usize> {
        let mut head = [0u8; route::PEEK];
        let n = r.peek(&mut head);
        match route::route(&head[..n]) {
            Route::Free => {}
            Route::Barrier => pool.wait_idle(),
            Route::Forget if pool.outstanding() > 0 => {
                let mut all = vec![0u8; r.available_bytes()];
                let n = r.peek(&mut all);
                if pool.any_busy(|busy| route::forgets_busy(&all[..n], busy)) {
                    pool.wait_idle();
                }
            }
            Route::Forget => {}
            Route::Inline(keys, mode) => {
                if pool.busy(&keys) {
                    self.hand_over(pool, keys, mode, r, w);
                    return None;
                }
            }
            Route::Pool(keys, mode) => {
                self.hand_over(pool, keys, mode, r, w);
                return None;
            }
        }
        let used = self.server.handle(r, w);
        dirty_log::mark_written(&**self.mem, &self.written);
        Some(used)
    }

    fn hand_over(self, pool: &Pool, keys: Keys, mode: Mode, r: Reader<'_>, w: Writer<'_>) {
        // The mapping the reader and writer point into, kept alive until the request is done.
        let mem = self.mem.clone().into_inner();
        // SAFETY: the reader's and writer's slices point into guest memory regions owned by
        // `mem`: it is the GuestMemoryMmap `drain` split the chain against (its own guard,
        // cloned), and a memory update replaces the Arc rather than changing the regions an
        // existing one holds. `Detached` keeps `mem` and drops the slices first, so they
        // never outlive the mapping: the 'static only stands for "as long as `mem`".
        let detached = unsafe {
            Detached {
                reader: std::mem::transmute::<Reader<'_>, Reader<'static>>(r),
                writer: std::mem::transmute::<Writer<'_>, Writer<'static>>(w),
                written: self.written,
                _mem: mem,
            }
        };
        let server = self.server.clone();
        let vring = self.vring.clone();
        let (head, event_idx) = (self.head, self.event_idx);
        pool.submit(
            keys,
            mode,
            Box::new(move || {
                let (used, mem) = detached.serve(&server);
                complete(&vring, &mem, head, used, event_idx);
            }),
        );
    }
}

/// A request's reader and writer with the guest memory they point into.
struct Detached {
    // Declared (so dropped) before the memory.
    reader: Reader<'static>,
    writer: Writer<'static>,
    written: Written,
    _mem: Arc<GuestMem>,
}

impl Detached {
    /// Serves the request; returns its used length and the memory, let go of the reader and
    /// writer first, for returning the chain to the used ring.
    fn serve<F>(self, server: &Server<F>) -> (usize, Arc<GuestMem>)
    where
        F: FileSystem<Inode = u64, Handle = u64> + Sync,
    {
        let Detached {
            reader,
            writer,
            written,
            _mem,
        } = self;
        let used = server.handle(reader, writer);
        // Before the chain goes to the used ring, as on the queue thread.
        dirty_log::mark_written(&*_mem, &written);
        (used, _mem)
    }
}

// SAFETY: the reader and writer are plain pointers into guest memory, which is shared memory
// every thread of the worker may access (the queue threads do, concurrently with the guest);
// all accesses are volatile copies. Nothing in them is tied to the thread that made them, and
// the Arc keeps the mapping alive wherever the value goes.
unsafe impl Send for Detached {}

/// Returns a chain served on the pool to the used ring and notifies the guest if it wants it.
/// Runs on a pool thread; the ring's lock orders it with the queue thread's own returns. The
/// used ring is written through `mem`, the table the chain was split against (see
/// `process_with` for why never the vring's own).
fn complete(vring: &Vring, mem: &GuestMem, head: u16, used: usize, event_idx: bool) {
    let mut state = vring.get_mut();
    let queue = state.get_queue_mut();
    if let Err(e) = queue.add_used(mem, head, u32::try_from(used).unwrap_or(0)) {
        crate::guest_warn!("cannot return descriptor chain {head}: {e}");
        return;
    }
    let notify = if event_idx {
        match queue.needs_notification(mem) {
            Ok(n) => n,
            Err(e) => {
                crate::guest_warn!("queue not usable until the guest fixes its ring: {e}");
                false
            }
        }
    } else {
        true
    };
    if notify {
        if let Err(e) = state.signal_used_queue() {
            log::warn!("notifying the guest of a pool completion: {e}");
        }
    }
}
