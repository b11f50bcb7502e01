//! Crash consistency: rounds of "the guest writes and FSYNCs files with known contents (and
//! writes some it never fsyncs), the worker is SIGKILLed at a random moment, the broker
//! restarts it, the guest reconnects". After every round each file whose FSYNC was answered
//! has exactly its contents on the host, the sentinel beside the share is untouched, and the
//! broker's descriptors and memory do not grow.
//!
//! `FSJAIL_CRASH_ROUNDS` sets the number of rounds: 4 by default (CI), 100 for the full run
//! (docs/security-testing.md has its figures). The broker gives up on a share after 5 failures
//! within 60 s, and a SIGKILL is a failure, so past 4 rounds each kill waits until the one 4
//! rounds earlier is 60 s old: the full run takes about 25 minutes, mostly asleep.

#[path = "attacks/mod.rs"]
mod attacks;
#[path = "broker_support/mod.rs"]
mod broker_support;
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attacks::{status_field, Sentinel};
use broker_support::{Broker, Dir};
use guest_driver::abi::ROOT_ID;
use guest_driver::{Device, Session};

const RDWR: u32 = libc::O_RDWR as u32;
const REG: u32 = libc::S_IFREG | 0o644;
/// The broker's failure window and how many failures it takes within it (jail's restart.rs).
const WINDOW: Duration = Duration::from_millis(60_500);
const KILLS_PER_WINDOW: usize = 4;

/// A small deterministic generator (xorshift), seeded from the clock; the seed is printed so a
/// failing run can be repeated with FSJAIL_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn contents(rng: &mut Rng) -> Vec<u8> {
    let len = 1 + rng.below(256 * 1024) as usize;
    let seed = rng.next();
    (0..len)
        .map(|i| (seed.wrapping_mul(i as u64 + 1) >> 24) as u8)
        .collect()
}

fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn rss_kib(pid: i32) -> u64 {
    status_field(pid as u32, "VmRSS:")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Writes files until a request fails (the worker was killed) or `limit` files are done.
/// Returns the files whose FSYNC succeeded, with their contents.
fn write_until_killed(
    s: &Session,
    round: usize,
    rng: &mut Rng,
    synced: &mut BTreeMap<String, Vec<u8>>,
) {
    for k in 0..10_000 {
        let data = contents(rng);
        let fsync = k % 3 != 2;
        let name = format!("r{round}-{k}{}", if fsync { "" } else { "-unsynced" });
        let Ok((e, o)) = s.create(ROOT_ID, &name, REG, RDWR, 0) else {
            return;
        };
        let mut off = 0u64;
        for chunk in data.chunks(64 * 1024) {
            if s.write(e.nodeid, o.fh, off, chunk).is_err() {
                return;
            }
            off += chunk.len() as u64;
        }
        if !fsync {
            // Never fsynced, never released: whatever of it reached the disk may stay.
            continue;
        }
        if s.fsync(e.nodeid, o.fh, false).is_err() {
            return;
        }
        synced.insert(name, data);
        if s.release(e.nodeid, o.fh, RDWR, 0, 0).is_err() {
            return;
        }
    }
    panic!("round {round}: the worker was never killed");
}

#[test]
fn fsynced_data_survives_worker_kills() {
    let rounds: usize = std::env::var("FSJAIL_CRASH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("FSJAIL_CRASH_ROUNDS: a number"))
        .unwrap_or(4);
    let seed: u64 = std::env::var("FSJAIL_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("FSJAIL_CRASH_SEED: a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {rounds} rounds, FSJAIL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = Dir::new();
    dir.write_policy(&dir.shares_policy(&["c"], ""));
    let sentinel = Sentinel::create(&dir.path().join("sentinel"));
    let mut broker = Broker::start(&dir);
    let share = dir.path().join("c");
    let mut synced: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut kills: Vec<Instant> = Vec::new();
    let mut usage: Vec<(usize, u64)> = Vec::new();

    for round in 0..rounds {
        let worker = broker.wait_worker("c", round + 1);
        // The broker's own use, with one worker up and no guest: the same state every round.
        usage.push((fd_count(broker.pid), rss_kib(broker.pid)));
        if let Some(&earlier) = kills.len().checked_sub(KILLS_PER_WINDOW).map(|i| &kills[i]) {
            let ready = earlier + WINDOW;
            if let Some(wait) = ready.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }

        let dev = Arc::new(
            Device::connect(dir.socket("c"))
                .unwrap_or_else(|e| panic!("round {round}: connect: {e}\n{}", broker.log())),
        );
        let s = Session::new(dev);
        s.set_timeout(Duration::from_secs(5));
        s.init()
            .unwrap_or_else(|e| panic!("round {round}: INIT: {e}\n{}", broker.log()));

        let delay = Duration::from_millis(5 + rng.below(300));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: kill(2) on the worker the broker started for this round.
            unsafe { libc::kill(worker, libc::SIGKILL) };
            Instant::now()
        });
        write_until_killed(&s, round, &mut rng, &mut synced);
        kills.push(killer.join().unwrap());
        drop(s);
        broker_support::wait_dead(worker);

        for (name, data) in &synced {
            let got = fs::read(share.join(name))
                .unwrap_or_else(|e| panic!("round {round}: {name}: {e} (fsynced before a kill)"));
            assert!(
                got == *data,
                "round {round}: {name}: {} bytes on the host, {} fsynced (seed {seed})",
                got.len(),
                data.len()
            );
        }
        sentinel.assert_unchanged(&format!("round {round}"));
    }

    // One more worker, so the last figures are taken in the same state as the others.
    broker.wait_worker("c", rounds + 1);
    usage.push((fd_count(broker.pid), rss_kib(broker.pid)));
    let log = broker.log();
    assert!(!log.contains("giving up"), "{log}");
    eprintln!(
        "crash test: {} fsynced files checked; broker fds and VmRSS (KiB) per round: {usage:?}",
        synced.len()
    );
    let (fds0, rss0) = usage[0];
    for (round, &(fds, rss)) in usage.iter().enumerate() {
        assert_eq!(fds, fds0, "broker fds grew by round {round}: {usage:?}");
        // Allocator noise, not growth: a leak per restart would add up over the rounds.
        assert!(
            rss <= rss0 + 1024,
            "broker memory grew by round {round}: {usage:?}"
        );
    }
}
