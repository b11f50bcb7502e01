//! `fsjail run --policy FILE`: the broker. Loads and checks the policy (nothing starts if it
//! is invalid), then hands it to `jail::broker`, which binds every share's socket, starts one
//! jailed worker per share and supervises them until SIGTERM or SIGINT. SIGHUP reloads FILE.

use std::process::ExitCode;

use argh::FromArgs;
use jail::broker::{self, RunOptions};
use jail::policy;

/// Start one jailed worker per share of a policy file and supervise them.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
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
            eprintln!("fsjail run: {}: invalid policy; nothing started", args.policy.display());
            return ExitCode::from(2);
        }
    };
    crate::logger::init(policy.broker.log_level);
    match broker::run_policy(policy, RunOptions { exit_when_all_done: false, ..RunOptions::default() }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
