//! `mcp-warden run`: resolve the plan, refuse what cannot be enforced, then supervise the server.

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};
use crate::error::{CommandError, Failure};
use crate::host::HostFacts;
use crate::plan::{Inputs, Plan};
use crate::{profile, supervisor, systemd};

pub fn run(args: RunArgs) -> Result<i32, Failure> {
    let mut plan = build_plan(args)?;
    plan.check_requirements()?;
    for w in plan.warnings() {
        tracing::warn!("{w}");
    }
    Ok(supervisor::run(&plan)?)
}

/// Profile + grants + command, resolved against this host. `--args-file FILE` supplies the
/// arguments from FILE, one per line (systemd units), parsed by the same grammar.
pub fn build_plan(args: RunArgs) -> Result<Plan, Failure> {
    let args_file = args.args_file.clone();
    let args = match &args_file {
        Some(file) => args_from_file(file)?,
        None => args,
    };
    let (grants, mut options) = args.grants.into_layer();
    options.args_file = args_file;
    let profile = profile::load(&args.profile)?.overlay(grants);
    let host = HostFacts::probe();
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let cwd =
        std::env::current_dir().map_err(|e| CommandError::new(format!("failed to read the working directory: {e}")))?;
    let inputs = Inputs::new(&env, cwd);
    Ok(Plan::resolve(&profile, &options, &args.command, &host, &inputs)?)
}

fn args_from_file(file: &std::path::Path) -> Result<RunArgs, Failure> {
    let args = systemd::read_args_file(file)
        .map_err(|e| CommandError::new(format!("cannot read the argument file {}: {e}", file.display())))?;
    let argv = [OsString::from("mcp-warden"), OsString::from("run")].into_iter().chain(args);
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| CommandError::new(format!("invalid arguments in {}: {e}", file.display())))?;
    match cli.command {
        Command::Run(args) if args.args_file.is_none() => Ok(args),
        _ => Err(CommandError::new(format!("{}: an argument file cannot name another one", file.display())).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_file_is_an_ordinary_argument_of_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.args");
        std::fs::write(&file, "# a comment\n--profile\nstrict\n--\n/bin/echo\ntwo words\n").expect("write");
        // Global flags before the subcommand work: there is one grammar, clap's.
        let cli = Cli::try_parse_from(["mcp-warden", "-v", "run", "--args-file", file.to_str().expect("utf-8")])
            .expect("parses");
        assert_eq!(cli.verbose, 1);
        let Command::Run(args) = cli.command else { panic!("not run") };
        let args = args_from_file(args.args_file.as_deref().expect("args file")).expect("the file parses");
        assert_eq!(args.profile, "strict");
        assert_eq!(args.command, ["/bin/echo", "two words"]);
        assert!(
            Cli::try_parse_from(["mcp-warden", "run", "--args-file", "f", "--", "cmd"]).is_err(),
            "file or command"
        );
    }
}
