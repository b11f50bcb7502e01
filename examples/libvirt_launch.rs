//! Starts a virtiofsd-compatible daemon the way libvirt does, for trying fsjail-virtiofsd (or
//! virtiofsd) with exactly libvirt's command line without installing libvirt.
//!
//! ```text
//! libvirt_launch --socket PATH --source DIR [--cache none|always] [--sandbox namespace|chroot]
//!                [--xattr on|off] [--flock on|off] [--posix-lock on|off]
//!                [--thread-pool-size N] [--openfiles N] [--debug]
//!                [--shape auto|separate|legacy] -- DAEMON
//! ```
//!
//! What it copies from libvirt (src/qemu/qemu_virtiofs.c): the socket is created, bound and
//! listened on by the caller (`qemuVirtioFSOpenChardev`) and handed down as `--fd=N`; the daemon's
//! `--print-capabilities` decides the argv shape (`qemuVhostUserFillFSCapabilities`): with
//! "separate-options" `--shared-dir DIR --cache ... --sandbox ... --xattr`, otherwise
//! `-o source=DIR,cache=...,sandbox=...,xattr|no_xattr,flock|no_flock,posix_lock|no_posix_lock`
//! with commas in DIR doubled; then `--thread-pool-size=N`, `--rlimit-nofile=N` and `-d` /
//! `--log-level debug`. The options mirror the domain XML's `<driver>`, `<binary>` and
//! `<source>` attributes. `--shape` overrides the capability probe to test the older form.
//!
//! It then execs the daemon in its own place, so the daemon keeps this process's pid (a harness
//! that waits for the socket and later kills the pid it started works unchanged).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

#[derive(Default)]
struct Opts {
    socket: Option<String>,
    source: Option<String>,
    cache: Option<String>,
    sandbox: Option<String>,
    xattr: Option<String>,
    flock: Option<String>,
    posix_lock: Option<String>,
    thread_pool_size: Option<String>,
    openfiles: Option<String>,
    debug: bool,
    shape: Option<String>,
    daemon: Vec<OsString>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        if arg == "--" {
            o.daemon = args.by_ref().collect();
            break;
        }
        if arg == "--debug" {
            o.debug = true;
            continue;
        }
        let mut value = || {
            args.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{arg} needs a UTF-8 value"))
        };
        let slot = match arg.as_str() {
            "--socket" => &mut o.socket,
            "--source" => &mut o.source,
            "--cache" => &mut o.cache,
            "--sandbox" => &mut o.sandbox,
            "--xattr" => &mut o.xattr,
            "--flock" => &mut o.flock,
            "--posix-lock" => &mut o.posix_lock,
            "--thread-pool-size" => &mut o.thread_pool_size,
            "--openfiles" => &mut o.openfiles,
            "--shape" => &mut o.shape,
            _ => return Err(format!("unknown option {arg}")),
        };
        *slot = Some(value()?);
    }
    if o.daemon.is_empty() {
        return Err("no daemon given after --".into());
    }
    Ok(o)
}

/// Runs `DAEMON --print-capabilities` like libvirt and reports whether it announces
/// "separate-options". A daemon whose JSON is not a "fs" backend is refused, as libvirt does.
fn probe_separate_options(daemon: &OsString) -> Result<bool, String> {
    let out = Command::new(daemon)
        .arg("--print-capabilities")
        .output()
        .map_err(|e| format!("running {daemon:?} --print-capabilities: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{daemon:?} --print-capabilities failed: {}",
            out.status
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{daemon:?} --print-capabilities: invalid JSON: {e}"))?;
    if json.get("type").and_then(|t| t.as_str()) != Some("fs") {
        return Err(format!("{daemon:?} is not a vhost-user fs backend: {json}"));
    }
    let features = json
        .get("features")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(features
        .iter()
        .any(|f| f.as_str() == Some("separate-options")))
}

fn build_argv(o: &Opts, fd: i32, separate: bool) -> Result<Vec<String>, String> {
    let source = o.source.as_deref().ok_or("--source is required")?;
    let mut argv = vec![format!("--fd={fd}")];
    if separate {
        argv.extend(["--shared-dir".to_owned(), source.to_owned()]);
        match o.cache.as_deref() {
            None | Some("default") => {}
            Some("none") => argv.extend(["--cache".to_owned(), "never".to_owned()]),
            Some(c) => argv.extend(["--cache".to_owned(), c.to_owned()]),
        }
        if let Some(s) = &o.sandbox {
            argv.extend(["--sandbox".to_owned(), s.clone()]);
        }
        if o.xattr.as_deref() == Some("on") {
            argv.push("--xattr".to_owned());
        }
        if o.flock.is_some() || o.posix_lock.is_some() {
            return Err(
                "locking options are not supported by this virtiofsd (libvirt's own refusal)"
                    .into(),
            );
        }
    } else {
        let mut opts = format!("source={}", source.replace(',', ",,"));
        if let Some(c) = o.cache.as_deref().filter(|c| *c != "default") {
            opts.push_str(&format!(",cache={c}"));
        }
        if let Some(s) = &o.sandbox {
            opts.push_str(&format!(",sandbox={s}"));
        }
        for (value, on, off) in [
            (&o.xattr, "xattr", "no_xattr"),
            (&o.flock, "flock", "no_flock"),
            (&o.posix_lock, "posix_lock", "no_posix_lock"),
        ] {
            match value.as_deref() {
                Some("on") => opts.push_str(&format!(",{on}")),
                Some("off") => opts.push_str(&format!(",{off}")),
                _ => {}
            }
        }
        argv.extend(["-o".to_owned(), opts]);
    }
    if let Some(n) = &o.thread_pool_size {
        argv.push(format!("--thread-pool-size={n}"));
    }
    if let Some(n) = &o.openfiles {
        argv.push(format!("--rlimit-nofile={n}"));
    }
    if o.debug {
        if separate {
            argv.extend(["--log-level".to_owned(), "debug".to_owned()]);
        } else {
            argv.push("-d".to_owned());
        }
    }
    Ok(argv)
}

fn run() -> Result<(), String> {
    let o = parse()?;
    let separate = match o.shape.as_deref() {
        None | Some("auto") => probe_separate_options(&o.daemon[0])?,
        Some("separate") => true,
        Some("legacy") => false,
        Some(s) => return Err(format!("--shape {s}: expected auto, separate or legacy")),
    };
    let socket = o.socket.as_deref().ok_or("--socket is required")?;
    // libvirt replaces a stale socket file before binding.
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| format!("binding {socket}: {e}"))?;
    let fd = listener.as_raw_fd();
    let argv = build_argv(&o, fd, separate)?;
    // The listener must survive the exec: clear FD_CLOEXEC and give up ownership.
    // SAFETY: F_SETFD on a descriptor this process owns, with a valid flag value.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(format!(
            "clearing FD_CLOEXEC: {}",
            std::io::Error::last_os_error()
        ));
    }
    let _ = listener.into_raw_fd();
    eprintln!("libvirt_launch: {:?} {}", o.daemon, argv.join(" "));
    let err = Command::new(&o.daemon[0])
        .args(&o.daemon[1..])
        .args(&argv)
        .exec();
    Err(format!("exec {:?}: {err}", o.daemon[0]))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("libvirt_launch: error: {e}");
            ExitCode::FAILURE
        }
    }
}
