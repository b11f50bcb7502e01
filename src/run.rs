//! `fsjail run --policy FILE`: the broker. Loads and checks the policy (nothing starts if it
//! is invalid), then hands it to `jail::broker`, which binds every share's socket, starts one
//! jailed worker per share and supervises them until SIGTERM or SIGINT. SIGHUP reloads FILE.

use std::process::ExitCode;

use argh::FromArgs;
use jail::broker::{self, RunOptions};
use jail::policy;

/// Start one jailed worker per share of a policy file and supervise them.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "run",
    example = "\
    Validate first, then serve every share of the file:\n\
    \u{00A0} fsjail check --policy /etc/fsjail/policy.toml\n\
    \u{00A0} fsjail run --policy /etc/fsjail/policy.toml\n\
    The repository's example (serves ./share on /tmp/fsjail-example.sock):\n\
    \u{00A0} fsjail run --policy policies/example.toml",
    note = "\
    The broker binds every share's vhost-user socket itself, then starts one jailed worker per \
    share (namespaces, a root that is the share, capabilities cut, seccomp) and hands it the \
    listener. A worker whose frontend disconnects is replaced at once, so a restarted VM can \
    connect again; a worker that fails is restarted per the share's `restart` (100 ms doubling \
    to 5 s; gives up after 5 failures in 60 s). Signals: SIGTERM or SIGINT stop every worker \
    (SIGKILL after 2 s) and remove the sockets; SIGHUP reloads the file (added shares start, \
    removed ones stop, changed ones restart, unchanged ones are not touched; an invalid file \
    changes nothing). Under systemd (Type=notify) READY=1 is sent once every socket listens. \
    Worker stderr is logged line by line with the share's tag and the worker's pid. The policy \
    keys are listed in the README and in policies/example.toml.",
    error_code(1, "a share could not start, or the broker failed"),
    error_code(2, "the policy file is invalid (the errors name file, line and key)")
)]
pub struct RunArgs {
    /// the policy file (TOML)
    #[argh(option)]
    pub policy: std::path::PathBuf,
}

/// Exit 0 after a SIGTERM/SIGINT shutdown, 2 for an invalid policy (as `fsjail check`), 1 when
/// the broker cannot start a share or fails.
pub fn main(args: RunArgs) -> ExitCode {
    let policy = match policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "fsjail run: {}: invalid policy; nothing started",
                args.policy.display()
            );
            return ExitCode::from(2);
        }
    };
    crate::logger::init(policy.broker.log_level);
    match broker::run_policy(
        policy,
        RunOptions {
            exit_when_all_done: false,
            ..RunOptions::default()
        },
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
