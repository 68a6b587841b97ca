//! JSON helpers of the relay: fields by key path, a request id as a map key, a message as a line.
//!
//! `Value::pointer` splits its path and unescapes every token into a new `String` on each call;
//! on the relay's path, where every message is looked into several times, that was a fifth of
//! its time (docs/benchmarks.md). [`at`] walks the keys as given.

use serde_json::Value;

/// The value at `keys` under `v`, each key an object's field.
pub(super) fn at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(k))
}

/// [`at`], mutable.
pub(super) fn at_mut<'a>(v: &'a mut Value, keys: &[&str]) -> Option<&'a mut Value> {
    keys.iter().try_fold(v, |v, k| v.get_mut(k))
}

/// A request id as the key of the maps of requests in flight: a JSON-RPC id is a number or a
/// string, and the two never match (`1` and `"1"` differ, as do `1` and `1.0`). An integer, the
/// usual id, is kept as one: no allocation, and a comparison that reads no other memory.
///
/// Ordered, for ordered maps: clients number their requests, so a client pipelining thousands
/// of calls adds at one end of the map and the answers remove at the other, both in cache. A
/// hash map put each of those at a random place (a cache miss each, most of the relay's time
/// pipelined).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdKey {
    Int(i64),
    /// Any other id, as its JSON text (a string with its quotes).
    Text(String),
}

pub(super) fn id_key(id: &Value) -> IdKey {
    match id {
        Value::Number(n) if n.is_i64() => n.as_i64().map_or_else(|| IdKey::Text(id.to_string()), IdKey::Int),
        _ => IdKey::Text(id.to_string()),
    }
}

/// One line as written, with its trailing newline.
pub(super) fn line_of(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_walks_object_fields_only() {
        let mut v = serde_json::json!({"params": {"name": "echo", "a/b": 1, "list": [1]}});
        assert_eq!(at(&v, &["params", "name"]), Some(&serde_json::json!("echo")));
        assert_eq!(at(&v, &["params", "a/b"]), Some(&serde_json::json!(1)), "a key is not a path");
        assert_eq!(at(&v, &["params", "list", "0"]), None, "an array is not indexed by text");
        assert_eq!(at(&v, &["params", "missing"]), None);
        *at_mut(&mut v, &["params", "name"]).unwrap_or_else(|| unreachable!()) = serde_json::json!("other");
        assert_eq!(v.pointer("/params/name"), Some(&serde_json::json!("other")));
    }

    #[test]
    fn ids_of_different_types_never_match() {
        let key = |v: Value| id_key(&v);
        assert_eq!(key(serde_json::json!(7)), IdKey::Int(7));
        assert_ne!(key(serde_json::json!(7)), key(serde_json::json!("7")));
        assert_ne!(key(serde_json::json!(7)), key(serde_json::json!(7.0)));
        assert_ne!(key(serde_json::json!(u64::MAX)), key(serde_json::json!(-1)));
        assert_eq!(key(serde_json::json!("a")), IdKey::Text("\"a\"".into()));
    }
}
