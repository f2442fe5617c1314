//! Thin entry: parse arguments, run the subcommand, print an error once with its
//! chain, and exit with the subcommand's code.

mod cli;
mod watch;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("security-monitor: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
