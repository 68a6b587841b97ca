//! `mcp-warden systemd-unit --name N -- RUN ARGS`: resolve the run arguments (a unit that could
//! not start is refused here), then write the argument file and the units.

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Cli, Command, UnitArgs};
use crate::error::{CommandError, Failure};
use crate::systemd::{UnitSpec, unit_files, valid_name};

pub fn command(a: UnitArgs) -> Result<i32, Failure> {
    if !valid_name(&a.name) {
        return Err(CommandError::with_hint(
            format!("`{}` is not a usable server name", a.name),
            "letters, digits, `-`, `_` and `.`",
        )
        .into());
    }
    let run_args = unit_run_args(&a);
    let spec = resolve_spec(&a, run_args)?;
    std::fs::create_dir_all(&a.output).map_err(|e| CommandError::new(format!("{}: {e}", a.output.display())))?;
    for (file, text) in unit_files(&spec) {
        let path = a.output.join(&file);
        std::fs::write(&path, text).map_err(|e| CommandError::new(format!("{}: {e}", path.display())))?;
        eprintln!("mcp-warden: wrote {}", path.display());
    }
    let name = &a.name;
    let unit =
        if a.listen.is_some() { format!("mcp-warden-{name}.service") } else { format!("mcp-warden-{name}.socket") };
    eprintln!(
        "mcp-warden: install: {name}.args into {}, the units into /etc/systemd/system, then `systemctl daemon-reload && systemctl enable --now {unit}`",
        a.config_dir.display(),
    );
    Ok(0)
}

/// The `run` arguments the unit passes: `--user` unless named, `--allow-bind` for `--listen`.
fn unit_run_args(a: &UnitArgs) -> Vec<OsString> {
    let mut run_args = a.run_args.clone();
    if !run_args.iter().take_while(|x| *x != "--").any(|x| x == "--user") {
        run_args.splice(0..0, ["--user".into(), a.server_user.clone().into()]);
    }
    if let Some(port) = a.listen {
        run_args.splice(0..0, ["--allow-bind".into(), port.to_string().into()]);
    }
    run_args
}

fn resolve_spec(a: &UnitArgs, run_args: Vec<OsString>) -> Result<UnitSpec, Failure> {
    let argv = [OsString::from("mcp-warden"), OsString::from("run")].into_iter().chain(run_args.iter().cloned());
    let parsed = Cli::try_parse_from(argv).map_err(|e| CommandError::new(format!("invalid run arguments: {e}")))?;
    let Command::Run(run) = parsed.command else { unreachable!("parsed as `run`") };
    let plan = super::build_plan(run)?;
    let writable = plan.paths().iter().filter(|(_, (acc, _))| acc.write).map(|(p, _)| p.clone()).collect();
    Ok(UnitSpec {
        name: a.name.clone(),
        binary: a.binary.clone(),
        run_args,
        config_dir: a.config_dir.clone(),
        socket_user: a.socket_user.clone(),
        listen: a.listen,
        writable,
        memory_max: plan.limits().get("max-memory"),
        tasks_max: plan.limits().get("max-processes"),
    })
}
