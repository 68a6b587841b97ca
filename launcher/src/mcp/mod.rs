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
pub mod pins;
pub mod policy;
pub mod proxy;
pub mod redact;
pub mod roots;
pub mod tools;

use std::path::PathBuf;

use annotations::{AnnotationPolicy, Guard, Observed};

use crate::audit::Destination;

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
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<Vec<Call>>);

#[derive(Debug)]
struct Call {
    id: String,
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
    pub fn begin(&self, id: &str, tool: &str, guard: Guard) {
        self.lock().push(Call {
            id: id.into(),
            tool: tool.into(),
            guard,
            observed: Observed::default(),
            notes: Vec::new(),
        });
    }

    /// The call is answered.
    pub fn end(&self, id: &str) -> Ended {
        let mut calls = self.lock();
        match calls.iter().position(|c| c.id == id) {
            Some(i) => {
                let c = calls.remove(i);
                Ended { notes: c.notes, observed: c.observed }
            }
            None => Ended::default(),
        }
    }

    /// The tool of the only call in flight.
    pub fn only(&self) -> Option<String> {
        match self.lock().as_slice() {
            [call] => Some(call.tool.clone()),
            _ => None,
        }
    }

    /// The tool of an in-flight call that forbids `attempt`, if any.
    pub fn forbidding(&self, attempt: Attempt) -> Option<String> {
        self.lock().iter().find(|c| forbids(c.guard, attempt)).map(|c| c.tool.clone())
    }

    /// Notes that `attempt` was tried during the calls of `tool` that forbid it.
    pub fn observe(&self, tool: &str, attempt: Attempt) {
        for call in self.lock().iter_mut().filter(|c| c.tool == tool && forbids(c.guard, attempt)) {
            match attempt {
                Attempt::Write => call.observed.wrote = true,
                Attempt::Connect => call.observed.connected = true,
            }
        }
    }

    /// Notes a refusal for the only call in flight (a distinct line once).
    pub fn note(&self, line: &str) {
        if let [call] = self.lock().as_mut_slice()
            && call.notes.len() < NOTES_MAX
            && !call.notes.iter().any(|n| n == line)
        {
            call.notes.push(line.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn forbids(guard: Guard, attempt: Attempt) -> bool {
    match attempt {
        Attempt::Write => guard.read_only,
        Attempt::Connect => guard.closed_world,
    }
}
