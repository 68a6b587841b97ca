//! Roots never widen the grants: the roots a client gives the server (a `roots/list` reply, or a
//! 2026-era input response) are intersected with the profile's filesystem grants before the
//! server sees them.
//!
//! A root inside a grant stays; a root that contains grants is narrowed to them; anything else
//! (outside every grant, not a `file://` URI, not absolute) is removed. What was removed or
//! narrowed is returned for the audit log and stderr.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

/// What the intersection changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Narrowed {
    /// Roots removed (or replaced by the grants inside them), as the client gave them.
    pub removed: Vec<String>,
    /// Roots the server sees instead of a removed one (grants inside it).
    pub added: Vec<String>,
}

impl Narrowed {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
    }
}

/// Intersects `roots` (the `roots` array of a `ListRootsResult`) with `grants` (canonical
/// absolute directories or files), in place.
pub fn intersect(roots: &mut Vec<Value>, grants: &[PathBuf]) -> Narrowed {
    let mut out = Vec::new();
    let mut narrowed = Narrowed::default();
    for root in roots.drain(..) {
        let uri = root.get("uri").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(path) = file_path(&uri) else {
            narrowed.removed.push(uri);
            continue;
        };
        if grants.iter().any(|g| path.starts_with(g)) {
            out.push(root);
            continue;
        }
        narrowed.removed.push(uri);
        for g in grants.iter().filter(|g| g.starts_with(&path)) {
            let uri = file_uri(g);
            if !out.iter().any(|r| r.get("uri").and_then(Value::as_str) == Some(uri.as_str())) {
                narrowed.added.push(uri.clone());
                out.push(json!({"uri": uri, "name": g.display().to_string()}));
            }
        }
    }
    *roots = out;
    narrowed
}

/// The absolute path of a `file://` URI as the kernel would resolve it: symlinks and `..` in
/// order (`link/..` is the link target's parent, not the link's). For a path that does not exist,
/// its longest existing ancestor is resolved and the rest appended; `..` in a path that does not
/// exist cannot be resolved soundly, and the root is refused.
fn file_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') || rest.contains(['?', '#']) {
        return None;
    }
    let decoded = percent_decode(rest)?;
    let raw = Path::new(&decoded);
    if let Ok(real) = std::fs::canonicalize(raw) {
        return Some(real);
    }
    if raw.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let mut missing = Vec::new();
    let mut ancestor = raw;
    while let Some(parent) = ancestor.parent() {
        missing.push(ancestor.file_name()?);
        ancestor = parent;
        if let Ok(real) = std::fs::canonicalize(ancestor) {
            return Some(missing.iter().rev().fold(real, |p, name| p.join(name)));
        }
    }
    None
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.contains('\0')).then_some(decoded)
}

fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => uri.push(*b as char),
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(roots: &[Value]) -> Vec<&str> {
        roots.iter().filter_map(|r| r["uri"].as_str()).collect()
    }

    #[test]
    fn roots_inside_stay_wider_ones_narrow_others_go() {
        let grants = [PathBuf::from("/srv/notes"), PathBuf::from("/srv/data/a b")];
        let mut roots = vec![
            json!({"uri": "file:///srv/notes/2026", "name": "kept"}),
            json!({"uri": "file:///srv"}),
            json!({"uri": "file:///root/.ssh"}),
            json!({"uri": "file:///srv/notes/../../etc"}),
            json!({"uri": "https://example.com/"}),
            json!({"uri": "file://host/srv/notes"}),
        ];
        let n = intersect(&mut roots, &grants);
        assert_eq!(uris(&roots), ["file:///srv/notes/2026", "file:///srv/notes", "file:///srv/data/a%20b"]);
        assert_eq!(n.added, ["file:///srv/notes", "file:///srv/data/a%20b"]);
        assert_eq!(
            n.removed,
            [
                "file:///srv",
                "file:///root/.ssh",
                "file:///srv/notes/../../etc",
                "https://example.com/",
                "file://host/srv/notes"
            ]
        );
    }

    #[test]
    fn a_link_before_dotdot_is_resolved_first() {
        let dir = std::env::temp_dir().join(format!("mcpw-roots-{}", std::process::id()));
        let granted = dir.join("granted");
        std::fs::create_dir_all(granted.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("elsewhere/deep")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere/deep"), granted.join("lnk")).unwrap();
        let grants = [std::fs::canonicalize(&granted).unwrap()];
        let uri = |p: &str| json!({"uri": format!("file://{}/{p}", granted.display())});
        let mut roots = vec![uri("lnk/.."), uri("sub/new/dir"), uri("lnk/new"), uri("nothing/../sub")];
        let n = intersect(&mut roots, &grants);
        assert_eq!(uris(&roots), [format!("file://{}/sub/new/dir", granted.display())]);
        assert_eq!(n.removed.len(), 3, "{n:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn encoded_paths_are_decoded_before_the_check() {
        let grants = [PathBuf::from("/srv/notes")];
        let mut roots = vec![json!({"uri": "file:///srv/notes/%2e%2e/secret"}), json!({"uri": "file:///srv/n%6Ftes"})];
        let n = intersect(&mut roots, &grants);
        assert_eq!(uris(&roots), ["file:///srv/n%6Ftes"]);
        assert_eq!(n.removed, ["file:///srv/notes/%2e%2e/secret"]);
    }
}
