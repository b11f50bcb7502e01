//! A share's request pool: a fixed set of threads that serve the requests that may block
//! (FSYNC, large READ/WRITE...; see [`super::route`]), so the queue threads keep answering
//! cheap ones meanwhile. Requests run in the order [`super::order`] defines; their replies
//! complete out of order (each used ring entry names its chain's head).
//!
//! The threads are started with the device, before the worker's seccomp filter is installed;
//! the filter goes onto every thread of the process (TSYNC), these included. They make the
//! same system calls as the queue threads (the filesystem's, and futex for the lock).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::order::{Keys, Mode, Order, Ticket};

pub use settings::MAX_POOL_THREADS;

/// One request's work: serve it and return its chain to the used ring.
pub type Task = Box<dyn FnOnce() + Send + 'static>;

struct State {
    order: Order<Task>,
    ready: VecDeque<(Ticket, Task)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// A task became ready, or the pool stops.
    work: Condvar,
    /// Nothing is outstanding any more.
    idle: Condvar,
    /// `order.outstanding()`, readable without the lock: the queue threads look at it for
    /// every request, and while it is 0 they need not take the lock at all.
    outstanding: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A task panicking is caught before it could poison the lock (see `run`); were it
        // poisoned anyway, the state is still consistent (every update is one step).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pool of one share.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` threads (at least one).
    pub fn new(threads: usize) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                order: Order::default(),
                ready: VecDeque::new(),
                stop: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            outstanding: AtomicUsize::new(0),
        });
        let mut pool = Pool {
            shared,
            threads: Vec::new(),
        };
        for i in 0..threads.clamp(1, MAX_POOL_THREADS) {
            let shared = pool.shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("fsjail-pool-{i}"))
                .spawn(move || run(&shared))?;
            pool.threads.push(t);
        }
        Ok(pool)
    }

    /// Threads in the pool.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Requests queued or running.
    pub fn outstanding(&self) -> usize {
        self.shared.outstanding.load(Ordering::Acquire)
    }

    /// Whether any of `keys` has a request outstanding in the pool.
    pub fn busy(&self, keys: &Keys) -> bool {
        if self.outstanding() == 0 {
            return false;
        }
        let st = self.shared.lock();
        keys.as_slice().iter().any(|&k| st.order.busy(k))
    }

    /// Whether `pred` holds for a node busy in the pool (`pred` gets the test for one node).
    pub fn any_busy(&self, pred: impl FnOnce(&dyn Fn(u64) -> bool) -> bool) -> bool {
        if self.outstanding() == 0 {
            return false;
        }
        let st = self.shared.lock();
        pred(&|k| st.order.busy(k))
    }

    /// Queues `task`, ordered on `keys` in `mode`.
    pub fn submit(&self, keys: Keys, mode: Mode, task: Task) {
        let mut st = self.shared.lock();
        let start = st.order.submit(keys, mode, task);
        self.shared
            .outstanding
            .store(st.order.outstanding(), Ordering::Release);
        if let Some(ready) = start {
            st.ready.push_back(ready);
            drop(st);
            self.shared.work.notify_one();
        }
    }

    /// Blocks until nothing is outstanding.
    pub fn wait_idle(&self) {
        let mut st = self.shared.lock();
        while st.order.outstanding() > 0 {
            st = self.shared.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Pool {
    /// Lets the threads finish what is outstanding, then joins them.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A pool thread: take a ready task, run it, release what waited behind it.
fn run(shared: &Shared) {
    loop {
        let (ticket, task) = {
            let mut st = shared.lock();
            loop {
                if let Some(t) = st.ready.pop_front() {
                    break t;
                }
                if st.stop && st.order.outstanding() == 0 {
                    return;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A panic in one request must not take the thread, nor leave the request's node
        // blocked for every later request.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
            log::error!("a request panicked in the request pool");
        }
        let mut st = shared.lock();
        let released = st.order.finish(ticket);
        let woke = released.len();
        st.ready.extend(released);
        let left = st.order.outstanding();
        shared.outstanding.store(left, Ordering::Release);
        let stopping = st.stop;
        drop(st);
        if woke > 1 || (stopping && left == 0) {
            shared.work.notify_all();
        } else if woke == 1 {
            shared.work.notify_one();
        }
        if left == 0 {
            shared.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_task_does_not_hold_up_another_node_and_order_holds_on_one_node() {
        let pool = Pool::new(2).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (log_tx, log_rx) = mpsc::channel::<&'static str>();
        let l1 = log_tx.clone();
        pool.submit(
            Keys::one(1),
            Mode::Exclusive,
            Box::new(move || {
                gate_rx.recv().unwrap();
                l1.send("slow write").unwrap();
            }),
        );
        let l2 = log_tx.clone();
        pool.submit(
            Keys::one(1),
            Mode::Shared,
            Box::new(move || l2.send("read after it").unwrap()),
        );
        let l3 = log_tx.clone();
        pool.submit(
            Keys::one(2),
            Mode::Shared,
            Box::new(move || l3.send("other node").unwrap()),
        );
        assert_eq!(
            log_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            "other node"
        );
        assert!(pool.busy(&Keys::one(1)));
        gate_tx.send(()).unwrap();
        assert_eq!(log_rx.recv().unwrap(), "slow write");
        assert_eq!(log_rx.recv().unwrap(), "read after it");
        pool.wait_idle();
        assert_eq!(pool.outstanding(), 0);
        assert!(!pool.busy(&Keys::one(1)));
    }

    #[test]
    fn a_panicking_task_releases_its_node() {
        let pool = Pool::new(1).unwrap();
        pool.submit(Keys::one(3), Mode::Exclusive, Box::new(|| panic!("boom")));
        let (tx, rx) = mpsc::channel();
        pool.submit(
            Keys::one(3),
            Mode::Exclusive,
            Box::new(move || tx.send(()).unwrap()),
        );
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the task behind a panicking one never ran");
        pool.wait_idle();
    }
}
