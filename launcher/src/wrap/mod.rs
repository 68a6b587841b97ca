//! `mcp-warden wrap CONFIG`: rewrite an MCP client configuration so that every stdio server runs
//! under mcp-warden with the profile that fits it.
//!
//! Formats: JSON with comments and trailing commas ([`jsonc`]: `mcpServers` of Claude Desktop,
//! Cursor and Claude Code, including its per-project `projects.<path>.mcpServers`; VS Code's
//! `servers`; Zed's `context_servers`) and Codex's TOML ([`codex`]: `[mcp_servers.NAME]`). Only
//! the `command` and `args` of the wrapped entries change: comments, formatting, key order, HTTP
//! and SSE entries and `env` are kept byte for byte. The original argv goes after `--` unchanged
//! (never joined into a shell string). The default is a diff; `--write` applies it, keeping the
//! original bytes in mcp-warden's state directory ([`backup_path`]), which `--undo` restores.
//! Wrapping twice changes nothing.

mod codex;
mod jsonc;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Where clients keep their config, under the user's home, and the client's name.
pub const CLIENT_CONFIGS: &[(&str, &str)] = &[
    (".config/Claude/claude_desktop_config.json", "Claude Desktop"),
    (".claude.json", "Claude Code"),
    (".cursor/mcp.json", "Cursor"),
    (".config/Code/User/mcp.json", "VS Code"),
    (".codex/config.toml", "Codex"),
    (".config/zed/settings.json", "Zed"),
];

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not {format}: {why}", path.display())]
    Parse { path: PathBuf, format: &'static str, why: String },
    #[error("{} has no `mcpServers`, `servers`, `context_servers` or `mcp_servers`", path.display())]
    NoServers { path: PathBuf },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no backup {} to restore", path.display())]
    NoBackup { path: PathBuf },
    #[error("no state directory to keep the original config in: neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
}

impl crate::error::Diagnose for WrapError {
    fn hint(&self) -> Option<String> {
        match self {
            WrapError::NoServers { .. } => Some(
                "give a Claude Desktop, Claude Code or Cursor config (`mcpServers`), a VS Code mcp.json (`servers`), Zed's settings.json (`context_servers`) or Codex's config.toml (`mcp_servers`); `mcp-warden wrap` without a file lists the configs found".into(),
            ),
            WrapError::NoBackup { .. } => Some("`--undo` restores what an earlier `wrap --write` saved".into()),
            _ => None,
        }
    }
}

/// What happened to one server entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub server: String,
    pub outcome: Outcome,
    /// The arguments written for a wrapped server (`run --profile P -- CMD ARGS`), or those of an
    /// entry already wrapped; empty otherwise.
    pub run_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Wrapped {
        profile: &'static str,
        warning: Option<String>,
    },
    /// The entry runs a program called `mcp-warden` with `run` (`command`, as the entry names it;
    /// its arguments in [`Change::run_args`]).
    AlreadyWrapped {
        command: String,
        /// Its env keys that steer mcp-warden itself ([`launcher_env`]).
        warning: Option<String>,
    },
    NotStdio,
    /// A server a container engine runs (its daemon, not the client's process, runs it): left as
    /// it is, with why.
    LeftAlone(String),
    /// `learn accept`: the entry's learning run now runs on the accepted profile.
    Accepted,
}

impl Outcome {
    /// Does the entry's text change?
    pub fn changes(&self) -> bool {
        matches!(self, Outcome::Wrapped { .. } | Outcome::Accepted)
    }
}

/// What to do with the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Wrap every stdio server; with `learn`, unknown ones run in learning mode, under their
    /// entry's name.
    Wrap { learn: bool },
    /// Point the entries learning under `name` at the accepted `profile` (a path).
    Accept { name: &'a str, profile: &'a str },
}

/// The result of wrapping a config's text.
#[derive(Debug)]
pub struct Wrapped {
    pub text: String,
    pub changes: Vec<Change>,
}

/// Where `--write` keeps a config's original bytes: `$XDG_STATE_HOME/mcp-warden/wrap-backups/`,
/// named by a digest of the config's canonical path. Never beside the config: whoever ships the
/// config (a cloned project's `.vscode/mcp.json`) could plant a "backup" there for `--undo` to
/// restore, or a symlink for `--write` to follow into a shell start-up file.
pub fn backup_path(config: &Path) -> Result<PathBuf, WrapError> {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let state = crate::plan::state_home(|k| std::env::var(k).ok()).ok_or(WrapError::NoStateDir)?;
    let canonical = config.canonicalize().unwrap_or_else(|_| config.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(state.join("mcp-warden/wrap-backups").join(format!("{name}.bak")))
}

/// The runtime profile for an unknown server: `node` for Node.js and npx, `python` for Python,
/// uv, uvx, pipx and console scripts of a virtualenv. They grant the server's own installation,
/// which bare `strict` does not, so the server can start.
fn runtime_profile(program: &str, command: &str) -> Option<&'static str> {
    match program {
        "node" | "nodejs" | "npx" => Some("node"),
        "uv" | "uvx" | "pipx" => Some("python"),
        p if p.starts_with("python") => Some("python"),
        _ => script_runtime(Path::new(command)),
    }
}

/// The runtime of a script command (a console script in `~/.local/bin`, a venv's `bin/`, a
/// package's `bin`), followed through its symlinks: a virtualenv holds it, or its `#!` line
/// names python or node.
fn script_runtime(command: &Path) -> Option<&'static str> {
    let real = command.canonicalize().ok().filter(|p| p.is_file())?;
    let in_venv = real.parent().and_then(Path::parent).is_some_and(|v| v.join("pyvenv.cfg").is_file());
    let line = crate::plan::shebang_line(&real).unwrap_or_default();
    let shebang = String::from_utf8_lossy(&line);
    match () {
        _ if in_venv || shebang.contains("python") => Some("python"),
        _ if shebang.contains("node") => Some("node"),
        _ => None,
    }
}

/// The profile for a server command, recognised from the package or module it runs.
pub fn recognise(command: &str, args: &[String]) -> (&'static str, Option<String>) {
    const KNOWN: &[(&str, &str)] = &[
        ("server-filesystem", "filesystem"),
        ("server-everything", "everything"),
        ("server-memory", "memory"),
        ("server-sequential-thinking", "sequential-thinking"),
        ("mcp-server-time", "time"),
        ("mcp_server_time", "time"),
        ("mcp-server-git", "git"),
        ("mcp_server_git", "git"),
        ("mcp-server-sqlite", "sqlite"),
        ("mcp_server_sqlite", "sqlite"),
        ("mcp-server-fetch", "fetch"),
        ("mcp_server_fetch", "fetch"),
        ("server-github", "github"),
    ];
    let program = Path::new(command).file_name().and_then(|n| n.to_str()).unwrap_or(command);
    let words: Vec<&str> = std::iter::once(command).chain(args.iter().map(String::as_str)).collect();
    let found = KNOWN.iter().find(|(needle, _)| words.iter().any(|w| w.contains(needle))).map(|(_, p)| *p);
    let resolved = matches!(program, "npx" | "uvx");
    let fetches = matches!(program, "bunx" | "pnpx") || (program == "npm" && args.first().is_some_and(|a| a == "exec"));
    match (found, program) {
        (Some(profile), _) if resolved => (
            profile,
            Some(format!(
                "mcp-warden runs the copy `{program}` installed, never downloading: run the original command once outside mcp-warden to install it (README: install vs run)"
            )),
        ),
        (Some(profile), _) if fetches => (
            profile,
            Some(format!(
                "`{program}` downloads the server at start-up, which needs the network and a writable cache the hardened run does not have: install it once, then point the command at the installed server (README: install vs run)"
            )),
        ),
        (Some(profile), _) => (profile, None),
        (None, _) => match runtime_profile(program, command) {
            Some(runtime) => (
                runtime,
                Some(format!(
                    "unknown server: wrapped with the `{runtime}` runtime profile (strict, plus its own installation read and execute); grant what else it needs with --allow-* or a profile"
                )),
            ),
            None => (
                "strict",
                Some("unknown server: wrapped with `strict`; grant what it needs with --allow-* or a profile".into()),
            ),
        },
    }
}

/// Wraps every stdio server of `text` (the config's contents). `launcher` is the command written
/// into the config.
pub fn wrap_text(path: &Path, text: &str, launcher: &str, mode: Mode<'_>) -> Result<Wrapped, WrapError> {
    let toml = path.extension().is_some_and(|e| e == "toml");
    let result = if toml { codex::wrap(text, launcher, mode) } else { jsonc::wrap(text, launcher, mode) };
    let (out, changes) = result.map_err(|why| match why {
        Unwrappable::NoServers => WrapError::NoServers { path: path.into() },
        Unwrappable::Syntax(why) => {
            WrapError::Parse { path: path.into(), format: if toml { "TOML" } else { "JSON" }, why }
        }
    })?;
    let wrapped = changes.iter().any(|c| c.outcome.changes());
    Ok(Wrapped { text: if wrapped { out } else { text.to_string() }, changes })
}

/// Why a config's text cannot be wrapped.
#[derive(Debug)]
enum Unwrappable {
    NoServers,
    Syntax(String),
}

/// What to do with one server entry (its fields as JSON, whatever the file's format).
struct Decision {
    outcome: Outcome,
    /// For a wrapped entry: the new `args` (`run --profile P -- CMD ARGS`).
    args: Vec<String>,
}

/// Decides for one entry named `server`: its fields as JSON; `vscode` says whether a missing
/// `command` means a remote server.
fn decide(entry: &Map<String, Value>, vscode: bool, server: &str, mode: Mode<'_>) -> Decision {
    let skip = |outcome| Decision { outcome, args: Vec::new() };
    let kind = entry.get("type").and_then(Value::as_str).unwrap_or("stdio");
    if kind != "stdio" || entry.contains_key("url") || (vscode && !entry.contains_key("command")) {
        return skip(Outcome::NotStdio);
    }
    let Some(command) = entry.get("command").and_then(Value::as_str).map(String::from) else {
        return skip(Outcome::NotStdio);
    };
    let args: Vec<String> = entry
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let is_launcher = Path::new(&command).file_name().is_some_and(|n| n == "mcp-warden");
    let wrapped = is_launcher && args.first().is_some_and(|a| a == "run");
    match mode {
        Mode::Accept { name, profile } if wrapped => accept(args, name, profile),
        Mode::Accept { .. } => skip(Outcome::NotStdio),
        Mode::Wrap { .. } if wrapped => {
            let warning = launcher_env(&env_keys(entry));
            Decision { outcome: Outcome::AlreadyWrapped { command, warning }, args }
        }
        Mode::Wrap { learn } => wrap_entry(entry, command, args, learn.then_some(server)),
    }
}

/// The new arguments of an entry to wrap; `learn`: the entry's name, for an unknown server that
/// starts in learning mode.
fn wrap_entry(entry: &Map<String, Value>, command: String, args: Vec<String>, learn: Option<&str>) -> Decision {
    let program = Path::new(&command).file_name().and_then(|n| n.to_str()).unwrap_or(&command);
    if matches!(program, "docker" | "podman") {
        let why = format!(
            "`{program}` hands the server to its daemon, which runs it outside this process tree: mcp-warden would sandbox only the client command; left as it is (harden the container itself)"
        );
        return Decision { outcome: Outcome::LeftAlone(why), args: Vec::new() };
    }
    let (profile, warning) = recognise(&command, &args);
    let mut new_args: Vec<String> = ["run", "--profile", profile].map(String::from).into();
    let unknown = warning.as_deref().is_some_and(|w| w.starts_with("unknown server"));
    if let Some(server) = learn.filter(|_| unknown) {
        // With the MCP layer, each access is attributed to the tool call that made it.
        new_args.extend(["--learn".to_string(), crate::learn::name_for_server(server), "--mcp".to_string()]);
    }
    // The entry's own environment (an API key, say) reaches the server by name.
    let keys = env_keys(entry);
    for key in &keys {
        new_args.extend(["--pass-env".to_string(), (*key).clone()]);
    }
    let warning = match (warning, launcher_env(&keys)) {
        (Some(recognised), Some(env)) => Some(format!("{recognised}; {env}")),
        (recognised, env) => recognised.or(env),
    };
    new_args.push("--".into());
    new_args.push(command);
    new_args.extend(args);
    Decision { outcome: Outcome::Wrapped { profile, warning }, args: new_args }
}

/// The keys of an entry's `env`.
fn env_keys(entry: &Map<String, Value>) -> Vec<&String> {
    entry.get("env").and_then(Value::as_object).into_iter().flat_map(|env| env.keys()).collect()
}

/// The client sets an entry's `env` for the program it starts, which is now mcp-warden itself,
/// outside every layer: keys that steer the loader, the C library, where the command is found,
/// where mcp-warden keeps its state, or which installed environment a runner picks are said.
fn launcher_env(keys: &[&String]) -> Option<String> {
    const PREFIXES: [&str; 6] = ["LD_", "XDG_", "MALLOC_", "MCP_WARDEN", "UV_", "PIPX_"];
    let steering: Vec<&str> = (keys.iter())
        .map(|k| k.as_str())
        .filter(|k| {
            PREFIXES.iter().any(|p| k.starts_with(p)) || matches!(*k, "GCONV_PATH" | "GLIBC_TUNABLES" | "HOME" | "PATH")
        })
        .collect();
    (!steering.is_empty()).then(|| {
        format!(
            "the entry's env sets {}, which the client applies to mcp-warden itself, outside every layer (the loader, its home and state directory): check them",
            steering.join(", ")
        )
    })
}

/// `learn accept`: an entry learning under `name` (`--learn NAME` before `--`) runs on `profile`
/// instead, no longer learning.
fn accept(args: Vec<String>, name: &str, profile: &str) -> Decision {
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (options, command) = args.split_at(split);
    // both spellings clap takes: `--learn NAME` and `--learn=NAME` (and `-pX` for the profile)
    let learning = options.windows(2).any(|w| w[0] == "--learn" && w[1] == name)
        || options.iter().any(|a| a.strip_prefix("--learn=") == Some(name));
    if !learning {
        return Decision { outcome: Outcome::NotStdio, args: Vec::new() };
    }
    let mut new_args = vec!["run".to_string(), "--profile".into(), profile.into()];
    let mut rest = options.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--learn" | "--profile" | "-p" => {
                rest.next();
            }
            a if a.starts_with("--learn=") || a.starts_with("--profile=") || (a.starts_with("-p") && a.len() > 2) => {}
            _ => new_args.push(a.clone()),
        }
    }
    new_args.extend(command.iter().cloned());
    Decision { outcome: Outcome::Accepted, args: new_args }
}

/// A unified diff of `old` and `new`, labelled with `path`.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let label = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&label, &format!("{label} (wrapped)"))
        .to_string()
}

/// Reads a config.
pub fn read(path: &Path) -> Result<String, WrapError> {
    std::fs::read_to_string(path).map_err(|source| WrapError::Read { path: path.into(), source })
}

/// Writes the wrapped text, saving the original bytes first (once: a second wrap keeps the
/// first backup, which is the config as the user wrote it).
pub fn write(path: &Path, original: &str, wrapped: &str) -> Result<(), WrapError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let backup = backup_path(path)?;
    let failed = |source| WrapError::Write { path: backup.clone(), source };
    if let Some(dir) = backup.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
    }
    // The first write's backup is the original: a later `--write` (a server added since) keeps it.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&backup);
    match created {
        Ok(mut file) => file.write_all(original.as_bytes()).map_err(failed)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ours(&backup).map_err(failed)?,
        Err(e) => return Err(failed(e)),
    }
    std::fs::write(path, wrapped).map_err(|source| WrapError::Write { path: path.into(), source })
}

/// A backup already there is one `write` made: a regular file of this user's, not a link.
fn ours(backup: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(backup)?;
    if m.is_file() && m.uid() == rustix::process::geteuid().as_raw() {
        Ok(())
    } else {
        Err(std::io::Error::other("it is there already, and is not a file this user's `wrap --write` made: remove it"))
    }
}

/// Restores the original bytes saved by `write` and removes the backup.
pub fn undo(path: &Path) -> Result<(), WrapError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let backup = backup_path(path)?;
    let no_backup = || WrapError::NoBackup { path: backup.clone() };
    let mut file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&backup).map_err(|_| no_backup())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|_| no_backup())?;
    std::fs::write(path, bytes).map_err(|source| WrapError::Write { path: path.into(), source })?;
    std::fs::remove_file(&backup).map_err(|source| WrapError::Write { path: backup, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRAP: Mode<'static> = Mode::Wrap { learn: false };

    const CLAUDE: &str = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "notes": {
      "command": "node",
      "args": ["/opt/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "/home/me/notes"],
      "env": {"DEBUG": "1"}
    },
    "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=UTC"]},
    "remote": {"url": "https://mcp.example/sse"},
    "mystery": {"command": "/opt/bin/thing", "args": ["a b", "'quoted'"]}
  }
}
"#;

    #[test]
    fn stdio_servers_are_wrapped_and_everything_else_kept() {
        let w = wrap_text(Path::new("c.json"), CLAUDE, "/usr/bin/mcp-warden", WRAP).unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        let notes = &v["mcpServers"]["notes"];
        assert_eq!(notes["command"], "/usr/bin/mcp-warden");
        let head = ["run", "--profile", "filesystem", "--pass-env", "DEBUG", "--"].map(Value::from);
        assert_eq!(notes["args"].as_array().unwrap()[0..6], head, "the entry's env passed by name");
        assert_eq!(notes["args"][6], "node");
        assert_eq!(notes["env"]["DEBUG"], "1");
        assert_eq!(v["mcpServers"]["time"]["args"][2], "time");
        assert_eq!(v["mcpServers"]["remote"], serde_json::json!({"url": "https://mcp.example/sse"}));
        let mystery = &v["mcpServers"]["mystery"]["args"];
        assert_eq!(mystery[2], "strict");
        assert_eq!(
            (mystery[5].as_str(), mystery[6].as_str()),
            (Some("a b"), Some("'quoted'")),
            "argv unchanged, not joined"
        );
        assert_eq!(v["globalShortcut"], "Ctrl+Space");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["globalShortcut", "mcpServers"], "key order kept");
        let outcomes: Vec<_> = w.changes.iter().map(|c| (c.server.as_str(), &c.outcome)).collect();
        assert!(
            matches!(outcomes[1].1, Outcome::Wrapped { profile: "time", warning: Some(_) }),
            "uvx warns: {outcomes:?}"
        );
        assert_eq!(outcomes[2].1, &Outcome::NotStdio);
        // idempotent
        let again = wrap_text(Path::new("c.json"), &w.text, "/usr/bin/mcp-warden", WRAP).unwrap();
        assert_eq!(again.text, w.text);
        assert!(again.changes.iter().all(|c| !matches!(c.outcome, Outcome::Wrapped { .. })));
    }

    #[test]
    fn vscode_servers_keep_their_type_and_http_entries() {
        let vs = r#"{"servers": {"git": {"type": "stdio", "command": "python", "args": ["-m", "mcp_server_git"]}, "web": {"type": "http", "url": "http://x"}}, "inputs": []}"#;
        let w = wrap_text(Path::new("mcp.json"), vs, "mcp-warden", WRAP).unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        assert_eq!(v["servers"]["git"]["type"], "stdio");
        assert_eq!(v["servers"]["git"]["args"][2], "git");
        assert_eq!(v["servers"]["web"], serde_json::json!({"type": "http", "url": "http://x"}));
        assert_eq!(v["inputs"], serde_json::json!([]));
    }

    #[test]
    fn unknown_servers_get_their_runtime_profile() {
        assert_eq!(recognise("npx", &["-y".into(), "@acme/mcp-weather".into()]).0, "node");
        assert_eq!(recognise("/usr/bin/node", &["/srv/x/index.js".into()]).0, "node");
        assert_eq!(recognise("uvx", &["mcp-server-acme".into()]).0, "python");
        assert_eq!(recognise("python3", &["server.py".into()]).0, "python");
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("tools/acme/bin");
        std::fs::create_dir_all(&venv).unwrap();
        std::fs::write(dir.path().join("tools/acme/pyvenv.cfg"), "").unwrap();
        std::fs::write(venv.join("acme-mcp"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(venv.join("acme-mcp"), dir.path().join("acme-mcp")).unwrap();
        let linked = dir.path().join("acme-mcp").display().to_string();
        assert_eq!(recognise(&linked, &[]).0, "python", "a ~/.local/bin link to a tool's venv");
        std::fs::write(dir.path().join("js-mcp"), "#!/usr/bin/env node\n").unwrap();
        assert_eq!(recognise(&dir.path().join("js-mcp").display().to_string(), &[]).0, "node");
        assert_eq!(recognise("/opt/bin/thing", &[]).0, "strict");
    }

    #[test]
    fn container_servers_are_left_alone_with_a_note() {
        let text = r#"{"mcpServers": {"gh": {"command": "docker", "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"]}}}"#;
        let w = wrap_text(Path::new("c.json"), text, "mcp-warden", WRAP).unwrap();
        assert_eq!(w.text, text);
        assert!(matches!(&w.changes[0].outcome, Outcome::LeftAlone(why) if why.contains("daemon")));
    }

    #[test]
    fn learning_wraps_unknown_servers_and_accept_points_them_at_the_profile() {
        let text = r#"{"mcpServers": {
  "weather": {"command": "npx", "args": ["-y", "@acme/weather-mcp"], "env": {"API_KEY": "x"}},
  "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]}
}}"#;
        let w = wrap_text(Path::new("c.json"), text, "mcp-warden", Mode::Wrap { learn: true }).unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        let args: Vec<&str> =
            v["mcpServers"]["weather"]["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(args[..8], ["run", "--profile", "node", "--learn", "weather", "--mcp", "--pass-env", "API_KEY"]);
        let memory = v["mcpServers"]["memory"]["args"].as_array().unwrap();
        assert!(!memory.iter().any(|a| a == "--learn"), "a known server does not learn");
        let accept = Mode::Accept { name: "weather", profile: "/home/me/.config/mcp-warden/profiles/weather.toml" };
        let a = wrap_text(Path::new("c.json"), &w.text, "mcp-warden", accept).unwrap();
        let v: Value = serde_json::from_str(&a.text).unwrap();
        let args: Vec<&str> =
            v["mcpServers"]["weather"]["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(
            args,
            [
                "run",
                "--profile",
                "/home/me/.config/mcp-warden/profiles/weather.toml",
                "--mcp",
                "--pass-env",
                "API_KEY",
                "--",
                "npx",
                "-y",
                "@acme/weather-mcp"
            ]
        );
        assert_eq!(a.changes.iter().filter(|c| c.outcome == Outcome::Accepted).count(), 1);
    }

    #[test]
    fn configs_without_servers_are_refused() {
        let e = wrap_text(Path::new("x.json"), "{\"a\": 1}", "mcp-warden", WRAP).unwrap_err();
        assert!(e.to_string().contains("no `mcpServers`, `servers`"), "{e}");
        let e = wrap_text(Path::new("x.json"), "{\"a\": ", "mcp-warden", WRAP).unwrap_err();
        assert!(e.to_string().contains("is not JSON"), "{e}");
    }

    /// The lines of `new` that differ from `old`.
    fn changed_lines(old: &str, new: &str) -> Vec<String> {
        similar::TextDiff::from_lines(old, new)
            .iter_all_changes()
            .filter(|c| c.tag() != similar::ChangeTag::Equal)
            .map(|c| format!("{}{}", c.tag(), c.value().trim_end()))
            .collect()
    }

    #[test]
    fn vscode_jsonc_keeps_comments_and_changes_only_command_and_args() {
        let text = r#"{
  // servers for this workspace
  "servers": {
    /* the notes server */
    "notes": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "${workspaceFolder}"], // read+write
      "env": { "DEBUG": "1", },
    },
  },
}
"#;
        let w = wrap_text(Path::new("mcp.json"), text, "mcp-warden", WRAP).unwrap();
        let changed = changed_lines(text, &w.text);
        assert_eq!(changed.len(), 4, "two lines out, two in: {changed:#?}");
        assert!(w.text.contains("// servers for this workspace") && w.text.contains("/* the notes server */"));
        assert!(
            w.text.contains(r#""args": ["run", "--profile", "filesystem", "--pass-env", "DEBUG", "--", "npx", "-y""#),
            "{}",
            w.text
        );
        assert!(w.text.contains("// read+write") && w.text.contains(r#""env": { "DEBUG": "1", },"#));
        let again = wrap_text(Path::new("mcp.json"), &w.text, "mcp-warden", WRAP).unwrap();
        assert_eq!(again.text, w.text, "wrapping twice changes nothing");
    }

    #[test]
    fn claude_code_project_servers_are_wrapped_too() {
        let text = r#"{"numStartups": 3, "mcpServers": {}, "projects": {"/home/me/app": {"allowedTools": [], "mcpServers": {"db": {"type": "stdio", "command": "uvx", "args": ["mcp-server-sqlite", "--db-path", "/home/me/app/app.db"], "env": {}}}}}}"#;
        let w = wrap_text(Path::new(".claude.json"), text, "mcp-warden", WRAP).unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        let db = &v["projects"]["/home/me/app"]["mcpServers"]["db"];
        assert_eq!((db["command"].as_str(), db["args"][2].as_str()), (Some("mcp-warden"), Some("sqlite")));
        assert_eq!(w.changes[0].server, "/home/me/app: db");
        assert_eq!(v["numStartups"], 3);
    }

    #[test]
    fn zed_context_servers_in_both_forms() {
        let text = r#"{
  "theme": "One Dark",
  "context_servers": {
    "old": { "command": { "path": "uvx", "args": ["mcp-server-time"], "env": {} }, "settings": {} },
    "new": { "source": "custom", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"] }
  }
}"#;
        let w = wrap_text(Path::new("settings.json"), text, "mcp-warden", WRAP).unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        assert_eq!(v["context_servers"]["old"]["command"]["path"], "mcp-warden");
        assert_eq!(v["context_servers"]["old"]["command"]["args"][2], "time");
        assert_eq!(v["context_servers"]["new"]["command"], "mcp-warden");
        assert_eq!(v["context_servers"]["new"]["args"][2], "memory");
        assert_eq!(v["theme"], "One Dark");
    }

    #[test]
    fn codex_toml_keeps_its_comments_and_other_tables() {
        let text = r#"model = "o4-mini"  # the default model

# servers
[mcp_servers.time]
command = "uvx"
args = ["mcp-server-time"]
env = { TZ = "UTC" }

[mcp_servers.remote]
url = "https://mcp.example/mcp"
"#;
        let w = wrap_text(Path::new("config.toml"), text, "mcp-warden", WRAP).unwrap();
        assert_eq!(changed_lines(text, &w.text).len(), 4, "{}", w.text);
        let doc: toml::Table = toml::from_str(&w.text).unwrap();
        let time = &doc["mcp_servers"]["time"];
        assert_eq!(time["command"].as_str(), Some("mcp-warden"));
        assert_eq!(time["args"][2].as_str(), Some("time"));
        assert!(w.text.contains("# the default model") && w.text.contains("env = { TZ = \"UTC\" }"));
        assert_eq!(w.changes[1].outcome, Outcome::NotStdio);
        assert_eq!(wrap_text(Path::new("config.toml"), &w.text, "mcp-warden", WRAP).unwrap().text, w.text);
    }

    #[test]
    fn env_keys_that_steer_the_launcher_are_said() {
        let config = r#"{"mcpServers": {"x": {"command": "uvx", "args": ["mcp-server-time"], "env": {"LD_PRELOAD": "/tmp/x.so", "API_KEY": "k"}}}}"#;
        let w = wrap_text(Path::new("c.json"), config, "/usr/bin/mcp-warden", WRAP).unwrap();
        match &w.changes[0].outcome {
            Outcome::Wrapped { warning: Some(w), .. } => {
                assert!(w.contains("LD_PRELOAD") && !w.contains("API_KEY"), "{w}")
            }
            other => panic!("{other:?}"),
        }
        let plain = config.replace("LD_PRELOAD", "OTHER");
        let w = wrap_text(Path::new("c.json"), &plain, "/usr/bin/mcp-warden", WRAP).unwrap();
        let said = |c: &Change| matches!(&c.outcome, Outcome::Wrapped { warning: Some(w), .. } if w.contains("outside every layer"));
        assert!(!said(&w.changes[0]), "control: {:?}", w.changes[0]);
        // an entry already wrapped: the client still applies its env to mcp-warden
        let wrapped = r#"{"mcpServers": {"x": {"command": "/usr/bin/mcp-warden", "args": ["run", "--", "srv"], "env": {"GLIBC_TUNABLES": "x", "PATH": "/tmp/evil"}}}}"#;
        let w = wrap_text(Path::new("c.json"), wrapped, "/usr/bin/mcp-warden", WRAP).unwrap();
        match &w.changes[0].outcome {
            Outcome::AlreadyWrapped { warning: Some(w), .. } => assert!(w.contains("GLIBC_TUNABLES, PATH"), "{w}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accept_reads_both_spellings_of_an_option() {
        for options in [
            ["--profile", "python", "--learn", "w"].as_slice(),
            &["--profile=python", "--learn=w"],
            &["-ppython", "--learn=w"],
        ] {
            let args: Vec<String> = ["run"]
                .iter()
                .chain(options)
                .chain(&["--mcp", "--", "srv", "--learn=w"])
                .map(|s| s.to_string())
                .collect();
            let d = accept(args, "w", "/p/w.toml");
            assert_eq!(d.outcome, Outcome::Accepted, "{options:?}");
            assert_eq!(d.args, ["run", "--profile", "/p/w.toml", "--mcp", "--", "srv", "--learn=w"], "{options:?}");
        }
    }
}
