//! The `mcp-warden` binary: parse, dispatch, and turn errors into one line, a hint and an exit
//! status (125 for launcher failures, 126/127 for a server that cannot be executed or found).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mcp_warden::cli::{Cli, Command, PinsCommand, ProfilesCommand, RunArgs};
use mcp_warden::host::HostFacts;
use mcp_warden::plan::{Inputs, Plan};
use mcp_warden::profile::{self, EMBEDDED};
use mcp_warden::{report, supervisor};

/// A failure to report: the message, an optional hint, and the exit status.
struct Failure {
    message: String,
    hint: Option<String>,
    code: u8,
}

impl Failure {
    fn new(message: impl ToString, hint: Option<String>, code: i32) -> Self {
        Failure { message: message.to_string(), hint, code: code.clamp(1, 255) as u8 }
    }
}

fn main() -> ExitCode {
    // `run --args-file FILE`: the arguments come from FILE, one per line (systemd units).
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 4 && argv[1] == "run" && argv[2] == "--args-file" {
        match mcp_warden::service::read_args_file(std::path::Path::new(&argv[3])) {
            Ok(args) => argv.splice(2.., args).for_each(drop),
            Err(e) => {
                eprintln!("mcp-warden: cannot read the argument file {}: {e}", argv[3].to_string_lossy());
                return ExitCode::from(125);
            }
        }
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap's --help/--version go to stdout and succeed; usage errors are launcher failures.
            return if e.use_stderr() { ExitCode::from(125) } else { ExitCode::SUCCESS };
        }
    };
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(f) => {
            eprintln!("mcp-warden: {}", f.message);
            if let Some(hint) = f.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCP_WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).without_time().init();
}

fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let mut stdout = std::io::stdout().lock();
    let out_err = |e: std::io::Error| Failure::new(format!("failed to write output: {e}"), None, 125);
    match cli.command {
        Command::Run(args) => {
            let mut plan = build_plan(args)?;
            plan.check_requirements().map_err(|e| Failure::new(&e, e.hint(), e.exit_code()))?;
            for w in &plan.warnings {
                eprintln!("mcp-warden: warning: {w}");
            }
            supervisor::run(&plan).map_err(|e| Failure::new(&e, e.hint(), e.exit_code()))
        }
        Command::Explain(args) => {
            let mut plan = build_plan(args)?;
            let refusal = plan.check_requirements().err().map(|e| e.to_string());
            report::explain(&mut stdout, &plan, refusal.as_deref()).map_err(out_err)?;
            Ok(if refusal.is_some() { 125 } else { 0 })
        }
        Command::Check { profiles } => {
            for name in &profiles {
                let p = profile::load(name).map_err(|e| Failure::new(&e, e.hint(), 125))?;
                writeln!(stdout, "{name}: ok ({})", p.chain.join(" <- ")).map_err(out_err)?;
            }
            Ok(0)
        }
        Command::Wrap { config, write, undo } => wrap(&mut stdout, &config, write, undo),
        Command::Doctor => {
            report::doctor(&mut stdout, &HostFacts::probe(), &mcp_warden::host::probe_bpf_program_types())
                .map_err(out_err)?;
            Ok(0)
        }
        Command::Profiles { command: ProfilesCommand::List } => {
            for (name, _) in EMBEDDED {
                let p = profile::load(name).map_err(|e| Failure::new(&e, e.hint(), 125))?;
                writeln!(stdout, "{name:<20} {}", p.description.unwrap_or_default()).map_err(out_err)?;
            }
            Ok(0)
        }
        Command::Pins { command } => pins(&mut stdout, command),
        Command::Connect { target } => {
            let socket = mcp_warden::service::socket_path(&target);
            mcp_warden::service::connect(&socket).map(|()| 0).map_err(|e| {
                Failure::new(
                    format!("cannot connect to {}: {e}", socket.display()),
                    Some(format!("is its socket unit active? `systemctl status mcp-warden-{target}.socket`")),
                    125,
                )
            })
        }
        Command::SystemdUnit(args) => systemd_unit(args),
        Command::Generate { what } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            match what.as_str() {
                "man" => clap_mangen::Man::new(cmd).render(&mut stdout).map_err(out_err)?,
                shell => {
                    let shell: clap_complete::Shell = shell.parse().map_err(|e: String| Failure::new(e, None, 125))?;
                    clap_complete::generate(shell, &mut cmd, "mcp-warden", &mut stdout);
                }
            }
            Ok(0)
        }
        Command::Profiles { command: ProfilesCommand::Schema } => {
            stdout.write_all(profile::json_schema().as_bytes()).map_err(out_err)?;
            Ok(0)
        }
        Command::Profiles { command: ProfilesCommand::Show { name } } => {
            let text = profile::embedded(&name).ok_or_else(|| {
                let e = profile::ProfileError::UnknownName { name: name.clone(), suggestion: None };
                Failure::new(&e, e.hint(), 125)
            })?;
            stdout.write_all(text.as_bytes()).map_err(out_err)?;
            Ok(0)
        }
    }
}

fn systemd_unit(a: mcp_warden::cli::UnitArgs) -> Result<i32, Failure> {
    use mcp_warden::service::{UnitSpec, unit_files, valid_name};
    if !valid_name(&a.name) {
        return Err(Failure::new(
            format!("`{}` is not a usable server name", a.name),
            Some("letters, digits, `-`, `_` and `.`".into()),
            125,
        ));
    }
    let mut run_args = a.run_args.clone();
    if !run_args.iter().take_while(|x| *x != "--").any(|x| x == "--user") {
        run_args.splice(0..0, ["--user".into(), a.server_user.clone().into()]);
    }
    if let Some(port) = a.listen {
        run_args.splice(0..0, ["--allow-bind".into(), port.to_string().into()]);
    }
    // Parse and resolve the arguments now: a unit that cannot start is an error here.
    let mut argv: Vec<std::ffi::OsString> = vec!["mcp-warden".into(), "run".into()];
    argv.extend(run_args.iter().cloned());
    let parsed =
        Cli::try_parse_from(&argv).map_err(|e| Failure::new(format!("invalid run arguments: {e}"), None, 125))?;
    let Command::Run(run) = parsed.command else { unreachable!("parsed as `run`") };
    let plan = build_plan(run)?;
    let writable = plan.paths.iter().filter(|(_, (acc, _))| acc.write).map(|(p, _)| p.clone()).collect();
    let spec = UnitSpec {
        name: a.name.clone(),
        binary: a.binary.clone(),
        run_args,
        config_dir: a.config_dir.clone(),
        socket_user: a.socket_user.clone(),
        listen: a.listen,
        writable,
        memory_max: plan.limits.memory.map(|m| m.0),
        tasks_max: plan.limits.processes,
    };
    std::fs::create_dir_all(&a.output).map_err(|e| Failure::new(format!("{}: {e}", a.output.display()), None, 125))?;
    for (file, text) in unit_files(&spec) {
        let path = a.output.join(&file);
        std::fs::write(&path, text).map_err(|e| Failure::new(format!("{}: {e}", path.display()), None, 125))?;
        eprintln!("mcp-warden: wrote {}", path.display());
    }
    let name = &a.name;
    eprintln!(
        "mcp-warden: install: {name}.args into {}, the units into /etc/systemd/system, then `systemctl daemon-reload && systemctl enable --now {}`",
        a.config_dir.display(),
        if a.listen.is_some() { format!("mcp-warden-{name}.service") } else { format!("mcp-warden-{name}.socket") }
    );
    Ok(0)
}

fn pins(out: &mut dyn Write, command: PinsCommand) -> Result<i32, Failure> {
    use mcp_warden::mcp::pins::{PinStore, pins_dir};
    let state = mcp_warden::plan::state_home(|k| std::env::var(k).ok())
        .ok_or_else(|| Failure::new("neither XDG_STATE_HOME nor HOME is set", None, 125))?;
    let dir = pins_dir(&state);
    let out_err = |e: std::io::Error| Failure::new(e, None, 125);
    match command {
        PinsCommand::List => {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
                .unwrap_or_default();
            names.sort();
            for path in names {
                let store = PinStore::open(path.clone());
                let changed: Vec<&String> =
                    store.pins.iter().filter(|(_, p)| p.pending.is_some()).map(|(n, _)| n).collect();
                let server = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                let status = if changed.is_empty() {
                    "no changes".to_string()
                } else {
                    format!("CHANGED: {}", changed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                };
                writeln!(out, "{server:<50} {} tools, {status}", store.pins.len()).map_err(out_err)?;
            }
            Ok(0)
        }
        PinsCommand::Accept { server, tools } => {
            let path = dir.join(format!("{server}.json"));
            if !path.is_file() {
                return Err(Failure::new(
                    format!("no pins for `{server}` in {}", dir.display()),
                    Some("`mcp-warden pins list` names the pinned servers".into()),
                    125,
                ));
            }
            let mut store = PinStore::open(path);
            let accepted = store.accept(&tools);
            store.save().map_err(out_err)?;
            if accepted.is_empty() {
                eprintln!("mcp-warden: nothing to accept for `{server}`");
            } else {
                eprintln!("mcp-warden: accepted the new definitions of {}", accepted.join(", "));
            }
            Ok(0)
        }
    }
}

fn wrap(out: &mut dyn Write, config: &std::path::Path, write: bool, undo: bool) -> Result<i32, Failure> {
    use mcp_warden::wrap::{self, Outcome};
    let fail = |e: wrap::WrapError| Failure::new(&e, e.hint(), 125);
    let out_err = |e: std::io::Error| Failure::new(format!("failed to write output: {e}"), None, 125);
    if undo {
        wrap::undo(config).map_err(fail)?;
        eprintln!("mcp-warden: restored {} from {}", config.display(), wrap::backup_path(config).display());
        return Ok(0);
    }
    let original = wrap::read(config).map_err(fail)?;
    // The command written into the config: this binary, by absolute path (clients often start
    // servers with a minimal PATH).
    let launcher = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mcp-warden".into());
    let wrapped = wrap::wrap_text(config, &original, &launcher).map_err(fail)?;
    for change in &wrapped.changes {
        match &change.outcome {
            Outcome::Wrapped { profile, warning } => {
                eprintln!("mcp-warden: {}: wrapped with profile `{profile}`", change.server);
                if let Some(w) = warning {
                    eprintln!("mcp-warden: warning: {}: {w}", change.server);
                }
            }
            Outcome::AlreadyWrapped => eprintln!("mcp-warden: {}: already runs under mcp-warden", change.server),
            Outcome::NotStdio => eprintln!("mcp-warden: {}: not a stdio server, left as it is", change.server),
        }
    }
    if wrapped.text == original {
        eprintln!("mcp-warden: nothing to change in {}", config.display());
        return Ok(0);
    }
    if write {
        wrap::write(config, &original, &wrapped.text).map_err(fail)?;
        eprintln!("mcp-warden: wrote {} (original kept in {})", config.display(), wrap::backup_path(config).display());
    } else {
        out.write_all(wrap::diff(config, &original, &wrapped.text).as_bytes()).map_err(out_err)?;
        eprintln!("mcp-warden: this is a preview: add --write to apply it");
    }
    Ok(0)
}

fn build_plan(args: RunArgs) -> Result<Plan, Failure> {
    let profile = profile::load(&args.profile).map_err(|e| Failure::new(&e, e.hint(), 125))?;
    let host = HostFacts::probe();
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::new(format!("failed to read the working directory: {e}"), None, 125))?;
    let inputs = Inputs { env: &env, cwd };
    Plan::resolve(&profile, &args.grants.into_grants(), &args.command, &host, &inputs)
        .map_err(|e| Failure::new(&e, e.hint(), e.exit_code()))
}
