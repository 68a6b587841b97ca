//! `mcp-warden wrap CONFIG`: rewrite an MCP client configuration so that every stdio server runs
//! under mcp-warden with the profile that fits it.
//!
//! Formats: `mcpServers` (Claude Desktop, Claude Code, Cursor) and VS Code's `servers`. HTTP and
//! SSE entries, every other key and the key order are kept; the original argv goes after `--`
//! unchanged (never joined into a shell string); `env` is kept. The default is a diff; `--write`
//! applies it, keeping the original bytes in `CONFIG.mcp-warden.bak`, which `--undo` restores.
//! Wrapping twice changes nothing.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("failed to read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not JSON: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{} has no `mcpServers` or `servers` object", path.display())]
    NoServers { path: PathBuf },
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no backup {} to restore", path.display())]
    NoBackup { path: PathBuf },
}

impl crate::error::Diagnose for WrapError {
    fn hint(&self) -> Option<String> {
        match self {
            WrapError::NoServers { .. } => Some(
                "give a Claude Desktop/Code or Cursor config (`mcpServers`) or a VS Code mcp.json (`servers`)".into(),
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
    /// The arguments written for a wrapped server (`run --profile P -- CMD ARGS`); empty otherwise.
    pub run_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Wrapped { profile: &'static str, warning: Option<String> },
    AlreadyWrapped,
    NotStdio,
}

/// The result of wrapping a config's text.
#[derive(Debug)]
pub struct Wrapped {
    pub text: String,
    pub changes: Vec<Change>,
}

pub fn backup_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_os_string();
    name.push(".mcp-warden.bak");
    PathBuf::from(name)
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
        (_, "docker" | "podman") => (
            "strict",
            Some("a container server needs the container engine's socket, which `strict` denies; run it without the container or write a profile".into()),
        ),
        (Some(profile), _) if resolved => (
            profile,
            Some(format!("mcp-warden runs the copy `{program}` installed, never downloading: run the original command once outside mcp-warden to install it (README: install vs run)")),
        ),
        (Some(profile), _) if fetches => (
            profile,
            Some(format!("`{program}` downloads the server at start-up, which needs the network and a writable cache the hardened run does not have: install it once, then point the command at the installed server (README: install vs run)")),
        ),
        (Some(profile), _) => (profile, None),
        (None, _) => ("strict", Some("unknown server: wrapped with `strict`; grant what it needs with --allow-* or a profile".into())),
    }
}

/// Wraps every stdio server of `text` (the config's contents). `launcher` is the command written
/// into the config.
pub fn wrap_text(path: &Path, text: &str, launcher: &str) -> Result<Wrapped, WrapError> {
    let mut doc: Value = serde_json::from_str(text).map_err(|source| WrapError::Parse { path: path.into(), source })?;
    let (servers, vscode) = match doc.as_object_mut() {
        Some(o) if o.get("mcpServers").is_some_and(Value::is_object) => (o.get_mut("mcpServers"), false),
        Some(o) if o.get("servers").is_some_and(Value::is_object) => (o.get_mut("servers"), true),
        _ => return Err(WrapError::NoServers { path: path.into() }),
    };
    let servers = servers.and_then(Value::as_object_mut).ok_or(WrapError::NoServers { path: path.into() })?;
    let mut changes = Vec::new();
    for (name, entry) in servers.iter_mut() {
        let (outcome, run_args) = wrap_entry(entry, vscode, launcher);
        changes.push(Change { server: name.clone(), outcome, run_args });
    }
    if !changes.iter().any(|c| matches!(c.outcome, Outcome::Wrapped { .. })) {
        return Ok(Wrapped { text: text.to_string(), changes });
    }
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    Ok(Wrapped { text: out, changes })
}

/// The entry's outcome, and the `run` arguments written when it was wrapped.
fn wrap_entry(entry: &mut Value, vscode: bool, launcher: &str) -> (Outcome, Vec<String>) {
    let Some(obj) = entry.as_object_mut() else { return (Outcome::NotStdio, Vec::new()) };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("stdio");
    if kind != "stdio" || obj.contains_key("url") || (vscode && !obj.contains_key("command")) {
        return (Outcome::NotStdio, Vec::new());
    }
    let Some(command) = obj.get("command").and_then(Value::as_str).map(String::from) else {
        return (Outcome::NotStdio, Vec::new());
    };
    let args: Vec<String> = obj
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let is_launcher = Path::new(&command).file_name().is_some_and(|n| n == "mcp-warden");
    if is_launcher && args.first().is_some_and(|a| a == "run") {
        return (Outcome::AlreadyWrapped, Vec::new());
    }
    let (profile, warning) = recognise(&command, &args);
    let mut new_args = vec![Value::from("run"), Value::from("--profile"), Value::from(profile), Value::from("--")];
    new_args.push(Value::from(command));
    new_args.extend(args.into_iter().map(Value::from));
    let mut rebuilt = Map::new();
    // Keep the entry's key order: `command` and `args` replaced in place, `args` added after
    // `command` when the entry had none.
    let had_args = obj.contains_key("args");
    for (k, v) in std::mem::take(obj) {
        match k.as_str() {
            "command" => {
                rebuilt.insert(k, Value::from(launcher));
                if !had_args {
                    rebuilt.insert("args".into(), Value::Array(new_args.clone()));
                }
            }
            "args" => {
                rebuilt.insert(k, Value::Array(new_args.clone()));
            }
            _ => {
                rebuilt.insert(k, v);
            }
        }
    }
    *obj = rebuilt;
    let run_args = new_args.iter().filter_map(|a| a.as_str().map(String::from)).collect();
    (Outcome::Wrapped { profile, warning }, run_args)
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
    let backup = backup_path(path);
    if !backup.exists() {
        std::fs::write(&backup, original).map_err(|source| WrapError::Write { path: backup.clone(), source })?;
    }
    std::fs::write(path, wrapped).map_err(|source| WrapError::Write { path: path.into(), source })
}

/// Restores the original bytes saved by `write` and removes the backup.
pub fn undo(path: &Path) -> Result<(), WrapError> {
    let backup = backup_path(path);
    let bytes = std::fs::read(&backup).map_err(|_| WrapError::NoBackup { path: backup.clone() })?;
    std::fs::write(path, bytes).map_err(|source| WrapError::Write { path: path.into(), source })?;
    std::fs::remove_file(&backup).map_err(|source| WrapError::Write { path: backup, source })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let w = wrap_text(Path::new("c.json"), CLAUDE, "/usr/bin/mcp-warden").unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        let notes = &v["mcpServers"]["notes"];
        assert_eq!(notes["command"], "/usr/bin/mcp-warden");
        assert_eq!(notes["args"].as_array().unwrap()[0..4], ["run", "--profile", "filesystem", "--"].map(Value::from));
        assert_eq!(notes["args"][4], "node");
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
        let again = wrap_text(Path::new("c.json"), &w.text, "/usr/bin/mcp-warden").unwrap();
        assert_eq!(again.text, w.text);
        assert!(again.changes.iter().all(|c| !matches!(c.outcome, Outcome::Wrapped { .. })));
    }

    #[test]
    fn vscode_servers_keep_their_type_and_http_entries() {
        let vs = r#"{"servers": {"git": {"type": "stdio", "command": "python", "args": ["-m", "mcp_server_git"]}, "web": {"type": "http", "url": "http://x"}}, "inputs": []}"#;
        let w = wrap_text(Path::new("mcp.json"), vs, "mcp-warden").unwrap();
        let v: Value = serde_json::from_str(&w.text).unwrap();
        assert_eq!(v["servers"]["git"]["type"], "stdio");
        assert_eq!(v["servers"]["git"]["args"][2], "git");
        assert_eq!(v["servers"]["web"], serde_json::json!({"type": "http", "url": "http://x"}));
        assert_eq!(v["inputs"], serde_json::json!([]));
    }

    #[test]
    fn configs_without_servers_are_refused() {
        let e = wrap_text(Path::new("x.json"), "{\"a\": 1}", "mcp-warden").unwrap_err();
        assert!(e.to_string().contains("no `mcpServers` or `servers`"), "{e}");
    }
}
