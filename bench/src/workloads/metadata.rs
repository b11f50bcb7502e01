//! Metadata workloads: LOOKUP+GETATTR over many files (item 1), CREATE+WRITE+RELEASE of
//! many 4 KiB files (item 2), READDIRPLUS of a big directory (item 5).
//!
//! One op is one FUSE request; the host baseline counts the system call that stands in for
//! each (fstatat for LOOKUP and for GETATTR; openat, pwrite, close; getdents64 + fstatat).

use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use guest_driver::abi::{
    AttrOut, CreateIn, EntryOut, GetattrIn, Opcode, OpenOut, ReleaseIn, WriteOut,
};
use vm_memory::ByteValued;

use super::{forget_all, lookup_path, parse, pipeline, queue_diagnostics, rate, Ctx, Plan};
use crate::backend::{BackendSpec, Connection};
use crate::error::{BenchError, DriverContext, Result};
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::fixture::{Fixture, CREATE_DIR, META_DIR};
use crate::runner::{Kind, Measure, Subject};
use crate::sys;

const ENTRY: usize = std::mem::size_of::<EntryOut>();
const ATTR: usize = std::mem::size_of::<AttrOut>();
const OPEN_OUT: usize = std::mem::size_of::<OpenOut>();
const S_IFMT: u32 = libc::S_IFMT;
const S_IFREG: u32 = libc::S_IFREG;

/// Linux asks for one page per READDIRPLUS.
const READDIR_BUF: u32 = 4096;
/// Payload of each created file.
const CREATE_SIZE: usize = 4096;

fn with_nul(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

// ---------------------------------------------------------------- 1: LOOKUP + GETATTR

/// Item 1.
pub fn lookup_getattr(ctx: &Ctx) -> Plan<'_> {
    let n = ctx.fixture.scale.files;
    let spec = FigureSpec::new(
        "metadata",
        1,
        format!("LOOKUP+GETATTR, {n} files"),
        Unit::OpsPerSec,
        Better::Higher,
    )
    .baseline("raw host")
    .target(
        format!("≥1.3× {} at ≤1.0× its CPU per request", ctx.reference),
        vec![Goal::Reference(1.3), Goal::CpuPerRequest(1.0)],
    );
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let conn = ctx.connect(b, 1, 1 << 20)?;
            let dir = lookup_path(&conn.session, &b.name, META_DIR)?.nodeid;
            let names = (0..n)
                .map(|i| with_nul(&crate::fixture::meta_name(i)))
                .collect();
            Ok(Box::new(LookupGetattr {
                conn,
                dir,
                names,
                depth: ctx.depth,
            }) as Box<dyn Measure>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        let dir = ctx.fixture.open(META_DIR)?;
        Ok(Box::new(RawStat {
            dir,
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

struct LookupGetattr {
    conn: Connection,
    dir: u64,
    names: Vec<Vec<u8>>,
    depth: usize,
}

impl Measure for LookupGetattr {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.conn)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let s = &self.conn.session;
        let who = self.conn.name().to_string();
        let mut nodeids = vec![0u64; self.names.len()];
        let getattr = GetattrIn::default();
        let t = Instant::now();
        pipeline(
            self.depth,
            self.names.len(),
            |i| {
                s.submit(Opcode::Lookup, self.dir, &[&self.names[i]], &[ENTRY])
                    .ctx(|| format!("{who}: LOOKUP"))
            },
            |p| s.complete(p).ctx(|| format!("{who}: metadata reply")),
            |i, step, body| {
                if step == 0 {
                    let e: EntryOut = parse(&who, Opcode::Lookup, &body)?;
                    nodeids[i] = e.nodeid;
                    let p = s.submit(Opcode::Getattr, e.nodeid, &[getattr.as_slice()], &[ATTR]);
                    return Ok(Some(p.ctx(|| format!("{who}: GETATTR"))?));
                }
                let a: AttrOut = parse(&who, Opcode::Getattr, &body)?;
                if a.attr.mode & S_IFMT != S_IFREG {
                    return Err(BenchError::Check(format!(
                        "{who}: GETATTR mode {:o} is not a regular file",
                        a.attr.mode
                    )));
                }
                Ok(None)
            },
        )?;
        let elapsed = t.elapsed();
        forget_all(s, &who, &nodeids)?;
        Ok(rate(2.0 * self.names.len() as f64, elapsed))
    }
}

struct RawStat<'a> {
    dir: File,
    fixture: &'a Fixture,
}

impl Measure for RawStat<'_> {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let names = &self.fixture.meta_names;
        let t = Instant::now();
        for name in names {
            // LOOKUP's stand-in, then GETATTR's.
            let a = sys::fstatat(&self.dir, name);
            let b = sys::fstatat(&self.dir, name);
            if let Err(e) = a.and(b) {
                return Err(BenchError::io("fstatat", self.fixture.path(META_DIR), e));
            }
        }
        Ok(rate(2.0 * names.len() as f64, t.elapsed()))
    }
}

// ---------------------------------------------------------------- 2: CREATE + WRITE + RELEASE

/// Item 2.
pub fn create(ctx: &Ctx) -> Plan<'_> {
    let n = ctx.fixture.scale.files;
    let spec = FigureSpec::new(
        "create",
        2,
        format!("CREATE+4 KiB WRITE+RELEASE, {n} files"),
        Unit::OpsPerSec,
        Better::Higher,
    )
    .baseline("raw host");
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let conn = ctx.connect(b, 1, 1 << 20)?;
            Ok(Box::new(Create { conn, ctx, spec: b }) as Box<dyn Measure + '_>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        Ok(Box::new(RawCreate {
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

struct Create<'a> {
    conn: Connection,
    ctx: &'a Ctx,
    spec: &'a BackendSpec,
}

impl Measure for Create<'_> {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.conn)
    }

    fn sample(&mut self, round: usize) -> Result<f64> {
        let s = &self.conn.session;
        let who = self.spec.name.clone();
        let fixture = &self.ctx.fixture;
        let sub = format!("{who}-{round}");
        let host_dir = fixture.fresh_create_dir(&sub)?;
        let dir = lookup_path(s, &who, &format!("{CREATE_DIR}/{sub}"))?.nodeid;
        let n = fixture.scale.files;
        let names: Vec<Vec<u8>> = (0..n).map(|i| with_nul(&format!("c{i:06}"))).collect();
        let data = vec![0xa5u8; CREATE_SIZE];
        let flags = (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u32;
        let create_in = CreateIn {
            flags,
            mode: 0o100644,
            umask: 0,
            open_flags: 0,
        };
        let mut open: Vec<(u64, u64)> = vec![(0, 0); n];

        let t = Instant::now();
        pipeline(
            self.ctx.depth,
            n,
            |i| {
                s.submit(
                    Opcode::Create,
                    dir,
                    &[create_in.as_slice(), &names[i]],
                    &[ENTRY, OPEN_OUT],
                )
                .ctx(|| format!("{who}: CREATE"))
            },
            |p| s.complete(p).ctx(|| format!("{who}: create reply")),
            |i, step, body| match step {
                0 => {
                    if body.len() != ENTRY + OPEN_OUT {
                        return Err(BenchError::Check(format!(
                            "{who}: CREATE reply of {} bytes",
                            body.len()
                        )));
                    }
                    let e: EntryOut = parse(&who, Opcode::Create, &body[..ENTRY])?;
                    let o: OpenOut = parse(&who, Opcode::Create, &body[ENTRY..])?;
                    open[i] = (e.nodeid, o.fh);
                    Ok(Some(
                        s.submit_write(e.nodeid, o.fh, 0, &data, 0)
                            .ctx(|| format!("{who}: WRITE"))?,
                    ))
                }
                1 => {
                    let w: WriteOut = parse(&who, Opcode::Write, &body)?;
                    if w.size as usize != CREATE_SIZE {
                        return Err(BenchError::Check(format!(
                            "{who}: WRITE wrote {} of {CREATE_SIZE}",
                            w.size
                        )));
                    }
                    let (nodeid, fh) = open[i];
                    let rel = ReleaseIn {
                        fh,
                        flags: libc::O_WRONLY as u32,
                        ..Default::default()
                    };
                    Ok(Some(
                        s.submit(Opcode::Release, nodeid, &[rel.as_slice()], &[])
                            .ctx(|| format!("{who}: RELEASE"))?,
                    ))
                }
                _ => Ok(None),
            },
        )?;
        let elapsed = t.elapsed();

        let mut nodeids: Vec<u64> = open.iter().map(|&(n, _)| n).collect();
        nodeids.push(dir);
        forget_all(s, &who, &nodeids)?;
        std::fs::remove_dir_all(&host_dir).map_err(|e| BenchError::io("remove", &host_dir, e))?;
        Ok(rate(3.0 * n as f64, elapsed))
    }
}

struct RawCreate<'a> {
    fixture: &'a Fixture,
}

impl Measure for RawCreate<'_> {
    fn sample(&mut self, round: usize) -> Result<f64> {
        let n = self.fixture.scale.files;
        let host_dir = self.fixture.fresh_create_dir(&format!("raw-{round}"))?;
        let dir = File::open(&host_dir).map_err(|e| BenchError::io("open", &host_dir, e))?;
        let names: Vec<CString> = (0..n)
            .map(|i| {
                CString::new(format!("c{i:06}"))
                    .map_err(|_| BenchError::Check("NUL in name".into()))
            })
            .collect::<Result<_>>()?;
        let data = vec![0xa5u8; CREATE_SIZE];
        let t = Instant::now();
        for name in &names {
            let f =
                sys::create_at(&dir, name).map_err(|e| BenchError::io("openat", &host_dir, e))?;
            f.write_all_at(&data, 0)
                .map_err(|e| BenchError::io("pwrite", &host_dir, e))?;
            drop(f);
        }
        let elapsed = t.elapsed();
        std::fs::remove_dir_all(&host_dir).map_err(|e| BenchError::io("remove", &host_dir, e))?;
        Ok(rate(3.0 * n as f64, elapsed))
    }
}

// ---------------------------------------------------------------- 5: READDIRPLUS

/// Item 5.
pub fn readdirplus(ctx: &Ctx) -> Plan<'_> {
    let n = ctx.fixture.scale.files;
    let spec = FigureSpec::new(
        "readdirplus",
        5,
        format!("READDIRPLUS, {n}-entry directory, {READDIR_BUF} B replies"),
        Unit::EntriesPerSec,
        Better::Higher,
    )
    .baseline("raw host");
    let mut subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            let conn = ctx.connect(b, 1, 1 << 20)?;
            let dir = lookup_path(&conn.session, &b.name, META_DIR)?.nodeid;
            Ok(Box::new(ReaddirPlus {
                conn,
                dir,
                expect: n,
            }) as Box<dyn Measure>)
        })
    });
    subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        Ok(Box::new(RawReaddir {
            fixture: &ctx.fixture,
        }) as Box<dyn Measure + '_>)
    }));
    Plan { spec, subjects }
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

struct ReaddirPlus {
    conn: Connection,
    dir: u64,
    expect: usize,
}

impl Measure for ReaddirPlus {
    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.conn.session)
    }

    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.conn)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let s = &self.conn.session;
        let who = self.conn.name().to_string();
        let mut nodeids = Vec::with_capacity(self.expect);
        let t = Instant::now();
        let open = s
            .opendir(self.dir, libc::O_RDONLY as u32)
            .ctx(|| format!("{who}: OPENDIR"))?;
        let mut offset = 0;
        loop {
            let entries = s
                .readdirplus(self.dir, open.fh, offset, READDIR_BUF)
                .ctx(|| format!("{who}: READDIRPLUS at offset {offset}"))?;
            let Some(last) = entries.last() else { break };
            offset = last.dirent.off;
            nodeids.extend(
                entries
                    .iter()
                    .filter(|e| !is_dot(&e.dirent.name) && e.entry.nodeid != 0)
                    .map(|e| e.entry.nodeid),
            );
        }
        s.releasedir(self.dir, open.fh, 0)
            .ctx(|| format!("{who}: RELEASEDIR"))?;
        let elapsed = t.elapsed();
        forget_all(s, &who, &nodeids)?;
        if nodeids.len() != self.expect {
            return Err(BenchError::Check(format!(
                "{who}: READDIRPLUS returned {} entries with a node id, want {}",
                nodeids.len(),
                self.expect
            )));
        }
        Ok(rate(nodeids.len() as f64, elapsed))
    }
}

struct RawReaddir<'a> {
    fixture: &'a Fixture,
}

impl Measure for RawReaddir<'_> {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let path = self.fixture.path(META_DIR);
        let io = |what, e| BenchError::io(what, &path, e);
        let mut buf = vec![0u8; READDIR_BUF as usize];
        let mut count = 0usize;
        let mut failed = None;
        let t = Instant::now();
        let dir = File::open(&path).map_err(|e| io("open", e))?;
        loop {
            let n = sys::getdents64(&dir, &mut buf).map_err(|e| io("getdents64", e))?;
            if n == 0 {
                break;
            }
            sys::for_each_dirent(&buf[..n], |name| {
                if is_dot(name) || failed.is_some() {
                    return;
                }
                // READDIRPLUS's per-entry lookup: a stat of the entry.
                let c = CString::new(name).unwrap_or_default();
                match sys::fstatat(&dir, &c) {
                    Ok(_) => count += 1,
                    Err(e) => failed = Some(e),
                }
            });
        }
        drop(dir);
        let elapsed = t.elapsed();
        if let Some(e) = failed {
            return Err(io("fstatat", e));
        }
        if count != self.fixture.scale.files {
            return Err(BenchError::Check(format!(
                "raw readdir saw {count} entries"
            )));
        }
        Ok(rate(count as f64, elapsed))
    }
}
