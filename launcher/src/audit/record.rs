//! The audit log's records as types: a struct per kind, [`AuditRecord`] over them (tagged by
//! `kind`) and [`AuditLine`], a record with its time, which is what one line of the log holds.
//! docs/audit-log.schema.json is generated from these types; the doc comments are its
//! descriptions.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::time::Timestamp;

/// One line of the mcp-warden audit log (JSON lines): a record and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(title = "mcp-warden audit log line")]
pub struct AuditLine {
    /// RFC 3339 UTC time with nanoseconds.
    pub ts: Timestamp,
    #[serde(flatten)]
    pub record: AuditRecord,
}

impl AuditLine {
    /// `record`, stamped with the current time.
    pub fn now(record: AuditRecord) -> AuditLine {
        AuditLine { ts: Timestamp::now(), record }
    }
}

/// What happened, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AuditRecord {
    /// The first record of each writer, written before the server starts.
    Start(Start),
    /// An exec by a process of the server (eBPF layer).
    Exec(Exec),
    /// A new process (threads are not reported).
    Fork(Fork),
    /// A process ended.
    Exit(Exit),
    /// A file open, with the Landlock allow-list's verdict.
    Open(Open),
    /// A `connect`, checked against the profile's network rules.
    Connect(Net),
    /// A UDP `sendmsg`/`sendto`, checked against the profile's network rules.
    Send(Net),
    /// A `bind`, checked against the profile's network rules.
    Bind(Net),
    /// A call the seccomp filter or the network broker refused, as the supervisor saw it.
    Deny(Deny),
    /// A raw socket refused.
    Socket(Socket),
    /// A BPF LSM hook's decision (only where BPF LSM programs load).
    Lsm(Lsm),
    /// A DNS query of the server's, answered by mcp-warden's resolver.
    Dns(Dns),
    /// A JSON-RPC message through the MCP layer.
    Mcp(Mcp),
    /// A tool in flight tried what its annotations say it does not do.
    #[serde(rename = "annotation-violation")]
    AnnotationViolation(AnnotationViolation),
    /// What each layer enforces on this host, as the MCP layer tells the client.
    Posture(Posture),
    /// The last record of the eBPF layer's log, when the server has ended.
    Summary(RunSummary),
}

impl AuditRecord {
    /// The `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditRecord::Start(_) => "start",
            AuditRecord::Exec(_) => "exec",
            AuditRecord::Fork(_) => "fork",
            AuditRecord::Exit(_) => "exit",
            AuditRecord::Open(_) => "open",
            AuditRecord::Connect(_) => "connect",
            AuditRecord::Send(_) => "send",
            AuditRecord::Bind(_) => "bind",
            AuditRecord::Deny(_) => "deny",
            AuditRecord::Socket(_) => "socket",
            AuditRecord::Lsm(_) => "lsm",
            AuditRecord::Dns(_) => "dns",
            AuditRecord::Mcp(_) => "mcp",
            AuditRecord::AnnotationViolation(_) => "annotation-violation",
            AuditRecord::Posture(_) => "posture",
            AuditRecord::Summary(_) => "summary",
        }
    }

    /// A refused (or, in audit mode, would-be-refused) operation: the journal gives these a
    /// warning priority.
    pub fn is_denial(&self) -> bool {
        let denied = |v: &Verdict| matches!(v, Verdict::Deny { .. });
        match self {
            AuditRecord::Open(o) => o.verdict.as_ref().is_some_and(denied),
            AuditRecord::Connect(n) | AuditRecord::Send(n) | AuditRecord::Bind(n) => denied(&n.verdict),
            AuditRecord::Deny(_) => true,
            AuditRecord::Socket(s) => denied(&s.verdict),
            AuditRecord::Lsm(l) => denied(&l.verdict),
            AuditRecord::Dns(d) => denied(&d.verdict),
            AuditRecord::Mcp(m) => matches!(
                &m.message,
                McpMessage::Request(McpRequest { decision: Some(Decision::Refused { .. }), .. })
                    | McpMessage::Response(McpResponse { outcome: ResponseOutcome::Refused { .. }, .. })
                    | McpMessage::Roots(_)
            ),
            AuditRecord::AnnotationViolation(v) => v.errno.is_some(),
            AuditRecord::Start(_)
            | AuditRecord::Posture(_)
            | AuditRecord::Exec(_)
            | AuditRecord::Fork(_)
            | AuditRecord::Exit(_)
            | AuditRecord::Summary(_) => false,
        }
    }
}

/// Which part of mcp-warden writes the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Writer {
    /// The eBPF layer's reader.
    Ebpf,
    /// The MCP layer.
    Mcp,
    /// The supervisor: refusals of the seccomp filter and the network broker.
    Supervisor,
}

/// `kind: start`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Start {
    pub writer: Writer,
    /// The profile's name (or path).
    pub profile: String,
    /// The server's program.
    pub program: String,
    /// The supervisor's process id.
    pub launcher_pid: u32,
}

impl Start {
    /// The start record of `writer` in this process.
    pub fn new(writer: Writer, profile: impl Into<String>, program: impl Into<String>) -> Start {
        Start { writer, profile: profile.into(), program: program.into(), launcher_pid: std::process::id() }
    }
}

/// The process and thread an eBPF event comes from: every event of the eBPF layer has these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Task {
    /// Process id, in the host's PID namespace.
    pub pid: u32,
    /// Its parent (null for a process whose fork was not seen).
    pub ppid: Option<u32>,
    /// Thread id.
    pub tid: u32,
    /// The kernel's 15-character command name.
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// The server's cgroup (v2 inode number).
    pub cgroup_id: u64,
    /// Which program image the process runs: 0 before its first exec, then a number unique
    /// within the log, inherited across fork (null for a process whose fork was not seen).
    pub exec_id: Option<u64>,
}

/// A system call's return value (`result`), or `"result": "error"` with the errno's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CallResult {
    /// It returned this value (0, or a file descriptor for an open).
    Returned { result: i64 },
    /// It failed.
    Failed {
        result: Failure,
        /// The errno's name: `EPERM`, `EACCES`, `ENOENT`...
        errno: String,
    },
}

impl CallResult {
    /// From a raw return value: negative is `-errno`.
    pub fn from_ret(ret: i64) -> CallResult {
        if ret < 0 {
            let errno = nix::errno::Errno::from_raw(-ret as i32);
            CallResult::Failed { result: Failure::Error, errno: format!("{errno:?}") }
        } else {
            CallResult::Returned { result: ret }
        }
    }
}

/// The `result` of a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    Error,
}

/// What the profile said about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny {
        /// `true`: it failed; `false`: audit mode, it was allowed and only logged.
        enforced: bool,
    },
}

/// `kind: exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Exec {
    #[serde(flatten)]
    pub task: Task,
    /// The program as given to execve.
    pub path: String,
    /// At most 4 arguments of 64 bytes.
    pub argv: Vec<String>,
    #[serde(flatten)]
    pub result: CallResult,
}

/// `kind: fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Fork {
    #[serde(flatten)]
    pub task: Task,
    /// Process id of the new process.
    pub child: u32,
}

/// `kind: exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Exit {
    #[serde(flatten)]
    pub task: Task,
    /// The `exit_group` status, or null when the process did not exit by itself.
    pub code: Option<i32>,
    /// The signal it died of when it sent it to itself (a crash, `raise`); null otherwise,
    /// including a kill by another process.
    pub signal: Option<i32>,
}

/// `kind: open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Open {
    #[serde(flatten)]
    pub task: Task,
    /// The path as given, at most 256 bytes.
    pub path: String,
    /// `O_RDONLY`, `O_WRONLY` or `O_RDWR`, then the other flags set (`O_CLOEXEC`, ...).
    pub flags: Vec<&'static str>,
    #[serde(flatten)]
    pub result: CallResult,
    /// Landlock's decision for this access; absent for a path relative to a directory fd.
    #[serde(flatten)]
    pub verdict: Option<Verdict>,
}

/// The address family of a network event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

/// `kind: connect`, `send` and `bind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Net {
    #[serde(flatten)]
    pub task: Task,
    /// The destination (or bound) address.
    pub addr: String,
    pub port: u16,
    /// `tcp` or `udp` (`raw/PROTOCOL` and `typeTYPE/PROTOCOL` for other sockets).
    pub proto: String,
    pub family: Family,
    /// `EPERM` when denied, `ECONNREFUSED`... Absent when the call was allowed and the monitor
    /// did not follow it to its end (`--monitor-level tree`, the default).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub result: Option<CallResult>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// `kind: dns`: one query the server sent (UDP or TCP, port 53, to any address), answered by
/// mcp-warden's resolver in the supervisor. Names the profile allows are resolved upstream; their
/// addresses are then open for the named ports until `ttl` runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Dns {
    /// The name asked, lower case, without the root's dot.
    pub name: String,
    /// The record type asked (`A`, `AAAA`, `CNAME`, `TXT`...).
    pub qtype: String,
    /// `udp` or `tcp`.
    pub transport: String,
    pub outcome: DnsOutcome,
    /// Answered: the addresses pinned. Rebinding: the addresses that got the answer dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Answered: seconds the addresses stay open (the record's TTL, clamped to 5-3600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Answered: the destinations the addresses open (`tcp:443`), from the profile's names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub opens: Vec<String>,
    /// Why a query was not answered with addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What the resolver did with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsOutcome {
    /// Resolved upstream and answered (also when upstream said the name does not exist).
    Answered,
    /// Not one of the profile's names: NXDOMAIN, and the query never left the host.
    Refused,
    /// Upstream answered a public name with a private, loopback, link-local, metadata, CGNAT or
    /// ULA address the profile does not let names answer: dropped, the server got SERVFAIL.
    Rebinding,
    /// A record type the resolver does not pass (only A, AAAA and CNAME are): an empty answer.
    Empty,
    /// No upstream resolver answered: SERVFAIL.
    Failed,
    /// Not a query the resolver takes (several questions, another class or opcode): an error
    /// answer.
    Malformed,
    /// Not answered: the answer would reach, or could have come from, a socket another process
    /// shares the server's port with (the resolver on the loopback, with the eBPF layer).
    Withheld,
}

/// `kind: deny`: one refused call. Refusals of the seccomp filter (every rule: the deny-set, socket
/// families and types, ioctl requests, clone flags, mode bits...) and of the network broker are
/// handed to the supervisor (seccomp user notification), which writes this record and answers the
/// call, with or without privileges and eBPF. Refusals of Landlock and of the filesystem view on
/// calls that change files, ports and signals are seen by the eBPF layer when it runs (`open` and
/// `exec` records carry their own verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Deny {
    #[serde(flatten)]
    pub caller: Caller,
    pub layer: DenyLayer,
    /// The system call's name (`syscall_NR` for a number without one).
    pub syscall: String,
    pub nr: u32,
    /// The arguments that decided, by name (`family`, `type`, `request`, `flags`, `mode`,
    /// `address`...), decoded where they have names.
    pub args: BTreeMap<String, String>,
    /// The path the call names, read from the caller's memory (a file descriptor's target for the
    /// `f*` calls); absent for calls without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why, in words: the rule that matched.
    pub reason: String,
    /// The errno the caller got; absent in audit mode, where the call went ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The thread that made a refused call, as the supervisor finds it in /proc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Caller {
    /// Process id, in the host's PID namespace (null if it ended before it was looked up; so are
    /// `ppid` and `uid`).
    pub pid: Option<u32>,
    /// Its parent.
    pub ppid: Option<u32>,
    /// Thread id.
    pub tid: u32,
    /// The kernel's 15-character command name.
    pub comm: String,
    /// Real uid.
    pub uid: Option<u32>,
}

/// The layer that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DenyLayer {
    Seccomp,
    /// The network broker (destinations by host name, denied ranges, DNS).
    Broker,
    /// A file, port or signal outside the Landlock ruleset (seen by the eBPF layer).
    Landlock,
    /// A write outside the write grants, on the filesystem view's read-only mounts (eBPF layer).
    #[serde(rename = "fs-view")]
    FsView,
    /// A path outside every grant, absent from the hidden root (eBPF layer).
    #[serde(rename = "fs-hide")]
    FsHide,
}

impl DenyLayer {
    /// The name refusals are counted and told under (the summary's `denials_by_kind`, stderr).
    pub fn name(self) -> &'static str {
        match self {
            DenyLayer::Seccomp => "seccomp",
            DenyLayer::Broker => "network",
            DenyLayer::Landlock => "landlock",
            DenyLayer::FsView => "fs-view",
            DenyLayer::FsHide => "fs-hide",
        }
    }
}

/// `kind: socket`: the arguments of the refused `socket` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Socket {
    #[serde(flatten)]
    pub task: Task,
    pub family: u32,
    #[serde(rename = "type")]
    pub sock_type: u32,
    pub protocol: u32,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The BPF LSM hook that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LsmHook {
    PtraceAccessCheck,
    TaskKill,
    SocketConnect,
    BprmCheckSecurity,
}

/// `kind: lsm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Lsm {
    #[serde(flatten)]
    pub task: Task,
    pub hook: LsmHook,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Who sent an MCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

/// `kind: mcp`: one JSON-RPC message (each element of a batch is one record).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Mcp {
    pub from: Side,
    #[serde(flatten)]
    pub message: McpMessage,
}

/// The kind of JSON-RPC message, by `message`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "message", rename_all = "lowercase")]
pub enum McpMessage {
    /// A request (with an id): from the client, or from the server (sampling, elicitation...).
    Request(McpRequest),
    /// The server's answer to a client request.
    Response(McpResponse),
    /// A message without an id, in either direction.
    Notification(McpNotification),
    /// A line that is not JSON (relayed as it came), or too long to police (dropped).
    Malformed(McpMalformed),
    /// Roots the client gave the server, narrowed to the filesystem grants.
    Roots(McpRoots),
}

/// Roots withheld from the server (`message: roots`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct McpRoots {
    /// The roots removed, as the client gave them (outside every grant, or wider than one).
    pub removed: Vec<String>,
    /// The grants the server was given in place of a wider root.
    pub added: Vec<String>,
}

/// `kind: annotation-violation`: while a call of `tool` was in flight, the server tried what the
/// tool's annotations say it does not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AnnotationViolation {
    #[serde(flatten)]
    pub caller: Caller,
    pub tool: String,
    /// The annotation broken: `readOnlyHint` (a write) or `openWorldHint` (a new connection).
    pub annotation: String,
    /// The system call tried.
    pub syscall: String,
    /// The path it names, or the address it connects or sends to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The errno the caller got; absent when the call went ahead (enforcement off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
}

/// `kind: posture`: what each layer enforces on this host, requested against enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Posture {
    pub layers: Vec<LayerPosture>,
    /// The SHA-256 of the resolved plan (`mcp-warden explain`'s content), short.
    pub plan: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LayerPosture {
    pub layer: String,
    /// `required`, `best-effort` or `off`.
    pub requested: String,
    /// `full`, `partial`, `missing` or `off`.
    pub enforced: String,
    /// Why partial or missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A request: from the client (tracked, checked, answered) or from the server.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct McpRequest {
    /// Bytes of the line that carried it.
    pub bytes: usize,
    pub method: String,
    /// The JSON-RPC id, as the client sent it (client requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The tool of a `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The shape of a call's arguments (`string(56)`, `array(3)`, `number`...); the values
    /// themselves with `log-arguments = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// What the layer did with a client request.
    #[serde(flatten)]
    pub decision: Option<Decision>,
}

/// The MCP layer's decision on a client request (`outcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded to the server.
    Allowed,
    /// Answered by the layer with a JSON-RPC error; the server never saw it.
    Refused { reason: String },
}

/// The server's response to a tracked client request.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct McpResponse {
    /// Bytes of the line that carried it.
    pub bytes: usize,
    /// The request's method.
    pub method: String,
    /// The JSON-RPC id.
    pub id: Value,
    /// The request's tool, for a `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Milliseconds from the request to the response.
    pub duration_ms: f64,
    #[serde(flatten)]
    pub outcome: ResponseOutcome,
}

/// How the request went (`outcome`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ResponseOutcome {
    Ok {
        /// On a `tools/list` response: the tools removed, and why.
        #[serde(skip_serializing_if = "Option::is_none")]
        hidden_tools: Option<Vec<String>>,
        /// Secrets replaced in a tool's result.
        #[serde(skip_serializing_if = "Option::is_none")]
        redactions: Option<u64>,
    },
    /// A JSON-RPC error response.
    Error {
        /// The full error object, as the server sent it.
        error: Value,
    },
    /// A result the layer refused and replaced by a tool error (structured output that breaks its
    /// schema, a sampling request the profile does not allow).
    Refused { reason: String },
    /// A tool result with `isError`.
    ToolError {
        /// The full result, when the client was given a generic message instead.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        redactions: Option<u64>,
    },
}

/// A notification (no id, no response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct McpNotification {
    pub bytes: usize,
    pub method: String,
}

/// A line that is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct McpMalformed {
    pub bytes: usize,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

/// `--monitor-level`: what the eBPF layer recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MonitorLevel {
    /// The process tree and the socket programs' decisions; no opens, syscall counts or file
    /// refusals of Landlock and the filesystem view.
    Tree,
    /// Also every open, failed exec, syscall counts and the file refusals.
    Full,
}

/// `kind: summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RunSummary {
    pub profile: String,
    pub program: String,
    pub mode: Mode,
    /// What the eBPF layer recorded in this run.
    pub level: MonitorLevel,
    /// The server's exit status (null when a signal ended it).
    pub exit_code: Option<i32>,
    /// The signal that ended the server, or null.
    pub signal: Option<i32>,
    /// Events per kind.
    pub events: BTreeMap<&'static str, u64>,
    /// Refused (or, in audit mode, would-be-refused) operations.
    pub denials: u64,
    pub denials_by_kind: BTreeMap<&'static str, u64>,
    /// Events that did not fit in the ring buffer (counted in the kernel).
    pub dropped: u64,
    /// Opens folded into an earlier identical event.
    pub opens_folded: u64,
    /// Per process and path, opens seen more than once.
    pub repeated_opens: Vec<RepeatedOpen>,
    /// Ring-buffer records the reader could not decode.
    pub undecodable: u64,
    /// Lines the log could not take (disk full...).
    pub log_lines_lost: u64,
    /// Per pid, the count of every system call by name (in-kernel counters).
    pub syscalls: BTreeMap<String, BTreeMap<String, u64>>,
    pub lsm: LsmStatus,
}

/// An open folded in the kernel, with how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RepeatedOpen {
    pub pid: u32,
    /// The path (null when its first open was not logged).
    pub path: Option<String>,
    pub count: u64,
}

/// Whether the optional BPF LSM hooks were loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LsmStatus {
    Loaded {
        loaded: Const<true>,
        /// `file_open` hook calls of the server.
        file_opens: u64,
    },
    NotLoaded {
        loaded: Const<false>,
        /// Why the hooks are not loaded.
        reason: String,
    },
}

/// A boolean that is always `B`: it tells the variants of [`LsmStatus`] apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Const<const B: bool>;

impl<const B: bool> Serialize for Const<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(B)
    }
}

impl<const B: bool> JsonSchema for Const<B> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        if B { "True".into() } else { "False".into() }
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": B })
    }
}
