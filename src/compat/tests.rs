//! Unit tests of the virtiofsd argv translation: each caller's real shape, and every refusal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use super::argv::{translate, Action, CompatError, Translation};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn serve(list: &[&str]) -> Translation {
    match translate(&args(list)) {
        Ok(Action::Serve(t)) => t,
        other => panic!("{list:?}: {other:?}"),
    }
}

fn serve_argv(list: &[&str]) -> Vec<String> {
    serve(list)
        .serve_args()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

fn err(list: &[&str]) -> CompatError {
    match translate(&args(list)) {
        Err(e) => e,
        Ok(a) => panic!("{list:?} was accepted: {a:?}"),
    }
}

#[test]
fn libvirt_separate_options_shape() {
    // qemuVirtioFSBuildCommandLine with "separate-options", every optional part present.
    let argv = serve_argv(&[
        "--fd=23",
        "--shared-dir",
        "/srv/vm1",
        "--cache",
        "never",
        "--sandbox",
        "chroot",
        "--xattr",
        "--thread-pool-size=0",
        "--rlimit-nofile=4096",
        "--log-level",
        "debug",
    ]);
    assert_eq!(
        argv,
        [
            "--shared-dir",
            "/srv/vm1",
            "--fd",
            "23",
            "--cache",
            "never",
            "--sandbox",
            "chroot",
            "--log-level",
            "debug",
            "--rlimit-nofile",
            "4096",
            "--thread-pool-size",
            "0",
            "--xattr",
        ]
    );
    // The minimal form libvirt emits for a default <filesystem> element.
    assert_eq!(
        serve_argv(&["--fd=3", "--shared-dir", "/srv"]),
        ["--shared-dir", "/srv", "--fd", "3"]
    );
}

#[test]
fn libvirt_legacy_o_shape() {
    let t = serve(&[
        "--fd=23",
        "-o",
        "source=/srv/a,,b,cache=none,sandbox=namespace,xattr,no_flock,no_posix_lock",
        "--thread-pool-size=1",
        "-d",
    ]);
    assert_eq!(
        t.shared_dir.as_deref(),
        Some(std::ffi::OsStr::new("/srv/a,b"))
    );
    assert_eq!(t.fd, Some(23));
    assert_eq!(t.cache, Some("never"));
    assert_eq!(t.sandbox, Some("namespace"));
    assert!(t.xattr);
    assert_eq!(t.log_level, Some("debug"));
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    assert_eq!(t.thread_pool_size, Some(1));
    // no_xattr is the default, cache=always maps through.
    let t = serve(&["--fd=4", "-o", "source=/s,cache=always,no_xattr"]);
    assert!(!t.xattr);
    assert_eq!(t.cache, Some("always"));
}

#[test]
fn kata_go_runtime_shape() {
    let t = serve(&[
        "--syslog",
        "--cache=auto",
        "--shared-dir=/run/kata-containers/shared/sandboxes/abc/shared",
        "--fd=3",
        "--inode-file-handles=prefer",
        "--thread-pool-size=1",
    ]);
    assert!(t.syslog);
    assert_eq!(t.cache, Some("auto"));
    assert_eq!(t.fd, Some(3));
    assert_eq!(t.notes.len(), 1);
    assert_eq!(t.thread_pool_size, Some(1));
    assert!(!t.announce_submounts);
    // Kata's default extra args also ask for submount announcements: passed on to serve.
    let t = serve(&[
        "--syslog",
        "--cache=auto",
        "--shared-dir=/s",
        "--fd=3",
        "--thread-pool-size=1",
        "--announce-submounts",
    ]);
    assert!(t.announce_submounts);
    let args = t.serve_args();
    assert!(args.iter().any(|a| a == "--announce-submounts"), "{args:?}");
    // Older Kata releases: the -o spelling.
    let t = serve(&["--shared-dir=/s", "--fd=3", "-o", "announce_submounts"]);
    assert!(t.announce_submounts);
    // The later flag wins, as with clap's switches in virtiofsd.
    let t = serve(&[
        "--shared-dir=/s",
        "--fd=3",
        "--announce-submounts",
        "--no-announce-submounts",
    ]);
    assert!(!t.announce_submounts);
}

#[test]
fn qemu_docs_shape() {
    let argv = serve_argv(&[
        "--socket-path=/tmp/vhostqemu",
        "--shared-dir",
        "/srv",
        "--cache",
        "auto",
        "--socket-group=kvm",
        "--readonly",
        "--sandbox=none",
        "--seccomp=none",
        "-f",
    ]);
    assert_eq!(
        argv,
        [
            "--shared-dir",
            "/srv",
            "--socket-path",
            "/tmp/vhostqemu",
            "--socket-group",
            "kvm",
            "--cache",
            "auto",
            "--sandbox",
            "none",
            "--seccomp",
            "none",
            "--readonly",
        ]
    );
    // virtiofsd's --tag: the CONFIG feature with this tag (QEMU's generic vhost-user device).
    let argv = serve_argv(&["--socket-path=/s", "--shared-dir=/d", "--tag", "vfs"]);
    assert_eq!(
        argv,
        ["--shared-dir", "/d", "--socket-path", "/s", "--tag", "vfs"]
    );
    // The deprecated --socket spelling.
    assert_eq!(
        serve(&["--socket", "/s.sock", "--shared-dir=/d"]).socket_path,
        Some("/s.sock".into())
    );
}

#[test]
fn queries_short_circuit() {
    assert_eq!(
        translate(&args(&["--print-capabilities"])),
        Ok(Action::PrintCapabilities)
    );
    assert_eq!(translate(&args(&["-V"])), Ok(Action::Version));
    assert_eq!(translate(&args(&["--version"])), Ok(Action::Version));
    assert_eq!(translate(&args(&["-h"])), Ok(Action::Help));
    assert_eq!(translate(&args(&["--help"])), Ok(Action::Help));
}

#[test]
fn every_refusal_names_its_flag() {
    let base = ["--fd=3", "--shared-dir=/s"];
    let refused: &[&[&str]] = &[
        &["--posix-acl"],
        &["--posix-acl=always"],
        &["--security-label"],
        &["--xattrmap", ":map::user.virtiofs.:"],
        &["--modcaps=+sys_admin"],
        &["--uid-map=:0:1000:1:"],
        &["--gid-map=:0:1000:1:"],
        &["--translate-uid=guest:0:1000:1"],
        &["--translate-gid=guest:0:1000:1"],
        &["--writeback"],
        &["--no-readdirplus"],
        &["--allow-mmap"],
        &["--killpriv-v2"],
        &["--preserve-noatime"],
        &["--migration-mode=file-handles"],
        &["--migration-on-error=ignore"],
        &["--migration-verify-handles"],
        &["--cache=metadata"],
        &["--thread-pool-size=65"],
        &["--inode-file-handles=mandatory"],
        &["-o", "flock"],
        &["-o", "posix_lock"],
        &["-o", "writeback"],
        &["-o", "xattrmap=:map::x:"],
        &["-o", "norace"],
        &["--definitely-not-an-option"],
        &["-x"],
    ];
    for extra in refused {
        let mut list: Vec<&str> = base.to_vec();
        list.extend_from_slice(extra);
        let e = err(&list);
        let flag = extra[0].split('=').next().unwrap();
        let flag = if flag == "-o" {
            format!("-o {}", extra[1].split('=').next().unwrap())
        } else {
            flag.to_owned()
        };
        assert!(e.to_string().contains(&flag), "{list:?}: {e}");
    }
}

#[test]
fn accepted_equivalents() {
    let base = ["--fd=3", "--shared-dir=/s"];
    for extra in [
        "--no-announce-submounts",
        "--no-killpriv-v2",
        "--allow-direct-io",
        "--inode-file-handles=never",
        "--posix-acl=never",
        "--security-label=never",
        "-f",
    ] {
        let mut list = base.to_vec();
        list.push(extra);
        assert_eq!(
            serve(&list).serve_args().len(),
            4,
            "{extra} changed the serve argv"
        );
    }
}

#[test]
fn malformed_command_lines() {
    assert_eq!(err(&["--fd=3"]), CompatError::NoSharedDir);
    assert_eq!(err(&["--shared-dir=/s"]), CompatError::NoSocket);
    assert_eq!(
        err(&["--shared-dir=/s", "--fd=3", "--socket-path=/x"]),
        CompatError::BothSockets
    );
    assert!(matches!(
        err(&["--shared-dir"]),
        CompatError::MissingValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "-o"]),
        CompatError::MissingValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=x", "--shared-dir=/s"]),
        CompatError::BadValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=-1", "--shared-dir=/s"]),
        CompatError::BadValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "--xattr=yes"]),
        CompatError::UnexpectedValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "-o", "xattr=1"]),
        CompatError::UnexpectedValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "-o", "cache"]),
        CompatError::MissingValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "--cache=sometimes"]),
        CompatError::BadValue { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "stray"]),
        CompatError::Positional(_)
    ));
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "--", "stray"]),
        CompatError::Positional(_)
    ));
    // Conflicting repeats are refused; identical ones are harmless.
    assert!(matches!(
        err(&["--fd=3", "--shared-dir=/s", "-o", "source=/t"]),
        CompatError::Conflict { .. }
    ));
    assert!(matches!(
        err(&["--fd=3", "--fd=4", "--shared-dir=/s"]),
        CompatError::Conflict { .. }
    ));
    serve(&[
        "--fd=3",
        "--shared-dir=/s",
        "-o",
        "source=/s,cache=none",
        "--cache=never",
    ]);
    // -oVALUE and -o=VALUE spellings.
    assert_eq!(
        serve(&["--fd=3", "-osource=/a"]).shared_dir,
        Some("/a".into())
    );
    assert_eq!(
        serve(&["--fd=3", "-o=source=/b"]).shared_dir,
        Some("/b".into())
    );
}

#[test]
fn non_utf8_paths_pass_through_untouched() {
    let dir = OsString::from_vec(b"/srv/\xff\xfe".to_vec());
    let list = vec![
        OsString::from("--fd=3"),
        OsString::from("--shared-dir"),
        dir.clone(),
    ];
    let Ok(Action::Serve(t)) = translate(&list) else {
        panic!("refused")
    };
    assert_eq!(t.serve_args()[1], dir);
    let legacy = b"source=/x\xff,,y".to_vec();
    let list = vec![
        OsString::from("--fd=3"),
        OsString::from("-o"),
        OsString::from_vec(legacy),
    ];
    let Ok(Action::Serve(t)) = translate(&list) else {
        panic!("refused")
    };
    assert_eq!(t.shared_dir, Some(OsString::from_vec(b"/x\xff,y".to_vec())));
}

#[test]
fn capabilities_json_shape() {
    let caps = super::CAPABILITIES;
    assert!(caps.contains("\"type\": \"fs\""));
    assert!(caps.contains("\"separate-options\""));
    assert!(caps.contains("\"migrate-precopy\""));
}

#[test]
fn special_files_passes_through() {
    for mode in ["emulate", "host", "refuse"] {
        let argv = serve_argv(&[
            "--fd=3",
            "--shared-dir=/s",
            &format!("--special-files={mode}"),
        ]);
        assert_eq!(
            argv,
            ["--shared-dir", "/s", "--fd", "3", "--special-files", mode]
        );
    }
    let e = err(&["--fd=3", "--shared-dir=/s", "--special-files=real"]);
    assert!(e.to_string().contains("--special-files"), "{e}");
    // Left out, serve's default (emulate) applies.
    assert_eq!(serve(&["--fd=3", "--shared-dir=/s"]).special_files, None);
}

#[test]
fn migration_flags() {
    let base = ["--fd=3", "--shared-dir=/s"];
    let t = serve(
        &[
            &base[..],
            &["--migration-mode=find-paths", "--migration-confirm-paths"],
        ]
        .concat(),
    );
    assert_eq!(t.migration_on_error, None);
    assert_eq!(t.serve_args().len(), 4);
    for policy in ["abort", "guest-error"] {
        let flag = format!("--migration-on-error={policy}");
        let t = serve(&[&base[..], &[flag.as_str()]].concat());
        assert_eq!(t.migration_on_error, Some(policy.parse().unwrap()));
        let args = t.serve_args();
        let at = args
            .iter()
            .position(|a| a == "--migration-on-error")
            .unwrap();
        assert_eq!(args[at + 1], policy);
    }
    let e = err(&[&base[..], &["--migration-mode", "file-handles"]].concat());
    assert!(e.to_string().contains("find-paths"), "{e}");
}
