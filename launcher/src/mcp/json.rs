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
    match id.as_i64() {
        Some(n) => IdKey::Int(n),
        None => IdKey::Text(id.to_string()),
    }
}

/// The largest integer a JavaScript client keeps exact (`Number.MAX_SAFE_INTEGER`).
const SAFE_INTEGER_MAX: i64 = (1 << 53) - 1;

/// Is `id` a request id every client reads back as sent: a string, or an integer within
/// ±(2^53 − 1)? A JavaScript client answers `7.0` as `7` and rounds larger integers, so a
/// reply to such an id would not be recognised as the reply (nor `1e3`, nor an id past `u64`,
/// which `serde_json` reads as a float).
pub(super) fn portable_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.as_i64().is_some_and(|i| (-SAFE_INTEGER_MAX..=SAFE_INTEGER_MAX).contains(&i)),
        _ => false,
    }
}

/// Why `msg` is not a JSON-RPC 2.0 response as the official SDKs accept one (the TypeScript
/// SDK's strict `JSONRPCResultResponseSchema` / `JSONRPCErrorResponseSchema`): `jsonrpc` exactly
/// `"2.0"`, no member but `jsonrpc`, `id`, `result`, `error`, and either a `result` that is an
/// object or an `error` that is an object with an integer `code` and a string `message`. What a
/// client would reject must not be taken for the answer either: it would end the request (and a
/// tool call's guard) while the client still waits for the real one.
pub(super) fn malformed_response(msg: &Value) -> Option<&'static str> {
    let Some(map) = msg.as_object() else { return Some("a response that is not an object") };
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some("a response whose `jsonrpc` is not \"2.0\"");
    }
    if map.keys().any(|k| !matches!(k.as_str(), "jsonrpc" | "id" | "result" | "error")) {
        return Some("a response with a member other than jsonrpc, id, result and error");
    }
    match (map.get("result"), map.get("error")) {
        (Some(Value::Object(_)), None) => None,
        (None, Some(Value::Object(e)))
            if e.get("code").is_some_and(|c| c.is_i64() || c.is_u64())
                && e.get("message").is_some_and(Value::is_string) =>
        {
            None
        }
        (None, Some(_)) => Some("an error response whose error is not an object with an integer code and a message"),
        (Some(_), None) => Some("a response whose result is not an object"),
        _ => Some("a response with neither a result nor an error (or both)"),
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
    use serde_json::json;

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

    #[test]
    fn only_strings_and_safe_integers_are_portable_ids() {
        for ok in
            [json!(7), json!(-7), json!("7.0"), json!(9_007_199_254_740_991_i64), json!(-9_007_199_254_740_991_i64)]
        {
            assert!(portable_id(&ok), "{ok}");
        }
        let past_u64: Value = serde_json::from_str("18446744073709551616").unwrap_or_default();
        for bad in [
            json!(7.0),
            json!(1e3),
            json!(9_007_199_254_740_992_i64),
            json!(u64::MAX),
            past_u64,
            json!(null),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            assert!(!portable_id(&bad), "{bad}");
        }
    }

    #[test]
    fn responses_are_held_to_the_sdks_schema() {
        let ok = |v: Value| malformed_response(&v);
        assert_eq!(ok(json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})), None);
        assert_eq!(ok(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "no", "data": [1]}})), None);
        for forged in [
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "x": 1}),
            json!({"jsonrpc": "1.0", "id": 1, "result": {}}),
            json!({"id": 1, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "result": []}),
            json!({"jsonrpc": "2.0", "id": 1, "result": null}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "error": "boom"}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "m"}}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1.5, "message": "m"}}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "m"}}),
            json!([{"jsonrpc": "2.0", "id": 1, "result": {}}]),
        ] {
            assert!(ok(forged.clone()).is_some(), "{forged}");
        }
    }
}
