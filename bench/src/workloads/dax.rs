//! DAX (item 6): SETUPMAPPING + REMOVEMAPPING of 2 MiB blocks, and reading a file through
//! the window. Runs only against backends that offer a window (VHOST_USER_PROTOCOL_F_SHMEM
//! with a non-empty shared memory region); the others print why they were skipped.
//!
//! The benchmark plays the VMM's part: it reserves the window in its own address space and
//! serves the backend's SHMEM_MAP / SHMEM_UNMAP requests with `mmap(MAP_FIXED)` of the fd
//! the backend sends, as QEMU does. The host baselines are the same mmap/munmap calls on the
//! file directly, and a memcpy out of a plain mapping of the file (the page cache).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guest_driver::abi::SETUPMAPPING_FLAG_READ;
use guest_driver::{VhostUserFrontendReqHandler, VhostUserMMap, VhostUserProtocolFeatures};

use super::{lookup_path, queue_diagnostics, rate, Ctx, Plan};
use crate::backend::{BackendSpec, Connection};
use crate::error::{BenchError, DriverContext, Result};
use crate::figure::{Better, FigureSpec, Goal, Unit};
use crate::fixture::{check_word, BIG_FILE};
use crate::runner::{Kind, Measure, Subject};
use crate::sys::Mapping;

/// Size of one mapping, as Linux's virtiofs DAX uses.
const BLOCK: u64 = 2 << 20;
/// Copy granule for the window read.
const CHUNK: usize = 1 << 20;
/// REMOVEMAPPING ranges per request.
const REMOVE_BATCH: usize = 128;
/// VHOST_USER_MMAP_FLAG_WRITABLE.
const MMAP_WRITABLE: u64 = 1;

/// The frontend's DAX window: a reservation the backend maps file ranges into.
#[derive(Default)]
pub struct DaxWindow {
    window: Mutex<Option<Arc<Mapping>>>,
    /// Bytes currently mapped (SHMEM_MAP adds, SHMEM_UNMAP subtracts).
    mapped: AtomicU64,
}

impl DaxWindow {
    fn install(&self, m: Arc<Mapping>) {
        if let Ok(mut w) = self.window.lock() {
            *w = Some(m);
        }
    }

    fn window(&self) -> io::Result<Arc<Mapping>> {
        self.window
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENXIO))
    }

    /// Waits until `bytes` are mapped (a backend may answer SETUPMAPPING before the map
    /// request reached us if it does not wait for our ack).
    fn wait_mapped(&self, bytes: u64, who: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.mapped.load(Ordering::Acquire) < bytes {
            if Instant::now() > deadline {
                return Err(BenchError::Check(format!(
                    "{who}: SETUPMAPPING replied but only {} of {bytes} bytes were mapped into the window",
                    self.mapped.load(Ordering::Acquire)
                )));
            }
            std::thread::yield_now();
        }
        Ok(())
    }
}

impl VhostUserFrontendReqHandler for DaxWindow {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> io::Result<u64> {
        let (shmid, off, len, fd_off, flags) =
            (req.shmid, req.shm_offset, req.len, req.fd_offset, req.flags);
        if shmid != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.window()?
            .map_fixed(off, len, fd.as_raw_fd(), fd_off, flags & MMAP_WRITABLE != 0)?;
        self.mapped.fetch_add(len, Ordering::AcqRel);
        Ok(0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> io::Result<u64> {
        let (off, len) = (req.shm_offset, req.len);
        self.window()?.unmap_fixed(off, len)?;
        let _ = self
            .mapped
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                Some(m.saturating_sub(len))
            });
        Ok(0)
    }
}

/// A backend with its window set up and `big.dat` open.
struct DaxSession {
    conn: Connection,
    window: Arc<DaxWindow>,
    mapping: Arc<Mapping>,
    nodeid: u64,
    fh: u64,
    file_len: u64,
}

impl DaxSession {
    fn open(ctx: &Ctx, b: &BackendSpec) -> Result<Self> {
        let window = Arc::new(DaxWindow::default());
        let conn = ctx.connect_dax(b, 1, 1 << 20, ctx.dax_window, Some(window.clone()))?;
        let s = &conn.session;
        let dev = s.device();
        if !dev
            .acked_protocol_features()
            .contains(VhostUserProtocolFeatures::SHMEM)
        {
            return Err(BenchError::Skip(format!(
                "{} offers no DAX window (no VHOST_USER_PROTOCOL_F_SHMEM)",
                b.name
            )));
        }
        let cfg = dev
            .shmem_config()
            .ctx(|| format!("{}: GET_SHMEM_CONFIG", b.name))?;
        let size = if cfg.nregions > 0 {
            cfg.memory_sizes[0]
        } else {
            0
        };
        if size < BLOCK {
            return Err(BenchError::Skip(format!(
                "{} offers no DAX window (shared memory region 0 is {size} bytes)",
                b.name
            )));
        }
        let align = s.init_out().map_or(0, |i| i.map_alignment);
        if align >= 64 || (1u64 << align) > BLOCK {
            return Err(BenchError::Skip(format!(
                "{}: map alignment 2^{align} exceeds 2 MiB",
                b.name
            )));
        }
        let mapping = Arc::new(
            Mapping::reserve(size as usize)
                .map_err(|e| BenchError::io("reserve DAX window", "(anonymous)", e))?,
        );
        window.install(mapping.clone());
        let entry = lookup_path(s, &b.name, BIG_FILE)?;
        let (nodeid, file_len) = (entry.nodeid, entry.attr.size);
        let fh = s
            .open(nodeid, libc::O_RDONLY as u32)
            .ctx(|| format!("{}: OPEN", b.name))?
            .fh;
        Ok(DaxSession {
            conn,
            window,
            mapping,
            nodeid,
            fh,
            file_len,
        })
    }

    fn blocks(&self) -> u64 {
        self.mapping.len() as u64 / BLOCK
    }
}

/// Item 6: both figures.
pub fn figures(ctx: &Ctx) -> Vec<Plan<'_>> {
    let sc = &ctx.fixture.scale;
    let cycles = sc.dax_cycles;
    let map_spec = FigureSpec::new(
        "dax-map",
        6,
        format!("DAX SETUPMAPPING+REMOVEMAPPING, 2 MiB, {cycles}×"),
        Unit::OpsPerSec,
        Better::Higher,
    )
    .baseline("raw host");
    let read_len = sc.dax_read.min(sc.big_file) / BLOCK * BLOCK;
    let read_spec = FigureSpec::new(
        "dax-read",
        6,
        format!("read {} MiB through the DAX window", read_len >> 20),
        Unit::GBps,
        Better::Higher,
    )
    .baseline("memcpy")
    .target("≥90% of memcpy", vec![Goal::Baseline(0.9)]);

    let mut map_subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            Ok(Box::new(MapCycles {
                d: DaxSession::open(ctx, b)?,
                cycles,
            }) as Box<dyn Measure>)
        })
    });
    map_subjects.push(Subject::new("raw host", Kind::Baseline, move || {
        let file = ctx.fixture.open(BIG_FILE)?;
        let window = Mapping::reserve(read_len.max(BLOCK) as usize)
            .map_err(|e| BenchError::io("reserve", "(anonymous)", e))?;
        Ok(Box::new(RawMapCycles {
            file,
            window,
            cycles,
            file_len: sc.big_file,
        }) as Box<dyn Measure>)
    }));

    let mut read_subjects = ctx.backend_subjects(|b| {
        Subject::new(b.name.clone(), Kind::Backend, move || {
            Ok(Box::new(WindowRead {
                d: DaxSession::open(ctx, b)?,
                len: read_len,
            }) as Box<dyn Measure>)
        })
    });
    read_subjects.push(Subject::new("memcpy", Kind::Baseline, move || {
        let file = ctx.fixture.open(BIG_FILE)?;
        Ok(Box::new(Memcpy {
            file,
            len: read_len,
        }) as Box<dyn Measure>)
    }));

    vec![
        Plan {
            spec: map_spec,
            subjects: map_subjects,
        },
        Plan {
            spec: read_spec,
            subjects: read_subjects,
        },
    ]
}

struct MapCycles {
    d: DaxSession,
    cycles: usize,
}

impl Measure for MapCycles {
    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.d.conn)
    }

    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.d.conn.session)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let d = &self.d;
        let (s, who) = (&d.conn.session, d.conn.name().to_string());
        let file_blocks = (d.file_len / BLOCK).max(1);
        let t = Instant::now();
        for i in 0..self.cycles as u64 {
            let moff = (i % d.blocks()) * BLOCK;
            let foff = (i % file_blocks) * BLOCK;
            s.setupmapping(d.nodeid, d.fh, foff, BLOCK, SETUPMAPPING_FLAG_READ, moff)
                .ctx(|| format!("{who}: SETUPMAPPING"))?;
            s.removemapping(d.nodeid, &[(moff, BLOCK)])
                .ctx(|| format!("{who}: REMOVEMAPPING"))?;
        }
        Ok(rate(2.0 * self.cycles as f64, t.elapsed()))
    }
}

struct WindowRead {
    d: DaxSession,
    len: u64,
}

impl Measure for WindowRead {
    fn probe(&self) -> Option<crate::cost::Probe> {
        super::probe_of(&self.d.conn)
    }

    fn diagnostics(&self) -> Vec<(&'static str, f64)> {
        queue_diagnostics(&self.d.conn.session)
    }

    fn sample(&mut self, _round: usize) -> Result<f64> {
        let d = &self.d;
        let (s, who) = (&d.conn.session, d.conn.name().to_string());
        let len = self.len.min(d.blocks() * BLOCK);
        if len == 0 {
            return Err(BenchError::Skip(format!(
                "{who}: window smaller than one block"
            )));
        }
        let blocks: Vec<u64> = (0..len / BLOCK).map(|k| k * BLOCK).collect();
        for &off in &blocks {
            s.setupmapping(d.nodeid, d.fh, off, BLOCK, SETUPMAPPING_FLAG_READ, off)
                .ctx(|| format!("{who}: SETUPMAPPING"))?;
        }
        d.window.wait_mapped(len, &who)?;

        let mut buf = vec![0u8; CHUNK];
        let t = Instant::now();
        for off in (0..len as usize).step_by(CHUNK) {
            d.mapping
                .copy_out(off, &mut buf)
                .map_err(|e| BenchError::io("copy from the DAX window", "(window)", e))?;
            check_word(&buf, off as u64, &who)?;
        }
        let elapsed = t.elapsed();

        for batch in blocks.chunks(REMOVE_BATCH) {
            let ranges: Vec<(u64, u64)> = batch.iter().map(|&o| (o, BLOCK)).collect();
            s.removemapping(d.nodeid, &ranges)
                .ctx(|| format!("{who}: REMOVEMAPPING"))?;
        }
        Ok(rate(len as f64, elapsed) / 1e9)
    }
}

struct RawMapCycles {
    file: std::fs::File,
    window: Mapping,
    cycles: usize,
    file_len: u64,
}

impl Measure for RawMapCycles {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        let blocks = (self.window.len() as u64 / BLOCK).max(1);
        let file_blocks = (self.file_len / BLOCK).max(1);
        let fd = self.file.as_raw_fd();
        let t = Instant::now();
        for i in 0..self.cycles as u64 {
            let moff = (i % blocks) * BLOCK;
            self.window
                .map_fixed(moff, BLOCK, fd, (i % file_blocks) * BLOCK, false)
                .and_then(|()| self.window.unmap_fixed(moff, BLOCK))
                .map_err(|e| BenchError::io("mmap", BIG_FILE, e))?;
        }
        Ok(rate(2.0 * self.cycles as f64, t.elapsed()))
    }
}

struct Memcpy {
    file: std::fs::File,
    len: u64,
}

impl Measure for Memcpy {
    fn sample(&mut self, _round: usize) -> Result<f64> {
        // A fresh mapping per sample, like the window's fresh mappings: both pay the same
        // page-table faults on first touch.
        let m = Mapping::file_readonly(&self.file, self.len as usize)
            .map_err(|e| BenchError::io("mmap", BIG_FILE, e))?;
        let mut buf = vec![0u8; CHUNK];
        let t = Instant::now();
        for off in (0..self.len as usize).step_by(CHUNK) {
            m.copy_out(off, &mut buf)
                .map_err(|e| BenchError::io("copy", BIG_FILE, e))?;
            check_word(&buf, off as u64, "memcpy")?;
        }
        Ok(rate(self.len as f64, t.elapsed()) / 1e9)
    }
}
