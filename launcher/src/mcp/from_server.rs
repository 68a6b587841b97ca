//! Server -> client: responses to the client's requests policed (tool lists filtered, pinned and
//! rewritten to the annotations' truth; tool results checked against their `outputSchema` and
//! redacted; the posture added to `initialize` and `server/discover` results); requests of the
//! server's own refused outside a client request, and sampling unless the profile allows it;
//! the layer's own `tools/list` answers taken into its catalog.

use serde_json::{Value, json};

use super::annotations::{self, Observed};
use super::json::{IdKey, at_mut, id_key, line_of, malformed_response, portable_id};
use super::pins::Check;
use super::proxy::{Pending, State, lock, millis_since};
use super::tools::check_output;
use crate::audit::record::{Decision, McpMessage, McpNotification, McpRequest, McpResponse, ResponseOutcome, Side};

const GENERIC_ERROR: &str = "The server reported an error; the details are in mcp-warden's audit log.";
/// The JSON-RPC error code of a server request the layer refuses.
const REFUSED: i64 = -32001;
/// `input_required` results whose retry is awaited, at most.
const RETRIES_MAX: usize = 1024;
/// The `_meta` key of the posture in `initialize` and `server/discover` results.
pub const POSTURE_KEY: &str = "dev.mcp-warden/posture";

/// What becomes of one server message.
#[derive(PartialEq, Eq)]
enum Fate {
    /// Goes to the client; `true` if changed.
    Forward(bool),
    /// Answered or consumed by the layer.
    Drop,
}

impl State {
    pub(super) fn handle_server_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut msg = match serde_json::from_slice::<Value>(line) {
            Ok(msg) => msg,
            Err(e) => {
                // what the layer cannot read, it cannot police: the client never sees it
                self.malformed(Side::Server, line.len(), &e);
                return Ok(());
            }
        };
        if msg.is_array() {
            // MCP has no batches since 2025-06-18 and the SDKs' clients reject one: an answer in
            // it would end a request (and a call's guard) the client still waits on
            self.stray(line.len(), "a batch (MCP has no batches since 2025-06-18)");
            return Ok(());
        }
        let (fate, tell_list_changed) = self.police_server_message(&mut msg, line.len());
        match fate {
            Fate::Forward(false) => self.to_client(line)?,
            Fate::Forward(true) => self.to_client(&line_of(&msg))?,
            Fate::Drop => {}
        }
        if tell_list_changed {
            // the tool's annotations were just found untrue: the client should list them again
            self.to_client(&line_of(&json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})))?;
        }
        Ok(())
    }

    /// One message; also whether a tool was just seen breaking its annotations.
    fn police_server_message(&self, msg: &mut Value, bytes: usize) -> (Fate, bool) {
        if let Some(method) = msg.get("method").and_then(Value::as_str).map(String::from) {
            return (self.police_server_request(msg, method, bytes), false);
        }
        let Some(id) = msg.get("id").cloned() else {
            self.stray(bytes, "a message with neither a method nor an id");
            return (Fate::Drop, false);
        };
        // a response is one the client's SDK would accept, and answers a request in flight: a
        // stray or malformed one could end a call early, its guard with it, and reach the client
        // unpoliced (or be rejected by it, which then waits for the real one, dropped as stray)
        if let Some(why) = malformed_response(msg) {
            self.stray(bytes, why);
            return (Fate::Drop, false);
        }
        let key = id_key(&id);
        if let Some(own) = lock(&self.own_lists).remove(&key) {
            if let Some(result) = msg.get_mut("result") {
                self.police_tool_list(result, false);
            }
            let _ = own.send(msg.take());
            return (Fate::Drop, false);
        }
        let Some(p) = lock(&self.pending).remove(&key) else {
            self.stray(bytes, "a response to no request in flight");
            return (Fate::Drop, false);
        };
        self.police_response(msg, id, &key, p, bytes)
    }

    /// A server message that is not a message of the protocol here: dropped and told.
    fn stray(&self, bytes: usize, what: &str) {
        self.tell(format_args!("mcp: dropped {what} from the server"));
        self.audit(Side::Server, McpMessage::Malformed(crate::audit::record::McpMalformed { bytes }));
    }

    /// A request or notification of the server's own.
    fn police_server_request(&self, msg: &Value, method: String, bytes: usize) -> Fate {
        let Some(id) = msg.get("id").cloned() else {
            if method == "notifications/tools/list_changed" {
                lock(&self.catalog).clear();
            }
            self.audit(Side::Server, McpMessage::Notification(McpNotification { bytes, method }));
            return Fate::Forward(false);
        };
        let refusal = self.refuse_server_request(&method, &id);
        let decision = match &refusal {
            Some(why) => Decision::Refused { reason: why.clone() },
            None => Decision::Allowed,
        };
        let request = McpRequest {
            bytes,
            method: method.clone(),
            id: None,
            tool: None,
            arguments: None,
            decision: Some(decision),
        };
        self.audit(Side::Server, McpMessage::Request(request));
        match refusal {
            Some(why) => {
                self.tell(format_args!("mcp: refused the server's {}: {why}", crate::logging::printable(&method)));
                let error = json!({"code": REFUSED, "message": format!("mcp-warden refused the request: {why}")});
                let _ = self.to_server(&line_of(&json!({"jsonrpc": "2.0", "id": id, "error": error})));
                let _ = self.flush();
                Fate::Drop
            }
            None => {
                lock(&self.server_requests).insert(id_key(&id), (method, std::time::Instant::now()));
                Fate::Forward(false)
            }
        }
    }

    /// Why a server request does not reach the client, if it does not.
    fn refuse_server_request(&self, method: &str, id: &Value) -> Option<String> {
        if !portable_id(id) {
            // a client would answer `7.0` as `7`: the reply would not be known for the reply
            return Some("its id is not a string or an integer within ±(2^53 − 1)".into());
        }
        if lock(&self.server_requests).contains_key(&id_key(id)) {
            return Some("it reuses the id of a request of the server's still unanswered".into());
        }
        if method == "ping" {
            return None;
        }
        if lock(&self.pending).is_empty() {
            return Some("the server may only ask the client during one of the client's requests".into());
        }
        (method == "sampling/createMessage" && !self.cfg.sampling)
            .then(|| "the profile does not allow sampling ([mcp] sampling = true)".into())
    }

    /// A response to the client request `p`, whose id is `id` (`key` as a map key).
    fn police_response(&self, msg: &mut Value, id: Value, key: &IdKey, p: Pending, bytes: usize) -> (Fate, bool) {
        let ended = self.end_call(key, &p);
        let duration_ms = millis_since(p.started);
        let (outcome, mut modified) = self.response_outcome(msg, &p.method, p.tool.as_deref());
        if p.method == "tools/call" {
            modified |= explain_refusals(msg, &ended.notes);
        }
        let broke = ended.observed.any();
        let response = McpResponse { bytes, method: p.method, id, tool: p.tool, duration_ms, outcome };
        self.audit(Side::Server, McpMessage::Response(response));
        (Fate::Forward(modified), broke)
    }

    /// What a response says (for the audit record), after what the layer changes in it: hidden
    /// errors, the tools a list may show, checked and redacted results, the posture. Also
    /// returns whether it changed.
    fn response_outcome(&self, msg: &mut Value, method: &str, tool: Option<&str>) -> (ResponseOutcome, bool) {
        if let Some(error) = msg.get_mut("error") {
            let outcome = ResponseOutcome::Error { error: error.clone() };
            if !self.cfg.hide_errors {
                return (outcome, false);
            }
            let code = error.get("code").cloned().unwrap_or(json!(-32603));
            *error = json!({"code": code, "message": GENERIC_ERROR});
            return (outcome, true);
        }
        let Some(result) = msg.get_mut("result") else { return (ok(None), false) };
        if let Some(why) = self.refuse_input_request(result) {
            self.tell(format_args!("mcp: refused the server's answer to {}: {why}", crate::logging::printable(method)));
            let text = format!("mcp-warden refused the server's answer: {why}");
            replace_result(result, json!({"content": [{"type": "text", "text": text}], "isError": true}));
            return (ResponseOutcome::Refused { reason: why }, true);
        }
        match method {
            "tools/list" => {
                let hidden = self.police_tool_list(result, true);
                (ok((!hidden.is_empty()).then_some(hidden)), true)
            }
            "tools/call" => self.police_tool_result(result, tool.unwrap_or_default()),
            "initialize" | "server/discover" => {
                let untasked = remove_tasks(result);
                (ok(None), self.add_posture(result) | untasked)
            }
            _ => (ok(None), false),
        }
    }

    fn add_posture(&self, result: &mut Value) -> bool {
        let (Some(posture), Some(map)) = (&self.cfg.posture, result.as_object_mut()) else { return false };
        let meta = map.entry("_meta").or_insert_with(|| json!({}));
        match (meta.as_object_mut(), serde_json::to_value(posture)) {
            (Some(m), Ok(posture)) => {
                m.insert(POSTURE_KEY.into(), posture);
                true
            }
            _ => false,
        }
    }

    /// A `tools/call` result: refused when it breaks the tool's `outputSchema` or asks for
    /// sampling the profile does not allow; hidden behind a generic message when it failed (with
    /// `hide-errors`); redacted otherwise.
    fn police_tool_result(&self, result: &mut Value, tool: &str) -> (ResponseOutcome, bool) {
        if let Some(why) = self.refuse_tool_result(result, tool) {
            self.tell(format_args!("mcp: refused the result of tool {}: {why}", crate::logging::printable(tool)));
            let text = format!("mcp-warden refused the tool's result: {why}");
            replace_result(result, json!({"content": [{"type": "text", "text": text}], "isError": true}));
            return (ResponseOutcome::Refused { reason: why }, true);
        }
        let failed = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
        if failed && self.cfg.hide_errors {
            let error = Some(result.clone());
            replace_result(result, json!({"content": [{"type": "text", "text": GENERIC_ERROR}], "isError": true}));
            return (ResponseOutcome::ToolError { error, redactions: None }, true);
        }
        let redactions = self.cfg.redactor.as_ref().map(|r| redact_output(r, result));
        let modified = redactions.is_some_and(|n| n > 0);
        let outcome = match failed {
            true => ResponseOutcome::ToolError { error: None, redactions },
            false => ResponseOutcome::Ok { hidden_tools: None, redactions },
        };
        (outcome, modified)
    }

    /// Remembers the state a tool's `input_required` result asks the client to echo (at most
    /// [`RETRIES_MAX`] awaited; past them a retry counts as a new call).
    fn expect_retry(&self, tool: &str, result: &Value) {
        let Some(state) = result.get("requestState").and_then(Value::as_str) else { return };
        let mut retries = lock(&self.retries);
        if retries.len() < RETRIES_MAX {
            retries.insert((tool.to_string(), state.to_string()));
        }
    }

    /// An `input_required` result (any method: `tools/call`, `prompts/get`, `resources/read`)
    /// that asks for sampling the profile does not allow.
    fn refuse_input_request(&self, result: &Value) -> Option<String> {
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") || self.cfg.sampling {
            return None;
        }
        let asks_sampling = result.get("inputRequests").and_then(Value::as_object).is_some_and(|r| {
            r.values().any(|q| q.get("method").and_then(Value::as_str) == Some("sampling/createMessage"))
        });
        asks_sampling.then(|| "it asks for sampling, which the profile does not allow ([mcp] sampling = true)".into())
    }

    fn refuse_tool_result(&self, result: &Value, tool: &str) -> Option<String> {
        if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
            self.expect_retry(tool, result);
            return None;
        }
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let catalog = lock(&self.catalog);
        let schema = catalog.get(tool)?.output.as_ref()?;
        check_output(schema, result).err()
    }

    /// A `tools/list` result (the client's or the layer's own): denied and changed tools
    /// removed, the rest taken into the catalog, pinned, and their annotations rewritten to what
    /// is enforced or was observed. Returns the tools hidden, and why.
    fn police_tool_list(&self, result: &mut Value, to_client: bool) -> Vec<String> {
        let Some(list) = result.get_mut("tools").and_then(Value::as_array_mut) else { return vec![] };
        let mut catalog = lock(&self.catalog);
        let mut pins = lock(&self.pins);
        let mut hidden = Vec::new();
        let mut pins_changed = false;
        // a name listed twice is two definitions the client may tell apart and the layer cannot
        // (a read-only copy shown, a writing one called): every copy hidden, calls refused
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        for t in list.iter() {
            *seen.entry(t.get("name").and_then(Value::as_str).unwrap_or_default()).or_default() += 1;
        }
        let twice: std::collections::HashSet<String> =
            seen.into_iter().filter(|(_, n)| *n > 1).map(|(name, _)| name.to_string()).collect();
        for name in &twice {
            catalog.remove(name);
            let why = format!("{name}: listed more than once in one tools/list");
            self.tell(format_args!("tool {}", crate::logging::printable(&why)));
            hidden.push(why);
        }
        list.retain_mut(|t| {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if twice.contains(&name) {
                return false;
            }
            if let Err(why) = self.cfg.tools.permits(&name) {
                hidden.push(format!("{name}: {why}"));
                return false;
            }
            if let Some(store) = pins.as_mut() {
                match store.check(&name, t) {
                    Check::Same => {
                        catalog.changed.remove(&name);
                    }
                    Check::New => pins_changed = true,
                    Check::Changed => {
                        pins_changed = true;
                        catalog.changed.insert(name.clone());
                        let why = format!("{name}: changed since it was pinned (mcp-warden pins accept)");
                        self.tell(format_args!("tool {}", crate::logging::printable(&why)));
                        hidden.push(why);
                        return false;
                    }
                }
            }
            catalog.insert(name.clone(), t);
            let a = annotations::Annotations::of(t);
            if let Err(why) = self.cfg.annotations.permits(&name, a) {
                hidden.push(format!("{name}: {why}"));
                return false;
            }
            if to_client {
                catalog.show(&name, a);
            }
            let observed = catalog.observed.get(&name).copied().unwrap_or(Observed::default());
            annotations::rewrite(t, self.cfg.annotations.enforce, observed);
            true
        });
        if pins_changed
            && let Some(store) = pins.as_ref()
            && let Err(e) = store.save()
        {
            tracing::warn!("could not save tool pins to {}: {e}", store.path.display());
        }
        hidden
    }
}

/// Redacts what a tool returns to the model: its `content` and `structuredContent`, not the
/// protocol around them (an input-required result's requests, `_meta`).
fn redact_output(redactor: &super::redact::Redactor, result: &mut Value) -> u64 {
    let mut n = 0;
    for key in ["content", "structuredContent"] {
        if let Some(v) = result.get_mut(key) {
            n += redactor.value(v) as u64;
        }
    }
    n
}

/// Puts a result of the layer's in place of the server's, in the server's era: a 2026-era
/// result says it is complete (`resultType`), a 2025 one has no such field.
fn replace_result(result: &mut Value, mut new: Value) {
    if result.get("resultType").is_some() {
        new["resultType"] = json!("complete");
    }
    *result = new;
}

/// Takes `tasks` out of the capabilities a server announces: the layer refuses task-augmented
/// requests (a task's result would come through `tasks/result`, past the call's guard and its
/// checks), so clients should not offer them. Returns whether it was there.
fn remove_tasks(result: &mut Value) -> bool {
    at_mut(result, &["capabilities"]).and_then(Value::as_object_mut).is_some_and(|c| c.remove("tasks").is_some())
}

pub(super) fn ok(hidden_tools: Option<Vec<String>>) -> ResponseOutcome {
    ResponseOutcome::Ok { hidden_tools, redactions: None }
}

/// Appends what mcp-warden refused during a tool call to its result, as one more text item, so
/// that the client (and the model) sees why the call failed and what would allow it.
fn explain_refusals(msg: &mut Value, notes: &[String]) -> bool {
    if notes.is_empty() {
        return false;
    }
    let Some(content) = at_mut(msg, &["result", "content"]).and_then(Value::as_array_mut) else { return false };
    let text = format!(
        "mcp-warden refused during this call:\n{}",
        notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n")
    );
    content.push(json!({"type": "text", "text": text}));
    true
}
