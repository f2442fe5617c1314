//! Thin entry: parse arguments, run the subcommand, print an error once with its
//! chain, and exit with the subcommand's code.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("security-monitor: {e:#}");
            ExitCode::from(cli::exit_code_of(&e))
        }
    }
}
