//! The `mcp-warden` binary: parse, dispatch, and render a failure as one line, a hint and an
//! exit status (125 for launcher failures, 126/127 for a server that cannot be executed or found).

use std::process::ExitCode;

use clap::Parser;
use mcp_warden::cli::Cli;
use mcp_warden::{commands, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap's --help/--version go to stdout and succeed; usage errors are launcher failures.
            return if e.use_stderr() { ExitCode::from(125) } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.verbose);
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(failure) => {
            eprintln!("mcp-warden: {failure}");
            if let Some(hint) = failure.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.exit_code().clamp(1, 255) as u8)
        }
    }
}
