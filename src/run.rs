//! `fsjail run --policy FILE`: the broker. (Being written: issue 3.)

use argh::FromArgs;

/// Start one jailed worker per share of a policy file and supervise them.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {
    /// the policy file (TOML)
    #[argh(option)]
    pub policy: std::path::PathBuf,
}

pub fn main(_args: RunArgs) -> std::process::ExitCode {
    eprintln!("fsjail run: not built yet");
    std::process::ExitCode::FAILURE
}
