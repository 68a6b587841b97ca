//! docs/audit-log.schema.json (generated from the launcher's record types) describes every line
//! the audit log holds: real runs produce the record kinds (the eBPF layer's as root; the MCP
//! layer's as any user) and each line is checked with the `jsonschema` crate. A kind that no run
//! on this host can produce is checked as a typed record, and the test says so on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcp_warden::audit::record::{
    AuditRecord, CallResult, Const, Family, Lsm, LsmHook, LsmStatus, Mode, MonitorLevel, Net, RunSummary, Socket, Task,
    Verdict,
};
use mcp_warden::audit::{AuditLine, Timestamp};
use mcp_warden_tests::*;
use serde_json::{Value, json};

/// Every `kind` of the log. The schema must name exactly these.
/// Real `dns` records are checked against the schema in tests/tests/dns.rs.
/// Real `annotation-violation` and `posture` records are checked in tests/tests/mcp_eras.rs.
const KINDS: [&str; 16] = [
    "start",
    "exec",
    "fork",
    "exit",
    "open",
    "connect",
    "send",
    "bind",
    "deny",
    "socket",
    "lsm",
    "dns",
    "mcp",
    "annotation-violation",
    "posture",
    "summary",
];

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-log.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).unwrap_or_else(|e| panic!("docs/audit-log.schema.json is not a schema: {e}"))
}

/// The errors of `record` against the schema, as text.
fn errors(v: &jsonschema::Validator, record: &Value) -> Vec<String> {
    v.iter_errors(record).map(|e| format!("{e} (at {})", e.instance_path())).collect()
}

/// Every line of the log at `path`, each checked against the schema; panics listing the first
/// invalid lines.
fn validated(path: &Path) -> Vec<Value> {
    let v = validator();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    let mut records = Vec::new();
    let mut invalid = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", n + 1));
        let errs = errors(&v, &record);
        if !errs.is_empty() {
            invalid.push(format!("line {}: {line}\n  {}", n + 1, errs.join("\n  ")));
        }
        records.push(record);
    }
    assert!(
        invalid.is_empty(),
        "{} of {} lines do not match the schema:\n{}",
        invalid.len(),
        records.len(),
        invalid[..invalid.len().min(5)].join("\n")
    );
    records
}

fn kinds(records: &[Value]) -> BTreeSet<String> {
    records.iter().filter_map(|r| r["kind"].as_str()).map(String::from).collect()
}

/// The `kind` values the schema's alternatives allow.
fn schema_kinds(schema: &Value) -> BTreeSet<String> {
    schema["oneOf"]
        .as_array()
        .expect("the schema's alternatives")
        .iter()
        .filter_map(|alt| alt["properties"]["kind"]["const"].as_str())
        .map(String::from)
        .collect()
}

fn task() -> Task {
    Task { pid: 2, ppid: Some(1), tid: 2, comm: "probe".into(), uid: 0, cgroup_id: 7, exec_id: Some(1) }
}

/// A record of each kind that no run here may produce: a refused raw socket (the server never
/// holds CAP_NET_RAW, which the kernel checks before the socket program runs) and the BPF LSM
/// hooks (where they load).
fn typed(kind: &str) -> AuditLine {
    let deny = Verdict::Deny { enforced: true };
    let record = match kind {
        "socket" => AuditRecord::Socket(Socket { task: task(), family: 2, sock_type: 3, protocol: 1, verdict: deny }),
        "lsm" => AuditRecord::Lsm(Lsm { task: task(), hook: LsmHook::PtraceAccessCheck, verdict: deny }),
        "bind" => AuditRecord::Bind(Net {
            task: task(),
            addr: "::1".into(),
            port: 80,
            proto: "tcp".into(),
            family: Family::Inet6,
            result: Some(CallResult::from_ret(-1)),
            verdict: deny,
        }),
        "summary" => AuditRecord::Summary(RunSummary {
            profile: "strict".into(),
            program: "/bin/true".into(),
            mode: Mode::Audit,
            level: MonitorLevel::Tree,
            exit_code: None,
            signal: Some(9),
            events: [("exec", 1)].into(),
            denials: 0,
            denials_by_kind: Default::default(),
            dropped: 0,
            opens_folded: 0,
            repeated_opens: vec![],
            undecodable: 0,
            log_lines_lost: 0,
            syscalls: Default::default(),
            lsm: LsmStatus::Loaded { loaded: Const, file_opens: 3 },
        }),
        other => panic!("no typed sample of `{other}`"),
    };
    AuditLine { ts: Timestamp::from_unix_nanos(1_732_440_000_123_456_789), record }
}

#[test]
fn the_schema_names_every_record_kind_and_refuses_what_it_does_not_name() {
    let schema = schema();
    let expected: BTreeSet<String> = KINDS.iter().map(|k| k.to_string()).collect();
    assert_eq!(schema_kinds(&schema), expected, "the kinds of docs/audit-log.schema.json");
    let v = validator();
    for kind in ["socket", "lsm", "bind", "summary"] {
        let record = serde_json::to_value(typed(kind)).unwrap();
        assert_eq!(errors(&v, &record), Vec::<String>::new(), "{record}");
    }
    let connect = json!({
        "ts": "2026-11-24T11:10:09.071352192Z", "kind": "connect", "pid": 9568, "ppid": 9566, "tid": 9568,
        "comm": "python3", "uid": 0, "cgroup_id": 196, "exec_id": 3, "addr": "127.0.0.2", "port": 18080,
        "proto": "tcp", "family": "inet", "result": "error", "errno": "EPERM", "verdict": "deny", "enforced": true,
    });
    assert_eq!(errors(&v, &connect), Vec::<String>::new(), "the documented example");
    for (field, value) in [
        ("kind", json!("conect")),
        ("verdict", json!("maybe")),
        ("result", json!("failed")),
        ("surprise", json!(1)),
        ("ts", json!("yesterday")),
    ] {
        let mut bad = connect.clone();
        bad[field] = value;
        assert!(!errors(&v, &bad).is_empty(), "accepted {field} = {}", bad[field]);
    }
    let mut no_enforced = connect.clone();
    no_enforced.as_object_mut().unwrap().remove("enforced");
    assert!(!errors(&v, &no_enforced).is_empty(), "a denial says whether it was enforced");
}

/// A shell whose children exec, fork, open an allowed and a refused file, connect and send to
/// an allowed and a refused address, bind, and make a system call seccomp refuses.
#[test]
fn every_record_of_an_ebpf_run_matches_the_schema() {
    if !is_root() {
        skip("every_record_of_an_ebpf_run_matches_the_schema", "loading eBPF programs needs root (CI runs as root)");
        return;
    }
    let s = Scratch::new(Who::Root);
    let data = s.mkdir("data", Who::Root);
    let known = s.file("data/known.txt", "audited\n", Who::Root);
    let secret = s.file("secret.txt", "not granted\n", Who::Root);
    let log = s.join("audit.jsonl");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tp, up) = (tcp.local_addr().unwrap().port(), udp.local_addr().unwrap().port());
    let script = format!(
        r#"
import socket
def attempt(f):
    try: f()
    except OSError: pass
def tcp(host):
    c = socket.socket(); c.settimeout(5); c.connect((host, {tp})); c.close()
def udp(host):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(("127.0.0.1", 0)); c.sendto(b"x", (host, {up})); c.close()
for host in ("127.0.0.1", "127.0.0.2"):
    attempt(lambda: tcp(host)); attempt(lambda: udp(host))
"#
    );
    let shell = format!(
        "cat {} {}; /usr/bin/python3 -c '{script}'; {} io-uring",
        known.display(),
        secret.display(),
        probe().display()
    );
    let sandbox = || {
        Sandbox::new(Who::Root)
            .grant("--allow-read", &data)
            .grant("--allow-connect", format!("127.0.0.1:{tp}"))
            .grant("--allow-connect", format!("udp:127.0.0.1:{up}"))
    };
    // The default level: the tree and the socket programs' decisions (allowed calls without result).
    let tree_log = log.with_file_name("tree.jsonl");
    let o =
        sandbox().grant("--audit-log", &tree_log).exec(&[OsStr::new("/bin/sh"), OsStr::new("-c"), OsStr::new(&shell)]);
    assert!(o.stderr.contains("mcp-warden: audit:"), "the run ended with its summary\n{}", o.describe());
    let tree = kinds(&validated(&tree_log));
    for kind in ["start", "exec", "fork", "exit", "connect", "send", "deny", "summary"] {
        assert!(tree.contains(kind), "no `{kind}` record in the default level's log: {tree:?}");
    }
    // The full level: every kind the probes write.
    let o = sandbox().grant("--audit-log", &log).grant("--monitor-level", "full").exec(&[
        OsStr::new("/bin/sh"),
        OsStr::new("-c"),
        OsStr::new(&shell),
    ]);
    assert!(o.stderr.contains("mcp-warden: audit:"), "the run ended with its summary\n{}", o.describe());
    let records = validated(&log);
    let seen = kinds(&records);
    for kind in ["start", "exec", "fork", "exit", "open", "connect", "send", "bind", "deny", "summary"] {
        assert!(seen.contains(kind), "no `{kind}` record in the log: {seen:?}");
    }
    let denied = |kind: &str| records.iter().any(|r| r["kind"] == kind && r["verdict"] == "deny");
    assert!(denied("open") && denied("connect") && denied("deny"), "refusals of each layer are in the log");
    let lsm = &records.iter().rfind(|r| r["kind"] == "summary").unwrap()["lsm"];
    let mut typed_only =
        vec![("socket", "the server never holds CAP_NET_RAW, which the kernel checks before the socket program")];
    if lsm["loaded"] == false {
        typed_only.push(("lsm", "the BPF LSM hooks do not load on this host"));
    }
    let v = validator();
    for (kind, why) in typed_only {
        if seen.contains(kind) {
            continue;
        }
        let record = serde_json::to_value(typed(kind)).unwrap();
        assert_eq!(errors(&v, &record), Vec::<String>::new(), "{record}");
        skip(&format!("a real `{kind}` record"), &format!("{why}; checked a typed one instead"));
    }
}

/// The official everything server through the MCP layer, driven by the official SDK client: a
/// request refused by the profile, a server request (sampling) and server notifications
/// (progress).
fn everything_session(who: Who, s: &Scratch, log: &Path) {
    let everything = need(test_env().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
    let steps = json!([
        ["list"],
        ["call", "echo", {"message": "hi"}],
        ["call", "get-env", {}],
        ["call", "trigger-sampling-request", {"prompt": "hello"}],
        ["call-progress", "trigger-long-running-operation", {"duration": 1, "steps": 2}]
    ]);
    let mut c = command_as(who, need(test_env().join("venv/bin/python")));
    c.arg(need(test_env().join("clients/mcp_steps.py"))).arg(steps.to_string()).arg("--").arg(warden());
    c.args(["run", "--profile", "everything", "--mcp", "--deny-tool", "get-env", "--audit-log"]).arg(log);
    c.args(["--", "node"]).arg(everything).arg("stdio");
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8").env("XDG_STATE_HOME", s.path());
    let o = run(c, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "{who:?}: MCP session failed\n{}", o.describe());
}

/// A raw JSON-RPC peer and the leaky test server with `--hide-errors`: a malformed line, an
/// unknown method (an error response), a call refused by the tool's schema, a failed tool
/// (hidden), redacted secrets and a tool hidden from the list.
fn raw_session(who: Who, s: &Scratch, log: &Path) {
    let clients = test_env().join("clients");
    let python = need(test_env().join("venv/bin/python"));
    let leaky = need(clients.join("leaky_server.py"));
    let mut c = warden_as(who, &[]);
    c.args(["run", "--profile", "python", "--mcp", "--hide-errors", "--deny-tool", "update", "--audit-log"]).arg(log);
    c.arg("--allow-read").arg(&clients).arg("--").arg(python).arg(leaky);
    let stderr = s.join("raw-session.stderr");
    c.env("XDG_STATE_HOME", s.path());
    c.stderr(std::fs::File::create(&stderr).unwrap());
    let mut peer = RawPeer::spawn(c);
    let call = |id: i64, method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    peer.send_line(&call(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}),
    ));
    peer.answer(1);
    peer.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    peer.send_line("{this is not json");
    peer.send_line(&call(2, "tools/list", json!({})));
    peer.answer(2);
    let tool =
        |id: i64, name: &str, arguments: Value| call(id, "tools/call", json!({"name": name, "arguments": arguments}));
    peer.send_line(&tool(3, "add", json!({"a": 1, "b": "two"})));
    assert_eq!(peer.answer(3)["error"]["code"], -32602, "refused by the tool's schema");
    peer.send_line(&tool(4, "crash", json!({})));
    peer.answer(4);
    peer.send_line(&tool(5, "get_config", json!({})));
    peer.answer(5);
    peer.send_line(&call(6, "no/such/method", json!({})));
    assert!(peer.answer(6)["error"].is_object(), "an error response");
    peer.close();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = peer.child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = peer.child.kill();
            panic!("the raw MCP session did not end\n{}", std::fs::read_to_string(&stderr).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "{who:?}: raw MCP session: {status}\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
}

/// The MCP layer's records (and, as root, the eBPF layer's in the same log).
#[test]
fn every_record_of_mcp_sessions_matches_the_schema() {
    let who = Who::current();
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    everything_session(who, &s, &log);
    raw_session(who, &s, &log);
    let records = validated(&log);
    let mcp: Vec<&Value> = records.iter().filter(|r| r["kind"] == "mcp").collect();
    let seen: BTreeSet<String> = mcp
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["from"].as_str().unwrap(),
                r["message"].as_str().unwrap(),
                r["outcome"].as_str().unwrap_or("-")
            )
        })
        .collect();
    for expected in [
        "client request allowed",
        "client request refused",
        "client notification -",
        "client malformed -",
        "server request refused",
        "server notification -",
        "server response ok",
        "server response error",
        "server response tool-error",
    ] {
        assert!(seen.contains(expected), "no `{expected}` record: {seen:?}");
    }
    for field in ["hidden_tools", "redactions", "error", "arguments", "reason", "duration_ms"] {
        assert!(mcp.iter().any(|r| r.get(field).is_some()), "no record with `{field}`");
    }
    let writers: BTreeSet<&str> =
        records.iter().filter(|r| r["kind"] == "start").filter_map(|r| r["writer"].as_str()).collect();
    if is_root() {
        assert_eq!(writers, BTreeSet::from(["ebpf", "mcp", "supervisor"]), "the writers share the log");
        assert!(kinds(&records).contains("summary"));
    } else {
        assert_eq!(writers, BTreeSet::from(["mcp", "supervisor"]));
        skip(
            "every_record_of_mcp_sessions_matches_the_schema (eBPF records)",
            "loading eBPF programs needs root: only the MCP layer's records were checked",
        );
    }
}

/// Receives journal entries on the socket path given, until an `END` datagram: one JSON line per
/// entry, `{"via": "datagram"|"memfd", "fields": {...}}`, in the file given.
const JOURNAL_RECEIVER: &str = r#"
import array, json, os, socket, struct, sys
def parse(b):
    fields, i = {}, 0
    while i < len(b):
        nl = b.index(b"\n", i)
        line = b[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k, n = line, struct.unpack("<Q", b[nl + 1:nl + 9])[0]
            v, i = b[nl + 9:nl + 9 + n], nl + 9 + n + 1
        fields[k.decode()] = v.decode()
    return fields
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "w")
open(sys.argv[2] + ".ready", "w").close()
while True:
    data, anc, _, _ = s.recvmsg(1 << 20, socket.CMSG_SPACE(4))
    fds = [fd for level, kind, d in anc if kind == socket.SCM_RIGHTS for fd in array.array("i", d[:4])]
    if fds:
        data = os.pread(fds[0], os.fstat(fds[0]).st_size, 0)
    elif data == b"END":
        break
    out.write(json.dumps({"via": "memfd" if fds else "datagram", "fields": parse(data)}) + "\n")
    out.flush()
"#;

/// The journal destination as in production: libsystemd sends to /run/systemd/journal/socket,
/// here a stand-in bound in a private mount namespace (a tmpfs over /run/systemd, so the host's
/// is untouched). Every entry's MESSAGE is a valid line, a refused call has PRIORITY 4, and a
/// record larger than a datagram (a 300 kB argument, logged with `log-arguments`) arrives
/// whole through a memfd.
#[test]
fn journal_entries_carry_valid_records_and_large_ones_arrive_through_a_memfd() {
    let test = "journal_entries_carry_valid_records_and_large_ones_arrive_through_a_memfd";
    if !is_root() {
        skip(test, "a private mount namespace for the stand-in journald socket needs root (CI runs as root)");
        return;
    }
    assert!(Path::new("/run/systemd").is_dir(), "/run/systemd is missing: this test mounts a tmpfs over it");
    let s = Scratch::new(Who::Root);
    let entries = s.join("entries.jsonl");
    let receiver = s.file("receiver.py", JOURNAL_RECEIVER, Who::Root);
    let profile = s.file("python-args.toml", "extends = [\"python\"]\n[mcp]\nlog-arguments = true\n", Who::Root);
    let clients = test_env().join("clients");
    let steps = json!([["call-big", "echo", "message", 300_000], ["list"], ["call", "add", {"a": 1, "b": "x"}]]);
    let script = r#"
set -e
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/journal
/usr/bin/python3 "$RECEIVER" /run/systemd/journal/socket "$ENTRIES" &
while [ ! -e "$ENTRIES.ready" ]; do sleep 0.05; done
"$@"
/usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"END", "/run/systemd/journal/socket")'
wait
"#;
    let mut c = Command::new("/usr/bin/unshare");
    c.args(["--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh"]);
    c.arg(need(test_env().join("venv/bin/python"))).arg(need(clients.join("mcp_steps.py"))).arg(steps.to_string());
    c.arg("--").arg(warden()).args(["run", "--profile"]).arg(&profile);
    c.args(["--mcp", "--audit-log", "journal", "--allow-read"]).arg(&clients);
    c.arg("--").arg(need(test_env().join("venv/bin/python"))).arg(need(clients.join("leaky_server.py")));
    c.env("RECEIVER", &receiver).env("ENTRIES", &entries).env("XDG_STATE_HOME", s.path());
    let o = run(c, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "the session with the journal stand-in\n{}", o.describe());

    let v = validator();
    let text = std::fs::read_to_string(&entries).unwrap();
    let entries: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut kinds = BTreeSet::new();
    for e in &entries {
        let fields = &e["fields"];
        assert_eq!(fields["SYSLOG_IDENTIFIER"], "mcp-warden", "{e}");
        let record: Value = serde_json::from_str(fields["MESSAGE"].as_str().unwrap()).unwrap();
        assert_eq!(errors(&v, &record), Vec::<String>::new(), "MESSAGE of {e}");
        assert_eq!(fields["MCP_WARDEN_KIND"], record["kind"], "a field per key");
        let refused = record["outcome"] == "refused" || record["verdict"] == "deny";
        assert_eq!(fields["PRIORITY"], if refused { "4" } else { "6" }, "{e}");
        kinds.insert(record["kind"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains("start") && kinds.contains("mcp"), "{kinds:?}");
    let big = entries.iter().find(|e| e["via"] == "memfd").unwrap_or_else(|| panic!("no entry came through a memfd"));
    let record: Value = serde_json::from_str(big["fields"]["MESSAGE"].as_str().unwrap()).unwrap();
    assert_eq!(record["arguments"]["message"].as_str().map(str::len), Some(300_000), "the large record, whole");
    assert!(entries.iter().any(|e| e["fields"]["MCP_WARDEN_OUTCOME"] == "refused"), "the refused call");
}
