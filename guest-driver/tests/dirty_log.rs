//! Dirty-page logging for live migration (LOG_SHMFD, VHOST_F_LOG_ALL), against a jailed
//! `fsjail serve`: with a log installed by SET_LOG_BASE and LOG_ALL on, every guest page a READ
//! reply lands in is marked, and so is the used ring's page; pages the device never writes (the
//! descriptor table, the request's own buffers) are not. A log the frontend lies about is
//! refused without the worker dying of SIGBUS.

#[macro_use]
#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{Backend, Config, Kind};
use guest_driver::abi::ROOT_ID;
use guest_driver::dirty_log::{log_file, LOG_PAGE, VHOST_F_LOG_ALL};
use guest_driver::{Completion, Options, Session, VhostUserProtocolFeatures};

const RDONLY: u32 = libc::O_RDONLY as u32;
const RAM_BASE: u64 = 1 << 30;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// READs `size` bytes at 0 and returns the completion, checking the bytes.
fn read(fs: &Session, node: u64, fh: u64, size: u32, want: &[u8]) -> Completion {
    let p = fs.submit_read(node, fh, 0, size).unwrap();
    let c = fs.complete_in_place(p).unwrap();
    let mut got = vec![0u8; size as usize];
    // 16 bytes of FUSE out header come first.
    let n = c.copy_written(16, &mut got).unwrap();
    assert_eq!(&got[..n], &want[..n]);
    assert_eq!(n, size as usize);
    c
}

/// Guest addresses of every page the completion's writable buffers span.
fn reply_pages(c: &Completion) -> Vec<u64> {
    let mut pages = Vec::new();
    for b in c.writable() {
        let first = b.addr() / LOG_PAGE;
        let last = (b.addr() + b.len() as u64 - 1) / LOG_PAGE;
        pages.extend((first..=last).map(|p| p * LOG_PAGE));
    }
    pages
}

#[test]
fn read_replies_and_used_ring_are_logged() {
    let b = Backend::start(Kind::Fsjail, &Config::default());
    let data = pattern(512 << 10);
    std::fs::write(b.host("data"), &data).unwrap();
    let fs = b.session();
    let dev = fs.device().clone();
    assert!(dev
        .backend_protocol_features()
        .contains(VhostUserProtocolFeatures::LOG_SHMFD));
    assert!(dev
        .acked_protocol_features()
        .contains(VhostUserProtocolFeatures::LOG_SHMFD));
    assert_ne!(
        dev.offered_features() & VHOST_F_LOG_ALL,
        0,
        "LOG_ALL offered"
    );

    let e = fs.lookup(ROOT_ID, "data").unwrap();
    let fh = fs.open(e.nodeid, RDONLY).unwrap().fh;
    let log = dev.start_dirty_log().unwrap();
    log.clear().unwrap();
    let rings = dev.queue(1).unwrap().ring_addresses();

    // 4 KiB is served on the queue thread, 256 KiB on the request pool: both must log.
    for size in [4096u32, 256 << 10] {
        log.clear().unwrap();
        let c = read(&fs, e.nodeid, fh, size, &data);
        let dirty = log.dirty_pages().unwrap();
        for page in reply_pages(&c) {
            assert!(
                log.is_dirty(page).unwrap(),
                "READ of {size}: reply page {page:#x} not logged; logged: {dirty:x?}"
            );
        }
        assert!(
            log.is_dirty(rings.used).unwrap(),
            "READ of {size}: used ring page {:#x} not logged",
            rings.used
        );
        // The device only reads the descriptor table and the request: never logged (unless
        // they share a page with something it writes).
        let page = |a: u64| a / LOG_PAGE * LOG_PAGE;
        let written = |a: u64| page(a) == page(rings.used) || reply_pages(&c).contains(&page(a));
        if !written(rings.desc) {
            assert!(
                !log.is_dirty(rings.desc).unwrap(),
                "descriptor table logged"
            );
        }
        for buf in &c.bufs[..c.n_readable] {
            if !written(buf.addr()) {
                assert!(!log.is_dirty(buf.addr()).unwrap(), "request page logged");
            }
        }
    }

    // QEMU turns LOG_ALL off when the RAM copy ends; the device keeps serving.
    dev.stop_dirty_log().unwrap();
    read(&fs, e.nodeid, fh, 4096, &data);
}

/// A log the backend cannot use: refused (the connection ends, as for a bad memory table), and
/// never a SIGBUS in the worker.
fn refused(make: impl FnOnce(&guest_driver::Device) -> guest_driver::Result<()>) {
    let mut b = Backend::start(Kind::Fsjail, &Config::default());
    // RAM at 1 GiB: the log needs 34 KiB, so a short file leaves whole log pages unbacked.
    let fs = b.session_with(Options {
        mem_base: RAM_BASE,
        ..b.options()
    });
    let dev = fs.device().clone();
    assert!(make(&dev).is_err(), "a bad log was accepted");
    if let Some(st) = b.wait_exit(Duration::from_secs(5)) {
        assert_eq!(st.signal(), None, "worker killed: {st}\n{}", b.log());
    }
    drop(fs);
}

#[test]
fn bad_logs_are_refused_without_a_crash() {
    // 64 MiB of RAM ending at 1 GiB + 64 MiB needs 34 KiB of log.
    let need = (RAM_BASE + (64u64 << 20)) / LOG_PAGE / 8;
    // Too small for guest RAM.
    refused(|dev| dev.set_log_base(&log_file(need).unwrap(), 0, need / 2));
    // Claims more than the file holds: marking would raise SIGBUS.
    refused(|dev| dev.set_log_base(&log_file(4096).unwrap(), 0, need));
    // An offset past the end of the file.
    refused(|dev| dev.set_log_base(&log_file(need).unwrap(), 1 << 30, need));
    // An unaligned offset (mmap refuses it).
    refused(|dev| dev.set_log_base(&log_file(2 * need).unwrap(), 100, need));
    // Absurd sizes.
    refused(|dev| dev.set_log_base(&log_file(need).unwrap(), 0, u64::MAX));
    refused(|dev| dev.set_log_base(&log_file(need).unwrap(), u64::MAX - 4095, need));
}
