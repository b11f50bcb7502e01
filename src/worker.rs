//! `fsjail worker`: internal; the broker execs it inside the new namespaces. (Being written:
//! issue 3.)

use argh::FromArgs;

/// Internal: a jailed worker started by the broker. Not for direct use.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "worker")]
pub struct WorkerArgs {
    /// the control socket fd inherited from the broker
    #[argh(option)]
    pub control_fd: i32,
}

pub fn main(_args: WorkerArgs) -> std::process::ExitCode {
    eprintln!("fsjail worker: not built yet");
    std::process::ExitCode::FAILURE
}
