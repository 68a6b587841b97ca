//! One module per subcommand. Each takes its parsed arguments and stdout (where a command's
//! product goes; `run` never writes it) and returns the exit status or a [`Failure`].

mod check;
mod connect;
pub mod doctor;
pub mod explain;
mod export;
mod generate;
mod learn;
mod pins;
mod profiles;
mod run;
pub mod score;
mod systemd_unit;
mod wrap;

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::error::Failure;

pub use run::build_plan;

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let mut stdout = std::io::stdout().lock();
    let out: &mut dyn Write = &mut stdout;
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Explain(args) => explain::command(out, args),
        Command::Score(args) => score::command(out, args),
        Command::Check { profiles } => check::command(out, &profiles),
        Command::Wrap { config, write, undo, learn } => {
            wrap::command(out, config.as_deref(), wrap::How { write, undo, learn })
        }
        Command::Learn { command } => learn::command(out, command),
        Command::Doctor => doctor::command(out),
        Command::Profiles { command } => profiles::command(out, command),
        Command::Pins { command } => pins::command(out, command),
        Command::Connect { target } => connect::command(&target),
        Command::SystemdUnit(args) => systemd_unit::command(args),
        Command::Export(args) => export::command(out, args),
        Command::Install { path } => export::install(&path),
        Command::Generate { what } => generate::command(out, &what),
    }
}
