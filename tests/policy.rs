//! `fsjail check` and `fsjail run` on bad policies: the exact message (file:line: share:
//! key ...), exit status 2, and nothing started: no socket bound, no worker, no directory made.
//! And `fsjail check` on the shipped example prints the plan.

mod broker_support;

use std::fs;
use std::path::Path;

use broker_support::Dir;

/// A valid share that would be started first if the broker did not check everything before
/// starting anything: its socket must never appear.
const GOOD: &str = "[[share]]\ntag = \"good\"\npath = \"good\"\nsocket = \"good.sock\"\n\n";

/// Writes `body` after GOOD (lines 1-5) and expects both commands to refuse it with `want`.
fn refused(body: &str, want: &str) {
    let dir = Dir::new();
    fs::create_dir(dir.path().join("good")).unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    fs::write(dir.path().join("file"), b"x").unwrap();
    dir.write_policy(&format!("{GOOD}{body}"));

    let (status, stdout, stderr) = dir.fsjail(&["check", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(2), "check: {stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("{want}\nfsjail check: policy.toml: invalid policy\n")
    );

    let (status, _, stderr) = dir.fsjail(&["run", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(2), "run: {stderr}");
    assert_eq!(
        stderr,
        format!("{want}\nfsjail run: policy.toml: invalid policy; nothing started\n")
    );
    assert!(!dir.path().join("good.sock").exists(), "a socket was bound");
    assert!(!dir.path().join("run").exists());
}

#[test]
fn path_does_not_exist() {
    refused(
        "[[share]]\ntag = \"home\"\npath = \"/nope\"\n",
        "policy.toml:8: share \"home\": path \"/nope\" does not exist",
    );
}

#[test]
fn path_is_not_a_directory() {
    refused(
        "[[share]]\ntag = \"home\"\npath = \"file\"\n",
        "policy.toml:8: share \"home\": path \"file\" is not a directory",
    );
}

#[test]
fn duplicate_tag() {
    refused(
        "[[share]]\ntag = \"good\"\npath = \"a\"\nsocket = \"a.sock\"\n",
        "policy.toml:7: share \"good\": tag \"good\" is already used by the share at line 1",
    );
}

#[test]
fn duplicate_socket() {
    // The message shows the resolved socket path, which depends on the temporary directory.
    let dir = Dir::new();
    fs::create_dir(dir.path().join("good")).unwrap();
    fs::create_dir(dir.path().join("a")).unwrap();
    dir.write_policy(&format!(
        "{GOOD}[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"./good.sock\"\n"
    ));
    let (status, _, stderr) = dir.fsjail(&["check", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        format!(
            "policy.toml:9: share \"a\": socket {:?} is already used by share \"good\" (line 1)\nfsjail check: policy.toml: invalid policy\n",
            dir.path().join("good.sock")
        )
    );
    let (status, _, _) = dir.fsjail(&["run", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(2));
    assert!(!dir.path().join("good.sock").exists());
}

#[test]
fn socket_directory_missing() {
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"/nonexistent-dir/a.sock\"\n",
        "policy.toml:9: share \"a\": socket \"/nonexistent-dir/a.sock\": directory \"/nonexistent-dir\" does not exist",
    );
}

#[test]
fn overlapping_uid_map() {
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nuid_map = [{ guest = 0, host = 100000, count = 1000 }, { guest = 1000, host = 100500, count = 10 }]\n",
        "policy.toml:9: share \"a\": uid_map[1]: host ids 100500..=100509 overlap uid_map[0] (host ids 100000..=100999)",
    );
}

#[test]
fn unknown_key() {
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nread_only = true\n",
        "policy.toml:9: share \"a\": unknown field `read_only`, expected one of `tag`, `path`, `create`, `socket`, `readonly`, `cache`, `xattr`, `uid_map`, `gid_map`, `rlimit_nofile`, `restart`, `sandbox`, `allow_devices`, `special_files`, `ownership`, `num_request_queues`, `thread_pool_size`, `poll_max_us`, `seccomp`, `dax_window`, `blksize`, `announce_submounts`, `migration_on_error`, `config_tag`, `landlock`",
    );
}

#[test]
fn bad_seccomp_dax_window_and_blksize() {
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nseccomp = \"allow\"\n",
        "policy.toml:9: share \"a\": seccomp \"allow\": expected one of \"kill\", \"trap\", \"log\", \"none\"",
    );
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\ndax_window = \"3M\"\n",
        "policy.toml:9: share \"a\": dax_window: dax window of 3145728 bytes is not a multiple of 2 MiB (Linux guests map 2 MiB blocks)",
    );
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nblksize = 3000\n",
        "policy.toml:9: share \"a\": blksize 3000 is not a power of two between 512 and 65536",
    );
}

#[test]
fn bad_value_of_an_enumerated_key() {
    refused(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nrestart = \"always\"\n",
        "policy.toml:9: share \"a\": restart \"always\": expected one of \"never\", \"on-failure\"",
    );
}

#[test]
fn no_shares() {
    let dir = Dir::new();
    dir.write_policy("[broker]\nlog_level = \"info\"\n");
    let (status, _, stderr) = dir.fsjail(&["check", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "policy.toml: no [[share]] table: nothing to serve\nfsjail check: policy.toml: invalid policy\n"
    );
}

#[test]
fn missing_policy_file() {
    let dir = Dir::new();
    let (status, _, stderr) = dir.fsjail(&["check", "--policy", "absent.toml"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "absent.toml: cannot read the policy: No such file or directory (os error 2)\nfsjail check: absent.toml: invalid policy\n"
    );
}

#[test]
fn check_prints_the_plan_of_the_example_without_creating_anything() {
    let dir = Dir::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example.toml");
    let (status, stdout, stderr) = dir.fsjail(&["check", "--policy", example.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        !dir.path().join("share").exists(),
        "check created the share"
    );
    let share = dir.path().join("share");
    for want in [
        "[[share]]".to_owned(),
        "tag = \"share\"".to_owned(),
        format!("path = {:?}  # missing: created (mode 0700) when the share starts", share),
        "create = true".to_owned(),
        "socket = \"/tmp/fsjail-example.sock\"".to_owned(),
        "cache = \"auto\"".to_owned(),
        "restart = \"on-failure\"".to_owned(),
        "sandbox = \"namespace\"".to_owned(),
        "num_request_queues = 1".to_owned(),
        "#   step 2 (namespaces): new ".to_owned(),
        "#   step 3 (mounts): / recursively private".to_owned(),
        "#   step 7 (groups and capabilities): supplementary groups dropped; bounding, permitted and effective capabilities: CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_SETGID, CAP_SETUID;".to_owned(),
        "#   step 9 (landlock): landlock = \"best-effort\": ABI ".to_owned(),
        "#   step 10 (seccomp): the worker allowlist (".to_owned(),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }
    // Every key of a share is printed.
    for key in [
        "tag",
        "path",
        "create",
        "socket",
        "readonly",
        "cache",
        "xattr",
        "uid_map",
        "gid_map",
        "rlimit_nofile",
        "restart",
        "sandbox",
        "special_files",
        "ownership",
        "num_request_queues",
        "seccomp",
        "dax_window",
        "blksize",
        "landlock",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "no {key} in:\n{stdout}"
        );
    }
}

#[test]
fn checked_output_is_itself_a_valid_policy() {
    let dir = Dir::new();
    fs::create_dir(dir.path().join("a")).unwrap();
    dir.write_policy(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"a.sock\"\nreadonly = true\n",
    );
    let (status, stdout, stderr) = dir.fsjail(&["check", "--policy", "policy.toml"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    fs::write(dir.path().join("again.toml"), &stdout).unwrap();
    let (status, again, stderr) = dir.fsjail(&["check", "--policy", "again.toml"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        again.lines().skip(1).collect::<Vec<_>>(),
        stdout.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn only_a_regular_file_of_sane_size_is_read() {
    let dir = Dir::new();
    let (status, _, stderr) = dir.fsjail(&["check", "--policy", "/dev/zero"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "/dev/zero: not a regular file\nfsjail check: /dev/zero: invalid policy\n"
    );
    fs::write(dir.path().join("big.toml"), vec![b'#'; (1 << 20) + 1]).unwrap();
    let (status, _, stderr) = dir.fsjail(&["check", "--policy", "big.toml"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "big.toml: larger than 1048576 bytes; not a policy file?\nfsjail check: big.toml: invalid policy\n"
    );
}
