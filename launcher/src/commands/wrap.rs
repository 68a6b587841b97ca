//! `mcp-warden wrap [CONFIG] [--write|--undo]`: put every stdio server of a client config (or of
//! every client config this user has) under mcp-warden. The preview (a diff) is this command's
//! product, on stdout; progress goes to stderr.

use std::io::Write;
use std::path::Path;

use crate::error::{CommandError, Failure};
use crate::wrap::{self, Outcome};

pub fn command(out: &mut dyn Write, config: Option<&Path>, write: bool, undo: bool) -> Result<i32, Failure> {
    if let Some(config) = config {
        return one(out, config, write, undo);
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    let found: Vec<_> = wrap::CLIENT_CONFIGS
        .iter()
        .map(|(rel, client)| (home.join(rel), *client))
        .filter(|(path, _)| path.is_file() && (!undo || wrap::backup_path(path).is_file()))
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
        one(out, path, write, undo)?;
    }
    Ok(0)
}

fn one(out: &mut dyn Write, config: &Path, write: bool, undo: bool) -> Result<i32, Failure> {
    if undo {
        wrap::undo(config)?;
        eprintln!("mcp-warden: restored {} from {}", config.display(), wrap::backup_path(config).display());
        return Ok(0);
    }
    let original = wrap::read(config)?;
    // The command written into the config: this binary, by absolute path (clients often start
    // servers with a minimal PATH).
    let launcher = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mcp-warden".into());
    let wrapped = wrap::wrap_text(config, &original, &launcher)?;
    report_changes(&wrapped.changes);
    if wrapped.text == original {
        eprintln!("mcp-warden: nothing to change in {}", config.display());
    } else if write {
        wrap::write(config, &original, &wrapped.text)?;
        eprintln!("mcp-warden: wrote {} (original kept in {})", config.display(), wrap::backup_path(config).display());
    } else {
        out.write_all(wrap::diff(config, &original, &wrapped.text).as_bytes()).map_err(CommandError::output)?;
        eprintln!("mcp-warden: this is a preview: add --write to apply it");
    }
    Ok(0)
}

fn report_changes(changes: &[wrap::Change]) {
    for change in changes {
        match &change.outcome {
            Outcome::Wrapped { profile, warning } => {
                eprintln!("mcp-warden: {}: wrapped with profile `{profile}`", change.server);
                if let Some(w) = warning {
                    tracing::warn!("{}: {w}", change.server);
                }
                eprintln!("mcp-warden: {}: {}", change.server, super::score::wrap_line(&change.run_args));
            }
            Outcome::AlreadyWrapped => eprintln!("mcp-warden: {}: already runs under mcp-warden", change.server),
            Outcome::NotStdio => eprintln!("mcp-warden: {}: not a stdio server, left as it is", change.server),
        }
    }
}
