//! Client configs in JSON with comments and trailing commas, edited in place: only the `command`
//! and `args` of the wrapped entries change, the rest of the text (comments, formatting, key
//! order) is kept byte for byte.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use serde_json::Value;

use super::{Change, Mode, Unwrappable, decide};

/// Wraps the servers of every server object the config holds; the new text and each entry's
/// change.
pub(super) fn wrap(text: &str, launcher: &str, mode: Mode<'_>) -> Result<(String, Vec<Change>), Unwrappable> {
    let root = CstRootNode::parse(text, &ParseOptions::default()).map_err(|e| Unwrappable::Syntax(e.to_string()))?;
    let top = root.object_value().ok_or(Unwrappable::NoServers)?;
    let groups = server_objects(&top);
    if groups.is_empty() {
        return Err(Unwrappable::NoServers);
    }
    let mut changes = Vec::new();
    for (prefix, servers, vscode) in groups {
        for prop in servers.properties() {
            let name = prop.name().and_then(|n| n.decoded_value().ok()).unwrap_or_default();
            let Some(entry) = prop.object_value() else { continue };
            let server = format!("{prefix}{name}");
            let change = edit_entry(&entry, vscode, launcher, &server, mode);
            changes.push(Change { server, ..change });
        }
    }
    Ok((root.to_string(), changes))
}

/// The objects of servers: `mcpServers`, VS Code's `servers`, Zed's `context_servers`, and Claude
/// Code's per-project `projects.<path>.mcpServers`; with the prefix that names a project's servers
/// in the report, and whether the object is VS Code's.
fn server_objects(top: &CstObject) -> Vec<(String, CstObject, bool)> {
    let mut out = Vec::new();
    for (key, vscode) in [("mcpServers", false), ("servers", true), ("context_servers", false)] {
        if let Some(o) = top.object_value(key) {
            out.push((String::new(), o, vscode));
        }
    }
    if let Some(projects) = top.object_value("projects") {
        for project in projects.properties() {
            let path = project.name().and_then(|n| n.decoded_value().ok()).unwrap_or_default();
            if let Some(servers) = project.object_value().and_then(|p| p.object_value("mcpServers")) {
                out.push((format!("{path}: "), servers, false));
            }
        }
    }
    out
}

/// One entry. Zed's older form keeps the command in an object (`"command": {"path", "args"}`):
/// that object is the one edited.
fn edit_entry(entry: &CstObject, vscode: bool, launcher: &str, server: &str, mode: Mode<'_>) -> Change {
    let zed = entry.object_value("command").filter(|c| c.get("path").is_some());
    let target = match zed {
        Some(zed) => Target { obj: zed, command_key: "path" },
        None => Target { obj: entry.clone(), command_key: "command" },
    };
    let fields = fields(&target);
    let decision = decide(&fields, vscode, server, mode);
    if decision.outcome.changes() {
        target.set(launcher, &decision.args);
    }
    Change { server: String::new(), outcome: decision.outcome, run_args: decision.args }
}

/// The object holding the command, and the command's key there.
struct Target {
    obj: CstObject,
    command_key: &'static str,
}

impl Target {
    fn set(&self, launcher: &str, args: &[String]) {
        let args = CstInputValue::Array(args.iter().map(|a| CstInputValue::from(a.as_str())).collect());
        if let Some(command) = self.obj.get(self.command_key) {
            command.set_value(CstInputValue::from(launcher));
        }
        match self.obj.get("args") {
            Some(existing) => existing.set_value(args),
            None => {
                // After the command, where a reader looks for them.
                let at = self.obj.properties().iter().position(|p| name_of(p) == self.command_key).map_or(0, |i| i + 1);
                self.obj.insert(at, "args", args);
            }
        }
    }
}

/// The entry's fields as JSON, with the command under `command` whatever its key.
fn fields(target: &Target) -> serde_json::Map<String, Value> {
    let mut map = match CstObject::to_serde_value(&target.obj) {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    if target.command_key != "command"
        && let Some(path) = map.remove(target.command_key)
    {
        map.insert("command".into(), path);
    }
    map
}

fn name_of(prop: &jsonc_parser::cst::CstObjectProp) -> String {
    prop.name().and_then(|n| n.decoded_value().ok()).unwrap_or_default()
}
