//! The command line's error paths: a user mistake gets a clear message and exit code 2,
//! without starting any backend. (The full short run is tests/bench_smoke.rs at the root.)

use std::process::Command;

fn bench(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsjail-bench"))
        .args(args)
        .arg("--no-progress")
        .output()
        .expect("run fsjail-bench");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_fsjail_is_named() {
    let (code, err) = bench(&["--short", "--fsjail", "/nonexistent/fsjail"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("fsjail not found at /nonexistent/fsjail"),
        "{err}"
    );
}

#[test]
fn bad_backend_syntax_is_explained() {
    let (code, err) = bench(&["--short", "--backend", "no-equals-sign"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("expected NAME='TEMPLATE"), "{err}");
    let (code, err) = bench(&["--short", "--backend", "x=prog --shared-dir {shared_dir}"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must contain {socket}"), "{err}");
}

#[test]
fn unknown_figure_lists_the_known_ones() {
    let (code, err) = bench(&["--only", "metadata,nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no figure \"nope\"") && err.contains("readdirplus"),
        "{err}"
    );
}

#[test]
fn a_backend_that_cannot_start_fails_its_cells_not_the_run() {
    let (code, err) = bench(&[
        "--short",
        "--only",
        "metadata",
        "--backend",
        "broken=/nonexistent/program {socket}",
    ]);
    // The host baseline still ran; the backend's cell says FAILED with the reason.
    assert_eq!(code, Some(1), "{err}");
}
