//! The layer's own copy of the server's tools: built from every `tools/list` result it sees (the
//! client's or its own), never from a call. Each entry holds what a call and its result are
//! checked against: the compiled input and output schemas, the annotations, what the tool was
//! seen doing, and whether it changed since it was pinned.

use std::collections::HashMap;

use serde_json::Value;

use super::annotations::{Annotations, Guard, Observed};

/// The largest schema compiled; a larger one makes the tool uncallable.
const SCHEMA_MAX: usize = 256 << 10;
/// The largest `structuredContent` validated; a larger one is refused (the layer parses lines of
/// at most 64 MiB, so this only matters if that bound grows).
pub const STRUCTURED_MAX: usize = 64 << 20;

/// A compiled schema, or why it could not be compiled (then every call, or every structured
/// result, is refused: nothing passes unchecked).
pub type Schema = Result<jsonschema::Validator, String>;

#[derive(Debug)]
pub struct Tool {
    pub input: Schema,
    /// `None`: the tool declares no `outputSchema`.
    pub output: Option<Schema>,
    pub annotations: Annotations,
}

#[derive(Debug, Default)]
pub struct Catalog {
    tools: HashMap<String, Tool>,
    /// What each tool was seen trying against its annotations (kept across list changes).
    pub observed: HashMap<String, Observed>,
    /// Changed since pinned: hidden and refused.
    pub changed: std::collections::HashSet<String>,
    /// The strictest of what the client was shown of each tool's annotations: a call is held to
    /// it as well as to the layer's current copy, so that a tool the client saw as read-only is
    /// held read-only even if the server's list changed since, or showed the same name again
    /// without the annotation (on another page of one listing).
    shown: HashMap<String, Guard>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    pub fn insert(&mut self, name: String, definition: &Value) {
        let input = compile(definition.get("inputSchema"), "inputSchema")
            .unwrap_or_else(|| Err("the tool has no inputSchema".into()));
        let output = compile(definition.get("outputSchema"), "outputSchema");
        self.tools.insert(name, Tool { input, output, annotations: Annotations::of(definition) });
    }

    /// Forgets one tool (its definition is ambiguous): a call of it is refused.
    pub fn remove(&mut self, name: &str) {
        self.tools.remove(name);
    }

    /// Forgets the tools (the server said its list changed): the next call makes the layer list
    /// them again.
    pub fn clear(&mut self) {
        self.tools.clear();
    }

    /// The client is shown `tool` with these annotations.
    pub fn show(&mut self, tool: &str, a: Annotations) {
        let (shown, now) = (self.shown.entry(tool.to_string()).or_default(), a.guard());
        shown.read_only |= now.read_only;
        shown.closed_world |= now.closed_world;
    }

    /// What a call of `tool` is held to: the stricter of its current annotations and those
    /// the client was shown.
    pub fn guard(&self, tool: &str) -> Guard {
        let current = self.tools.get(tool).map(|t| t.annotations.guard()).unwrap_or_default();
        let shown = self.shown.get(tool).copied().unwrap_or_default();
        Guard {
            read_only: current.read_only || shown.read_only,
            closed_world: current.closed_world || shown.closed_world,
        }
    }

    pub fn observe(&mut self, tool: &str, seen: Observed) {
        self.observed.entry(tool.to_string()).or_default().merge(seen);
    }
}

/// Compiles a schema of a tool definition: local `$ref`s only (the crate is built without
/// remote retrieval), bounded in size.
fn compile(schema: Option<&Value>, what: &str) -> Option<Schema> {
    let schema = schema?;
    let size = serde_json::to_vec(schema).map_or(usize::MAX, |v| v.len());
    if size > SCHEMA_MAX {
        return Some(Err(format!("its {what} is {size} bytes, more than the {SCHEMA_MAX} mcp-warden compiles")));
    }
    Some(jsonschema::validator_for(schema).map_err(|e| format!("its {what} cannot be compiled: {e}")))
}

/// Checks a tool result's `structuredContent` against the tool's `outputSchema`: `Err(why)`
/// when it breaks it, is missing, or is too large to check.
pub fn check_output(schema: &Schema, result: &Value) -> Result<(), String> {
    let validator = schema.as_ref().map_err(Clone::clone)?;
    let Some(structured) = result.get("structuredContent") else {
        return Err("the tool declares an outputSchema but its result has no structuredContent".into());
    };
    let size = serde_json::to_vec(structured).map_or(usize::MAX, |v| v.len());
    if size > STRUCTURED_MAX {
        return Err(format!("its structuredContent is {size} bytes, more than the {STRUCTURED_MAX} mcp-warden checks"));
    }
    match validator.iter_errors(structured).next() {
        None => Ok(()),
        Some(e) => {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { String::new() } else { format!(" at `{at}`") };
            Err(format!("its structuredContent breaks the tool's outputSchema{at}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structured_output_is_checked_against_the_output_schema() {
        let mut c = Catalog::default();
        let schema = json!({"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]});
        c.insert("shape".into(), &json!({"inputSchema": {"type": "object"}, "outputSchema": schema}));
        let out = c.get("shape").unwrap().output.as_ref().unwrap();
        assert!(check_output(out, &json!({"structuredContent": {"count": 1}})).is_ok());
        let e = check_output(out, &json!({"structuredContent": {"count": "many"}})).unwrap_err();
        assert!(e.contains("/count") && e.contains("integer"), "{e}");
        assert!(check_output(out, &json!({"content": []})).unwrap_err().contains("no structuredContent"));
    }

    #[test]
    fn unusable_schemas_refuse_rather_than_pass() {
        let mut c = Catalog::default();
        let remote = json!({"$ref": "https://example.com/schema.json"});
        c.insert("remote".into(), &json!({"inputSchema": remote, "outputSchema": remote}));
        let t = c.get("remote").unwrap();
        assert!(t.input.as_ref().unwrap_err().contains("cannot be compiled"));
        assert!(check_output(t.output.as_ref().unwrap(), &json!({"structuredContent": {}})).is_err());
        c.insert("none".into(), &json!({}));
        assert!(c.get("none").unwrap().input.is_err());
        let huge = json!({"type": "object", "description": "x".repeat(SCHEMA_MAX)});
        c.insert("huge".into(), &json!({"inputSchema": huge}));
        assert!(c.get("huge").unwrap().input.as_ref().unwrap_err().contains("more than"));
    }

    #[test]
    fn a_call_is_held_to_what_the_client_was_shown_too() {
        let mut c = Catalog::default();
        let shown = json!({"inputSchema": {}, "annotations": {"readOnlyHint": true, "openWorldHint": false}});
        c.insert("peek".into(), &shown);
        c.show("peek", Annotations::of(&shown));
        // the server's list changes behind the client's back: the tool now says it writes
        c.clear();
        c.insert("peek".into(), &json!({"inputSchema": {}, "annotations": {"readOnlyHint": false}}));
        assert_eq!(c.guard("peek"), Guard { read_only: true, closed_world: true });
        assert_eq!(c.guard("other"), Guard::default());
        // the same name shown again without the annotations (a later page of one listing)
        let writes = json!({"inputSchema": {}, "annotations": {"readOnlyHint": false, "openWorldHint": true}});
        c.show("peek", Annotations::of(&writes));
        assert_eq!(c.guard("peek"), Guard { read_only: true, closed_world: true }, "the stricter copy holds");
    }

    #[test]
    fn local_refs_resolve() {
        let mut c = Catalog::default();
        let schema =
            json!({"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}});
        c.insert("r".into(), &json!({"inputSchema": schema.clone(), "outputSchema": schema}));
        let t = c.get("r").unwrap();
        assert!(check_output(t.output.as_ref().unwrap(), &json!({"structuredContent": {"a": 1}})).is_ok());
        assert!(check_output(t.output.as_ref().unwrap(), &json!({"structuredContent": {"a": "x"}})).is_err());
    }
}
