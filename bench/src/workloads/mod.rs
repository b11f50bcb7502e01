//! The workloads, one module per kind, and what they share: the run context, connecting a
//! backend, pipelined request chains, and light reply checks for bulk data.
//!
//! Every figure has the same subjects in the same order: each backend, then the host
//! baseline doing the same work with plain system calls on the same files.

pub mod dax;
pub mod idle;
pub mod io;
pub mod lifecycle;
pub mod metadata;
pub mod mixed;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use guest_driver::abi::{EntryOut, Opcode};
use guest_driver::fuse_client::{parse_exact, OUT_HEADER_LEN};
use guest_driver::{BackendRequestHandler, Completion, Pending, Session};

use crate::backend::{BackendSpec, ConnectOptions, Connection, SpawnDirs};
use crate::error::{BenchError, DriverContext, Result};
use crate::figure::FigureSpec;
use crate::fixture::Fixture;
use crate::runner::{Kind, Subject};

/// Everything a workload needs to know about the run.
pub struct Ctx {
    pub fixture: Fixture,
    pub dirs: SpawnDirs,
    /// Backends in run order (the subject first).
    pub backends: Vec<BackendSpec>,
    /// Backends that were asked for but are not available, with the reason (their columns
    /// say "skipped").
    pub missing: Vec<(String, String)>,
    /// Requests in flight per request queue in the pipelined workloads.
    pub depth: usize,
    /// DAX window size asked for in the DAX figures (`{dax_window}`).
    pub dax_window: u64,
    /// The fsjail program, for the broker figures.
    pub fsjail: Option<PathBuf>,
    /// The run's subject and reference backend names.
    pub subject: String,
    pub reference: String,
    /// Scratch space outside the shared directory (policies, broker shares).
    pub scratch: PathBuf,
}

/// A figure and its subjects, ready to run.
pub struct Plan<'a> {
    pub spec: FigureSpec,
    pub subjects: Vec<Subject<'a>>,
}

impl Ctx {
    /// Starts `spec` and connects the guest driver with `queues` request queues and guest RAM
    /// sized for `bytes_in_flight`; no DAX window.
    pub fn connect(
        &self,
        spec: &BackendSpec,
        queues: u16,
        bytes_in_flight: usize,
    ) -> Result<Connection> {
        self.connect_dax(spec, queues, bytes_in_flight, 0, None)
    }

    /// Like [`Ctx::connect`], asking for a DAX window of `dax_window` bytes (where the
    /// template has `{dax_window}`) and serving backend requests with `handler`.
    pub fn connect_dax(
        &self,
        spec: &BackendSpec,
        queues: u16,
        bytes_in_flight: usize,
        dax_window: u64,
        handler: Option<std::sync::Arc<BackendRequestHandler>>,
    ) -> Result<Connection> {
        // Room for every request's buffers twice over (WRITE copies its payload in), plus
        // the rings and small requests.
        let mem = (2 * bytes_in_flight + (16 << 20))
            .max(64 << 20)
            .next_multiple_of(4096);
        Connection::open(
            spec,
            &self.dirs,
            &self.fixture.root,
            ConnectOptions {
                queues,
                dax_window,
                mem_size: mem,
                handler,
            },
        )
    }

    /// One subject per backend (each built by `make`), then the "skipped" ones for
    /// backends that are missing.
    pub fn backend_subjects<'a>(
        &'a self,
        make: impl Fn(&'a BackendSpec) -> Subject<'a>,
    ) -> Vec<Subject<'a>> {
        let mut v: Vec<Subject<'a>> = self.backends.iter().map(make).collect();
        for (name, reason) in &self.missing {
            v.push(Subject::skipped(
                name.clone(),
                Kind::Backend,
                reason.clone(),
            ));
        }
        v
    }
}

/// Walks `rel` (slash-separated) from the root with LOOKUPs; returns the last entry.
pub fn lookup_path(s: &Session, who: &str, rel: &str) -> Result<EntryOut> {
    let mut e = EntryOut {
        nodeid: 1,
        ..Default::default()
    };
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        e = s
            .lookup(e.nodeid, part)
            .ctx(|| format!("{who}: LOOKUP {rel:?}"))?;
    }
    Ok(e)
}

/// Drops the lookup references the workload took (BATCH_FORGET, as a guest does when it
/// evicts inodes), so the backend's inode table does not grow from sample to sample.
pub fn forget_all(s: &Session, who: &str, nodeids: &[u64]) -> Result<()> {
    for chunk in nodeids.chunks(256) {
        let items: Vec<(u64, u64)> = chunk.iter().filter(|&&n| n > 1).map(|&n| (n, 1)).collect();
        if !items.is_empty() {
            s.batch_forget(&items)
                .ctx(|| format!("{who}: BATCH_FORGET"))?;
        }
    }
    Ok(())
}

/// Runs `items` request chains with up to `depth` requests in flight. `start(i)` submits
/// item i's first request; `next(i, step, reply)` gets each completed reply (step 0 first)
/// and returns the item's next request or `None` when the item is done. Replies are taken in
/// submission order, so a slow request delays the pipeline as it would a guest's queue.
pub fn pipeline<R>(
    depth: usize,
    items: usize,
    mut start: impl FnMut(usize) -> Result<Pending>,
    mut complete: impl FnMut(Pending) -> Result<R>,
    mut next: impl FnMut(usize, u32, R) -> Result<Option<Pending>>,
) -> Result<()> {
    let depth = depth.max(1);
    let mut inflight: VecDeque<(usize, u32, Pending)> = VecDeque::with_capacity(depth);
    let mut started = 0;
    loop {
        while inflight.len() < depth && started < items {
            inflight.push_back((started, 0, start(started)?));
            started += 1;
        }
        let Some((item, step, p)) = inflight.pop_front() else {
            return Ok(());
        };
        let reply = complete(p)?;
        if let Some(p) = next(item, step, reply)? {
            inflight.push_back((item, step + 1, p));
        }
    }
}

/// Parses a reply body as `T` with the opcode named in errors.
pub fn parse<T: vm_memory::ByteValued + Default>(who: &str, op: Opcode, body: &[u8]) -> Result<T> {
    parse_exact(op, body).ctx(|| format!("{who}: {op:?} reply"))
}

/// Waits for a data reply and checks it as `Session::complete` does (unique echoed, no error,
/// header length equal to the used length), and that it carries exactly `want` bytes, without
/// copying the payload out of guest memory: the payload stays in the completion's writable
/// buffers for spot checks. (`Session::complete` would copy every byte into a fresh Vec, a
/// second memcpy per READ that no guest does.)
pub fn complete_data(s: &Session, who: &str, p: Pending, want: usize) -> Result<Completion> {
    let opcode = p.opcode;
    let c = s
        .complete_in_place(p)
        .ctx(|| format!("{who}: opcode {opcode}"))?;
    let body = c.written_len().saturating_sub(OUT_HEADER_LEN);
    if body != want {
        return Err(BenchError::Check(format!(
            "{who}: opcode {opcode} returned {body} bytes, want {want}"
        )));
    }
    Ok(c)
}

/// The first 8 payload bytes of a completion from [`complete_data`].
pub fn first_word(c: &Completion, who: &str) -> Result<Vec<u8>> {
    let mut word = vec![0u8; 8];
    let n = c
        .copy_written(OUT_HEADER_LEN, &mut word)
        .ctx(|| who.to_string())?;
    if n != word.len() {
        return Err(BenchError::Check(format!(
            "{who}: reply without a data word"
        )));
    }
    Ok(word)
}

/// Notification counters of the request queues since connecting: kicks (driver → device)
/// and calls (device → driver interrupts) per request. One kick per request means the device
/// thread went idle between requests.
pub fn queue_diagnostics(s: &Session) -> Vec<(&'static str, f64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut sub, mut kicks, mut calls) = (0u64, 0u64, 0u64);
    for q in s.device().queues().iter().skip(1) {
        let st = q.stats();
        sub += st.submitted.load(Relaxed);
        kicks += st.kicks.load(Relaxed);
        calls += st.calls.load(Relaxed);
    }
    let per = |n: u64| n as f64 / sub.max(1) as f64;
    vec![
        ("requests", sub as f64),
        ("kicks_per_request", per(kicks)),
        ("calls_per_request", per(calls)),
    ]
}

/// The backend's process and every request submitted on the connection so far (all queues,
/// the high-priority one included: FORGETs cost the backend too), for the CPU cost columns.
pub fn probe_of(conn: &Connection) -> Option<crate::cost::Probe> {
    use std::sync::atomic::Ordering::Relaxed;
    let requests = conn
        .session
        .device()
        .queues()
        .iter()
        .map(|q| q.stats().submitted.load(Relaxed))
        .sum();
    Some(crate::cost::Probe {
        backend_pid: conn.process.pid(),
        requests,
    })
}

/// `count / elapsed` as a rate per second.
pub fn rate(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

/// A small, fast, seedable generator (xorshift64*), so every subject reads the same offsets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_repeats_and_spreads() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.below(1000)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(1000)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 1000));
        assert!(xs.iter().collect::<std::collections::HashSet<_>>().len() > 50);
        assert_eq!(rate(10.0, Duration::from_secs(2)), 5.0);
    }
}
