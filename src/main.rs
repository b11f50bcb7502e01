//! The `fsjail` command.

mod cli;
mod logger;
mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: cli::Cli = argh::from_env();
    match cli.command {
        cli::Command::Serve(args) => {
            logger::init(args.log_level);
            match serve::run(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fsjail serve: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
