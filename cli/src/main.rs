//! `sitebundle`: parse the arguments, run one command from `commands/`, report errors with a hint
//! and an exit code (see `args::EXIT_CODES`).

mod args;
mod commands;
mod progress;
mod report;
mod targets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report::report(&e)),
    }
}
