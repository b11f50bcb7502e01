//! Keeps the benchmark working: runs `fsjail-bench --short` against this build of fsjail
//! (and virtiofsd when installed) and checks that it ran, printed its table and wrote valid
//! JSON. No figure is asserted: timings on a shared CI machine mean nothing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// `fsjail-bench` from the same target directory as this test, (re)built first so a run of
/// this test alone never uses a stale binary (`cargo build` is a no-op when it is fresh; cargo
/// holds no lock while tests run). A failed build fails the test.
fn bench_binary() -> PathBuf {
    let fsjail = PathBuf::from(env!("CARGO_BIN_EXE_fsjail"));
    let bin = fsjail.with_file_name("fsjail-bench");
    // <target>/<profile>/fsjail
    let profile_dir = fsjail.parent().expect("profile directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "bench", "--bin", "fsjail-bench"])
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build -p bench");
    assert!(status.success(), "cargo build -p bench failed: {status}");
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

#[test]
fn short_run_prints_the_table_and_writes_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("figures.json");
    let work = tmp.path().join("work");
    let started = std::time::Instant::now();
    let out = Command::new(bench_binary())
        .arg("--short")
        .arg("--no-progress")
        .arg("--fsjail")
        .arg(env!("CARGO_BIN_EXE_fsjail"))
        .arg("--json")
        .arg(&json)
        .arg("--work-dir")
        .arg(&work)
        .output()
        .expect("run fsjail-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: every subject ran or was skipped for a stated reason; 1: some subject FAILED (a
    // backend or the benchmark is broken); 2: the benchmark could not run at all.
    assert!(
        out.status.success(),
        "fsjail-bench --short failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!(
        "fsjail-bench --short took {:?}\n{stdout}",
        started.elapsed()
    );

    // The table: a header row naming the columns, and one row per figure.
    assert!(stdout.contains("fsjail/"), "no ratio column:\n{stdout}");
    for title in [
        "LOOKUP+GETATTR",
        "CREATE+4 KiB WRITE+RELEASE",
        "4 KiB random READ",
        "1 MiB sequential READ",
        "1 MiB sequential WRITE",
        "READDIRPLUS",
        "DAX",
        "worker start",
        "idle worker RSS",
    ] {
        assert!(stdout.contains(title), "no {title:?} row:\n{stdout}");
    }

    // The JSON: checked for the fields this test relies on, so that new fields do not break it.
    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
    assert_eq!(value["tool"], "fsjail-bench", "{text}");
    let figures = value["figures"].as_array().expect("a figures array");
    assert!(figures.len() >= 10, "{} figures", figures.len());
    for f in figures {
        let id = f["id"]
            .as_str()
            .unwrap_or_else(|| panic!("figure without an id: {f}"));
        for key in ["title", "unit"] {
            assert!(f[key].is_string(), "{id}: no {key}");
        }
        let subjects = f["subjects"]
            .as_object()
            .unwrap_or_else(|| panic!("{id}: no subjects object"));
        assert!(!subjects.is_empty(), "{id}: no subjects");
        for (name, s) in subjects {
            assert!(
                matches!(s["kind"].as_str(), Some("backend" | "baseline")),
                "{id}/{name}: kind {}",
                s["kind"]
            );
            // Exactly one outcome: measured (a median), skipped or failed (a reason).
            let outcomes = [
                s["median"].is_number(),
                s["skipped"].is_string(),
                s["failed"].is_string(),
            ];
            assert_eq!(
                outcomes.iter().filter(|&&o| o).count(),
                1,
                "{id}/{name}: {s}"
            );
            assert!(s.get("failed").is_none(), "{id}/{name} failed: {s}");
        }
    }
    // The core paths produced a number for fsjail (which number is not checked).
    for id in [
        "metadata",
        "randread-1q",
        "seqread",
        "readdirplus",
        "mix-p99",
        "idle-cpu",
    ] {
        let fig = figures
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no figure {id}"));
        let fsjail = fig["subjects"].get("fsjail");
        let median = &fig["subjects"]["fsjail"]["median"];
        assert!(
            median.as_f64().is_some_and(f64::is_finite),
            "{id}: fsjail was not measured ({median}):\n{stdout}"
        );
        if id != "idle-cpu" {
            assert!(
                fsjail
                    .and_then(|s| s.get("cpu_s_per_1k_requests"))
                    .is_some(),
                "{id}: no CPU cost for fsjail:\n{stdout}"
            );
        }
    }
}
