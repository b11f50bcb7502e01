//! Each bad-policy case with its exact message. The policies point at real directories in a
//! temporary directory; `Env` is built by hand so the unprivileged rules can be checked while
//! the tests run as root.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::{check_with, Env};
use settings::{Ownership, SpecialFiles};

use crate::policy::{schema, IdMap, Policy, PolicyError, RestartPolicy, SandboxMode};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("file"), b"x").unwrap();
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn env(&self, euid: u32) -> Env {
        Env {
            euid,
            egid: euid,
            cwd: Some(self.root()),
            nofile_hard: 4096,
            sys_resource: euid == 0,
            nr_open: 1 << 20,
        }
    }

    /// The policy text with `$D` replaced by the fixture directory; a `[broker]` with a
    /// runtime_dir inside it is prepended so defaults do not touch the host.
    fn text(&self, body: &str) -> String {
        let d = self.root();
        format!(
            "[broker]\nruntime_dir = \"{}/run\"\n# the test policy starts on line 5\n\n{}",
            d.display(),
            body
        )
        .replace("$D", &d.display().to_string())
    }

    fn parse_as(&self, euid: u32, body: &str) -> Result<Policy, PolicyError> {
        let text = self.text(body);
        let file = Path::new("policy.toml");
        let raw = schema::parse(file, &text)?;
        check_with(&self.env(euid), file, &text, raw)
    }

    fn ok(&self, body: &str) -> Policy {
        match self.parse_as(0, body) {
            Ok(p) => p,
            Err(e) => panic!("unexpected error:\n{e}"),
        }
    }

    fn err_as(&self, euid: u32, body: &str) -> String {
        match self.parse_as(euid, body) {
            Ok(p) => panic!("accepted a bad policy: {p:?}"),
            Err(e) => e
                .to_string()
                .replace(&self.root().display().to_string(), "$D"),
        }
    }

    fn err(&self, body: &str) -> String {
        self.err_as(0, body)
    }
}

// Line numbers below count the four lines prepended by `Fixture::text`.

#[test]
fn minimal_share_gets_every_default() {
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\n");
    assert_eq!(p.shares.len(), 1);
    let s = &p.shares[0];
    assert_eq!(s.tag, "a");
    assert_eq!(s.path, f.root().join("a"));
    assert_eq!(s.socket, f.root().join("run/a.sock"));
    assert!(!s.readonly && !s.xattr && !s.allow_devices() && !s.create);
    assert_eq!(s.special_files, SpecialFiles::Emulate);
    assert_eq!(s.ownership, Ownership::Host, "root's default");
    assert_eq!(s.cache, settings::CachePolicy::Auto);
    assert_eq!(s.restart, RestartPolicy::OnFailure);
    assert_eq!(s.sandbox, SandboxMode::Namespace);
    assert_eq!(s.rlimit_nofile, 65536);
    assert_eq!(s.num_request_queues, 1);
    assert!(s.uid_map.is_empty() && s.gid_map.is_empty());
    assert_eq!(p.broker.runtime_dir, f.root().join("run"));
    assert_eq!(p.broker.log_level, log::LevelFilter::Info);
}

#[test]
fn every_key_is_read() {
    let f = Fixture::new();
    let p = f.ok("[[share]]
tag = \"home-1\"
path = \"$D/a\"
socket = \"$D/s.sock\"
readonly = true
cache = \"never\"
xattr = true
uid_map = [{ guest = 0, host = 1000, count = 1 }, { guest = 1, host = 100000, count = 65536 }]
gid_map = [{ guest = 0, host = 1000, count = 1 }]
rlimit_nofile = 1024
restart = \"never\"
sandbox = \"namespace\"
allow_devices = true
num_request_queues = 4
thread_pool_size = 8
poll_max_us = 50
");
    let s = &p.shares[0];
    assert_eq!((s.thread_pool_size, s.poll_max_us), (8, 50));
    assert_eq!(s.socket, f.root().join("s.sock"));
    assert!(s.readonly && s.xattr && s.allow_devices());
    assert_eq!(s.special_files, SpecialFiles::Host);
    assert_eq!(s.cache, settings::CachePolicy::Never);
    assert_eq!(
        s.uid_map,
        vec![
            IdMap {
                guest: 0,
                host: 1000,
                count: 1
            },
            IdMap {
                guest: 1,
                host: 100000,
                count: 65536
            }
        ]
    );
    assert_eq!(s.rlimit_nofile, 1024);
    assert_eq!(s.restart, RestartPolicy::Never);
    assert_eq!(s.sandbox, SandboxMode::Namespace);
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\nsandbox = \"chroot\"\n");
    assert_eq!(p.shares[0].sandbox, SandboxMode::Chroot);
    assert_eq!(s.num_request_queues, 4);
}

#[test]
fn unknown_key_in_share() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\ncahce = \"never\"\n"),
        "policy.toml:8: share \"a\": unknown field `cahce`, expected one of `tag`, `path`, `create`, `socket`, `readonly`, `cache`, `xattr`, `uid_map`, `gid_map`, `rlimit_nofile`, `restart`, `sandbox`, `allow_devices`, `special_files`, `ownership`, `num_request_queues`, `thread_pool_size`, `poll_max_us`, `seccomp`, `dax_window`, `blksize`, `announce_submounts`, `migration_on_error`, `config_tag`, `landlock`"
    );
}

#[test]
fn unknown_key_in_broker_and_top_level() {
    let f = Fixture::new();
    let text = "[broker]\nlog_levle = \"info\"\n[[share]]\ntag = \"a\"\npath = \"a\"\n";
    let raw = schema::parse(Path::new("p.toml"), text)
        .unwrap_err()
        .to_string();
    assert_eq!(
        raw,
        "p.toml:2: [broker]: unknown field `log_levle`, expected `runtime_dir` or `log_level`"
    );
    let raw = schema::parse(Path::new("p.toml"), "shares = 1\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        raw,
        "p.toml:1: unknown field `shares`, expected `broker` or `share`"
    );
    drop(f);
}

#[test]
fn wrong_type_names_the_key() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nreadonly = \"yes\"\n"),
        "policy.toml:8: share \"a\": readonly: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \n"),
        "policy.toml:7: string values must be quoted, expected literal string"
    );
}

#[test]
fn path_missing_or_not_a_directory() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"home\"\npath = \"/nope\"\n"),
        "policy.toml:7: share \"home\": path \"/nope\" does not exist"
    );
    assert_eq!(
        f.err("[[share]]\ntag = \"home\"\npath = \"file\"\n"),
        "policy.toml:7: share \"home\": path \"file\" is not a directory"
    );
}

#[test]
fn create_allows_a_missing_path_whose_parent_exists() {
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"n\"\npath = \"new\"\ncreate = true\n");
    assert_eq!(p.shares[0].path, f.root().join("new"));
    assert!(
        !f.root().join("new").exists(),
        "checking must not create anything"
    );
    p.shares[0].ensure_path().unwrap();
    assert!(f.root().join("new").is_dir());
    assert_eq!(
        f.err("[[share]]\ntag = \"n\"\npath = \"x/y\"\ncreate = true\n"),
        "policy.toml:7: share \"n\": path \"x/y\": directory \"$D/x\" does not exist"
    );
}

#[test]
fn missing_required_keys() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\npath = \"a\"\n"),
        "policy.toml:5: share #1: tag is missing"
    );
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\n"),
        "policy.toml:5: share \"a\": path is missing"
    );
}

#[test]
fn no_shares() {
    let f = Fixture::new();
    assert_eq!(
        f.err(""),
        "policy.toml: no [[share]] table: nothing to serve"
    );
}

#[test]
fn bad_tags() {
    let f = Fixture::new();
    let cases = [
        ("", "share #1: tag \"\": must not be empty"),
        ("a/b", "share \"a/b\": tag \"a/b\": contains '/'; use letters, digits, '_', '-' and '.'"),
        (".x", "share \".x\": tag \".x\": must not start with '.'"),
        (
            "0123456789012345678901234567890123456",
            "share \"0123456789012345678901234567890123456\": tag \"0123456789012345678901234567890123456\": is 37 bytes; a virtio-fs tag is at most 36",
        ),
    ];
    for (tag, want) in cases {
        assert_eq!(
            f.err(&format!("[[share]]\ntag = \"{tag}\"\npath = \"a\"\n")),
            format!("policy.toml:6: {want}")
        );
    }
}

#[test]
fn duplicate_tags_and_sockets() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\n\n[[share]]\ntag = \"a\"\npath = \"b\"\n"),
        "policy.toml:10: share \"a\": tag \"a\" is already used by the share at line 5\n\
         policy.toml:10: share \"a\": socket \"$D/run/a.sock\" is already used by share \"a\" (line 5)"
    );
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"s\"\n[[share]]\ntag = \"b\"\npath = \"b\"\nsocket = \"$D/s\"\n"),
        "policy.toml:12: share \"b\": socket \"$D/s\" is already used by share \"a\" (line 5)"
    );
}

#[test]
fn socket_checks() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"/nodir/a.sock\"\n"),
        "policy.toml:8: share \"a\": socket \"/nodir/a.sock\": directory \"/nodir\" does not exist"
    );
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"file\"\n"),
        "policy.toml:8: share \"a\": socket \"file\" exists and is not a socket (the broker only replaces stale sockets)"
    );
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"a/s.sock\"\n"),
        "policy.toml:8: share \"a\": socket \"$D/a/s.sock\" is inside the directory of share \"a\"; the guest could replace it"
    );
    let long = "x".repeat(120);
    assert_eq!(
        f.err(&format!("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"/tmp/{long}\"\n")),
        format!("policy.toml:8: share \"a\": socket \"/tmp/{long}\": the path is 125 bytes; a unix socket path is at most 107")
    );
    // A stale socket is fine: the broker replaces it.
    let _stale = UnixListener::bind(f.root().join("stale.sock")).unwrap();
    f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\nsocket = \"stale.sock\"\n");
}

#[test]
fn enumerated_keys_list_their_values() {
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    for (line, want) in [
        (
            "cache = \"sometimes\"",
            "cache \"sometimes\": expected one of \"never\", \"auto\", \"always\"",
        ),
        (
            "restart = \"always\"",
            "restart \"always\": expected one of \"never\", \"on-failure\"",
        ),
        (
            "sandbox = \"vm\"",
            "sandbox \"vm\": expected one of \"namespace\", \"chroot\", \"none\"",
        ),
        (
            "landlock = \"maybe\"",
            "landlock \"maybe\": expected one of \"require\", \"best-effort\", \"off\"",
        ),
    ] {
        assert_eq!(
            f.err(&format!("{base}{line}\n")),
            format!("policy.toml:8: share \"a\": {want}")
        );
    }
    let text = "[broker]\nlog_level = \"loud\"\n";
    let raw = schema::parse(Path::new("p.toml"), text).unwrap();
    let err = check_with(&f.env(0), Path::new("p.toml"), text, raw)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "p.toml: no [[share]] table: nothing to serve\n\
         p.toml:2: [broker]: log_level \"loud\": expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\""
    );
}

#[test]
fn id_map_errors() {
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    let cases = [
        (
            "uid_map = [{ guest = 0, host = 1000, count = 0 }]",
            "uid_map[0]: count 0: must be at least 1",
        ),
        (
            "uid_map = [{ guest = -1, host = 1000, count = 1 }]",
            "uid_map[0]: guest -1 is not a valid id (0..=4294967294)",
        ),
        (
            "gid_map = [{ guest = 0, host = 4294967290, count = 10 }]",
            "gid_map[0]: host ids 4294967290 + count 10 run past the largest id 4294967294",
        ),
        (
            "uid_map = [{ guest = 0, host = 1000, count = 10 }, { guest = 5, host = 2000, count = 1 }]",
            "uid_map[1]: guest ids 5..=5 overlap uid_map[0] (guest ids 0..=9)",
        ),
        (
            "uid_map = [{ guest = 0, host = 1000, count = 10 }, { guest = 10, host = 1009, count = 2 }]",
            "uid_map[1]: host ids 1009..=1010 overlap uid_map[0] (host ids 1000..=1009)",
        ),
        (
            "uid_map = [{ guest = 0, host = 1 }]",
            "uid_map: missing field `count`",
        ),
        (
            "uid_map = [{ guest = 0, host = 1, count = 1, extra = 2 }]",
            "uid_map: unknown field `extra`, expected one of `guest`, `host`, `count`",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            f.err(&format!("{base}{line}\n")),
            format!("policy.toml:8: share \"a\": {want}")
        );
    }
    assert_eq!(
        f.err(&format!(
            "{base}sandbox = \"none\"\nuid_map = [{{ guest = 0, host = 0, count = 1 }}]\n"
        )),
        "policy.toml:9: share \"a\": uid_map: needs sandbox = \"namespace\" (a user namespace)"
    );
}

#[test]
fn root_mapping_one_kind_maps_the_other_identically() {
    let f = Fixture::new();
    let p = f.ok(
        "[[share]]\ntag = \"a\"\npath = \"a\"\nuid_map = [{ guest = 0, host = 1000, count = 1 }]\n",
    );
    assert_eq!(
        p.shares[0].gid_map,
        vec![IdMap {
            guest: 0,
            host: 0,
            count: u32::MAX
        }]
    );
}

#[test]
fn unprivileged_rules() {
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    let p = f.parse_as(1000, base).unwrap();
    assert_eq!(
        p.shares[0].uid_map,
        vec![IdMap {
            guest: 0,
            host: 1000,
            count: 1
        }]
    );
    assert_eq!(
        p.shares[0].gid_map,
        vec![IdMap {
            guest: 0,
            host: 1000,
            count: 1
        }]
    );
    assert_eq!(p.shares[0].rlimit_nofile, 4096, "capped at the hard limit");
    let cases = [
        (
            "uid_map = [{ guest = 0, host = 0, count = 1 }]",
            "uid_map: an unprivileged broker can only map its own uid 1000: one entry with host = 1000, count = 1",
        ),
        (
            "rlimit_nofile = 5000",
            "rlimit_nofile 5000: above the hard limit the worker inherits (4096), which it cannot raise in a user namespace",
        ),
        ("sandbox = \"chroot\"", "sandbox \"chroot\": needs root; use \"namespace\""),
    ];
    for (line, want) in cases {
        assert_eq!(
            f.err_as(1000, &format!("{base}{line}\n")),
            format!("policy.toml:8: share \"a\": {want}")
        );
    }
}

#[test]
fn numeric_limits() {
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    for (line, want) in [
        (
            "rlimit_nofile = 10",
            "rlimit_nofile 10: must be at least 64",
        ),
        (
            "rlimit_nofile = 99999999",
            "rlimit_nofile 99999999: above the kernel's fs.nr_open (1048576)",
        ),
        (
            "num_request_queues = 0",
            "num_request_queues 0: must be between 1 and 64",
        ),
        (
            "num_request_queues = 65",
            "num_request_queues 65: must be between 1 and 64",
        ),
        (
            "thread_pool_size = 65",
            "thread_pool_size 65: must be between 0 and 64",
        ),
        (
            "thread_pool_size = -1",
            "thread_pool_size -1: must be between 0 and 64",
        ),
        (
            "poll_max_us = 10001",
            "poll_max_us 10001: must be between 0 and 10000",
        ),
    ] {
        assert_eq!(
            f.err(&format!("{base}{line}\n")),
            format!("policy.toml:8: share \"a\": {want}")
        );
    }
}

#[test]
fn runtime_dir_must_be_private() {
    let f = Fixture::new();
    let open = f.root().join("open");
    fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let text = "[broker]\nruntime_dir = \"open\"\n[[share]]\ntag = \"a\"\npath = \"a\"\n";
    let raw = schema::parse(Path::new("p.toml"), text).unwrap();
    let err = check_with(&f.env(0), Path::new("p.toml"), text, raw)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "p.toml:2: [broker]: runtime_dir \"open\" is writable by others (mode 777)"
    );
}

#[test]
fn share_config_round_trips_through_json_like_serde() {
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\ncache = \"always\"\n");
    let text = toml::to_string(&p.shares[0]).unwrap();
    let back: crate::policy::ShareConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, p.shares[0]);
}

#[test]
fn every_error_is_reported_at_once() {
    let f = Fixture::new();
    let err = f.err("[[share]]\ntag = \"a\"\npath = \"/nope\"\ncache = \"x\"\n[[share]]\ntag = \"\"\npath = \"b\"\n");
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn root_without_cap_sys_resource_or_in_a_user_namespace_keeps_the_hard_limit() {
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    let text = f.text(base);
    let file = Path::new("policy.toml");
    let mut env = f.env(0);
    env.sys_resource = false;
    let p = check_with(&env, file, &text, schema::parse(file, &text).unwrap()).unwrap();
    assert_eq!(p.shares[0].rlimit_nofile, 4096);
    let text = f.text(&format!("{base}rlimit_nofile = 8192\n"));
    let err = check_with(&env, file, &text, schema::parse(file, &text).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy.toml:8: share \"a\": rlimit_nofile 8192: above the hard limit the worker inherits (4096), which it cannot raise without CAP_SYS_RESOURCE"
    );
    // Root with the capability, but ids mapped: a user namespace, so the same ceiling.
    assert_eq!(
        f.err(&format!("{base}rlimit_nofile = 8192\nuid_map = [{{ guest = 0, host = 0, count = 1 }}]\n")),
        "policy.toml:8: share \"a\": rlimit_nofile 8192: above the hard limit the worker inherits (4096), which it cannot raise in a user namespace"
    );
}

#[test]
fn guest_id_zero_must_be_mapped() {
    let f = Fixture::new();
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nuid_map = [{ guest = 1, host = 1000, count = 1 }]\n"),
        "policy.toml:8: share \"a\": uid_map: no entry maps guest id 0; the worker runs as id 0 in its user namespace"
    );
}

#[test]
fn special_files_and_ownership() {
    let f = Fixture::new();
    let share = |extra: &str| format!("[[share]]\ntag = \"a\"\npath = \"a\"\n{extra}");
    for (extra, want) in [
        ("special_files = \"emulate\"\n", SpecialFiles::Emulate),
        ("special_files = \"host\"\n", SpecialFiles::Host),
        ("special_files = \"refuse\"\n", SpecialFiles::Refuse),
        // The old key keeps its meaning.
        ("allow_devices = true\n", SpecialFiles::Host),
        ("allow_devices = false\n", SpecialFiles::Refuse),
    ] {
        let p = f.ok(&share(extra));
        assert_eq!(p.shares[0].special_files, want, "{extra}");
        assert_eq!(p.shares[0].allow_devices(), want == SpecialFiles::Host);
    }
    assert_eq!(
        f.err(&share("special_files = \"real\"\n")),
        "policy.toml:8: share \"a\": special_files \"real\": expected one of \"emulate\", \"host\", \"refuse\""
    );
    assert_eq!(
        f.err(&share("allow_devices = true\nspecial_files = \"host\"\n")),
        "policy.toml:8: share \"a\": allow_devices: give only special_files (\"emulate\", \"host\" or \"refuse\"), the key that replaced it"
    );

    assert_eq!(
        f.err_as(1000, &share("uid_map = [{ guest = 0, host = 1000, count = 1 }]\ngid_map = [{ guest = 0, host = 1000, count = 1 }]\nspecial_files = \"host\"\n")),
        "policy.toml:10: share \"a\": special_files \"host\": real device nodes need root; use \"emulate\""
    );

    let p = f.ok(&share("ownership = \"emulate\"\n"));
    assert_eq!(p.shares[0].ownership, Ownership::Emulate);
    let p = f
        .parse_as(1000, &share("uid_map = [{ guest = 0, host = 1000, count = 1 }]\ngid_map = [{ guest = 0, host = 1000, count = 1 }]\n"))
        .unwrap();
    assert_eq!(
        p.shares[0].ownership,
        Ownership::Emulate,
        "an unprivileged broker's default"
    );
    assert_eq!(
        f.err(&share("ownership = \"guest\"\n")),
        "policy.toml:8: share \"a\": ownership \"guest\": expected one of \"host\", \"emulate\""
    );
}

#[test]
fn announce_submounts_key() {
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\n");
    assert!(!p.shares[0].announce_submounts, "off unless asked for");
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\nannounce_submounts = true\n");
    assert!(p.shares[0].announce_submounts);
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nannounce_submounts = 1\n"),
        "policy.toml:8: share \"a\": announce_submounts: invalid type: integer `1`, expected a boolean"
    );
}

#[test]
fn migration_on_error_key() {
    use settings::MigrationOnError;
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\n");
    assert_eq!(p.shares[0].migration_on_error, MigrationOnError::Abort);
    let p = f.ok("[[share]]\ntag = \"a\"\npath = \"a\"\nmigration_on_error = \"guest-error\"\n");
    assert_eq!(p.shares[0].migration_on_error, MigrationOnError::GuestError);
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nmigration_on_error = \"ignore\"\n"),
        "policy.toml:8: share \"a\": migration_on_error \"ignore\": expected one of \"abort\", \"guest-error\""
    );
}

#[test]
fn config_tag_is_off_unless_asked() {
    let f = Fixture::new();
    let p = f.ok("[[share]]\ntag = \"vfs\"\npath = \"a\"\n");
    assert!(!p.shares[0].config_tag, "CONFIG must stay off by default");
    let p = f.ok("[[share]]\ntag = \"vfs\"\npath = \"a\"\nconfig_tag = true\n");
    assert!(p.shares[0].config_tag);
    assert_eq!(
        f.err("[[share]]\ntag = \"a\"\npath = \"a\"\nconfig_tag = \"vfs\"\n"),
        "policy.toml:8: share \"a\": config_tag: invalid type: string \"vfs\", expected a boolean"
    );
}

#[test]
fn landlock_key() {
    use crate::steps::landlock::LandlockMode;
    let f = Fixture::new();
    let base = "[[share]]\ntag = \"a\"\npath = \"a\"\n";
    for (value, want) in [
        ("require", LandlockMode::Require),
        ("best-effort", LandlockMode::BestEffort),
        ("off", LandlockMode::Off),
    ] {
        let p = f.ok(&format!("{base}landlock = \"{value}\"\n"));
        assert_eq!(p.shares[0].landlock, want);
    }
    // Without the key: best-effort, or require when FSJAIL_LANDLOCK_DEFAULT says so.
    assert_eq!(
        f.ok(base).shares[0].landlock,
        LandlockMode::default_from_env()
    );
    assert_eq!(
        f.err(&format!("{base}sandbox = \"none\"\nlandlock = \"require\"\n")),
        "policy.toml:9: share \"a\": landlock \"require\": sandbox \"none\" runs the worker unconfined, without Landlock"
    );
    // Off with no sandbox is consistent, and so is the default.
    f.ok(&format!("{base}sandbox = \"none\"\nlandlock = \"off\"\n"));
    f.ok(&format!("{base}sandbox = \"none\"\n"));
}
