//! Unit tests on the embedded policy: what `describe` says must match what the filters promise
//! (README.md's seccomp section and `NEVER_ALLOWED` in build.rs). The denial tests, which install the real programs, are in tests/seccomp.rs.

use super::*;

const PROT_READ_WRITE: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
/// glibc's pthread_create flags for clone.
const GLIBC_THREAD_FLAGS: u64 = 0x3d0f00;

fn args(a: &[u64]) -> [u64; 6] {
    let mut out = [0u64; 6];
    out[..a.len()].copy_from_slice(a);
    out
}

fn verdict(arch: Arch, syscall: &str, a: &[u64]) -> Action {
    allowlist(arch).unwrap().action_for(syscall, &args(a))
}

#[test]
fn modes_parse_print_and_serialize_as_virtiofsd_names() {
    for (text, mode) in [
        ("kill", Mode::Kill),
        ("trap", Mode::Trap),
        ("log", Mode::Log),
        ("none", Mode::None),
    ] {
        assert_eq!(text.parse::<Mode>(), Ok(mode));
        assert_eq!(mode.to_string(), text);
        assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<Mode>(&format!("\"{text}\"")).unwrap(),
            mode
        );
    }
    assert_eq!(Mode::default(), Mode::Kill);
    assert!("Kill".parse::<Mode>().is_err());
    assert!(serde_json::from_str::<Mode>("\"strict\"").is_err());
}

#[test]
fn arches_parse() {
    assert_eq!("x86_64".parse::<Arch>(), Ok(Arch::X86_64));
    assert_eq!("aarch64".parse::<Arch>(), Ok(Arch::Aarch64));
    assert_eq!("arm64".parse::<Arch>(), Ok(Arch::Aarch64));
    assert!("riscv64".parse::<Arch>().is_err());
    if cfg!(target_arch = "x86_64") {
        assert_eq!(Arch::host(), Some(Arch::X86_64));
    }
}

#[test]
fn both_arches_have_the_same_filters_allowlist_last() {
    for arch in Arch::ALL {
        let names: Vec<_> = describe(arch).iter().map(|f| f.name).collect();
        assert_eq!(names, ["clone3_enosys", "worker"], "{arch}");
        let allow = allowlist(arch).unwrap();
        assert_eq!(allow.kind, FilterKind::Allowlist);
        assert_eq!(allow.mismatch_action, Action::KillProcess);
        assert!(
            allow.syscall_count() > 50 && allow.syscall_count() < 90,
            "{arch}: {}",
            allow.syscall_count()
        );
        assert!(allow.bpf_len > allow.syscall_count());
    }
}

#[test]
fn every_rule_and_check_says_why() {
    for arch in Arch::ALL {
        for f in describe(arch) {
            for r in f.rules {
                assert!(r.comment.len() > 10, "{arch} {} {}", f.name, r.syscall);
                assert!(
                    r.args.iter().all(|a| !a.comment.is_empty()),
                    "{arch} {}",
                    r.syscall
                );
            }
        }
    }
}

#[test]
fn rule_numbers_agree_with_the_name_table() {
    for arch in Arch::ALL {
        for f in describe(arch) {
            for r in f.rules {
                assert_eq!(syscall_name(arch, r.nr), Some(r.syscall), "{arch}");
            }
        }
    }
    assert_eq!(syscall_name(Arch::X86_64, 59), Some("execve"));
    assert_eq!(syscall_name(Arch::Aarch64, 221), Some("execve"));
    assert_eq!(syscall_name(Arch::X86_64, 435), Some("clone3"));
    assert_eq!(syscall_name(Arch::X86_64, 100_000), None);
    assert_eq!(
        syscall_name(Arch::X86_64, 400),
        None,
        "a gap in the x86_64 table"
    );
}

#[test]
fn never_allowed_calls_are_killed() {
    let never = [
        "execve",
        "execveat",
        "ptrace",
        "mount",
        "umount2",
        "pivot_root",
        "setns",
        "unshare",
        "bpf",
        "perf_event_open",
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "keyctl",
        "add_key",
        "request_key",
        "personality",
        "open_by_handle_at",
        "socket",
        "connect",
        "bind",
        "ioctl",
        "seccomp",
    ];
    for arch in Arch::ALL {
        for call in never {
            assert_eq!(
                verdict(arch, call, &[]),
                Action::KillProcess,
                "{arch} {call}"
            );
        }
    }
}

#[test]
fn argument_rules_decide() {
    for arch in Arch::ALL {
        let exec = libc::PROT_EXEC as u64;
        assert_eq!(
            verdict(arch, "mmap", &[0, 4096, PROT_READ_WRITE]),
            Action::Allow
        );
        assert_eq!(
            verdict(arch, "mmap", &[0, 4096, PROT_READ_WRITE | exec]),
            Action::KillProcess
        );
        assert_eq!(
            verdict(arch, "mprotect", &[0, 4096, libc::PROT_READ as u64 | exec]),
            Action::KillProcess
        );
        assert_eq!(verdict(arch, "mprotect", &[0, 4096, 0]), Action::Allow);

        assert_eq!(verdict(arch, "clone", &[GLIBC_THREAD_FLAGS]), Action::Allow);
        // fork(): SIGCHLD, no CLONE_THREAD
        assert_eq!(
            verdict(arch, "clone", &[libc::SIGCHLD as u64]),
            Action::KillProcess
        );
        let newns = GLIBC_THREAD_FLAGS | libc::CLONE_NEWNS as u64;
        assert_eq!(verdict(arch, "clone", &[newns]), Action::KillProcess);

        assert_eq!(
            verdict(arch, "fcntl", &[3, libc::F_SETFL as u64]),
            Action::Allow
        );
        assert_eq!(
            verdict(arch, "fcntl", &[3, libc::F_SETLK as u64]),
            Action::KillProcess
        );
        assert_eq!(
            verdict(arch, "fcntl", &[3, libc::F_SETOWN as u64]),
            Action::KillProcess
        );
        assert_eq!(
            verdict(arch, "prctl", &[libc::PR_SET_NAME as u64]),
            Action::Allow
        );
        assert_eq!(
            verdict(arch, "prctl", &[libc::PR_SET_DUMPABLE as u64, 1]),
            Action::KillProcess
        );
        assert_eq!(
            verdict(arch, "tgkill", &[1, 1, libc::SIGABRT as u64]),
            Action::Allow
        );
        assert_eq!(
            verdict(arch, "tgkill", &[1, 1, libc::SIGKILL as u64]),
            Action::KillProcess
        );

        let keep = 0xffff_ffff;
        assert_eq!(
            verdict(arch, "setresuid", &[keep, 1000, keep]),
            Action::Allow
        );
        assert_eq!(
            verdict(arch, "setresuid", &[1000, 1000, 1000]),
            Action::KillProcess
        );

        // clone3: allowed by the allowlist so that the stacked filter's ENOSYS is the answer.
        assert_eq!(verdict(arch, "clone3", &[]), Action::Allow);
        let stacked = describe(arch)
            .iter()
            .find(|f| f.name == "clone3_enosys")
            .unwrap();
        assert_eq!(
            stacked.action_for("clone3", &args(&[])),
            Action::Errno(libc::ENOSYS as u32)
        );
        assert_eq!(stacked.action_for("clone", &args(&[])), Action::Allow);
    }
}

#[test]
fn arch_specific_names() {
    let x86 = allowlist(Arch::X86_64).unwrap().syscalls();
    let arm = allowlist(Arch::Aarch64).unwrap().syscalls();
    assert!(x86.contains(&"epoll_wait") && !arm.contains(&"epoll_wait"));
    assert!(arm.contains(&"epoll_pwait"));
    assert!(x86.contains(&"unlink") && !arm.contains(&"unlink"));
    // Every call the aarch64 list has, x86_64 has too, except its epoll spelling.
    for call in &arm {
        assert!(x86.contains(call) || *call == "epoll_pwait", "{call}");
    }
}

#[test]
fn listing_shows_counts_and_argument_rules() {
    let text = allowlist(Arch::Aarch64).unwrap().to_string();
    let count = allowlist(Arch::Aarch64).unwrap().syscall_count();
    assert!(
        text.starts_with(&format!(
            "filter worker (worker.json): {count} system calls allowed"
        )),
        "{text}"
    );
    assert!(
        text.contains("  mmap (222): only if\n       arg2 & 0x4 == 0x0"),
        "{text}"
    );
    assert!(text.contains("  fcntl (25): only if"), "{text}");
    assert!(
        text.contains("    or arg1 == 0x4 (cmd == F_SETFL)"),
        "{text}"
    );
}

#[test]
fn host_programs_are_the_allowlist_with_three_mismatch_actions() {
    let Some(p) = policy::HOST_PROGRAMS.as_ref() else {
        return;
    };
    let allow = allowlist(Arch::host().unwrap()).unwrap();
    assert_eq!(p.kill.len(), allow.bpf_len);
    assert_eq!(p.trap.len(), p.kill.len());
    assert_eq!(p.log.len(), p.kill.len());
    let ret = |i: &seccompiler::sock_filter| i.code == 0x06;
    let mut differ = 0;
    for ((k, t), l) in p.kill.iter().zip(p.trap).zip(p.log) {
        if k != t {
            differ += 1;
            assert!(ret(k) && ret(t) && ret(l));
            assert_eq!(k.k, libc::SECCOMP_RET_KILL_PROCESS);
            assert_eq!(t.k, libc::SECCOMP_RET_TRAP);
            assert_eq!(l.k, libc::SECCOMP_RET_LOG);
        } else {
            assert_eq!(k, l);
        }
    }
    assert!(differ > allow.syscall_count() / 2, "{differ}");
    assert_eq!(p.stacked.len(), 1);
    assert_eq!(p.allowlist_name, "worker");
}

#[test]
fn none_installs_nothing() {
    let seccomp_lines = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let lines = status.lines().filter(|l| l.starts_with("Seccomp"));
        lines.map(str::to_owned).collect::<Vec<_>>()
    };
    let before = seccomp_lines();
    install(Mode::None).unwrap();
    assert_eq!(
        seccomp_lines(),
        before,
        "this test process must stay unfiltered"
    );
}
