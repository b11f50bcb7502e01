//! A split virtqueue driven from the driver ("guest") side.
//!
//! The rings live in [`GuestRam`]; every access to them is a volatile copy or an atomic load or
//! store through vm-memory. Many requests may be in flight at once and several threads may
//! submit and wait concurrently: one waiter at a time sleeps on the call eventfd, the others on
//! a condition variable, and whoever reaps the used ring hands completions to their owners.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vm_memory::{ByteValued, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::error::{Error, Result};
use crate::memory::{GuestBuf, GuestRam};

/// Descriptor continues via `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Buffer is device-writable.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Buffer holds an indirect descriptor table.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Device asks the driver not to kick (used ring flags).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// One entry of the descriptor table, exactly as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}
// SAFETY: repr(C), 16 bytes of integers with no padding; any bit pattern is valid.
unsafe impl ByteValued for Descriptor {}

/// One entry of the used ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedElem {
    pub id: u32,
    pub len: u32,
}
// SAFETY: repr(C), two u32 with no padding; any bit pattern is valid.
unsafe impl ByteValued for UsedElem {}

/// A hand-made descriptor for [`VirtQueue::post_raw`]: written verbatim into slot `index`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDesc {
    pub index: u16,
    pub desc: Descriptor,
}

/// Identifies one submitted chain on its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

/// A finished chain: what the device reported and the buffers that made up the chain.
#[derive(Debug)]
pub struct Completion {
    /// Head descriptor index the device returned.
    pub head: u16,
    /// `len` of the used element: bytes the device claims to have written.
    pub used_len: u32,
    /// The chain's buffers: device-readable ones first, then device-writable ones.
    pub bufs: Vec<GuestBuf>,
    /// How many of `bufs` are device-readable.
    pub n_readable: usize,
}

impl Completion {
    /// The device-writable buffers, in chain order.
    pub fn writable(&self) -> &[GuestBuf] {
        &self.bufs[self.n_readable..]
    }

    /// Bytes the device wrote: `used_len`, capped at the writable buffers' total.
    pub fn written_len(&self) -> usize {
        let capacity: usize = self.writable().iter().map(|b| b.len()).sum();
        capacity.min(self.used_len as usize)
    }

    /// Concatenation of the writable buffers' first `used_len` bytes (capped at their total).
    pub fn written_bytes(&self) -> Result<Vec<u8>> {
        self.written_from(0)
    }

    /// The written bytes from `skip` on (empty when `skip` is past them), copied straight out
    /// of guest memory into one `Vec`: no intermediate copy per buffer.
    pub fn written_from(&self, skip: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.written_len().saturating_sub(skip)];
        self.copy_written(skip, &mut out)?;
        Ok(out)
    }

    /// Copies written bytes starting `from` bytes in into `dst`, across buffer boundaries;
    /// returns how many were copied (less than `dst.len()` at the end of the written bytes).
    pub fn copy_written(&self, from: usize, dst: &mut [u8]) -> Result<usize> {
        let end = self.written_len();
        let mut pos = 0;
        let mut done = 0;
        for b in self.writable() {
            if done == dst.len() || pos >= end {
                break;
            }
            let buf_end = (pos + b.len()).min(end);
            let start = (from + done).max(pos);
            if start < buf_end {
                let n = (buf_end - start).min(dst.len() - done);
                b.read_into(start - pos, &mut dst[done..done + n])?;
                done += n;
            }
            pos += b.len();
        }
        Ok(done)
    }
}

/// Guest physical addresses of a queue's three parts.
#[derive(Clone, Copy, Debug)]
pub struct RingAddresses {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// Counters, for benchmarks and for tests of notification suppression.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    pub kicks: AtomicU64,
    pub kicks_suppressed: AtomicU64,
    pub calls: AtomicU64,
}

struct InFlight {
    token: u64,
    descs: Vec<u16>,
    bufs: Vec<GuestBuf>,
    n_readable: usize,
    abandoned: bool,
}

struct QState {
    free: Vec<u16>,
    avail_idx: u16,
    last_used: u16,
    inflight: HashMap<u16, InFlight>,
    done: HashMap<u64, Completion>,
    unexpected: Vec<UsedElem>,
    next_token: u64,
    waiter: bool,
}

/// A split virtqueue.
pub struct VirtQueue {
    index: u16,
    size: u16,
    event_idx: bool,
    always_kick: bool,
    ram: Arc<GuestRam>,
    _ring: GuestBuf,
    addrs: RingAddresses,
    kick: EventFd,
    call: EventFd,
    // Wakes the thread sleeping on `call` when another thread reaped the used ring (its armed
    // used_event may be stale, so the device might not signal again).
    wake: EventFd,
    // The vhost-user socket (a dup): a hangup there means the backend is gone.
    hangup: Option<OwnedFd>,
    state: Mutex<QState>,
    cond: Condvar,
    stats: QueueStats,
}

impl std::fmt::Debug for VirtQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtQueue")
            .field("index", &self.index)
            .field("size", &self.size)
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl VirtQueue {
    /// Lays out a queue of `size` entries (a power of two up to 32768) in `ram`. Waits fail
    /// fast with [`Error::Disconnected`] once `hangup` (the vhost-user socket) reports a hangup.
    pub fn new(
        ram: &Arc<GuestRam>,
        index: u16,
        size: u16,
        event_idx: bool,
        always_kick: bool,
        hangup: Option<OwnedFd>,
    ) -> Result<Self> {
        if size == 0 || !size.is_power_of_two() || size > 32768 {
            return Err(Error::InvalidArgument(format!("queue size {size}")));
        }
        let n = size as u64;
        let desc_len = 16 * n;
        let avail_len = 6 + 2 * n;
        let used_off = (desc_len + avail_len).next_multiple_of(64);
        let used_len = 6 + 8 * n;
        let ring = ram.alloc((used_off + used_len) as usize, 4096)?;
        let addrs = RingAddresses {
            desc: ring.addr(),
            avail: ring.addr() + desc_len,
            used: ring.addr() + used_off,
        };
        let kick = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", e))?;
        let call = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", e))?;
        let wake = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("eventfd", e))?;
        Ok(VirtQueue {
            index,
            size,
            event_idx,
            always_kick,
            ram: Arc::clone(ram),
            _ring: ring,
            addrs,
            kick,
            call,
            wake,
            hangup,
            state: Mutex::new(QState {
                free: (0..size).rev().collect(),
                avail_idx: 0,
                last_used: 0,
                inflight: HashMap::new(),
                done: HashMap::new(),
                unexpected: Vec::new(),
                next_token: 1,
                waiter: false,
            }),
            cond: Condvar::new(),
            stats: QueueStats::default(),
        })
    }

    /// Queue index on the device.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest addresses of the descriptor table, avail ring and used ring.
    pub fn ring_addresses(&self) -> RingAddresses {
        self.addrs
    }

    /// The eventfd the driver writes to notify the device.
    pub fn kick_fd(&self) -> &EventFd {
        &self.kick
    }

    /// The eventfd the device writes to interrupt the driver.
    pub fn call_fd(&self) -> &EventFd {
        &self.call
    }

    /// Counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    /// Free descriptor slots right now.
    pub fn free_descriptors(&self) -> usize {
        self.state.lock().unwrap().free.len()
    }

    /// Chains submitted and not yet returned (including abandoned ones).
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().inflight.len()
    }

    /// Used elements whose id matched no chain in flight (a device bug, or raw heads).
    pub fn take_unexpected(&self) -> Vec<UsedElem> {
        std::mem::take(&mut self.state.lock().unwrap().unexpected)
    }

    /// Submits a chain of `readable` then `writable` buffers, one descriptor each, and kicks.
    /// Waits up to `timeout` for enough free descriptors.
    pub fn submit(
        &self,
        readable: Vec<GuestBuf>,
        writable: Vec<GuestBuf>,
        timeout: Duration,
    ) -> Result<Token> {
        let n = readable.len() + writable.len();
        if n == 0 || n > self.size as usize {
            return Err(Error::InvalidArgument(format!(
                "a chain of {n} descriptors on a queue of {}",
                self.size
            )));
        }
        let (mut st, ()) = self.wait_until(timeout, |st| (st.free.len() >= n).then_some(()))?;
        let idxs: Vec<u16> = (0..n).map(|_| st.free.pop().expect("checked")).collect();
        let n_readable = readable.len();
        let mut bufs = readable;
        bufs.extend(writable);
        for (i, (&slot, buf)) in idxs.iter().zip(&bufs).enumerate() {
            let mut flags = if i >= n_readable {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            };
            let mut next = 0;
            if i + 1 < n {
                flags |= VIRTQ_DESC_F_NEXT;
                next = idxs[i + 1];
            }
            let desc = Descriptor {
                addr: buf.addr(),
                len: buf.len() as u32,
                flags,
                next,
            };
            self.write_desc(slot, desc)?;
        }
        let head = idxs[0];
        let token = self.track(&mut st, head, idxs, bufs, n_readable);
        self.publish(&mut st, head)?;
        Ok(token)
    }

    /// Writes hand-made descriptors verbatim, reserves their slots (each must be free) and
    /// publishes `head` (which must be one of them). `keep` buffers live until completion.
    pub fn post_raw(&self, descs: &[RawDesc], head: u16, keep: Vec<GuestBuf>) -> Result<Token> {
        let mut st = self.state.lock().unwrap();
        let mut idxs: Vec<u16> = descs.iter().map(|d| d.index).collect();
        idxs.sort_unstable();
        idxs.dedup();
        if idxs.len() != descs.len() || !idxs.contains(&head) {
            return Err(Error::InvalidArgument(
                "raw descriptors must use distinct slots and include the head".into(),
            ));
        }
        for i in &idxs {
            if !st.free.contains(i) {
                return Err(Error::InvalidArgument(format!(
                    "descriptor slot {i} is busy"
                )));
            }
        }
        st.free.retain(|i| !idxs.contains(i));
        for d in descs {
            self.write_desc(d.index, d.desc)?;
        }
        let n_readable = keep.len();
        let token = self.track(&mut st, head, idxs, keep, n_readable);
        self.publish(&mut st, head)?;
        Ok(token)
    }

    /// Publishes any value as an avail-ring head without reserving or tracking anything; its
    /// used element (if any) shows up in [`Self::take_unexpected`].
    pub fn publish_raw(&self, head: u16) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        self.publish(&mut st, head)
    }

    /// Writes a descriptor slot directly (no bookkeeping), e.g. to rewrite a published chain.
    pub fn write_desc(&self, slot: u16, desc: Descriptor) -> Result<()> {
        if slot >= self.size {
            return Err(Error::InvalidArgument(format!("descriptor slot {slot}")));
        }
        self.ram
            .memory()
            .write_obj(desc, GuestAddress(self.addrs.desc + 16 * slot as u64))
            .map_err(|e| Error::Memory(e.to_string()))
    }

    /// Notifies the device unconditionally.
    pub fn kick(&self) -> Result<()> {
        self.stats.kicks.fetch_add(1, Ordering::Relaxed);
        self.kick.write(1).map_err(|e| Error::io("kick eventfd", e))
    }

    /// Returns the completion for `token` if it has already arrived.
    pub fn try_complete(&self, token: Token) -> Result<Option<Completion>> {
        let mut st = self.state.lock().unwrap();
        self.harvest(&mut st)?;
        Ok(st.done.remove(&token.0))
    }

    /// Waits up to `timeout` for `token` to complete. On timeout the chain is abandoned: its
    /// descriptors and buffers are released whenever the device returns it.
    pub fn wait(&self, token: Token, timeout: Duration) -> Result<Completion> {
        match self.wait_until(timeout, |st| st.done.remove(&token.0)) {
            Ok((_, c)) => Ok(c),
            Err(e) => {
                let mut st = self.state.lock().unwrap();
                if let Some(c) = st.done.remove(&token.0) {
                    return Ok(c);
                }
                for f in st.inflight.values_mut() {
                    if f.token == token.0 {
                        f.abandoned = true;
                    }
                }
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for any used element to arrive; returns how many were reaped.
    pub fn wait_any(&self, timeout: Duration) -> Result<usize> {
        let completed = self.stats.completed.load(Ordering::Relaxed);
        let unexpected = self.state.lock().unwrap().unexpected.len();
        let (_st, n) = self.wait_until(timeout, |st| {
            let now = self.stats.completed.load(Ordering::Relaxed);
            let got = (now - completed) as usize + st.unexpected.len().saturating_sub(unexpected);
            (got > 0).then_some(got)
        })?;
        Ok(n)
    }

    fn track(
        &self,
        st: &mut QState,
        head: u16,
        descs: Vec<u16>,
        bufs: Vec<GuestBuf>,
        n_readable: usize,
    ) -> Token {
        let token = st.next_token;
        st.next_token += 1;
        st.inflight.insert(
            head,
            InFlight {
                token,
                descs,
                bufs,
                n_readable,
                abandoned: false,
            },
        );
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        Token(token)
    }

    fn mem_err(e: vm_memory::GuestMemoryError) -> Error {
        Error::Memory(e.to_string())
    }

    /// Puts `head` in the avail ring, bumps avail idx and kicks unless the device suppressed it.
    fn publish(&self, st: &mut QState, head: u16) -> Result<()> {
        let mem = self.ram.memory();
        let n = self.size as u64;
        let old = st.avail_idx;
        let slot = old as u64 % n;
        mem.store(
            head,
            GuestAddress(self.addrs.avail + 4 + 2 * slot),
            Ordering::Relaxed,
        )
        .map_err(Self::mem_err)?;
        let new = old.wrapping_add(1);
        st.avail_idx = new;
        // Release: the descriptors and the ring entry are visible before the new index.
        mem.store(new, GuestAddress(self.addrs.avail + 2), Ordering::Release)
            .map_err(Self::mem_err)?;
        // The index store must be ordered before reading the device's suppression state.
        fence(Ordering::SeqCst);
        let notify = if self.always_kick {
            true
        } else if self.event_idx {
            let avail_event: u16 = mem
                .load(GuestAddress(self.addrs.used + 4 + 8 * n), Ordering::Acquire)
                .map_err(Self::mem_err)?;
            new.wrapping_sub(avail_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            let flags: u16 = mem
                .load(GuestAddress(self.addrs.used), Ordering::Acquire)
                .map_err(Self::mem_err)?;
            flags & VIRTQ_USED_F_NO_NOTIFY == 0
        };
        if notify {
            self.kick()
        } else {
            self.stats.kicks_suppressed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn used_idx(&self) -> Result<u16> {
        self.ram
            .memory()
            .load(GuestAddress(self.addrs.used + 2), Ordering::Acquire)
            .map_err(Self::mem_err)
    }

    /// Moves every new used element into `done` (or `unexpected`), freeing descriptors.
    fn harvest(&self, st: &mut QState) -> Result<usize> {
        let used_idx = self.used_idx()?;
        let pending = used_idx.wrapping_sub(st.last_used);
        if pending > self.size {
            return Err(Error::Protocol(format!(
                "queue {}: used idx {used_idx} is {pending} entries ahead of {} (size {})",
                self.index, st.last_used, self.size
            )));
        }
        let mut reaped = 0;
        while st.last_used != used_idx {
            let slot = st.last_used as u64 % self.size as u64;
            let elem: UsedElem = self
                .ram
                .memory()
                .read_obj(GuestAddress(self.addrs.used + 4 + 8 * slot))
                .map_err(Self::mem_err)?;
            st.last_used = st.last_used.wrapping_add(1);
            reaped += 1;
            let known = u16::try_from(elem.id)
                .ok()
                .and_then(|id| st.inflight.remove(&id).map(|f| (id, f)));
            match known {
                Some((head, f)) => {
                    st.free.extend_from_slice(&f.descs);
                    self.stats.completed.fetch_add(1, Ordering::Relaxed);
                    if !f.abandoned {
                        st.done.insert(
                            f.token,
                            Completion {
                                head,
                                used_len: elem.len,
                                bufs: f.bufs,
                                n_readable: f.n_readable,
                            },
                        );
                    }
                }
                None => st.unexpected.push(elem),
            }
        }
        if reaped > 0 {
            self.cond.notify_all();
            if st.waiter {
                let _ = self.wake.write(1);
            }
        }
        Ok(reaped)
    }

    /// Asks the device for an interrupt when the next used element arrives.
    fn arm_notification(&self, st: &QState) -> Result<()> {
        let mem = self.ram.memory();
        if self.event_idx {
            let used_event = self.addrs.avail + 4 + 2 * self.size as u64;
            mem.store(st.last_used, GuestAddress(used_event), Ordering::Release)
                .map_err(Self::mem_err)?;
        } else {
            mem.store(0u16, GuestAddress(self.addrs.avail), Ordering::Release)
                .map_err(Self::mem_err)?;
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Reaps the used ring until `cond` yields a value or `deadline` passes, sleeping on the
    /// call eventfd (one thread at a time) in between. Re-checks the ring after every wakeup,
    /// so spurious wakeups are harmless.
    fn wait_until<R>(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&mut QState) -> Option<R>,
    ) -> Result<(MutexGuard<'_, QState>, R)> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            self.harvest(&mut st)?;
            if let Some(r) = cond(&mut st) {
                return Ok((st, r));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    queue: self.index,
                    timeout,
                });
            }
            if st.waiter {
                let slice = (deadline - now).min(Duration::from_millis(50));
                st = self.cond.wait_timeout(st, slice).unwrap().0;
                continue;
            }
            self.arm_notification(&st)?;
            if self.used_idx()? != st.last_used {
                continue;
            }
            st.waiter = true;
            drop(st);
            let hup = self.hangup.as_ref().map_or(-1, |f| f.as_raw_fd());
            let fds = [self.call.as_raw_fd(), self.wake.as_raw_fd(), hup];
            let res = poll_fds(&fds, deadline - now);
            if let Ok([call, wake, hup]) = res {
                if call {
                    self.stats.calls.fetch_add(1, Ordering::Relaxed);
                    // A non-blocking read resets the counter.
                    let _ = self.call.read();
                }
                if wake {
                    let _ = self.wake.read();
                }
                if hup {
                    st = self.state.lock().unwrap();
                    st.waiter = false;
                    self.cond.notify_all();
                    self.harvest(&mut st)?;
                    if let Some(r) = cond(&mut st) {
                        return Ok((st, r));
                    }
                    return Err(Error::Disconnected);
                }
            }
            st = self.state.lock().unwrap();
            st.waiter = false;
            self.cond.notify_all();
            res?;
        }
    }
}

/// Waits until `fds[0]` or `fds[1]` is readable or `fds[2]` (if not -1) hangs up, or
/// `timeout` passes; returns which of those happened.
fn poll_fds(fds: &[i32; 3], timeout: Duration) -> Result<[bool; 3]> {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let events = [libc::POLLIN, libc::POLLIN, libc::POLLRDHUP];
    let mut pfds: [libc::pollfd; 3] = std::array::from_fn(|i| libc::pollfd {
        fd: fds[i],
        events: events[i],
        revents: 0,
    });
    // SAFETY: `pfds` is a valid array of three pollfd structs that outlives the call; poll
    // ignores entries whose fd is negative.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), 3, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok([false; 3]);
        }
        return Err(Error::io("poll call eventfd", e));
    }
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    Ok([
        pfds[0].revents & libc::POLLIN != 0,
        pfds[1].revents & libc::POLLIN != 0,
        pfds[2].revents & gone != 0,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writable buffers of 5, 3 and 8 bytes holding 0..16, with `used_len` 11.
    fn completion(ram: &Arc<GuestRam>) -> Completion {
        let readable = ram.alloc_with(b"request").unwrap();
        let mut bufs = vec![readable];
        let mut next = 0u8;
        for len in [5usize, 3, 8] {
            let b = ram.alloc_uninit(len, 64).unwrap();
            let bytes: Vec<u8> = (next..next + len as u8).collect();
            b.write_at(0, &bytes).unwrap();
            next += len as u8;
            bufs.push(b);
        }
        Completion {
            head: 0,
            used_len: 11,
            bufs,
            n_readable: 1,
        }
    }

    #[test]
    fn written_bytes_span_buffers_and_stop_at_the_used_length() {
        let ram = GuestRam::new(0, 1 << 20).unwrap();
        let c = completion(&ram);
        assert_eq!(c.written_len(), 11);
        assert_eq!(c.written_bytes().unwrap(), (0..11).collect::<Vec<u8>>());
        assert_eq!(c.written_from(4).unwrap(), (4..11).collect::<Vec<u8>>());
        assert!(c.written_from(11).unwrap().is_empty());
        assert!(c.written_from(99).unwrap().is_empty());

        // A window straddling the first two boundaries, and one cut short by the used length.
        let mut dst = [0u8; 4];
        assert_eq!(c.copy_written(3, &mut dst).unwrap(), 4);
        assert_eq!(dst, [3, 4, 5, 6]);
        assert_eq!(c.copy_written(9, &mut dst).unwrap(), 2);
        assert_eq!(&dst[..2], &[9, 10]);

        // A device claiming more than the buffers hold is capped at their total.
        let mut over = completion(&ram);
        over.used_len = 1000;
        assert_eq!(over.written_len(), 16);
        assert_eq!(over.written_bytes().unwrap(), (0..16).collect::<Vec<u8>>());
    }
}
