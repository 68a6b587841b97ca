//! Codex's `config.toml`: `[mcp_servers.NAME]` tables with `command`, `args` and `env`, edited in
//! place (toml_edit keeps comments and formatting); only the wrapped entries' `command` and
//! `args` change.

use serde_json::{Map, Value};
use toml_edit::{Array, DocumentMut, Item, value};

use super::{Change, Mode, Unwrappable, decide};

pub(super) fn wrap(text: &str, launcher: &str, mode: Mode<'_>) -> Result<(String, Vec<Change>), Unwrappable> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| Unwrappable::Syntax(e.to_string()))?;
    let servers = doc.get_mut("mcp_servers").and_then(Item::as_table_like_mut).ok_or(Unwrappable::NoServers)?;
    let mut changes = Vec::new();
    for (name, item) in servers.iter_mut() {
        let Some(entry) = item.as_table_like_mut() else { continue };
        let decision = decide(&fields(entry), false, name.get(), mode);
        if decision.outcome.changes() {
            entry.insert("command", value(launcher));
            let args: Array = decision.args.iter().map(String::as_str).collect();
            match entry.get_mut("args") {
                Some(existing) => *existing = value(args),
                None => {
                    entry.insert("args", value(args));
                }
            }
        }
        changes.push(Change { server: name.to_string(), outcome: decision.outcome, run_args: decision.args });
    }
    Ok((doc.to_string(), changes))
}

/// `command`, `args`, `url` and `type` of an entry as JSON, for [`decide`].
fn fields(entry: &dyn toml_edit::TableLike) -> Map<String, Value> {
    let mut map = Map::new();
    for key in ["command", "url", "type"] {
        if let Some(s) = entry.get(key).and_then(Item::as_str) {
            map.insert(key.into(), Value::from(s));
        }
    }
    if let Some(args) = entry.get("args").and_then(Item::as_array) {
        map.insert("args".into(), args.iter().filter_map(|a| a.as_str()).map(Value::from).collect());
    }
    map
}
