//! Data workloads on the page cache: 4 KiB random READ with 1 and with N request queues
//! (item 3), 1 MiB sequential READ and WRITE (item 4). The host baseline is pread/pwrite of
//! the same sizes at the same offsets, with one thread per queue.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use guest_driver::abi::{Opcode, WriteOut};

use super::{
    complete_data, first_word, lookup_path, parse, pipeline, queue_diagnostics, rate, Ctx, Plan,
    Rng,
};
use crate::backend::Connection;
use crate::error::{BenchError, DriverContext, Result};
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::fixture::{check_word, fill_pattern, Fixture, BIG_FILE, WRITE_FILE};
use crate::runner::{Kind, Measure, Subject};

const SMALL: usize = 4096;
const BIG: usize = 1 << 20;

/// The offsets of round `round`'s random reads: the same for every subject.
fn random_offsets(round: usize, count: usize, file_len: u64) -> Vec<u64> {
    let blocks = (file_len / SMALL as u64).max(1);
    let mut rng = Rng::new(round as u64 + 1);
    (0..count)
        .map(|_| rng.below(blocks) * SMALL as u64)
        .collect()
}

/// An open file on a connected backend.
struct OpenFile {
    conn: Connection,
    nodeid: u64,
    fh: u64,
}

impl OpenFile {
    fn open(
        ctx: &Ctx,
        b: &crate::backend::BackendSpec,
        queues: u16,
        bytes: usize,
        rel: &str,
        flags: i32,
    ) -> Result<Self> {
        let conn = ctx.connect(b, queues, bytes)?;
        let nodeid = lookup_path(&conn.session, &b.name, rel)?.nodeid;
        let fh = conn
            .session
            .open(nodeid, flags as u32)
            .ctx(|| format!("{}: OPEN {rel}", b.name))?
            .fh;
        Ok(OpenFile { conn, nodeid, fh })
    }
}

// ---------------------------------------------------------------- 3: random READ

/// Item 3 with `queues` request queues.
pub fn random_read(ctx: &Ctx, queues: u16) -> Plan<'_> {
    let sc = &ctx.fixture.scale;
    let id = if queues == 1 {
        "randread-1q"
    } else {
        "randread-4q"
    };
    let spec = FigureSpec::new(
        id,
        3,
        format!(
            "4 KiB random READ, {} MiB file, {queues} queue{}",
            sc.big_file >> 20,
            if queues == 1 { "" } else { "s" }
        ),
        Unit::OpsPerSec,
        Better::Higher,
    );
    let spec = if queues == 1 {
        spec.target(
            format!("≥1.3× {}", ctx.reference),
            vec![Goal::Reference(1.3)],
        )
    } else {
        spec
    }
    .baseline("raw host");
    let depth = ctx.depth * queues as usize;
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let f = OpenFile::open(ctx, b, queues, depth * SMALL, BIG_FILE, libc::O_RDONLY)?;
            Ok(Box::new(RandomRead {
                f,
                depth,
                fixture: &ctx.fixture,
            }) as Box<dyn Measure + '_>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        let file = ctx.fixture.open(BIG_FILE)?;
        Ok(Box::new(RawRandomRead {
            file,
            threads: queues as usize,
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

struct RandomRead<'a> {
    f: OpenFile,
    depth: usize,
    fixture: &'a Fixture,
}

impl Measure for RandomRead<'_> {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.f.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.f.conn)
    }

    fn sample(&mut self, round: usize) -> Result<f64> {
        let sc = &self.fixture.scale;
        let offs = random_offsets(round, sc.rand_reads, sc.big_file);
        // Untimed: bring this round's blocks into the page cache from the host first. Every
        // subject reads the same offsets in a round, so on a machine whose page cache cannot
        // keep the whole file, the first subject of each round paid the disk for the others.
        warm(self.fixture, &offs)?;
        let (s, who) = (&self.f.conn.session, self.f.conn.name().to_string());
        let (nodeid, fh) = (self.f.nodeid, self.f.fh);
        let t = Instant::now();
        pipeline(
            self.depth,
            offs.len(),
            |i| {
                s.submit_read(nodeid, fh, offs[i], SMALL as u32)
                    .ctx(|| format!("{who}: READ"))
            },
            |p| complete_data(s, &who, p, SMALL),
            |i, _, c| {
                check_word(&first_word(&c, &who)?, offs[i], &who)?;
                Ok(None)
            },
        )?;
        Ok(rate(offs.len() as f64, t.elapsed()))
    }
}

/// Reads the 4 KiB blocks at `offs` of the big file on the host, so they are in the page cache.
fn warm(fixture: &Fixture, offs: &[u64]) -> Result<()> {
    let file = fixture.open(BIG_FILE)?;
    let mut buf = [0u8; SMALL];
    for &off in offs {
        file.read_exact_at(&mut buf, off)
            .map_err(|e| BenchError::io("pread", fixture.path(BIG_FILE), e))?;
    }
    Ok(())
}

struct RawRandomRead<'a> {
    file: File,
    threads: usize,
    fixture: &'a Fixture,
}

impl Measure for RawRandomRead<'_> {
    fn sample(&mut self, round: usize) -> Result<f64> {
        let sc = &self.fixture.scale;
        let offs = random_offsets(round, sc.rand_reads, sc.big_file);
        let per = offs.len().div_ceil(self.threads.max(1));
        let file = &self.file;
        let t = Instant::now();
        let results: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = offs
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        let mut buf = vec![0u8; SMALL];
                        for &off in chunk {
                            file.read_exact_at(&mut buf, off)?;
                            if check_word(&buf, off, "raw").is_err() {
                                return Err(std::io::Error::other(format!("wrong data at {off}")));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")))
                })
                .collect()
        });
        let elapsed = t.elapsed();
        for r in results {
            r.map_err(|e| BenchError::io("pread", self.fixture.path(BIG_FILE), e))?;
        }
        Ok(rate(offs.len() as f64, elapsed))
    }
}

// ---------------------------------------------------------------- 4: 1 MiB sequential

/// Item 4, READ.
pub fn seq_read(ctx: &Ctx) -> Plan<'_> {
    let sc = &ctx.fixture.scale;
    let spec = FigureSpec::new(
        "seqread",
        4,
        format!("1 MiB sequential READ, {} MiB", sc.seq_read >> 20),
        Unit::GBps,
        Better::Higher,
    )
    .baseline("raw host")
    .target(
        format!("≥1.2× {}, ≥80% of pread", ctx.reference),
        vec![Goal::Reference(1.2), Goal::Baseline(0.8)],
    );
    let depth = ctx.depth;
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let f = OpenFile::open(ctx, b, 1, depth * BIG, BIG_FILE, libc::O_RDONLY)?;
            Ok(Box::new(SeqRead {
                f,
                depth,
                bytes: sc.seq_read,
            }) as Box<dyn Measure>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        let file = ctx.fixture.open(BIG_FILE)?;
        Ok(Box::new(RawSeq {
            file,
            write: false,
            bytes: sc.seq_read,
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

/// Item 4, WRITE.
pub fn seq_write(ctx: &Ctx) -> Plan<'_> {
    let sc = &ctx.fixture.scale;
    let spec = FigureSpec::new(
        "seqwrite",
        4,
        format!("1 MiB sequential WRITE, {} MiB", sc.seq_write >> 20),
        Unit::GBps,
        Better::Higher,
    )
    .baseline("raw host");
    let depth = ctx.depth;
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let f = OpenFile::open(ctx, b, 1, depth * BIG, WRITE_FILE, libc::O_WRONLY)?;
            let max_write = f.conn.session.init_out().map_or(0, |i| i.max_write);
            if (max_write as usize) < BIG {
                return Err(BenchError::Skip(format!(
                    "{} offers max_write {max_write} < 1 MiB",
                    b.name
                )));
            }
            let mut data = vec![0u8; BIG];
            fill_pattern(&mut data, 0);
            Ok(Box::new(SeqWrite {
                f,
                depth,
                bytes: sc.seq_write,
                data,
            }) as Box<dyn Measure>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        let p = ctx.fixture.path(WRITE_FILE);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| BenchError::io("open", &p, e))?;
        Ok(Box::new(RawSeq {
            file,
            write: true,
            bytes: sc.seq_write,
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

fn gbps(bytes: u64, elapsed: std::time::Duration) -> f64 {
    rate(bytes as f64, elapsed) / 1e9
}

struct SeqRead {
    f: OpenFile,
    depth: usize,
    bytes: u64,
}

impl Measure for SeqRead {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.f.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.f.conn)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let (s, who) = (&self.f.conn.session, self.f.conn.name().to_string());
        let (nodeid, fh) = (self.f.nodeid, self.f.fh);
        let n = (self.bytes / BIG as u64) as usize;
        let t = Instant::now();
        pipeline(
            self.depth,
            n,
            |i| {
                s.submit_read(nodeid, fh, (i * BIG) as u64, BIG as u32)
                    .ctx(|| format!("{who}: READ"))
            },
            |p| complete_data(s, &who, p, BIG),
            |i, _, c| {
                check_word(&first_word(&c, &who)?, (i * BIG) as u64, &who)?;
                Ok(None)
            },
        )?;
        Ok(gbps(n as u64 * BIG as u64, t.elapsed()))
    }
}

struct SeqWrite {
    f: OpenFile,
    depth: usize,
    bytes: u64,
    data: Vec<u8>,
}

impl Measure for SeqWrite {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.f.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.f.conn)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let (s, who) = (&self.f.conn.session, self.f.conn.name().to_string());
        let (nodeid, fh) = (self.f.nodeid, self.f.fh);
        let n = (self.bytes / BIG as u64) as usize;
        let data = &self.data;
        let t = Instant::now();
        pipeline(
            self.depth,
            n,
            |i| {
                s.submit_write(nodeid, fh, (i * BIG) as u64, data, 0)
                    .ctx(|| format!("{who}: WRITE"))
            },
            |p| s.complete(p).ctx(|| format!("{who}: WRITE reply")),
            |_, _, body| {
                let w: WriteOut = parse(&who, Opcode::Write, &body)?;
                if w.size as usize != BIG {
                    return Err(BenchError::Check(format!(
                        "{who}: WRITE wrote {} of {BIG}",
                        w.size
                    )));
                }
                Ok(None)
            },
        )?;
        Ok(gbps(n as u64 * BIG as u64, t.elapsed()))
    }
}

struct RawSeq<'a> {
    file: File,
    write: bool,
    bytes: u64,
    fixture: &'a Fixture,
}

impl Measure for RawSeq<'_> {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let mut buf = vec![0u8; BIG];
        if self.write {
            fill_pattern(&mut buf, 0);
        }
        let n = self.bytes / BIG as u64;
        let t = Instant::now();
        for i in 0..n {
            let off = i * BIG as u64;
            if self.write {
                self.file.write_all_at(&buf, off)
            } else {
                self.file.read_exact_at(&mut buf, off)
            }
            .map_err(|e| {
                BenchError::io(
                    if self.write { "pwrite" } else { "pread" },
                    self.fixture.path(BIG_FILE),
                    e,
                )
            })?;
            if !self.write {
                check_word(&buf, off, "raw")?;
            }
        }
        Ok(gbps(n * BIG as u64, t.elapsed()))
    }
}
