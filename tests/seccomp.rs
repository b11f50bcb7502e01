//! The embedded seccomp filters, tried for real, Firecracker style: a child process installs the
//! same programs the worker installs (`seccomp::install`), then makes one call, and the parent
//! checks how the child ended.
//!
//! - kill: each forbidden call (execve, socket(AF_INET), ptrace, mount, unshare,
//!   open_by_handle_at) and each allowed call with an argument off its rule (mmap/mprotect with
//!   PROT_EXEC, ioctl, clone without CLONE_THREAD) kills the child by SIGSYS;
//! - trap: the same calls are named, with their number, on stderr, and the child exits 159;
//! - none: the same calls complete, so a kill above is the filter's doing, not the call's;
//! - clone3 answers ENOSYS, threads still start (through clone), a thread that existed before
//!   the filter is filtered too (TSYNC), and `log` lets a forbidden call through;
//! - from outside, a filtered process's /proc/PID/status shows `Seccomp: 2`;
//! - `fsjail seccomp list` lists both arches' filters with their counts.
//!
//! Runs without libtest (`harness = false`): libtest's threads and its own system calls after
//! the test body would share the filtered process. Each child is this binary re-executed with
//! the case in the environment, so it starts single-threaded and unfiltered. Arguments that do
//! not start with `-` select checks by substring.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use seccomp::Mode;

const CASE_ENV: &str = "FSJAIL_SECCOMP_TEST_CASE";
const MODE_ENV: &str = "FSJAIL_SECCOMP_TEST_MODE";

/// Calls that must end a filtered child: (case, the system call the trap handler must name,
/// its number here).
const DENIED: &[(&str, &str, libc::c_long)] = &[
    ("execve", "execve", libc::SYS_execve),
    ("socket_inet", "socket", libc::SYS_socket),
    ("ptrace", "ptrace", libc::SYS_ptrace),
    ("mount", "mount", libc::SYS_mount),
    ("unshare", "unshare", libc::SYS_unshare),
    (
        "open_by_handle_at",
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
    ),
    ("mmap_exec", "mmap", libc::SYS_mmap),
    ("mprotect_exec", "mprotect", libc::SYS_mprotect),
    ("ioctl", "ioctl", libc::SYS_ioctl),
    ("fork", "clone", libc::SYS_clone),
    ("tsync", "socket", libc::SYS_socket),
];

fn main() -> ExitCode {
    if let Ok(case) = std::env::var(CASE_ENV) {
        return child(&case);
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let list_only = std::env::args().any(|a| a == "--list");
    let checks = checks();
    let mut passed = 0;
    let mut failed = Vec::new();
    for (name, check) in &checks {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if list_only {
            println!("{name}: test");
            continue;
        }
        match check() {
            Ok(()) => {
                println!("seccomp {name} ... ok");
                passed += 1;
            }
            Err(why) => {
                println!(
                    "seccomp {name} ... FAILED\n    {}",
                    why.replace('\n', "\n    ")
                );
                failed.push(name.clone());
            }
        }
    }
    if list_only {
        return ExitCode::SUCCESS;
    }
    println!("\nseccomp: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

type Check = Box<dyn Fn() -> Result<(), String>>;

fn checks() -> Vec<(String, Check)> {
    let mut v: Vec<(String, Check)> = Vec::new();
    for &(case, syscall, nr) in DENIED {
        v.push((
            format!("{case}/kill"),
            Box::new(move || expect_sigsys(&run_child(case, Mode::Kill))),
        ));
        v.push((
            format!("{case}/trap"),
            Box::new(move || expect_trapped(&run_child(case, Mode::Trap), syscall, nr)),
        ));
        if case != "tsync" {
            v.push((
                format!("{case}/none"),
                Box::new(move || expect_ok(&run_child(case, Mode::None), "")),
            ));
        }
    }
    let ok = |case: &'static str, mode: Mode, stdout: &'static str| -> (String, Check) {
        (
            format!("{case}/{mode}"),
            Box::new(move || expect_ok(&run_child(case, mode), stdout)),
        )
    };
    let enosys = format!("errno {}", libc::ENOSYS);
    let enosys: &'static str = Box::leak(enosys.into_boxed_str());
    v.push(ok("clone3", Mode::Kill, enosys));
    v.push(ok("clone3", Mode::Log, enosys));
    // Unfiltered, the same call reaches the kernel, which rejects the null clone_args.
    let einval: &'static str = Box::leak(format!("errno {}", libc::EINVAL).into_boxed_str());
    v.push(ok("clone3", Mode::None, einval));
    v.push(ok("thread", Mode::Kill, "joined 42"));
    v.push(ok("allowed", Mode::Kill, "Seccomp:\t2"));
    v.push(ok("socket_inet", Mode::Log, "fd "));
    v.push(ok("mmap_exec", Mode::Log, "mapped"));
    v.push((
        "status_from_outside/kill".into(),
        Box::new(status_from_outside),
    ));
    v.push(("list_both_arches".into(), Box::new(list_both_arches)));
    v
}

// ---------------------------------------------------------------------------------------------
// Parent side

fn spawn_child(case: &str, mode: Mode, stdin: Stdio) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .env(CASE_ENV, case)
        .env(MODE_ENV, mode.to_string())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test child")
}

fn run_child(case: &str, mode: Mode) -> Output {
    let mut child = spawn_child(case, mode, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("collect the child")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn expect_sigsys(out: &Output) -> Result<(), String> {
    if out.status.signal() == Some(libc::SIGSYS) {
        Ok(())
    } else {
        Err(format!("expected death by SIGSYS; {}", describe(out)))
    }
}

fn expect_trapped(out: &Output, syscall: &str, nr: libc::c_long) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named = format!("blocked system call {syscall} ({nr})");
    if out.status.code() == Some(seccomp::TRAP_EXIT_STATUS) && stderr.contains(&named) {
        Ok(())
    } else {
        Err(format!(
            "expected exit {} naming {named:?}; {}",
            seccomp::TRAP_EXIT_STATUS,
            describe(out)
        ))
    }
}

fn expect_ok(out: &Output, stdout: &str) -> Result<(), String> {
    if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(stdout) {
        Ok(())
    } else {
        Err(format!(
            "expected exit 0 with {stdout:?} on stdout; {}",
            describe(out)
        ))
    }
}

/// The child installs the filters and waits on stdin; /proc/PID/status, read from here, must
/// show filter mode 2 (SECCOMP_MODE_FILTER) and both filters.
fn status_from_outside() -> Result<(), String> {
    let mut child = spawn_child("wait_on_stdin", Mode::Kill, Stdio::piped());
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let said = stdout.read_line(&mut line);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let status = status.map_err(|e| format!("reading the child's status: {e}"))?;
    if said.is_err() || line.trim() != "ready" || !out.status.success() {
        return Err(format!("child said {line:?}; {}", describe(&out)));
    }
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(str::to_owned)
    };
    if field("Seccomp:").as_deref() != Some("Seccomp:\t2") {
        return Err(format!("expected Seccomp:\t2 in\n{status}"));
    }
    // Linux >= 5.9 also counts the filters: ours are two more than this process already has
    // (a container runtime may have installed some).
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let count = |text: &str| -> Option<u32> {
        let line = text.lines().find(|l| l.starts_with("Seccomp_filters:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    if let (Some(child_n), Some(own_n)) = (count(&status), count(&own)) {
        if child_n != own_n + 2 {
            return Err(format!(
                "expected {} filters (ours: clone3_enosys, worker), got {child_n}",
                own_n + 2
            ));
        }
    }
    if field("NoNewPrivs:").as_deref() != Some("NoNewPrivs:\t1") {
        return Err(format!("expected NoNewPrivs:\t1 in\n{status}"));
    }
    Ok(())
}

fn list_both_arches() -> Result<(), String> {
    let fsjail = env!("CARGO_BIN_EXE_fsjail");
    for arch in seccomp::Arch::ALL {
        let out = Command::new(fsjail)
            .args(["seccomp", "list", "--arch", arch.as_str()])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let allow = seccomp::allowlist(arch).ok_or("no allowlist")?;
        let count = format!(
            "{arch} worker: {} system calls allowed",
            allow.syscall_count()
        );
        let epoll = if arch == seccomp::Arch::Aarch64 {
            "  epoll_pwait (22)"
        } else {
            "  epoll_wait (232)"
        };
        for want in [
            count.as_str(),
            "clone3_enosys: 1 system call answered errno 38 by a stacked filter",
            epoll,
            "  mmap (",
        ] {
            if !out.status.success() || !text.contains(want) {
                return Err(format!(
                    "fsjail seccomp list --arch {arch}: no {want:?} in\n{text}"
                ));
            }
        }
        if text.contains("  execve (") || text.contains("  ioctl (") {
            return Err(format!("{arch}: listing allows a forbidden call:\n{text}"));
        }
    }
    let bad = Command::new(fsjail)
        .args(["seccomp", "list", "--arch", "sparc"])
        .output();
    match bad {
        Ok(out) if !out.status.success() => Ok(()),
        other => Err(format!("--arch sparc should fail: {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Child side: runs in a fresh process. Prints the outcome of its call on stdout and exits 0 if
// the filter let it live.

fn child(case: &str) -> ExitCode {
    let mode: Mode = match std::env::var(MODE_ENV).unwrap_or_default().parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // A SIGSYS kill dumps core by default; the tests kill on purpose.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct, which lives for the call.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };

    // tsync: a thread that exists before the filter makes the forbidden call after it.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let early_thread = (case == "tsync").then(|| {
        std::thread::spawn(move || {
            let _ = go_rx.recv();
            // SAFETY: plain socket(2); the result is only printed.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            println!("thread got fd {fd}");
        })
    });

    if let Err(e) = seccomp::install(mode) {
        eprintln!("install({mode}): {e}");
        return ExitCode::from(2);
    }

    let outcome = match case {
        "tsync" => {
            let _ = go_tx.send(());
            let joined = early_thread.map(|t| t.join().is_ok());
            format!("joined {joined:?}")
        }
        "wait_on_stdin" => {
            println!("ready");
            let _ = std::io::stdout().flush();
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
            "stdin closed".into()
        }
        other => make_call(other),
    };
    println!("{outcome}");
    ExitCode::SUCCESS
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn result(rc: libc::c_long) -> String {
    if rc < 0 {
        format!("errno {}", errno())
    } else {
        format!("rc {rc}")
    }
}

/// One call per case. Each is harmless when it does go through (the `none` checks prove it
/// completes): nothing is mounted, executed or changed outside this child.
fn make_call(case: &str) -> String {
    // SAFETY: for every call below, arguments are constants, null, or pointers to locals that
    // outlive the call; a call that succeeds creates nothing that outlives this child.
    unsafe {
        match case {
            "execve" => {
                let path = c"/bin/true";
                let argv = [path.as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                result(libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()).into())
            }
            "socket_inet" => {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if fd >= 0 {
                    format!("fd {fd}")
                } else {
                    result(fd.into())
                }
            }
            // ATTACH to a pid that cannot exist: ESRCH when allowed, nothing traced.
            "ptrace" => result(libc::ptrace(libc::PTRACE_ATTACH, 999_999_999, 0, 0)),
            "mount" => result(
                libc::mount(
                    std::ptr::null(),
                    c"/nonexistent-fsjail-seccomp-test".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT,
                    std::ptr::null(),
                )
                .into(),
            ),
            "unshare" => result(libc::unshare(libc::CLONE_NEWUTS).into()),
            "open_by_handle_at" => result(libc::syscall(
                libc::SYS_open_by_handle_at,
                -1,
                std::ptr::null::<u8>(),
                0,
            )),
            "mmap_exec" => {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    result(-1)
                } else {
                    "mapped".into()
                }
            }
            "mprotect_exec" => {
                // The read/write mapping is allowed; making it executable is not.
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    return format!("rw mmap failed: errno {}", errno());
                }
                result(libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC).into())
            }
            "ioctl" => {
                let mut ws: libc::winsize = std::mem::zeroed();
                result(libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws).into())
            }
            "fork" => {
                // clone(SIGCHLD): what fork() does, without CLONE_THREAD.
                let rc = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
                if rc == 0 {
                    libc::_exit(0);
                }
                result(rc)
            }
            "clone3" => {
                // Filtered: ENOSYS. Unfiltered: EINVAL (a null, zero-size clone_args).
                result(libc::syscall(
                    libc::SYS_clone3,
                    std::ptr::null::<u8>(),
                    0usize,
                ))
            }
            "thread" => match std::thread::spawn(|| 42).join() {
                Ok(v) => format!("joined {v}"),
                Err(_) => "thread panicked".into(),
            },
            "allowed" => {
                // Ordinary calls a worker makes: pid, files, anonymous memory.
                let pid = libc::getpid();
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let seccomp_line = status
                    .lines()
                    .find(|l| l.starts_with("Seccomp:"))
                    .unwrap_or("");
                let mut buf = vec![0u8; 1 << 20];
                buf[4095] = 1;
                format!(
                    "pid {pid}; {seccomp_line}; buf {}",
                    buf.iter().map(|&b| u32::from(b)).sum::<u32>()
                )
            }
            other => format!("unknown case {other}"),
        }
    }
}
