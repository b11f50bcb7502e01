//! `fsjail-virtiofsd`: takes virtiofsd's command line and becomes `fsjail serve`.
//!
//! The translation is [`compat::translate`]; this file only acts on its answer. Serving is done
//! by exec'ing the `fsjail` binary installed next to this one, so there is one implementation
//! of `serve` and this process leaves nothing behind (the pid libvirt or Kata recorded is the
//! serving process's pid).

#[path = "../compat/mod.rs"]
mod compat;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use compat::{Action, Translation};
use thiserror::Error;

#[derive(Debug, Error)]
enum LaunchError {
    #[error("locating this program: {0}")]
    CurrentExe(io::Error),
    #[error("{} is missing: install fsjail-virtiofsd in the same directory as fsjail", .0.display())]
    NoFsjail(PathBuf),
    #[error("--fd {fd}: {source}")]
    Fd { fd: i32, source: io::Error },
    #[error("starting {}: {source}", path.display())]
    Exec { path: PathBuf, source: io::Error },
}

/// Exit status for a command line we cannot translate (what clap, and so virtiofsd, uses).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match compat::translate(&args) {
        Ok(Action::PrintCapabilities) => print(compat::CAPABILITIES),
        Ok(Action::Version) => print(&compat::version()),
        Ok(Action::Help) => print(compat::HELP.trim_end()),
        Ok(Action::Serve(t)) => {
            // exec only returns on failure.
            let e = serve(&t);
            eprintln!("fsjail-virtiofsd: error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fsjail-virtiofsd: error: {e}");
            eprintln!(
                "fsjail-virtiofsd: run `fsjail-virtiofsd --help` for the options fsjail supports"
            );
            ExitCode::from(USAGE_ERROR)
        }
    }
}

fn print(text: &str) -> ExitCode {
    // A closed stdout (the caller stopped reading) is an error to report, not a panic.
    match writeln!(io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsjail-virtiofsd: error: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Replaces this process with `fsjail serve`. Returns only on failure.
fn serve(t: &Translation) -> LaunchError {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return LaunchError::CurrentExe(e),
    };
    let fsjail = exe.with_file_name("fsjail");
    if !fsjail.is_file() {
        return LaunchError::NoFsjail(fsjail);
    }
    if let Some(fd) = t.fd {
        if let Err(source) = keep_across_exec(fd) {
            return LaunchError::Fd { fd, source };
        }
    }
    // Notes are info-level: quiet when a lower level was asked for.
    if !matches!(t.log_level, Some("off" | "error" | "warn")) {
        for note in &t.notes {
            eprintln!("fsjail-virtiofsd: note: {note}");
        }
    }
    let source = Command::new(&fsjail)
        .arg0("fsjail")
        .arg("serve")
        .args(t.serve_args())
        .exec();
    LaunchError::Exec {
        path: fsjail,
        source,
    }
}

/// Clears FD_CLOEXEC on the inherited socket so it survives the exec into `fsjail serve`.
/// libvirt and Kata pass it without the flag already; clearing it again costs nothing and
/// does not depend on how the caller opened it.
fn keep_across_exec(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and write the descriptor flags of `fd`; an invalid
    // descriptor makes them fail with EBADF, which is reported.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
