//! `mcp-warden pins list|accept`: the MCP layer's tool pins.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::PinsCommand;
use crate::error::{CommandError, Failure};
use crate::mcp::pins::{PinStore, pins_dir};

pub fn command(out: &mut dyn Write, command: PinsCommand) -> Result<i32, Failure> {
    let state = crate::plan::state_home(|k| std::env::var(k).ok())
        .ok_or_else(|| CommandError::new("neither XDG_STATE_HOME nor HOME is set"))?;
    let dir = pins_dir(&state);
    match command {
        PinsCommand::List => list(out, &dir),
        PinsCommand::Accept { server, tools } => accept(&dir, &server, &tools),
    }
}

fn list(out: &mut dyn Write, dir: &Path) -> Result<i32, Failure> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default();
    files.sort();
    for path in files {
        let store = PinStore::open(path.clone());
        let changed: Vec<&str> =
            store.pins.iter().filter(|(_, p)| p.pending.is_some()).map(|(n, _)| n.as_str()).collect();
        let server = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let status =
            if changed.is_empty() { "no changes".to_string() } else { format!("CHANGED: {}", changed.join(", ")) };
        writeln!(out, "{server:<50} {} tools, {status}", store.pins.len()).map_err(CommandError::output)?;
    }
    Ok(0)
}

fn accept(dir: &Path, server: &str, tools: &[String]) -> Result<i32, Failure> {
    let path = dir.join(format!("{server}.json"));
    if !path.is_file() {
        return Err(CommandError::with_hint(
            format!("no pins for `{server}` in {}", dir.display()),
            "`mcp-warden pins list` names the pinned servers",
        )
        .into());
    }
    let mut store = PinStore::open(path.clone());
    let accepted = store.accept(tools);
    store.save().map_err(|e| CommandError::new(format!("failed to write {}: {e}", path.display())))?;
    if accepted.is_empty() {
        eprintln!("mcp-warden: nothing to accept for `{server}`");
    } else {
        eprintln!("mcp-warden: accepted the new definitions of {}", accepted.join(", "));
    }
    Ok(0)
}
