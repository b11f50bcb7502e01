//! The mixed workload: how long a LOOKUP+GETATTR pair takes while other requests in flight
//! FSYNC files with 64 MiB of dirty data each. A backend that serves each queue in order makes
//! the pair wait for the FSYNCs queued before it; one with a request pool answers it at once.
//!
//! Each sample: WRITE `dirty` bytes into each of [`FILES`] files (not timed), submit one FSYNC
//! per file, then run LOOKUP+GETATTR pairs one after the other until every FSYNC has been
//! answered, timing each pair. Two figures come from the same samples: the p99 and the median
//! of the pair latencies (the median figure replays what the p99 figure recorded, so the
//! workload runs once).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use guest_driver::abi::{AttrOut, EntryOut, FsyncIn, GetattrIn, Opcode};
use vm_memory::ByteValued;

use super::{forget_all, lookup_path, probe_of, Ctx, Plan};
use crate::backend::{BackendSpec, Connection};
use crate::error::{BenchError, DriverContext, Result};
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::runner::{Kind, Measure, Subject};

/// Files FSYNCed at once in each sample.
const FILES: usize = 2;
/// WRITE size while dirtying the files.
const CHUNK: usize = 1 << 20;
/// The pool size the reference is run with a second time (fsjail's default).
const POOL: usize = 4;
/// Directory of the mixed workload's files under the share.
const DIR: &str = "mix";

/// Per backend, each round's median pair latency (ms), filled by the p99 figure.
type Medians = Rc<RefCell<HashMap<String, Vec<f64>>>>;

/// The reference run again with `--thread-pool-size` = fsjail's pool.
fn pooled_name(reference: &str) -> String {
    format!("{reference}-tp{POOL}")
}

/// Both figures: p99, then median.
pub fn figures(ctx: &Ctx) -> Vec<Plan<'_>> {
    let dirty = if ctx.fixture.scale.name == "short" {
        4u64 << 20
    } else {
        64 << 20
    };
    let title = |what: &str| {
        format!(
            "LOOKUP+GETATTR {what} while {FILES} FSYNCs of {} MiB dirty data each are in flight",
            dirty >> 20
        )
    };
    let pooled = pooled_name(&ctx.reference);
    let medians: Medians = Rc::default();
    let p99 = FigureSpec::new("mix-p99", 5, title("p99"), Unit::Millis, Better::Lower).target(
        format!("≤ 1/5 of {} and of {pooled}", ctx.reference),
        vec![Goal::Reference(0.2), Goal::Named(pooled.clone(), 0.2)],
    );
    let median = FigureSpec::new(
        "mix-median",
        5,
        title("median"),
        Unit::Millis,
        Better::Lower,
    );

    let mut specs: Vec<BackendSpec> = ctx.backends.clone();
    if let Some(r) = ctx.backends.iter().find(|b| b.name == ctx.reference) {
        specs.push(r.with_option(&pooled, "--thread-pool-size", &POOL.to_string()));
    }
    let mut p99_subjects = Vec::new();
    let mut median_subjects = Vec::new();
    for spec in specs {
        let name = spec.name.clone();
        let m = medians.clone();
        p99_subjects.push(Subject::new(name.clone(), Kind::Backend, move || {
            let conn = ctx.connect(&spec, 1, 2 * CHUNK * 8)?;
            Ok(Box::new(Mixed {
                conn,
                ctx,
                dirty,
                medians: m,
                quiet_ms: Vec::new(),
            }) as Box<dyn Measure + '_>)
        }));
        let m = medians.clone();
        median_subjects.push(Subject::new(name.clone(), Kind::Backend, move || {
            if !m.borrow().contains_key(&name) {
                return Err(BenchError::Skip("not measured: see the p99 figure".into()));
            }
            Ok(Box::new(Replay { name, medians: m }) as Box<dyn Measure + '_>)
        }));
    }
    for (name, reason) in &ctx.missing {
        p99_subjects.push(Subject::skipped(
            name.clone(),
            Kind::Backend,
            reason.clone(),
        ));
        median_subjects.push(Subject::skipped(
            name.clone(),
            Kind::Backend,
            reason.clone(),
        ));
    }
    vec![
        Plan {
            spec: p99,
            subjects: p99_subjects,
        },
        Plan {
            spec: median,
            subjects: median_subjects,
        },
    ]
}

struct Mixed<'a> {
    conn: Connection,
    ctx: &'a Ctx,
    dirty: u64,
    medians: Medians,
    /// Pair latencies with no FSYNC in flight, every sample's.
    quiet_ms: Vec<f64>,
}

/// Pairs timed before each sample's FSYNCs, as the control.
const QUIET_PAIRS: usize = 50;

/// One LOOKUP of `name` (NUL-terminated) in `dir`, then GETATTR of what it found; returns the
/// time both took, in ms, and the node (to forget).
fn pair(s: &guest_driver::Session, who: &str, dir: u64, name: &str) -> Result<(f64, u64)> {
    let t = Instant::now();
    let e = s
        .submit(
            Opcode::Lookup,
            dir,
            &[name.as_bytes()],
            &[std::mem::size_of::<EntryOut>()],
        )
        .ctx(|| format!("{who}: LOOKUP"))?;
    let body = s.complete(e).ctx(|| format!("{who}: LOOKUP reply"))?;
    let e: EntryOut = super::parse(who, Opcode::Lookup, &body)?;
    let g = s
        .submit(
            Opcode::Getattr,
            e.nodeid,
            &[GetattrIn::default().as_slice()],
            &[std::mem::size_of::<AttrOut>()],
        )
        .ctx(|| format!("{who}: GETATTR"))?;
    let body = s.complete(g).ctx(|| format!("{who}: GETATTR reply"))?;
    let _: AttrOut = super::parse(who, Opcode::Getattr, &body)?;
    Ok((t.elapsed().as_secs_f64() * 1000.0, e.nodeid))
}

/// The `p` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

impl Mixed<'_> {
    /// Makes `FILES` fresh files with `dirty` bytes written through the backend; returns
    /// their (nodeid, fh).
    fn dirty_files(&self, round: usize) -> Result<Vec<(u64, u64)>> {
        let s = &self.conn.session;
        let who = self.conn.name().to_string();
        let host_dir = self.ctx.fixture.path(DIR);
        std::fs::create_dir_all(&host_dir).map_err(|e| BenchError::io("mkdir", &host_dir, e))?;
        let dir = lookup_path(s, &who, DIR)?.nodeid;
        let data = vec![0xa5u8; CHUNK];
        let mut files = Vec::with_capacity(FILES);
        for i in 0..FILES {
            let name = format!("{who}-{round}-{i}");
            let host = host_dir.join(&name);
            std::fs::write(&host, b"").map_err(|e| BenchError::io("create", &host, e))?;
            let e = s
                .lookup(dir, &name)
                .ctx(|| format!("{who}: LOOKUP {name}"))?;
            let fh = s
                .open(e.nodeid, libc::O_RDWR as u32)
                .ctx(|| format!("{who}: OPEN {name}"))?
                .fh;
            for k in 0..self.dirty / CHUNK as u64 {
                s.write(e.nodeid, fh, k * CHUNK as u64, &data)
                    .ctx(|| format!("{who}: WRITE {name}"))?;
            }
            files.push((e.nodeid, fh));
        }
        Ok(files)
    }
}

impl Measure for Mixed<'_> {
    /// The control: p99 and median of the pairs with no FSYNC in flight.
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        let mut q = self.quiet_ms.clone();
        if q.is_empty() {
            return Vec::new();
        }
        q.sort_by(f64::total_cmp);
        vec![
            ("quiet_p99_ms", quantile(&q, 0.99)),
            ("quiet_median_ms", quantile(&q, 0.5)),
        ]
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        probe_of(&self.conn)
    }

    fn sample(&mut self, round: usize) -> Result<f64> {
        let who = self.conn.name().to_string();
        let files = self.dirty_files(round)?;
        let s = &self.conn.session;
        // The pairs look up files of meta/, which no FSYNC touches.
        let dir = lookup_path(s, &who, crate::fixture::META_DIR)?.nodeid;
        let names = self.ctx.fixture.scale.files.max(1);
        // The control: the same pairs with no FSYNC in flight (same machine, same moment).
        for i in 0..QUIET_PAIRS {
            let name = format!("{}\0", crate::fixture::meta_name(i % names));
            let (ms, node) = pair(s, &who, dir, &name)?;
            self.quiet_ms.push(ms);
            forget_all(s, &who, &[node])?;
        }
        let fsyncs = files
            .iter()
            .map(|&(n, fh)| {
                let arg = FsyncIn {
                    fh,
                    fsync_flags: 0,
                    padding: 0,
                };
                s.submit(Opcode::Fsync, n, &[arg.as_slice()], &[])
                    .ctx(|| format!("{who}: FSYNC"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pending: Vec<_> = fsyncs.into_iter().map(Some).collect();
        let mut lat_ms = Vec::new();
        let mut nodeids = Vec::new();
        while pending.iter().any(Option::is_some) {
            let name = format!("{}\0", crate::fixture::meta_name(lat_ms.len() % names));
            let (ms, node) = pair(s, &who, dir, &name)?;
            lat_ms.push(ms);
            nodeids.push(node);
            for p in pending.iter_mut() {
                let done = match p {
                    Some(f) => s
                        .device()
                        .queue(f.queue)
                        .and_then(|q| q.try_complete(f.token))
                        .ctx(|| format!("{who}: FSYNC"))?
                        .is_some(),
                    None => false,
                };
                if done {
                    *p = None;
                }
            }
        }
        for &(n, fh) in &files {
            s.release(n, fh, libc::O_RDWR as u32, 0, 0)
                .ctx(|| format!("{who}: RELEASE"))?;
        }
        nodeids.extend(files.iter().map(|f| f.0));
        forget_all(s, &who, &nodeids)?;
        for i in 0..FILES {
            let _ =
                std::fs::remove_file(self.ctx.fixture.path(&format!("{DIR}/{who}-{round}-{i}")));
        }
        if lat_ms.is_empty() {
            return Err(BenchError::Check(format!("{who}: no LOOKUP+GETATTR ran")));
        }
        lat_ms.sort_by(f64::total_cmp);
        let pct = |p: f64| quantile(&lat_ms, p);
        self.medians
            .borrow_mut()
            .entry(who)
            .or_default()
            .push(pct(0.5));
        Ok(pct(0.99))
    }
}

/// The median figure: the medians the p99 figure's samples recorded, round by round.
struct Replay {
    name: String,
    medians: Medians,
}

impl Measure for Replay {
    fn sample(&mut self, round: usize) -> Result<f64> {
        self.medians
            .borrow()
            .get(&self.name)
            .and_then(|v| v.get(round).copied())
            .ok_or_else(|| BenchError::Skip("the p99 figure did not run for it".into()))
    }
}
