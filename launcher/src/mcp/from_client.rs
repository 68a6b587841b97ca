//! Client -> server: each request tracked and, for `tools/call`, checked against the layer's own
//! copy of the tool list (obtained from the server first when the layer has none for the tool);
//! roots the client gives the server narrowed to the grants. Whatever the era: a 2026-07-28
//! request (no `initialize`, `_meta` on each request, input responses on a retried call) goes
//! through the same checks as a 2025 one.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::annotations::Guard;
use super::json::{at, at_mut, id_key, line_of, portable_id};
use super::policy::validate;
use super::proxy::{Pending, State, lock, millis_since};
use crate::audit::record::{
    Decision, McpMalformed, McpMessage, McpNotification, McpRequest, McpResponse, McpRoots, ResponseOutcome, Side,
};

/// JSON-RPC error codes of the refusals.
const INVALID_PARAMS: i64 = -32602;
const RATE_LIMITED: i64 = -32029;

/// The ids of the layer's own requests to the server start with this; a client request using it
/// is refused (its response would be taken for the layer's).
pub(super) const OWN_ID_PREFIX: &str = "mcp-warden/";

/// Pages of `tools/list` the layer follows at most.
const PAGES_MAX: usize = 100;

/// What becomes of one client message.
enum Verdict {
    /// Goes to the server; `true` if changed.
    Forward(bool),
    /// Answered by the layer with this error response; the server never sees it.
    Answer(Value),
    /// Dropped (audited, and told).
    Drop,
}

/// Why the layer answers a call itself.
struct Refusal {
    code: i64,
    why: String,
    retry_after_ms: Option<u64>,
}

impl Refusal {
    fn invalid(why: impl Into<String>) -> Refusal {
        Refusal { code: INVALID_PARAMS, why: why.into(), retry_after_ms: None }
    }

    /// The JSON-RPC error object sent to the client.
    fn error(&self) -> Value {
        let mut error = json!({"code": self.code, "message": format!("mcp-warden refused the call: {}", self.why)});
        if let Some(ms) = self.retry_after_ms {
            error["data"] = json!({"retryAfterMs": ms});
        }
        error
    }
}

impl State {
    pub(super) fn handle_client_line(&self, line: &[u8]) -> std::io::Result<()> {
        let msg = match serde_json::from_slice::<Value>(line) {
            Ok(msg) => msg,
            Err(e) => {
                // what the layer cannot read, it cannot police: the server never sees it
                self.malformed(Side::Client, line.len(), &e);
                let error =
                    json!({"code": -32700, "message": format!("mcp-warden dropped a line it cannot parse: {e}")});
                return self.to_client(&line_of(&json!({"jsonrpc": "2.0", "id": null, "error": error})));
            }
        };
        match msg {
            Value::Array(items) => {
                let mut forward = Vec::new();
                let mut changed = false;
                for mut item in items {
                    match self.police_client_message(&mut item, line.len()) {
                        Verdict::Forward(modified) => {
                            changed |= modified;
                            forward.push(item);
                        }
                        Verdict::Answer(reply) => {
                            changed = true;
                            self.to_client(&line_of(&reply))?;
                        }
                        Verdict::Drop => changed = true,
                    }
                }
                match (changed, forward.is_empty()) {
                    (false, _) => self.to_server(line),
                    (true, true) => Ok(()),
                    (true, false) => self.to_server(&line_of(&Value::Array(forward))),
                }
            }
            mut msg => match self.police_client_message(&mut msg, line.len()) {
                Verdict::Forward(false) => self.to_server(line),
                Verdict::Forward(true) => self.to_server(&line_of(&msg)),
                Verdict::Answer(reply) => self.to_client(&line_of(&reply)),
                Verdict::Drop => Ok(()),
            },
        }
    }

    /// One message: forwarded (changed or not), answered by the layer, or dropped.
    fn police_client_message(&self, msg: &mut Value, bytes: usize) -> Verdict {
        let Some(method) = msg.get("method").and_then(Value::as_str).map(String::from) else {
            return self.police_client_response(msg, bytes);
        };
        let narrowed = self.narrow_input_roots(msg);
        let Some(id) = msg.get("id").cloned() else {
            if method == "notifications/cancelled" {
                self.cancel(msg);
            }
            self.audit(Side::Client, McpMessage::Notification(McpNotification { bytes, method }));
            return Verdict::Forward(narrowed);
        };
        match self.police_request(msg, &method, &id, bytes) {
            Some(reply) => Verdict::Answer(reply),
            None => Verdict::Forward(narrowed),
        }
    }

    /// A client response: forwarded only when it answers a request of the server's the client
    /// was given (the roots of a `roots/list` answer narrowed to the grants). Any other, a reply
    /// to an id the client made up or read back differently (`7` for `7.0`), or to one of the
    /// layer's own, would reach the server unpoliced: dropped.
    fn police_client_response(&self, msg: &mut Value, bytes: usize) -> Verdict {
        let id = msg.get("id").cloned().unwrap_or_default();
        let Some((method, started)) = lock(&self.server_requests).remove(&id_key(&id)) else {
            self.tell(format_args!("mcp: dropped a client response to no request of the server's in flight"));
            self.audit(Side::Client, McpMessage::Malformed(McpMalformed { bytes }));
            return Verdict::Drop;
        };
        let roots = if method == "roots/list" {
            at_mut(msg, &["result", "roots"]).and_then(Value::as_array_mut).into_iter().collect()
        } else {
            Vec::new()
        };
        let narrowed = self.narrow_roots(roots);
        let outcome = match msg.get("error") {
            Some(error) => ResponseOutcome::Error { error: error.clone() },
            None => super::from_server::ok(None),
        };
        let duration_ms = millis_since(started);
        let response = McpResponse { bytes, method, id, tool: None, duration_ms, outcome };
        self.audit(Side::Client, McpMessage::Response(response));
        Verdict::Forward(narrowed)
    }

    /// A `notifications/cancelled` for a request in flight ends it here too: the server should
    /// not answer it (and a late answer is then dropped as stray), so a cancelled tool call would
    /// otherwise stay in flight, its guard held against every later call.
    fn cancel(&self, msg: &Value) {
        let Some(id) = at(msg, &["params", "requestId"]) else { return };
        let key = id_key(id);
        if let Some(p) = lock(&self.pending).remove(&key) {
            self.end_call(&key, &p);
        }
    }

    /// Tracks a request and decides: `None` to forward it, `Some(error response)` to refuse it.
    fn police_request(&self, msg: &Value, method: &str, id: &Value, bytes: usize) -> Option<Value> {
        let tool = (method == "tools/call").then(|| at(msg, &["params", "name"]).and_then(Value::as_str)).flatten();
        let no_arguments = Value::Object(Map::new());
        let args = tool.map(|_| at(msg, &["params", "arguments"]).unwrap_or(&no_arguments));
        let key = id_key(id);
        let refusal = if !portable_id(id) {
            // a reply to it would not be known for the reply (a JavaScript peer reads `7.0` as
            // `7`, and rounds integers past 2^53)
            Some(Refusal::invalid("request ids must be strings or integers within ±(2^53 − 1)"))
        } else if id.as_str().is_some_and(|s| s.starts_with(OWN_ID_PREFIX)) {
            Some(Refusal::invalid(format!("request ids starting with `{OWN_ID_PREFIX}` are mcp-warden's own")))
        } else if lock(&self.pending).contains_key(&key) {
            // its answer would be taken for the other's: a ping's could end a tool call's guard
            Some(Refusal::invalid(format!("the id {id} is that of a request still pending")))
        } else if at(msg, &["params", "task"]).is_some() {
            // the task's result would come through `tasks/result`, past the guard and the checks
            Some(Refusal::invalid("mcp-warden does not police task-augmented requests; call the tool without `task`"))
        } else if let (Some(tool), Some(args)) = (tool, args) {
            self.check_call(msg, tool, args).err()
        } else if method == "tools/call" {
            Some(Refusal::invalid("a tools/call without a tool name"))
        } else {
            None
        };
        let decision = match &refusal {
            Some(r) => Decision::Refused { reason: r.why.clone() },
            None => Decision::Allowed,
        };
        let request = McpRequest {
            bytes,
            method: method.into(),
            id: Some(id.clone()),
            tool: tool.map(String::from),
            arguments: args.map(|a| self.arguments(a)),
            decision: Some(decision),
        };
        self.audit(Side::Client, McpMessage::Request(request));
        if let Some(refusal) = refusal {
            return Some(json!({"jsonrpc": "2.0", "id": id, "error": refusal.error()}));
        }
        if let Some(tool) = tool {
            let guard = self.guard_of(tool);
            self.in_flight.begin(key.clone(), tool, guard);
        }
        let pending = Pending { method: method.to_string(), tool: tool.map(String::from), started: Instant::now() };
        lock(&self.pending).insert(key, pending);
        None
    }

    fn arguments(&self, args: &Value) -> Value {
        if self.cfg.log_arguments { args.clone() } else { shape(args) }
    }

    /// What the kernel side holds a call of `tool` to while it is in flight.
    fn guard_of(&self, tool: &str) -> Guard {
        if !self.cfg.annotations.enforce {
            return Guard::default();
        }
        lock(&self.catalog).guard(tool)
    }

    /// Every check of a `tools/call`, cheapest first.
    fn check_call(&self, msg: &Value, tool: &str, args: &Value) -> Result<(), Refusal> {
        self.cfg.tools.permits(tool).map_err(|e| Refusal::invalid(e.to_string()))?;
        unchanged(&lock(&self.catalog), tool)?;
        if lock(&self.catalog).get(tool).is_none() {
            self.list_tools(msg).map_err(Refusal::invalid)?;
        }
        self.check_against_list(tool, args)?;
        for c in &self.cfg.constraints {
            c.check(tool, args).map_err(|e| Refusal::invalid(e.to_string()))?;
        }
        if self.is_retry(tool, msg) {
            return Ok(()); // the same call again, with the input it asked for: not a new one
        }
        lock(&self.limiter).take(tool, Instant::now()).map_err(|(wait, rule)| Refusal {
            code: RATE_LIMITED,
            why: format!("rate limit {rule} reached; retry in {:.1} s", wait.as_secs_f64()),
            retry_after_ms: Some(wait.as_millis() as u64),
        })
    }

    /// The checks that need the layer's copy of the tool: listed at all, changed, annotations,
    /// arguments against its `inputSchema`.
    fn check_against_list(&self, tool: &str, args: &Value) -> Result<(), Refusal> {
        let catalog = lock(&self.catalog);
        unchanged(&catalog, tool)?;
        let Some(t) = catalog.get(tool) else {
            return Err(Refusal::invalid(format!("tool `{tool}` is not in the server's tools/list")));
        };
        self.cfg.annotations.permits(tool, t.annotations).map_err(Refusal::invalid)?;
        let validator = t.input.as_ref().map_err(|why| Refusal::invalid(format!("tool `{tool}`: {why}")))?;
        validate(validator, args).map_err(|e| Refusal::invalid(e.to_string()))
    }

    /// Asks the server for its whole tool list (every page) on the layer's own behalf, the call
    /// waiting; the server -> client relay takes the answers ([`State::take_own_list`]) into the
    /// catalog. The call's `_meta` goes along, so a 2026-era server sees the version it speaks.
    fn list_tools(&self, call: &Value) -> Result<(), String> {
        let cannot =
            |why: String| format!("mcp-warden has no tools/list of the server to check this call against: {why}");
        if self.own_list_timeout.is_zero() {
            return Err(cannot("the layer cannot ask the server here".into()));
        }
        let mut meta = at(call, &["params", "_meta"]).cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.remove("progressToken");
        }
        let mut cursor: Option<Value> = None;
        for _ in 0..PAGES_MAX {
            let mut params = json!({"_meta": meta});
            if let Some(c) = cursor.take() {
                params["cursor"] = c;
            }
            let result = self.ask_server("tools/list", params).map_err(cannot)?;
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => return Ok(()),
            }
        }
        Err(cannot(format!("more than {PAGES_MAX} pages")))
    }

    /// Sends one request of the layer's own and waits for its result.
    fn ask_server(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = format!("{OWN_ID_PREFIX}{}", self.next_own.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = std::sync::mpsc::channel();
        let key = id_key(&json!(id));
        lock(&self.own_lists).insert(key.clone(), tx);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        // what this relay queued before goes first (an `initialize`, say)
        let answer = self
            .to_server(&line_of(&request))
            .and_then(|()| self.flush())
            .map_err(|e| format!("the server's stdin: {e}"))
            .and_then(|()| self.await_own(&rx));
        lock(&self.own_lists).remove(&key);
        let answer = answer?;
        if let Some(error) = answer.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("an error");
            return Err(format!("the server answered {method} with: {message}"));
        }
        answer.get("result").cloned().ok_or_else(|| format!("the server's {method} answer has no result"))
    }

    /// A 2026-era retry: the same call again, echoing the `requestState` of an `input_required`
    /// result of the same tool (each one once).
    fn is_retry(&self, tool: &str, msg: &Value) -> bool {
        let Some(state) = at(msg, &["params", "requestState"]).and_then(Value::as_str) else { return false };
        lock(&self.retries).remove(&(tool.to_string(), state.to_string()))
    }

    /// The roots of each input response of a retried 2026-era request, narrowed to the grants.
    fn narrow_input_roots(&self, msg: &mut Value) -> bool {
        let lists = match at_mut(msg, &["params", "inputResponses"]).and_then(Value::as_object_mut) {
            Some(responses) => {
                responses.values_mut().filter_map(|r| r.get_mut("roots").and_then(Value::as_array_mut)).collect()
            }
            None => Vec::new(),
        };
        self.narrow_roots(lists)
    }

    /// Roots the client gives the server, narrowed to the grants. Returns whether any changed.
    fn narrow_roots(&self, lists: Vec<&mut Vec<Value>>) -> bool {
        let mut changed = false;
        for roots in lists {
            let narrowed = super::roots::intersect(roots, &self.cfg.grants);
            if narrowed.is_empty() {
                continue;
            }
            changed = true;
            eprintln!(
                "mcp-warden: mcp: roots outside the filesystem grants withheld from the server: {}{}",
                crate::logging::printable(&narrowed.removed.join(", ")),
                if narrowed.added.is_empty() {
                    String::new()
                } else {
                    format!(" (narrowed to {})", crate::logging::printable(&narrowed.added.join(", ")))
                }
            );
            let record = McpRoots { removed: narrowed.removed, added: narrowed.added };
            self.audit(Side::Client, McpMessage::Roots(record));
        }
        changed
    }
}

/// Refuses a tool whose definition changed since it was pinned (checked before the layer lists
/// the tools, and again after: the new list may be the one that changed it).
fn unchanged(catalog: &super::tools::Catalog, tool: &str) -> Result<(), Refusal> {
    match catalog.changed.contains(tool) {
        true => Err(Refusal::invalid(format!(
            "tool `{tool}` changed since it was pinned; review it and run `mcp-warden pins accept`"
        ))),
        false => Ok(()),
    }
}

/// The shape of a call's arguments: each top-level key with its type and size, never values.
fn shape(args: &Value) -> Value {
    let Some(map) = args.as_object() else { return json!(type_name(args)) };
    map.iter()
        .map(|(k, v)| {
            let size = match v {
                Value::String(s) => format!("string({})", s.len()),
                Value::Array(a) => format!("array({})", a.len()),
                Value::Object(o) => format!("object({})", o.len()),
                other => type_name(other).to_string(),
            };
            (k.clone(), Value::String(size))
        })
        .collect::<Map<_, _>>()
        .into()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
