//! `mcp-warden wrap [CONFIG] [--write|--undo]`: put every stdio server of a client config (or of
//! every client config this user has) under mcp-warden. The preview (a diff) is this command's
//! product, on stdout; progress goes to stderr.

use std::io::Write;
use std::path::Path;

use crate::error::{CommandError, Diagnose, Failure};
use crate::wrap::{self, Outcome};

pub fn command(out: &mut dyn Write, config: Option<&Path>, how: How) -> Result<i32, Failure> {
    let undo = how.undo;
    if let Some(config) = config {
        return one(out, config, how);
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let found: Vec<_> = wrap::CLIENT_CONFIGS
        .iter()
        .map(|(rel, client)| (home.join(rel), *client))
        .filter(|(path, _)| path.is_file() && (!undo || wrap::backup_path(path).is_ok_and(|b| b.is_file())))
        .collect();
    for (rel, client) in wrap::CLIENT_CONFIGS {
        let path = home.join(rel);
        let state = if found.iter().any(|(p, _)| *p == path) { "found" } else { "not found" };
        eprintln!("mcp-warden: {client}: {} ({state})", path.display());
    }
    if found.is_empty() {
        let why = "no MCP client config found under this user's home";
        return Err(CommandError::with_hint(why, "give the config file: `mcp-warden wrap PATH`").into());
    }
    for (path, _) in &found {
        one(out, path, how)?;
    }
    Ok(0)
}

/// What `wrap` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct How {
    pub write: bool,
    pub undo: bool,
    /// Unknown servers start in learning mode (`run --learn NAME`).
    pub learn: bool,
}

fn one(out: &mut dyn Write, config: &Path, how: How) -> Result<i32, Failure> {
    let How { write, undo, learn } = how;
    if undo {
        wrap::undo(config)?;
        eprintln!("mcp-warden: restored {} from {}", config.display(), wrap::backup_path(config)?.display());
        return Ok(0);
    }
    let original = wrap::read(config)?;
    // The command written into the config: this binary, by absolute path (clients often start
    // servers with a minimal PATH).
    let launcher = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mcp-warden".into());
    let wrapped = wrap::wrap_text(config, &original, &launcher, wrap::Mode::Wrap { learn })?;
    report_changes(config, &wrapped.changes);
    if wrapped.text == original {
        eprintln!("mcp-warden: nothing to change in {}", config.display());
    } else if write {
        wrap::write(config, &original, &wrapped.text)?;
        eprintln!("mcp-warden: wrote {} (original kept in {})", config.display(), wrap::backup_path(config)?.display());
    } else {
        out.write_all(wrap::diff(config, &original, &wrapped.text).as_bytes()).map_err(CommandError::output)?;
        eprintln!("mcp-warden: this is a preview: add --write to apply it");
    }
    Ok(0)
}

fn report_changes(config: &Path, changes: &[wrap::Change]) {
    for change in changes {
        let server = &change.server;
        match &change.outcome {
            Outcome::Wrapped { profile, warning } => {
                eprintln!("mcp-warden: {server}: wrapped with profile `{profile}`");
                if let Some(w) = warning {
                    tracing::warn!("{server}: {w}");
                }
                for line in plan_report(config, &change.run_args) {
                    eprintln!("mcp-warden: {server}: {line}");
                }
            }
            Outcome::AlreadyWrapped { command, warning } => {
                eprintln!("mcp-warden: {server}: already runs under mcp-warden");
                if let Some(w) = warning {
                    tracing::warn!("{server}: {w}");
                }
                match this_binary(command) {
                    true => plan_report(config, &change.run_args)
                        .iter()
                        .for_each(|line| eprintln!("mcp-warden: {server}: {line}")),
                    false => eprintln!(
                        "mcp-warden: {server}: warning: its command `{command}` is not this mcp-warden ({}): check what it runs",
                        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default()
                    ),
                }
            }
            Outcome::NotStdio => eprintln!("mcp-warden: {server}: not a stdio server, left as it is"),
            Outcome::LeftAlone(why) => eprintln!("mcp-warden: {server}: {why}"),
            Outcome::Accepted => eprintln!("mcp-warden: {server}: runs on its learned profile"),
        }
    }
}

/// Is `command` (a path, or a name looked up in PATH as a client would) this very binary?
fn this_binary(command: &str) -> bool {
    let found = match command.contains('/') {
        true => Some(std::path::PathBuf::from(command)),
        false => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(command)).find(|c| c.is_file()))
            .unwrap_or_default(),
    };
    let real = |p: &Path| p.canonicalize().ok();
    found.as_deref().and_then(real).is_some_and(|f| std::env::current_exe().ok().as_deref().and_then(real) == Some(f))
}

/// What the wrapped entry's `run` would do on this host: what it grants beyond the profile's
/// base, whether it would start, and the one command that fixes it when not.
fn plan_report(config: &Path, run_args: &[String]) -> Vec<String> {
    use clap::Parser;
    let argv = ["mcp-warden"].iter().map(|s| s.to_string()).chain(run_args.iter().cloned());
    let plan = match crate::cli::Cli::try_parse_from(argv).map(|c| c.command) {
        Ok(crate::cli::Command::Run(args)) => super::build_plan(args),
        Ok(_) => return vec!["not a run command".into()],
        Err(e) => return vec![e.to_string().lines().next().unwrap_or_default().to_string()],
    };
    let mut plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            let fix = e.hint().map(|h| format!("; fix: {h}")).unwrap_or_default();
            return vec![format!("would NOT start: {e}{fix}")];
        }
    };
    let mut lines = Vec::new();
    let own: Vec<&std::path::PathBuf> = plan
        .paths()
        .iter()
        .filter(|(_, (_, origin))| matches!(origin, crate::profile::Origin::Runtime(_)))
        .map(|(p, _)| p)
        .collect();
    let outermost: Vec<String> = own
        .iter()
        .filter(|p| !own.iter().any(|o| o != *p && p.starts_with(o)))
        .map(|p| p.display().to_string())
        .collect();
    if !outermost.is_empty() {
        lines.push(format!("grants read+exec on its own installation: {}", outermost.join(", ")));
    }
    let by_name: Vec<&str> = run_args.windows(2).filter(|w| w[0] == "--pass-env").map(|w| w[1].as_str()).collect();
    if !by_name.is_empty() {
        lines.push(format!(
            "passes the entry's {} by name; the rest of the client's environment is dropped",
            by_name.join(" ")
        ));
    }
    if let Some(learn) = plan.learn() {
        lines.push(format!(
            "learning as `{}`: use the server, then `mcp-warden learn show {}` and `learn accept {}`",
            learn.name, learn.name, learn.name
        ));
    }
    let refusal = plan.check_requirements().err();
    lines.extend(plan.warnings().iter().map(|w| format!("warning: {w}")));
    let cwd = std::env::current_dir().unwrap_or_default();
    if let Some(grant) = plan.write_grant_reaching(config, &cwd) {
        lines.push(format!(
            "warning: this configuration is in its write grant {}: the server can rewrite its own entry and start without mcp-warden next time; keep the configuration outside the grant, or narrow the grant",
            grant.display()
        ));
    }
    lines.push(match refusal {
        Some(e) => format!("would NOT start: {e}{}", e.hint().map(|h| format!("; fix: {h}")).unwrap_or_default()),
        None if plan.fails_at_start() => "would start and fail at once (the warning above says what to grant)".into(),
        None => format!("would start; {}", super::score::wrap_line(&plan)),
    });
    lines
}
