//! DAX: the pure check (`check_map`/`check_range`) on 4K, 16K and 64K hosts, the mapping
//! table against a page-by-page model, and the worker's `DaxChannel` in front of a recording
//! owner (a real `WindowMapper`), fed arbitrary map/unmap sequences, owner failures and
//! reconnects.
//!
//! Invariants: nothing the check accepts lies outside the window or is misaligned, and it
//! accepts every request that is inside and aligned; the table never holds overlapping entries,
//! its byte count is right, a refused update leaves it unchanged, and it matches the model;
//! the owner only ever receives requests inside the window, and the channel's table and the
//! owner's mappings never disagree.

#![no_main]

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::sync::{Mutex, OnceLock};

use devices::dax::table::{Mapping, MappingTable};
use devices::dax::{check_map, check_range, host_page_size, Access, DaxChannel, MapRequest};
use devices::dax::{Window, DAX_BLOCK};
use devices::fuse::abi::{SETUPMAPPING_FLAG_READ as R, SETUPMAPPING_FLAG_WRITE as W};
use fsjail_fuzz::window::Recorder;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The channel's window (and the recorder's): two 2 MiB blocks.
const WINDOW: u64 = 2 * DAX_BLOCK;

struct World {
    _dir: tempfile::TempDir,
    rw: File,
    ro: File,
    recorder: std::sync::Arc<Recorder>,
}

fn world() -> &'static Mutex<World> {
    static W: OnceLock<Mutex<World>> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let ro = File::open(&path).unwrap();
        Mutex::new(World {
            _dir: dir,
            rw,
            ro,
            recorder: std::sync::Arc::new(Recorder::new(WINDOW)),
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = pure_check(&mut u);
    let _ = table_vs_model(&mut u);
    let _ = channel_vs_owner(&mut u);
});

/// An offset that is usually page-aligned and near the window, sometimes anything.
fn offset(u: &mut Unstructured<'_>, page: u64, window: u64) -> ArbResult<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.arbitrary()?,
        1 => u.int_in_range(0..=window + page)?,
        _ => page * u.int_in_range(0..=window / page + 1)?,
    })
}

fn pure_check(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let page = [4096u64, 16384, 65536][u.int_in_range(0..=2)?];
    let window_len = DAX_BLOCK * u.int_in_range(1..=4)?;
    let win = Window::new(window_len, page).expect("a valid window");
    for _ in 0..u.int_in_range(1..=8)? {
        let req = MapRequest {
            foffset: match u.int_in_range(0..=2)? {
                0 => u.arbitrary()?,
                1 => i64::MAX as u64 - u.int_in_range(0..=4 * page)?,
                _ => offset(u, page, window_len)?,
            },
            moffset: offset(u, page, window_len)?,
            len: offset(u, page, window_len)?,
            flags: u.int_in_range(0..=7)?,
        };
        let inside = req.len > 0
            && req.moffset.is_multiple_of(page)
            && req.len.is_multiple_of(page)
            && req
                .moffset
                .checked_add(req.len)
                .is_some_and(|e| e <= window_len);
        let file_ok = req.foffset.is_multiple_of(page)
            && req
                .foffset
                .checked_add(req.len)
                .is_some_and(|e| e <= i64::MAX as u64);
        let flags_ok = req.flags & !(R | W) == 0 && req.flags & R != 0;
        match check_map(&win, &req) {
            Ok(access) => {
                assert!(inside && file_ok && flags_ok, "accepted {req:?} on {win:?}");
                assert_eq!(access == Access::ReadWrite, req.flags & W != 0);
            }
            Err(e) => assert!(!(inside && file_ok && flags_ok), "refused {req:?}: {e}"),
        }
        assert_eq!(check_range(&win, req.moffset, req.len).is_ok(), inside);
    }
    Ok(())
}

/// Page `p` of a small window, as the model sees it: (file page, writable).
type Model = Vec<Option<(u64, bool)>>;

fn table_pages(t: &MappingTable, pages: usize) -> Model {
    let mut m = vec![None; pages];
    let mut last_end = 0;
    let mut bytes = 0;
    for e in t.iter() {
        assert!(
            e.len > 0 && e.moffset >= last_end,
            "overlapping or empty entries"
        );
        last_end = e.moffset + e.len;
        bytes += e.len;
        for i in 0..e.len {
            m[(e.moffset + i) as usize] = Some((e.foffset + i, e.writable));
        }
    }
    assert_eq!(bytes, t.mapped_bytes(), "mapped_bytes is off");
    m
}

/// The table with unit-sized "pages" and a small bound, against a model of mmap semantics.
fn table_vs_model(u: &mut Unstructured<'_>) -> ArbResult<()> {
    const PAGES: u64 = 64;
    let max = u.int_in_range(1..=8)?;
    let mut t = MappingTable::new(max);
    let mut model: Model = vec![None; PAGES as usize];
    for _ in 0..u.int_in_range(1..=32)? {
        let moffset = u.int_in_range(0..=PAGES - 1)?;
        let len = u.int_in_range(0..=PAGES - moffset)?;
        let before = table_pages(&t, PAGES as usize);
        let count = t.len();
        if u.arbitrary::<bool>()? {
            let m = Mapping {
                moffset,
                len,
                foffset: u.int_in_range(0..=1000)?,
                nodeid: 1,
                writable: u.arbitrary()?,
            };
            match t.insert(m) {
                Ok(()) => {
                    for i in 0..len {
                        model[(moffset + i) as usize] = Some((m.foffset + i, m.writable));
                    }
                }
                Err(_) => {
                    assert_eq!(
                        table_pages(&t, PAGES as usize),
                        before,
                        "a refused insert changed"
                    );
                    assert_eq!(t.len(), count);
                }
            }
        } else {
            match t.remove(moffset, len) {
                Ok(removed) => {
                    let was = (moffset..moffset + len)
                        .filter(|&p| model[p as usize].is_some())
                        .count() as u64;
                    assert_eq!(
                        removed, was,
                        "remove reported {removed} bytes, {was} were mapped"
                    );
                    for p in moffset..moffset + len {
                        model[p as usize] = None;
                    }
                }
                Err(_) => assert_eq!(table_pages(&t, PAGES as usize), before),
            }
        }
        assert!(t.len() <= max, "table grew past its bound");
        assert_eq!(table_pages(&t, PAGES as usize), model);
    }
    Ok(())
}

/// The worker's channel in front of a recording owner.
fn channel_vs_owner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let w = world().lock().unwrap_or_else(|p| p.into_inner());
    let page = host_page_size();
    let channel = DaxChannel::new(Window::new(WINDOW, page).unwrap());
    w.recorder.reset();
    channel.connect(w.recorder.clone());
    for _ in 0..u.int_in_range(1..=24)? {
        match u.int_in_range(0..=5)? {
            0..=2 => {
                let req = MapRequest {
                    foffset: page * u.int_in_range(0..=4)?,
                    moffset: offset(u, page, WINDOW)?,
                    len: offset(u, page, WINDOW)?,
                    flags: [R, R | W, W, 0, 8 | R][u.int_in_range(0..=4)?],
                };
                let fd = if u.arbitrary::<bool>()? {
                    w.rw.as_fd()
                } else {
                    w.ro.as_fd()
                };
                let _ = channel.map(u.int_in_range(1..=3)?, &req, fd);
            }
            3 => {
                let ranges: Vec<(u64, u64)> = (0..u.int_in_range(1..=4)?)
                    .map(|_| Ok((offset(u, page, WINDOW)?, offset(u, page, WINDOW)?)))
                    .collect::<ArbResult<_>>()?;
                let _ = channel.unmap(&ranges);
            }
            4 => w
                .recorder
                .fail_next_map
                .store(true, std::sync::atomic::Ordering::Relaxed),
            _ => {
                // The frontend reconnects: its new window is empty, and so is the table.
                channel.disconnect();
                w.recorder.reset();
                channel.connect(w.recorder.clone());
            }
        }
        let maps = channel.mappings();
        for m in &maps {
            assert!(m.moffset + m.len <= WINDOW && m.moffset % page == 0 && m.len % page == 0);
        }
        assert_eq!(
            channel.mapped_bytes(),
            maps.iter().map(|m| m.len).sum::<u64>()
        );
        w.recorder.assert_agrees(&maps);
    }
    channel.disconnect();
    Ok(())
}
