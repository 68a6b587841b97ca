//! `mcp-warden learn list|show|accept|forget`: the drafts of learning runs. `show` prints the
//! draft (a profile file, with what it leaves out as comments) on stdout; `accept` writes it and
//! points the client configs' learning entries at it, reporting on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::LearnCommand;
use crate::error::{CommandError, Failure};
use crate::learn::{self, draft::Draft, session};
use crate::wrap::{self, Mode, Outcome};

pub fn command(out: &mut dyn Write, command: LearnCommand) -> Result<i32, Failure> {
    let var = |k: &str| std::env::var(k).ok();
    let state = crate::plan::state_home(var)
        .ok_or_else(|| CommandError::new("neither XDG_STATE_HOME nor HOME is set: no learning sessions to read"))?;
    match command {
        LearnCommand::List => list(out, &state.join("mcp-warden/learn")),
        LearnCommand::Show { name } => show(out, &draft(&state, &name)?, &accepted_path(&name)?),
        LearnCommand::Accept { name, configs } => {
            // drafted from the sessions held here, ended and locked until the profile is written
            let dir = learn::sessions_dir(&state, &checked(&name)?);
            let held = ended(&dir, &name)?;
            let draft = draft_of(&name, &session::read_files(&held), &dir)?;
            accept(&draft, &accepted_path(&name)?, &configs)
        }
        LearnCommand::Forget { name } => forget(&learn::sessions_dir(&state, &checked(&name)?)),
    }
}

fn checked(name: &str) -> Result<String, Failure> {
    if learn::valid_name(name) {
        return Ok(name.to_string());
    }
    Err(CommandError::with_hint(format!("`{name}` is not a learning name"), "`mcp-warden learn list` shows them")
        .into())
}

fn accepted_path(name: &str) -> Result<PathBuf, Failure> {
    let home = learn::config_home(|k| std::env::var(k).ok())
        .ok_or_else(|| CommandError::new("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep profiles"))?;
    Ok(learn::profile_path(&home, &checked(name)?))
}

/// `learn accept` drafts from sessions that have ended: one still running could add, after `learn
/// show`, what the accepted profile would then grant without anyone having seen it.
fn ended(dir: &Path, name: &str) -> Result<Vec<(PathBuf, std::fs::File)>, Failure> {
    let running = match session::ended(dir) {
        Ok(held) => return Ok(held),
        Err(running) => running,
    };
    let why = format!("{} learning session(s) of `{name}` still running ({})", running.len(), running[0].display());
    let hint = format!(
        "stop the server (close the client, or end the run), then `mcp-warden learn show {name}` and accept what it shows"
    );
    Err(CommandError::with_hint(why, hint).into())
}

/// The draft from every session of `name`.
fn draft(state: &Path, name: &str) -> Result<Draft, Failure> {
    let dir = learn::sessions_dir(state, &checked(name)?);
    draft_of(name, &session::read_all(&dir).unwrap_or_default(), &dir)
}

/// The draft from `sessions` of `name` (kept in `dir`), of one server.
fn draft_of(name: &str, sessions: &[(session::Header, Vec<session::Record>)], dir: &Path) -> Result<Draft, Failure> {
    if sessions.is_empty() {
        let hint = format!(
            "run the server with `mcp-warden run --learn {name} --profile BASE -- CMD` (or `mcp-warden wrap --learn`) and use it first"
        );
        return Err(
            CommandError::with_hint(format!("no learning sessions for `{name}` in {}", dir.display()), hint).into()
        );
    }
    one_server(sessions, name)?;
    Ok(Draft::from_sessions(name, sessions))
}

fn same_server(a: &session::Header, b: &session::Header) -> bool {
    (&a.profile, &a.argv, &a.program, &a.cwd) == (&b.profile, &b.argv, &b.program, &b.cwd)
        && (&a.base, &a.argument_paths, &a.env) == (&b.base, &b.argument_paths, &b.env)
}

/// The sessions of a name ran one command, on one profile: sessions of two servers under one name
/// (two client configs' entries of the same name) would draft a profile granting each what the
/// other did.
fn one_server(sessions: &[(session::Header, Vec<session::Record>)], name: &str) -> Result<(), Failure> {
    // one server: one profile, command line, program, working directory, base grants, arguments
    // that are paths and environment passed
    let mut servers: Vec<&session::Header> = Vec::new();
    for (h, _) in sessions {
        if !servers.iter().any(|s| same_server(s, h)) {
            servers.push(h);
        }
    }
    if servers.len() <= 1 {
        return Ok(());
    }
    let list: Vec<String> =
        (servers.iter()).map(|h| format!("`{}` on {} in {}", h.argv.join(" "), h.profile, h.cwd.display())).collect();
    let why = format!("the sessions of `{name}` ran {} different servers: {}", servers.len(), list.join(", "));
    let hint = format!(
        "`mcp-warden learn forget {name}`, then learn each server under a name of its own (`run --learn NAME`)"
    );
    Err(CommandError::with_hint(why, hint).into())
}

fn list(out: &mut dyn Write, root: &Path) -> Result<i32, Failure> {
    let mut names: Vec<(String, usize)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let sessions = std::fs::read_dir(e.path()).ok()?.flatten().count();
            Some((e.file_name().to_string_lossy().into_owned(), sessions))
        })
        .collect();
    names.sort();
    for (name, sessions) in names {
        writeln!(out, "{name}\t{sessions} session(s)").map_err(CommandError::output)?;
    }
    Ok(0)
}

/// The draft, what it leaves out (as comments, so the output is still a profile file), and its
/// difference from the profile accepted before.
fn show(out: &mut dyn Write, draft: &Draft, accepted: &Path) -> Result<i32, Failure> {
    let text = draft.render();
    let mut report = text.clone();
    let left_out = draft.left_out();
    if !left_out.is_empty() {
        report.push_str("\n# Touched while learning and NOT granted:\n");
        report.extend(left_out.iter().map(|l| format!("#   {l}\n")));
    }
    if let Ok(before) = std::fs::read_to_string(accepted) {
        let diff = wrap::diff(accepted, &before, &text);
        let diff = if diff.is_empty() { "(no change)\n".to_string() } else { diff };
        report.push_str(&format!("\n# Against the accepted {}:\n", accepted.display()));
        report.extend(diff.lines().map(|l| format!("# {l}\n")));
    }
    out.write_all(report.as_bytes()).map_err(CommandError::output)?;
    Ok(0)
}

/// Writes the draft (checked by loading it) and points the learning entries at it.
fn accept(draft: &Draft, path: &Path, configs: &[PathBuf]) -> Result<i32, Failure> {
    let text = draft.render();
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CommandError::new(format!("cannot create {}: {e}", dir.display())))?;
    let before = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, &text).map_err(|e| CommandError::new(format!("cannot write {}: {e}", path.display())))?;
    if let Err(e) = crate::profile::load(&path.to_string_lossy()) {
        let _ = std::fs::write(path, &before);
        return Err(CommandError::new(format!("the drafted profile does not load ({e}); nothing was changed")).into());
    }
    eprint!("{}", wrap::diff(path, &before, &text));
    eprintln!("mcp-warden: wrote the profile {}", path.display());
    let configs = if configs.is_empty() { client_configs() } else { configs.to_vec() };
    let mut pointed = 0;
    for config in &configs {
        pointed += point_entries(config, &draft.name, path)?;
    }
    if pointed == 0 {
        eprintln!(
            "mcp-warden: no client config entry learns as `{}`: run it with `--profile {}` in place of `--learn {}`",
            draft.name,
            path.display(),
            draft.name
        );
    }
    Ok(0)
}

/// Points `config`'s entries learning as `name` at `profile`; how many it changed.
fn point_entries(config: &Path, name: &str, profile: &Path) -> Result<usize, Failure> {
    let original = wrap::read(config)?;
    let launcher = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mcp-warden".into());
    let profile = profile.to_string_lossy();
    let edited = wrap::wrap_text(config, &original, &launcher, Mode::Accept { name, profile: &profile })?;
    let accepted: Vec<&wrap::Change> = edited.changes.iter().filter(|c| c.outcome == Outcome::Accepted).collect();
    if accepted.is_empty() {
        return Ok(0);
    }
    wrap::write(config, &original, &edited.text)?;
    for change in &accepted {
        eprintln!("mcp-warden: {}: {}: runs on {profile} now, no longer learning", config.display(), change.server);
    }
    Ok(accepted.len())
}

/// The client configs this user has.
fn client_configs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    wrap::CLIENT_CONFIGS.iter().map(|(rel, _)| home.join(rel)).filter(|p| p.is_file()).collect()
}

fn forget(dir: &Path) -> Result<i32, Failure> {
    std::fs::remove_dir_all(dir).map_err(|e| CommandError::new(format!("cannot remove {}: {e}", dir.display())))?;
    eprintln!("mcp-warden: removed {}", dir.display());
    Ok(0)
}
