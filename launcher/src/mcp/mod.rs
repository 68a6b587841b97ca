//! The MCP-aware layer: a proxy on the JSON-RPC stream between the client and the server.
//!
//! Two threads of the supervisor relay newline-delimited JSON-RPC: client -> server and
//! server -> client. Everything they do not police passes byte for byte: notifications,
//! progress, cancellation, server-to-client requests (sampling, elicitation, roots) and their
//! responses, malformed lines. What they police:
//! - `tools/call` requests: denied or changed ("rug pull") tools, rate limits, the arguments
//!   against the tool's advertised `inputSchema` and the profile's constraints. A refused call is
//!   answered by the proxy; the server never sees it.
//! - `tools/list` results: denied and changed tools removed (the model never sees them), schemas
//!   kept for validation, definitions pinned.
//! - `tools/call` results: secrets redacted; with `hide-errors`, failures replaced by a generic
//!   message.
//! - every request and response: one `"kind": "mcp"` line in the audit log.

pub mod annotations;
mod from_client;
mod from_server;
mod json;
pub mod pins;
pub mod policy;
pub mod proxy;
pub mod redact;
pub mod roots;
pub mod tools;

use std::collections::BTreeMap;
use std::path::PathBuf;

use annotations::{AnnotationPolicy, Guard, Observed};

use crate::audit::Destination;
pub use json::IdKey;

/// The layer's configuration, resolved from the profile and the command line.
#[derive(Debug, Clone)]
pub struct McpConfig {
    pub tools: policy::ToolFilter,
    pub rates: Vec<(String, policy::Rate)>,
    pub constraints: Vec<policy::Constraint>,
    pub redactor: Option<redact::Redactor>,
    pub hide_errors: bool,
    /// Where this server's tool pins live (`None`: pinning off).
    pub pins: Option<PathBuf>,
    pub log_arguments: bool,
    pub audit: Destination,
    pub annotations: AnnotationPolicy,
    /// Server requests for `sampling/createMessage` reach the client (else refused).
    pub sampling: bool,
    /// The filesystem grants (canonical paths), which roots are intersected with.
    pub grants: Vec<PathBuf>,
    /// Directories a read-only tool may still write files in (canonical).
    pub scratch: Vec<PathBuf>,
    /// What each layer enforces on this host, for `_meta` of the initialize or discover result.
    pub posture: Option<crate::audit::record::Posture>,
}

impl McpConfig {
    /// A configuration that exercises every check: a denied tool, a rate limit, a path
    /// constraint, redaction and error hiding. For the fuzz target and its regression corpus.
    #[doc(hidden)]
    pub fn for_fuzzing() -> McpConfig {
        let matcher = |g: &str| globset::Glob::new(g).map(|g| g.compile_matcher());
        McpConfig {
            tools: policy::ToolFilter::new(&[], &["denied*".into()]).unwrap_or_else(|_| unreachable!()),
            rates: vec![("echo".into(), policy::Rate { calls: 2, period: std::time::Duration::from_secs(60) })],
            constraints: vec![policy::Constraint {
                tool: matcher("read_*").unwrap_or_else(|_| unreachable!()),
                argument: "path".into(),
                max_length: Some(64),
                pattern: None,
                one_of: None,
                under: vec![PathBuf::from("/srv")],
            }],
            redactor: redact::Redactor::new(&[], &[]).ok(),
            hide_errors: true,
            pins: None,
            log_arguments: false,
            audit: Destination::File("/dev/null".into()),
            annotations: AnnotationPolicy::default(),
            sampling: false,
            grants: vec![PathBuf::from("/srv")],
            scratch: Vec::new(),
            posture: None,
        }
    }
}

/// The `tools/call` requests in flight, shared with the supervisor: a learning run's tracer
/// attributes each access to the one call in flight (if exactly one is), each refusal seen while
/// exactly one is in flight is noted for it (its result carries the explanation), and the seccomp
/// listener holds each in-flight call to its annotations.
///
/// Held by id (ordered, see [`IdKey`]), with a count of the calls that forbid each attempt: a
/// client pipelining thousands of calls costs each answer one lookup near the map's front, and a
/// guarded system call none while no call forbids it. Ids in flight are unique: the layer refuses
/// a client request whose id is that of one still pending.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<Calls>);

#[derive(Debug, Default)]
struct Calls {
    by_id: BTreeMap<IdKey, Call>,
    /// Calls whose guard forbids writing, and connecting.
    read_only: usize,
    closed_world: usize,
}

#[derive(Debug)]
struct Call {
    tool: String,
    guard: Guard,
    /// What the call tried against its annotations.
    observed: Observed,
    /// What was refused during the call, one line each (at most [`NOTES_MAX`]).
    notes: Vec<String>,
}

/// Refusals noted per call; past them the audit log has the rest.
const NOTES_MAX: usize = 16;

/// What a call in flight forbids the server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Change the filesystem (forbidden by `readOnlyHint`).
    Write,
    /// Open a new outbound connection or send to a new destination (forbidden when
    /// `openWorldHint` is false).
    Connect,
}

/// What a call is when it ends: what was refused during it, and what it tried.
#[derive(Debug, Default)]
pub struct Ended {
    pub notes: Vec<String>,
    pub observed: Observed,
}

impl InFlight {
    pub fn begin(&self, id: IdKey, tool: &str, guard: Guard) {
        let mut calls = self.lock();
        calls.count_guard(guard, true);
        let call = Call { tool: tool.into(), guard, observed: Observed::default(), notes: Vec::new() };
        // the layer keeps ids in flight unique; were one begun twice, the newer call stands
        if let Some(old) = calls.by_id.insert(id, call) {
            calls.count_guard(old.guard, false);
        }
    }

    /// The call is answered, or cancelled.
    pub fn end(&self, id: &IdKey) -> Ended {
        let mut calls = self.lock();
        let Some(c) = calls.by_id.remove(id) else { return Ended::default() };
        calls.count_guard(c.guard, false);
        Ended { notes: c.notes, observed: c.observed }
    }

    /// The tool of the only call in flight.
    pub fn only(&self) -> Option<String> {
        self.lock().only().map(|c| c.tool.clone())
    }

    /// The tool of an in-flight call that forbids `attempt`, if any.
    pub fn forbidding(&self, attempt: Attempt) -> Option<String> {
        let calls = self.lock();
        if calls.forbidding(attempt) == 0 {
            return None;
        }
        calls.by_id.values().find(|c| forbids(c.guard, attempt)).map(|c| c.tool.clone())
    }

    /// Notes that `attempt` was tried during the calls of `tool` that forbid it.
    pub fn observe(&self, tool: &str, attempt: Attempt) {
        let mut calls = self.lock();
        if calls.forbidding(attempt) == 0 {
            return;
        }
        for call in calls.by_id.values_mut().filter(|c| c.tool == tool && forbids(c.guard, attempt)) {
            match attempt {
                Attempt::Write => call.observed.wrote = true,
                Attempt::Connect => call.observed.connected = true,
            }
        }
    }

    /// Notes a refusal for the only call in flight (a distinct line once).
    pub fn note(&self, line: &str) {
        let mut calls = self.lock();
        if let Some(call) = calls.only_mut()
            && call.notes.len() < NOTES_MAX
            && !call.notes.iter().any(|n| n == line)
        {
            call.notes.push(line.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Calls {
    fn only(&self) -> Option<&Call> {
        (self.by_id.len() == 1).then(|| self.by_id.values().next()).flatten()
    }

    fn only_mut(&mut self) -> Option<&mut Call> {
        (self.by_id.len() == 1).then(|| self.by_id.values_mut().next()).flatten()
    }

    /// How many calls in flight forbid `attempt`.
    fn forbidding(&self, attempt: Attempt) -> usize {
        match attempt {
            Attempt::Write => self.read_only,
            Attempt::Connect => self.closed_world,
        }
    }

    /// Counts a call in (`begin`) or out.
    fn count_guard(&mut self, guard: Guard, begin: bool) {
        let step = |n: &mut usize, on: bool| match (on, begin) {
            (false, _) => {}
            (true, true) => *n += 1,
            (true, false) => *n -= 1,
        };
        step(&mut self.read_only, guard.read_only);
        step(&mut self.closed_world, guard.closed_world);
    }
}

fn forbids(guard: Guard, attempt: Attempt) -> bool {
    match attempt {
        Attempt::Write => guard.read_only,
        Attempt::Connect => guard.closed_world,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_ONLY: Guard = Guard { read_only: true, closed_world: false };

    fn id(text: &str) -> IdKey {
        IdKey::Text(text.into())
    }

    #[test]
    fn in_flight_calls_end_by_id_in_any_order() {
        let calls = InFlight::default();
        for i in 0..1000 {
            calls.begin(IdKey::Int(i), "echo", Guard::default());
        }
        assert_eq!(calls.only(), None);
        for i in (1..1000).rev() {
            assert_eq!(calls.end(&IdKey::Int(i)).observed, Observed::default());
        }
        assert_eq!(calls.only().as_deref(), Some("echo"));
        calls.end(&IdKey::Int(0));
        assert_eq!(calls.only(), None);
        assert_eq!(calls.end(&IdKey::Int(0)).notes, Vec::<String>::new(), "an id not in flight ends nothing");
    }

    #[test]
    fn an_id_begun_twice_holds_one_call_counted_once() {
        let calls = InFlight::default();
        calls.begin(id("1"), "peek", READ_ONLY);
        calls.begin(id("1"), "write", Guard::default());
        assert_eq!(calls.forbidding(Attempt::Write), None, "the newer call stands, counted alone");
        assert_eq!(calls.only().as_deref(), Some("write"));
        calls.end(&id("1"));
        assert_eq!(calls.only(), None);
        assert_eq!(calls.forbidding(Attempt::Write), None);
    }

    #[test]
    fn only_calls_that_forbid_an_attempt_are_named_and_observed() {
        let calls = InFlight::default();
        calls.begin(id("a"), "fetch", Guard::default());
        assert_eq!(calls.forbidding(Attempt::Write), None);
        calls.begin(id("b"), "peek", READ_ONLY);
        assert_eq!(calls.forbidding(Attempt::Write).as_deref(), Some("peek"));
        assert_eq!(calls.forbidding(Attempt::Connect), None);
        calls.observe("fetch", Attempt::Write);
        calls.note("refused: a write");
        assert!(!calls.end(&id("a")).observed.wrote, "fetch does not forbid writes");
        calls.note("refused: a write");
        let ended = calls.end(&id("b"));
        assert_eq!(ended.notes, ["refused: a write"], "noted only while the one call was in flight");
        assert_eq!(calls.forbidding(Attempt::Write), None);
    }
}
