//! Checks that cannot run on this machine, said out loud.
//!
//! A test that cannot do its check here (no virtiofsd to compare with, not root, no tmpfs mount)
//! calls [`skip`] or [`peer_missing`] instead of returning quietly. What happens then:
//!
//! - `FSJAIL_REQUIRE_ALL=1` (set by `.ci/run`): the test fails, naming what is missing. CI
//!   installs every tool and runs as root, so there a skip is a broken machine or a broken test.
//! - `FSJAIL_REQUIRE_PEER=1` (also set by `.ci/run`): a missing peer fails the test.
//! - Otherwise the test passes, and the skip is counted. When the test binary exits, one line
//!   on its real stderr (not the harness's captured output) says how many checks were skipped
//!   and why, so a green run on a machine without virtiofsd or root does not look complete.
//!
//! Shared by the integration tests through `tests/common/mod.rs`, or with
//! `#[path = "common/skip.rs"] mod skip;` where a test does not use the rest of `common`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, Once};

/// Reason -> how many checks skipped for it, in this test binary.
static SKIPPED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
static AT_EXIT: Once = Once::new();

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// The check `what` cannot run here because of `why`: fails under `FSJAIL_REQUIRE_ALL=1`, else
/// is counted for the summary line.
#[track_caller]
pub fn skip(what: &str, why: &str) {
    if env_set("FSJAIL_REQUIRE_ALL") {
        panic!("{what}: cannot run here: {why} (FSJAIL_REQUIRE_ALL=1 allows no skipped check)");
    }
    record(what, why);
}

/// The peer half of a test cannot run: `FSJAIL_PEER` names no binary. Fails under
/// `FSJAIL_REQUIRE_PEER=1` or `FSJAIL_REQUIRE_ALL=1`.
#[track_caller]
pub fn peer_missing() {
    let why = "FSJAIL_PEER is not set (point it at a virtiofsd binary)";
    if env_set("FSJAIL_REQUIRE_PEER") {
        panic!("the peer half cannot run: {why}; FSJAIL_REQUIRE_PEER=1 requires it");
    }
    skip("the peer half", why);
}

fn record(what: &str, why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    // Captured by the harness: shown with --nocapture or when the test fails.
    eprintln!("SKIP {test}: {what}: {why}");
    *SKIPPED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(format!("{what}: {why}"))
        .or_default() += 1;
    AT_EXIT.call_once(|| {
        // SAFETY: atexit stores a function pointer; `summary` is a plain `extern "C" fn()`
        // that lives as long as the program and touches only statics, which are never dropped,
        // so running it during exit is sound (a panic in it would abort, not unwind into libc).
        let rc = unsafe { libc::atexit(summary) };
        assert_eq!(rc, 0, "atexit");
    });
}

/// Runs at process exit, after the harness printed its result: one line for every skip.
extern "C" fn summary() {
    let Ok(skipped) = SKIPPED.try_lock() else {
        return;
    };
    let total: usize = skipped.values().sum();
    if total == 0 {
        return;
    }
    let reasons: Vec<String> = skipped.iter().map(|(r, n)| format!("{n} × {r}")).collect();
    // Cargo names test binaries NAME-HASH.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name = exe.rsplit_once('-').map_or(exe.as_str(), |(name, _)| name);
    let line = format!(
        "SKIPPED {total} check(s) in {name} (their tests passed without running them): {}\n",
        reasons.join("; ")
    );
    // Straight to file descriptor 2: the harness captures only print!/eprint!.
    let _ = std::io::stderr().write_all(line.as_bytes());
}
