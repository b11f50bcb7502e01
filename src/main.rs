//! The `fsjail` command. Each subcommand lives in its own module and returns its exit code;
//! nothing below calls `process::exit`.

mod check;
mod cli;
mod logger;
mod run;
mod seccomp_cmd;
mod serve;
mod serve_setup;
mod worker;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: cli::Cli = argh::from_env();
    match cli.command {
        cli::Command::Serve(args) => serve::main(args),
        cli::Command::Run(args) => run::main(args),
        cli::Command::Check(args) => check::main(args),
        cli::Command::Worker(args) => worker::main(args),
        cli::Command::Seccomp(args) => seccomp_cmd::main(args),
    }
}
