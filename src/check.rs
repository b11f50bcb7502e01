//! `fsjail check --policy FILE`. (Being written: issue 3.)

use argh::FromArgs;

/// Validate a policy file and print, per share, the effective settings and the jail it builds.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// the policy file (TOML)
    #[argh(option)]
    pub policy: std::path::PathBuf,
}

pub fn main(_args: CheckArgs) -> std::process::ExitCode {
    eprintln!("fsjail check: not built yet");
    std::process::ExitCode::from(2)
}
