//! The two relay threads and what they do to each message.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::McpConfig;
use super::pins::{Check, PinStore, tool_hash};
use super::policy::{RateLimiter, validate};
use crate::audit::record::{
    Decision, Mcp, McpMalformed, McpMessage, McpNotification, McpRequest, McpResponse, ResponseOutcome, Side,
};
use crate::audit::{AuditLine, AuditLog, AuditRecord};

/// The longest line parsed. A longer one (or one that never ends) is relayed as it comes,
/// unparsed and unpoliced except that a request inside it cannot be tracked: nothing is lost and
/// memory stays bounded.
const MAX_LINE: usize = 64 << 20;

/// JSON-RPC error codes of the refusals.
const INVALID_PARAMS: i64 = -32602;
const RATE_LIMITED: i64 = -32029;
const GENERIC_ERROR: &str = "The server reported an error; the details are in mcp-warden's audit log.";

/// A request on its way, for the response that answers it.
struct Pending {
    method: String,
    tool: Option<String>,
    started: Instant,
}

/// Why the layer answers a call itself.
struct Refusal {
    code: i64,
    why: String,
    retry_after_ms: Option<u64>,
}

impl Refusal {
    fn invalid(why: String) -> Refusal {
        Refusal { code: INVALID_PARAMS, why, retry_after_ms: None }
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

struct State {
    cfg: McpConfig,
    client_out: Mutex<Box<dyn Write + Send>>,
    /// Client requests by id (as JSON text).
    pending: Mutex<HashMap<String, Pending>>,
    tools: Mutex<Tools>,
    limiter: Mutex<RateLimiter>,
    pins: Mutex<Option<PinStore>>,
    audit: Mutex<Option<AuditLog>>,
    /// Records of the line being handled, written after it went on.
    deferred: Mutex<Vec<AuditLine>>,
    in_flight: Arc<super::InFlight>,
}

#[derive(Default)]
struct Tools {
    validators: HashMap<String, jsonschema::Validator>,
    /// Changed since pinned: hidden and refused.
    changed: HashSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the relays: `client_in`/`client_out` are the launcher's stdin/stdout, `server_in`/
/// `server_out` the pipes to the server. Returns the server -> client thread, which ends once the
/// server's output is closed and everything it wrote is delivered.
pub fn start(
    cfg: McpConfig,
    audit: AuditLog,
    client_in: File,
    client_out: File,
    server_in: File,
    server_out: File,
    in_flight: Arc<super::InFlight>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let limiter = RateLimiter::new(&cfg.rates).map_err(std::io::Error::other)?;
    let pins = cfg.pins.clone().map(PinStore::open);
    let state = Arc::new(State {
        cfg,
        client_out: Mutex::new(Box::new(client_out)),
        pending: Mutex::new(HashMap::new()),
        tools: Mutex::new(Tools::default()),
        limiter: Mutex::new(limiter),
        pins: Mutex::new(pins),
        audit: Mutex::new(Some(audit)),
        deferred: Mutex::default(),
        in_flight,
    });
    let up = Arc::clone(&state);
    std::thread::Builder::new()
        .name("mcp-client".into())
        .spawn(move || relay(client_in, server_in, |line, out| up.on_client_line(line, out)))?;
    let down = state;
    std::thread::Builder::new().name("mcp-server".into()).spawn(move || {
        let sink = ClientSink(Arc::clone(&down));
        relay(server_out, sink, |line, out| down.on_server_line(line, out));
        if let Some(log) = lock(&down.audit).as_mut() {
            log.flush();
            if log.lost > 0 {
                eprintln!(
                    "mcp-warden: mcp: {} audit records LOST ({} written) to {}",
                    log.lost,
                    log.written,
                    log.destination.describe()
                );
            }
        }
    })
}

/// Writes to the client through the shared handle (both relays answer the client).
struct ClientSink(Arc<State>);

impl Write for ClientSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0.client_out).write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        lock(&self.0.client_out).write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `input` line by line and hands each complete line (with its newline) to `handle`, which
/// writes what goes on to `output`. Overlong lines are passed through unparsed. Ends at EOF or
/// when `output` is gone; dropping `output` then closes it (the server sees EOF on stdin).
fn relay<R: Read, W: Write>(mut input: R, mut output: W, mut handle: impl FnMut(&[u8], &mut W) -> std::io::Result<()>) {
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut passthrough = false;
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let newline = rest.iter().position(|b| *b == b'\n');
            let (part, done) = match newline {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            rest = &rest[part.len()..];
            let result = if passthrough {
                passthrough = !done;
                output.write_all(part)
            } else {
                line.extend_from_slice(part);
                if done {
                    let r = handle(&line, &mut output);
                    line.clear();
                    r
                } else if line.len() > MAX_LINE {
                    passthrough = true;
                    let r = output.write_all(&line);
                    line.clear();
                    r
                } else {
                    Ok(())
                }
            };
            if result.is_err() {
                return;
            }
        }
    }
    if !line.is_empty() {
        let _ = handle(&line, &mut output);
    }
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

/// One line as written, with its trailing newline.
fn line_of(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
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

impl State {
    /// Records a message, timestamped now; written by [`State::write_audit`] once the line it
    /// belongs to has gone on, so that the log's write is not on the message's way.
    fn audit(&self, from: Side, message: McpMessage) {
        lock(&self.deferred).push(AuditLine::now(AuditRecord::Mcp(Mcp { from, message })));
    }

    /// Writes the records of the line just handled, and flushes them.
    fn write_audit(&self) {
        let lines = std::mem::take(&mut *lock(&self.deferred));
        if lines.is_empty() {
            return;
        }
        if let Some(log) = lock(&self.audit).as_mut() {
            for line in &lines {
                log.write(line);
            }
            log.flush();
        }
    }

    /// Client -> server: the line handled, then its records written.
    fn on_client_line<W: Write>(&self, line: &[u8], server: &mut W) -> std::io::Result<()> {
        let result = self.handle_client_line(line, server);
        self.write_audit();
        result
    }

    /// Server -> client: the line handled, then its records written.
    fn on_server_line<W: Write>(&self, line: &[u8], client: &mut W) -> std::io::Result<()> {
        let result = self.handle_server_line(line, client);
        self.write_audit();
        result
    }

    fn answer_client(&self, reply: &Value) -> std::io::Result<()> {
        lock(&self.client_out).write_all(&line_of(reply))
    }

    fn handle_client_line<W: Write>(&self, line: &[u8], server: &mut W) -> std::io::Result<()> {
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            self.audit(Side::Client, McpMessage::Malformed(McpMalformed { bytes: line.len() }));
            return server.write_all(line);
        };
        match msg {
            Value::Array(items) => {
                let mut forward = Vec::new();
                let mut refused_any = false;
                for item in items {
                    match self.police_request(&item, line.len()) {
                        Some(reply) => {
                            refused_any = true;
                            self.answer_client(&reply)?;
                        }
                        None => forward.push(item),
                    }
                }
                match (refused_any, forward.is_empty()) {
                    (false, _) => server.write_all(line),
                    (true, true) => Ok(()),
                    (true, false) => server.write_all(&line_of(&Value::Array(forward))),
                }
            }
            msg => match self.police_request(&msg, line.len()) {
                Some(reply) => self.answer_client(&reply),
                None => server.write_all(line),
            },
        }
    }

    /// Tracks a request and decides: `None` to forward it, `Some(error response)` to refuse it.
    fn police_request(&self, msg: &Value, bytes: usize) -> Option<Value> {
        let method = msg.get("method").and_then(Value::as_str)?;
        let Some(id) = msg.get("id") else {
            // a notification (progress, cancelled, initialized...)
            self.audit(Side::Client, McpMessage::Notification(McpNotification { bytes, method: method.into() }));
            return None;
        };
        let tool = (method == "tools/call")
            .then(|| msg.pointer("/params/name").and_then(Value::as_str).map(String::from))
            .flatten();
        let args = tool.as_ref().map(|_| msg.pointer("/params/arguments").cloned().unwrap_or_else(|| json!({})));
        let refusal = match (&tool, &args) {
            (Some(tool), Some(args)) => self.check_call(tool, args).err(),
            _ => None,
        };
        let decision = match &refusal {
            Some(r) => Decision::Refused { reason: r.why.clone() },
            None => Decision::Allowed,
        };
        let request = McpRequest {
            bytes,
            method: method.into(),
            id: Some(id.clone()),
            tool: tool.clone(),
            arguments: args.as_ref().map(|a| self.arguments(a)),
            decision: Some(decision),
        };
        self.audit(Side::Client, McpMessage::Request(request));
        if let Some(refusal) = refusal {
            return Some(json!({"jsonrpc": "2.0", "id": id, "error": refusal.error()}));
        }
        if let Some(tool) = &tool {
            self.in_flight.begin(&id_key(id), tool);
        }
        lock(&self.pending).insert(id_key(id), Pending { method: method.to_string(), tool, started: Instant::now() });
        None
    }

    fn arguments(&self, args: &Value) -> Value {
        if self.cfg.log_arguments { args.clone() } else { shape(args) }
    }

    /// Every check of a `tools/call`, cheapest first.
    fn check_call(&self, tool: &str, args: &Value) -> Result<(), Refusal> {
        self.cfg.tools.permits(tool).map_err(|e| Refusal::invalid(e.to_string()))?;
        {
            let tools = lock(&self.tools);
            if tools.changed.contains(tool) {
                return Err(Refusal::invalid(format!(
                    "tool `{tool}` changed since it was pinned; review it and run `mcp-warden pins accept`"
                )));
            }
            if let Some(v) = tools.validators.get(tool) {
                validate(v, args).map_err(|e| Refusal::invalid(e.to_string()))?;
            }
        }
        for c in &self.cfg.constraints {
            c.check(tool, args).map_err(|e| Refusal::invalid(e.to_string()))?;
        }
        lock(&self.limiter).take(tool, Instant::now()).map_err(|(wait, rule)| Refusal {
            code: RATE_LIMITED,
            why: format!("rate limit {rule} reached; retry in {:.1} s", wait.as_secs_f64()),
            retry_after_ms: Some(wait.as_millis() as u64),
        })
    }

    fn handle_server_line<W: Write>(&self, line: &[u8], client: &mut W) -> std::io::Result<()> {
        let Ok(mut msg) = serde_json::from_slice::<Value>(line) else {
            self.audit(Side::Server, McpMessage::Malformed(McpMalformed { bytes: line.len() }));
            return client.write_all(line);
        };
        let changed = match &mut msg {
            Value::Array(items) => {
                // every element is handled (each one audits and may change), hence no `any`
                let mut changed = false;
                for m in items {
                    changed |= self.police_response(m, line.len());
                }
                changed
            }
            m => self.police_response(m, line.len()),
        };
        if changed { client.write_all(&line_of(&msg)) } else { client.write_all(line) }
    }

    /// Handles a response to a tracked request (or audits a server request/notification).
    /// Returns whether the message was modified.
    fn police_response(&self, msg: &mut Value, bytes: usize) -> bool {
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            let method = method.to_string();
            let message = match msg.get("id") {
                Some(_) => McpMessage::Request(McpRequest {
                    bytes,
                    method,
                    id: None,
                    tool: None,
                    arguments: None,
                    decision: None,
                }),
                None => McpMessage::Notification(McpNotification { bytes, method }),
            };
            self.audit(Side::Server, message);
            return false;
        }
        let Some(id) = msg.get("id").cloned() else { return false };
        let Some(p) = lock(&self.pending).remove(&id_key(&id)) else { return false };
        let notes = self.in_flight.end(&id_key(&id));
        let duration_ms = (p.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let (outcome, mut modified) = self.response_outcome(msg, &p.method);
        if p.method == "tools/call" {
            modified |= explain_refusals(msg, &notes);
        }
        let response = McpResponse { bytes, method: p.method, id, tool: p.tool, duration_ms, outcome };
        self.audit(Side::Server, McpMessage::Response(response));
        modified
    }

    /// What a response says (for the audit record), after what the layer changes in it: hidden
    /// errors, the tools a list may show, redacted secrets. Also returns whether it changed.
    fn response_outcome(&self, msg: &mut Value, method: &str) -> (ResponseOutcome, bool) {
        if let Some(error) = msg.get_mut("error") {
            let outcome = ResponseOutcome::Error { error: error.clone() };
            if !self.cfg.hide_errors {
                return (outcome, false);
            }
            let code = error.get("code").cloned().unwrap_or(json!(-32603));
            *error = json!({"code": code, "message": GENERIC_ERROR});
            return (outcome, true);
        }
        match method {
            "tools/list" => {
                let (modified, hidden) = self.police_tool_list(msg);
                let hidden_tools = (!hidden.is_empty()).then_some(hidden);
                (ResponseOutcome::Ok { hidden_tools, redactions: None }, modified)
            }
            "tools/call" => self.police_tool_result(msg),
            _ => (ResponseOutcome::Ok { hidden_tools: None, redactions: None }, false),
        }
    }

    /// A `tools/call` result: a failed one hidden behind a generic message (with `--hide-errors`),
    /// secrets redacted otherwise.
    fn police_tool_result(&self, msg: &mut Value) -> (ResponseOutcome, bool) {
        let failed = msg.pointer("/result/isError").and_then(Value::as_bool).unwrap_or(false);
        if failed
            && self.cfg.hide_errors
            && let Some(result) = msg.get_mut("result")
        {
            let error = Some(result.clone());
            *result = json!({"content": [{"type": "text", "text": GENERIC_ERROR}], "isError": true});
            return (ResponseOutcome::ToolError { error, redactions: None }, true);
        }
        let redactions = match (&self.cfg.redactor, msg.get_mut("result")) {
            (Some(redactor), Some(result)) if !(failed && self.cfg.hide_errors) => Some(redactor.value(result) as u64),
            _ => None,
        };
        let modified = redactions.is_some_and(|n| n > 0);
        let outcome = match failed {
            true => ResponseOutcome::ToolError { error: None, redactions },
            false => ResponseOutcome::Ok { hidden_tools: None, redactions },
        };
        (outcome, modified)
    }

    /// Removes denied and changed tools, keeps validators of the rest, pins their definitions.
    fn police_tool_list(&self, msg: &mut Value) -> (bool, Vec<String>) {
        let Some(list) = msg.pointer_mut("/result/tools").and_then(Value::as_array_mut) else { return (false, vec![]) };
        let mut tools = lock(&self.tools);
        let mut pins = lock(&self.pins);
        let mut hidden = Vec::new();
        let mut pins_changed = false;
        list.retain(|t| {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Err(why) = self.cfg.tools.permits(&name) {
                hidden.push(format!("{name}: {why}"));
                return false;
            }
            if let Some(store) = pins.as_mut() {
                match store.check(&name, &tool_hash(t)) {
                    Check::Same => {
                        tools.changed.remove(&name);
                    }
                    Check::New => pins_changed = true,
                    Check::Changed => {
                        pins_changed = true;
                        tools.changed.insert(name.clone());
                        let why = format!("{name}: changed since it was pinned (mcp-warden pins accept)");
                        eprintln!("mcp-warden: tool {}", crate::logging::printable(&why));
                        hidden.push(why);
                        return false;
                    }
                }
            }
            if let Some(schema) = t.get("inputSchema")
                && let Ok(v) = jsonschema::validator_for(schema)
            {
                tools.validators.insert(name, v);
            }
            true
        });
        if pins_changed
            && let Some(store) = pins.as_ref()
            && let Err(e) = store.save()
        {
            tracing::warn!("could not save tool pins to {}: {e}", store.path.display());
        }
        (!hidden.is_empty(), hidden)
    }
}

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends what mcp-warden refused during a tool call to its result, as one more text item, so
/// that the client (and the model) sees why the call failed and what would allow it.
fn explain_refusals(msg: &mut Value, notes: &[String]) -> bool {
    let Some(content) = msg.pointer_mut("/result/content").and_then(Value::as_array_mut) else { return false };
    if notes.is_empty() {
        return false;
    }
    let text = format!(
        "mcp-warden refused during this call:\n{}",
        notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n")
    );
    content.push(json!({"type": "text", "text": text}));
    true
}

/// Runs `client` bytes and then `server` bytes through the relays' line handling, without
/// threads or processes; returns what would reach the server and what would reach the client.
/// For the fuzz target and its regression corpus.
#[doc(hidden)]
pub fn process(cfg: McpConfig, client: &[u8], server: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let audit = AuditLog::open(crate::audit::Destination::File("/dev/null".into()))?;
    let to_client = Shared::default();
    let state = State {
        limiter: Mutex::new(RateLimiter::new(&cfg.rates).map_err(std::io::Error::other)?),
        cfg,
        client_out: Mutex::new(Box::new(to_client.clone())),
        pending: Mutex::new(HashMap::new()),
        tools: Mutex::new(Tools::default()),
        pins: Mutex::new(None),
        audit: Mutex::new(Some(audit)),
        deferred: Mutex::default(),
        in_flight: Arc::default(),
    };
    let mut to_server = Vec::new();
    relay(client, &mut to_server, |line, out| state.on_client_line(line, out));
    let mut sink = to_client.clone();
    relay(server, &mut sink, |line, out| state.on_server_line(line, out));
    let delivered = lock(&to_client.0).clone();
    Ok((to_server, delivered))
}
