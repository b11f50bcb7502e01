//! `fsjail seccomp list`: the seccomp filters compiled into this binary, per arch.

use std::fmt::Write as _;
use std::process::ExitCode;

use argh::FromArgs;
use seccomp::{Arch, FilterKind};

/// Show the seccomp filters compiled into fsjail (policies/seccomp).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "seccomp",
    example = "\u{00A0} fsjail seccomp list\n\u{00A0} fsjail seccomp list --arch aarch64",
    note = "\
    The filters are compiled from policies/seccomp/<arch>/*.json when fsjail is built, for \
    x86_64 and aarch64 alike. A worker installs them last in its jail; `--seccomp trap` (or \
    `seccomp = \"trap\"` in a policy) names a blocked call in the log, `log` lets it through \
    and lets the kernel log it."
)]
pub struct SeccompArgs {
    #[argh(subcommand)]
    pub command: SeccompCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum SeccompCommand {
    List(ListArgs),
}

/// List each filter's allowed system calls with their argument rules, and the count per filter.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// x86_64 or aarch64 (default: the arch fsjail was built for); both are compiled into
    /// every build
    #[argh(option)]
    pub arch: Option<Arch>,
}

/// The listing for one arch: every filter in install order, then a one-line count per filter.
pub fn render(arch: Arch) -> String {
    let filters = seccomp::describe(arch);
    let mut out = format!(
        "seccomp policy for {arch}: {} filters, installed on every thread (TSYNC) in this order\n\n",
        filters.len()
    );
    for f in filters {
        let _ = writeln!(out, "{f}");
    }
    for f in filters {
        let n = f.syscall_count();
        let calls = if n == 1 {
            "system call"
        } else {
            "system calls"
        };
        let what = match f.kind {
            FilterKind::Allowlist => "allowed".to_owned(),
            FilterKind::Stacked => format!("answered {} by a stacked filter", f.match_action),
        };
        let _ = writeln!(out, "{arch} {}: {n} {calls} {what}", f.name);
    }
    out
}

pub fn main(args: SeccompArgs) -> ExitCode {
    match args.command {
        SeccompCommand::List(list) => {
            let Some(arch) = list.arch.or_else(Arch::host) else {
                eprintln!(
                    "fsjail seccomp list: no policy for {}; pass --arch x86_64 or --arch aarch64",
                    std::env::consts::ARCH
                );
                return ExitCode::FAILURE;
            };
            print!("{}", render(arch));
            ExitCode::SUCCESS
        }
    }
}
