//! Tool annotations: what a tool says of itself (`readOnlyHint`, `destructiveHint`,
//! `openWorldHint`), read from the layer's own copy of `tools/list` with the spec's defaults; the
//! profile's policy on them; and the annotations the client is shown, rewritten to what was
//! enforced or observed.

use serde_json::{Value, json};

use crate::profile::Permit;

/// The `_meta` key under which each listed tool says what mcp-warden made of its annotations.
pub const META_KEY: &str = "dev.mcp-warden/annotations";

/// A tool's annotations with the spec's defaults applied: a tool that says nothing may write,
/// destroy and reach the open world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub open_world: bool,
    /// The tool carried an `annotations` object at all.
    pub declared: bool,
}

impl Annotations {
    /// From a tool definition of `tools/list`. A hint that is not a boolean counts as missing.
    pub fn of(tool: &Value) -> Annotations {
        let a = tool.get("annotations").filter(|a| a.is_object());
        let hint = |name: &str, default: bool| a.and_then(|a| a.get(name)).and_then(Value::as_bool).unwrap_or(default);
        let read_only = hint("readOnlyHint", false);
        Annotations {
            read_only,
            // meaningful only when the tool may write
            destructive: !read_only && hint("destructiveHint", true),
            open_world: hint("openWorldHint", true),
            declared: a.is_some(),
        }
    }

    /// What a call of this tool is held to while it is in flight.
    pub fn guard(self) -> Guard {
        Guard { read_only: self.read_only, closed_world: !self.open_world }
    }
}

/// What the kernel side holds an in-flight call to: no writes, no new connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    pub read_only: bool,
    pub closed_world: bool,
}

/// What a tool was seen trying against its annotations (during one of its calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub wrote: bool,
    pub connected: bool,
}

impl Observed {
    pub fn any(self) -> bool {
        self.wrote || self.connected
    }

    pub fn merge(&mut self, other: Observed) {
        self.wrote |= other.wrote;
        self.connected |= other.connected;
    }
}

/// The profile's `destructive`, `open-world` and `require-annotations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnotationPolicy {
    pub destructive: Permit,
    pub open_world: Permit,
    pub require: bool,
    /// Whether in-flight calls are held to their annotations by the kernel side.
    pub enforce: bool,
}

impl Default for AnnotationPolicy {
    fn default() -> Self {
        AnnotationPolicy { destructive: Permit::Allow, open_world: Permit::Allow, require: false, enforce: true }
    }
}

impl AnnotationPolicy {
    /// `Err(why)` when the tool is hidden and refused for what its annotations say (or do not).
    pub fn permits(&self, tool: &str, a: Annotations) -> Result<(), String> {
        if self.require && !a.declared {
            return Err(format!("tool `{tool}` has no annotations and the profile requires them"));
        }
        if self.destructive == Permit::Deny && a.destructive {
            return Err(format!(
                "tool `{tool}` may be destructive (destructiveHint, true when not declared) and the profile denies destructive tools"
            ));
        }
        if self.open_world == Permit::Deny && a.open_world {
            return Err(format!(
                "tool `{tool}` may reach the open world (openWorldHint, true when not declared) and the profile denies open-world tools"
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let permit = |p: Permit| if p == Permit::Deny { "denied" } else { "allowed" };
        format!(
            "destructive tools {}, open-world tools {}, annotations {}, {}",
            permit(self.destructive),
            permit(self.open_world),
            if self.require { "required" } else { "optional" },
            if self.enforce { "enforced during calls" } else { "not enforced" }
        )
    }
}

/// Rewrites a listed tool's annotations to the truth as far as mcp-warden knows it: a hint the
/// tool was seen breaking is set to what it did, and `_meta` says of each hint whether it is
/// `enforced` (held by the kernel side during calls), `violated` or only `declared`.
pub fn rewrite(tool: &mut Value, enforced: bool, observed: Observed) {
    let a = Annotations::of(tool);
    let Some(map) = tool.as_object_mut() else { return };
    let status = |claimed: bool, broken: bool| match (claimed, broken, enforced) {
        (_, true, _) => "violated",
        (true, false, true) => "enforced",
        _ => "declared",
    };
    let meta = json!({
        "readOnlyHint": status(a.read_only, observed.wrote),
        "openWorldHint": status(!a.open_world, observed.connected),
    });
    if observed.any() {
        let annotations = map.entry("annotations").or_insert_with(|| json!({}));
        if let Some(ann) = annotations.as_object_mut() {
            if observed.wrote {
                ann.insert("readOnlyHint".into(), json!(false));
                ann.insert("destructiveHint".into(), json!(true));
            }
            if observed.connected {
                ann.insert("openWorldHint".into(), json!(true));
            }
        }
    }
    let tool_meta = map.entry("_meta").or_insert_with(|| json!({}));
    if let Some(m) = tool_meta.as_object_mut() {
        m.insert(META_KEY.into(), meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_hints_take_the_spec_defaults() {
        let bare = Annotations::of(&json!({"name": "t"}));
        assert_eq!(bare, Annotations { read_only: false, destructive: true, open_world: true, declared: false });
        let ro = Annotations::of(&json!({"annotations": {"readOnlyHint": true, "destructiveHint": true}}));
        assert!(ro.read_only && !ro.destructive && ro.open_world && ro.declared, "{ro:?}");
        let odd = Annotations::of(&json!({"annotations": {"readOnlyHint": "yes", "openWorldHint": false}}));
        assert!(!odd.read_only && odd.destructive && !odd.open_world, "{odd:?}");
    }

    #[test]
    fn the_policy_refuses_by_what_the_annotations_say() {
        let deny =
            AnnotationPolicy { destructive: Permit::Deny, open_world: Permit::Deny, require: true, enforce: true };
        let bare = Annotations::of(&json!({}));
        assert!(deny.permits("t", bare).unwrap_err().contains("no annotations"));
        let writer = Annotations::of(&json!({"annotations": {"openWorldHint": false}}));
        assert!(deny.permits("t", writer).unwrap_err().contains("destructive"));
        let open = Annotations::of(&json!({"annotations": {"readOnlyHint": true}}));
        assert!(deny.permits("t", open).unwrap_err().contains("open world"));
        let fine = Annotations::of(&json!({"annotations": {"readOnlyHint": true, "openWorldHint": false}}));
        assert!(deny.permits("t", fine).is_ok());
        assert!(AnnotationPolicy::default().permits("t", bare).is_ok());
    }

    #[test]
    fn a_broken_hint_is_rewritten_and_every_hint_is_labelled() {
        let mut t = json!({"name": "peek", "annotations": {"readOnlyHint": true, "openWorldHint": false}});
        rewrite(&mut t, true, Observed::default());
        assert_eq!(t["_meta"][META_KEY], json!({"readOnlyHint": "enforced", "openWorldHint": "enforced"}));
        assert_eq!(t["annotations"]["readOnlyHint"], json!(true));
        rewrite(&mut t, true, Observed { wrote: true, connected: true });
        assert_eq!(t["annotations"], json!({"readOnlyHint": false, "destructiveHint": true, "openWorldHint": true}));
        assert_eq!(t["_meta"][META_KEY], json!({"readOnlyHint": "violated", "openWorldHint": "violated"}));
        let mut t = json!({"name": "x", "annotations": {"readOnlyHint": true}});
        rewrite(&mut t, false, Observed::default());
        assert_eq!(t["_meta"][META_KEY]["readOnlyHint"], json!("declared"));
    }
}
