//! The MCP layer across both protocol eras, with the official Python SDK client and the official
//! TypeScript SDK client against tests/clients/annotated_server.py (official Python SDK; its
//! read-only `peek` secretly writes and its closed-world `lookup` secretly connects), and a raw
//! 2026-07-28 client that never initializes. Each attack sits next to a control that honest work
//! still succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Client {
    Python,
    TypeScript,
}

/// One test's world: a scratch directory with a note to read, a directory the server may write,
/// the audit log outside it, and a TCP listener on loopback (the "outside world").
struct World {
    who: Who,
    s: Scratch,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    _listener: TcpListener,
    /// The profile (`python`, or a file extending it).
    profile: String,
}

impl World {
    fn new(who: Who) -> World {
        let s = Scratch::new(who);
        let data = s.mkdir("data", who);
        s.file("data/note.txt", "a note\n", who);
        s.mkdir("logs", who);
        let log = s.join("logs/audit.jsonl");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        World { who, s, data, log, port, _listener: listener, profile: "python".into() }
    }

    fn leak(&self) -> PathBuf {
        self.data.join("leak.txt")
    }

    /// The launcher's arguments: the fixture under the `python` profile with the MCP layer,
    /// `extra` flags before the command.
    fn warden_args(&self, extra: &[&str]) -> Vec<String> {
        let clients = test_env().join("clients");
        let mut args: Vec<String> =
            ["run", "--profile", &self.profile, "--mcp", "--pass-env", "PEEK_LEAK"].map(String::from).to_vec();
        args.extend(["--audit-log".into(), self.log.display().to_string()]);
        args.extend(["--allow-read".into(), clients.display().to_string()]);
        args.extend(["--allow-write".into(), self.data.display().to_string()]);
        args.extend(["--allow-connect".into(), format!("127.0.0.1:{}", self.port)]);
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend([
            "--".into(),
            venv_python().display().to_string(),
            clients.join("annotated_server.py").display().to_string(),
        ]);
        args
    }

    /// A session of `client` in `era`, with `client_flags` (`--roots ...`), running `steps`.
    fn session(&self, client: Client, era: &str, client_flags: &[&str], steps: Value, extra: &[&str]) -> Run {
        let (program, script) = match client {
            Client::Python => (venv_python(), need(test_env().join("clients/mcp_steps.py"))),
            Client::TypeScript => (PathBuf::from("node"), need(test_env().join("clients/ts_steps.mjs"))),
        };
        let mut c: Command = command_as(self.who, &program);
        c.arg(&script).args(["--era", era]).args(client_flags).arg(steps.to_string()).arg("--").arg(warden());
        c.args(self.warden_args(extra));
        c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
        c.env("XDG_STATE_HOME", self.s.path()).env("PEEK_LEAK", self.leak());
        let o = run(c, None, Duration::from_secs(120));
        assert_eq!(o.code(), Some(0), "{client:?} {era}: MCP session failed\n{}", o.describe());
        let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
        Run { steps: v["steps"].as_array().unwrap().clone(), stderr: o.stderr }
    }

    fn records(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// Every line of the log, each checked against docs/audit-log.schema.json.
    fn validated(&self) -> Vec<Value> {
        let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit-log.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let records: Vec<Value> =
            std::fs::read_to_string(&self.log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for r in &records {
            let errors: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{r} does not match the schema: {errors:?}");
        }
        records
    }

    fn mcp_records(&self, message: &str) -> Vec<Value> {
        self.records("mcp").into_iter().filter(|v| v["message"] == message).collect()
    }
}

struct Run {
    steps: Vec<Value>,
    stderr: String,
}

fn text(step: &Value) -> &str {
    step["text"].as_str().unwrap_or_else(|| panic!("expected a tool result, got {step}"))
}

/// A read-only tool that writes and a closed-world tool that connects: both refused, reported
/// and rewritten in the list, in one era with one client; the honest tools still work.
fn annotations_are_made_true(who: Who, client: Client, era: &str) {
    let w = World::new(who);
    let note = w.data.join("note.txt").display().to_string();
    let written = w.data.join("written.txt").display().to_string();
    let steps = json!([
        ["list"],
        ["call", "peek", {"path": note}],
        ["call", "lookup", {"host": "127.0.0.1", "port": w.port}],
        ["call", "read_note", {"path": note}],
        ["call", "write_note", {"path": written, "text": "honest"}],
        ["call", "fetch", {"host": "127.0.0.1", "port": w.port}],
        ["list"],
    ]);
    let r = w.session(client, era, &[], steps, &[]);
    let ctx = format!("{client:?} {era} {who:?}");
    let peek = text(&r.steps[1]);
    assert!(peek.starts_with("a note") && peek.contains("leak-write: BLOCKED EACCES"), "{ctx}: {peek}");
    assert!(peek.contains("declared read-only but tried openat"), "{ctx}: the result explains: {peek}");
    assert!(!w.leak().exists(), "{ctx}: the read-only tool's write was refused");
    assert!(text(&r.steps[2]).contains("connect: BLOCKED EACCES"), "{ctx}: {}", r.steps[2]);
    // controls: the honest tools are unaffected
    assert_eq!(text(&r.steps[3]), "a note\n", "{ctx}");
    assert_eq!(text(&r.steps[4]), "write: OK", "{ctx}: a tool that declares writes may write");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "honest");
    assert_eq!(text(&r.steps[5]), "connect: OK", "{ctx}: an open-world tool may connect");
    // what the client is shown before and after
    let (before, after) = (&r.steps[0], &r.steps[6]);
    assert_eq!(before["annotations"]["peek"]["readOnlyHint"], true, "{ctx}: {before}");
    assert_eq!(before["meta"]["peek"]["dev.mcp-warden/annotations"]["readOnlyHint"], "enforced", "{ctx}: {before}");
    assert_eq!(after["annotations"]["peek"]["readOnlyHint"], false, "{ctx}: {after}");
    assert_eq!(after["annotations"]["peek"]["destructiveHint"], true, "{ctx}: {after}");
    assert_eq!(after["meta"]["peek"]["dev.mcp-warden/annotations"]["readOnlyHint"], "violated", "{ctx}");
    assert_eq!(after["annotations"]["lookup"]["openWorldHint"], true, "{ctx}: {after}");
    assert_eq!(after["annotations"]["read_note"]["readOnlyHint"], true, "{ctx}: the honest tool keeps its claim");
    // the audit log names each tool and what it tried
    let v = w.records("annotation-violation");
    let peek_v = v.iter().find(|r| r["tool"] == "peek").unwrap_or_else(|| panic!("{ctx}: {v:?}"));
    assert_eq!((&peek_v["annotation"], &peek_v["errno"]), (&json!("readOnlyHint"), &json!("EACCES")), "{ctx}");
    assert_eq!(peek_v["target"], json!(w.leak().display().to_string()), "{ctx}");
    let lookup_v = v.iter().find(|r| r["tool"] == "lookup").unwrap_or_else(|| panic!("{ctx}: {v:?}"));
    assert_eq!(lookup_v["target"], json!(format!("127.0.0.1:{}", w.port)), "{ctx}");
    assert_eq!(v.len(), 2, "{ctx}: nothing else was taken for a violation: {v:?}");
    assert!(r.stderr.contains("tool `peek` is declared read-only"), "{ctx}: {}", r.stderr);
    let kinds: Vec<Value> = w.validated().into_iter().map(|r| r["kind"].clone()).collect();
    assert!(kinds.contains(&json!("posture")) && kinds.contains(&json!("annotation-violation")), "{ctx}: {kinds:?}");
}

per_identity!(python_client_2025_annotations_are_made_true, |who: Who| {
    annotations_are_made_true(who, Client::Python, "2025");
});

per_identity!(python_client_2026_annotations_are_made_true, |who: Who| {
    annotations_are_made_true(who, Client::Python, "2026");
});

per_identity!(typescript_client_2025_annotations_are_made_true, |who: Who| {
    annotations_are_made_true(who, Client::TypeScript, "2025");
});

per_identity!(typescript_client_2026_annotations_are_made_true, |who: Who| {
    annotations_are_made_true(who, Client::TypeScript, "2026");
});

/// With enforcement off, the lie goes through: the test above fails for the right reason.
#[test]
fn without_enforcement_the_read_only_tool_writes() {
    let w = World::new(Who::current());
    let mut w = w;
    w.profile =
        w.s.file("off.toml", "extends = [\"python\"]\n[mcp]\nenforce-annotations = false\n", Who::current())
            .display()
            .to_string();
    let note = w.data.join("note.txt").display().to_string();
    let steps = json!([["call", "peek", {"path": note}], ["list"]]);
    let r = w.session(Client::Python, "2025", &[], steps, &[]);
    assert!(text(&r.steps[0]).contains("leak-write: OK"), "{}", r.steps[0]);
    assert!(w.leak().exists());
    assert_eq!(r.steps[1]["meta"]["peek"]["dev.mcp-warden/annotations"]["readOnlyHint"], "declared");
}

// A scratch directory stays writable to a read-only tool (the supervisor opens the file beneath
// it, as the server's user); everything else it writes is still refused.
per_identity!(a_read_only_tool_may_write_in_scratch_only, |who: Who| {
    let w = World::new(who);
    let cache = w.s.mkdir("data/cache", who);
    let profile = format!("extends = [\"python\"]\n[mcp]\nscratch = [\"{}\"]\n", cache.display());
    let mut w = w;
    w.profile = w.s.file("scratch.toml", &profile, who).display().to_string();
    let note = w.data.join("note.txt").display().to_string();
    let leak = cache.join("ok.txt");
    let steps = json!([["call", "peek", {"path": note}]]);
    // PEEK_LEAK points into the scratch directory this time
    let mut c: Command = command_as(who, venv_python());
    c.arg(need(test_env().join("clients/mcp_steps.py"))).arg(steps.to_string()).arg("--").arg(warden());
    c.args(w.warden_args(&[]));
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
    c.env("XDG_STATE_HOME", w.s.path()).env("PEEK_LEAK", &leak);
    let r = run_ok(c);
    assert!(text(&r[0]).contains("leak-write: OK"), "{}", r[0]);
    let meta = std::fs::metadata(&leak).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), who.uid(), "the file is the server's user's, not the supervisor's");
    assert!(w.records("annotation-violation").is_empty());
});

fn run_ok(c: Command) -> Vec<Value> {
    let o = run(c, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "MCP session failed\n{}", o.describe());
    let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
    v["steps"].as_array().unwrap().clone()
}

/// Structured output that breaks its schema is refused; a secret in structuredContent is
/// redacted; a valid result passes (control). Both eras.
#[test]
fn structured_output_is_checked_and_redacted_in_both_eras() {
    for era in ["2025", "2026"] {
        let w = World::new(Who::current());
        let steps = json!([["call", "shape", {"valid": false}], ["call", "secret_struct", {}], ["call", "shape", {"valid": true}]]);
        let r = w.session(Client::TypeScript, era, &[], steps, &[]);
        assert_eq!(r.steps[0]["is_error"], true, "{era}: {}", r.steps[0]);
        assert!(text(&r.steps[0]).contains("breaks the tool's outputSchema at `/count`"), "{era}: {}", r.steps[0]);
        assert_eq!(r.steps[1]["structured"]["token"], "[REDACTED]", "{era}: {}", r.steps[1]);
        assert_eq!(r.steps[2]["structured"], json!({"count": 1}), "{era}: control");
        let refused = w.mcp_records("response").into_iter().filter(|r| r["outcome"] == "refused").count();
        assert_eq!(refused, 1, "{era}");
    }
}

/// Roots outside the grants never reach the server: removed, or narrowed to the grants inside
/// them; a root inside a grant passes. Both eras (a roots/list reply; an input response).
#[test]
fn roots_are_narrowed_to_the_grants_in_both_eras() {
    for era in ["2025", "2026"] {
        let w = World::new(Who::current());
        let inside = format!("file://{}", w.data.display());
        let wider = format!("file://{}", w.s.path().display());
        let roots = format!("{inside},file:///root/.ssh,{wider}");
        let r = w.session(Client::Python, era, &["--roots", &roots], json!([["call", "roots_seen", {}]]), &[]);
        assert_eq!(text(&r.steps[0]), format!("roots: {inside}"), "{era}: {}", r.steps[0]);
        let rec = w.mcp_records("roots");
        assert_eq!(rec.len(), 1, "{era}: {rec:?}");
        assert_eq!(rec[0]["removed"], json!(["file:///root/.ssh", wider]), "{era}");
        assert!(r.stderr.contains("withheld from the server: file:///root/.ssh"), "{era}: {}", r.stderr);
    }
}

/// Sampling is refused unless the profile allows it, in both eras; allowed, it works (control).
#[test]
fn sampling_needs_the_profile_in_both_eras() {
    for era in ["2025", "2026"] {
        let w = World::new(Who::current());
        let r = w.session(Client::Python, era, &[], json!([["call", "ask_sampling", {}]]), &[]);
        let refused = r.steps[0].to_string();
        assert!(refused.contains("[mcp] sampling = true"), "{era}: {refused}\n{}", r.stderr);
        let r = w.session(Client::Python, era, &[], json!([["call", "ask_sampling", {}]]), &["--allow-sampling"]);
        assert_eq!(text(&r.steps[0]), "sampling: OK sampled by the test client", "{era}");
    }
}

/// A 2026-07-28 session that never initializes, never discovers and never lists: every call is
/// still checked against the server's own tool list, which the layer fetches itself; denied tools,
/// bad arguments and the annotation policy apply; posture is in the discover result's `_meta`.
#[test]
fn a_session_without_initialize_is_policed_like_any() {
    let w = World::new(Who::current());
    let mut w = w;
    let profile = "extends = [\"python\"]\n[mcp]\ndeny-tools = [\"fetch\"]\ndestructive = \"deny\"\n";
    w.profile = w.s.file("p.toml", profile, Who::current()).display().to_string();
    let mut c = Command::new(warden());
    c.args(w.warden_args(&[]));
    c.env("XDG_STATE_HOME", w.s.path()).env("PEEK_LEAK", w.leak()).stderr(Stdio::null());
    let mut peer = RawPeer::spawn(c);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let call = |id: i64, tool: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args, "_meta": meta}})
            .to_string()
    };
    peer.send_line(&call(1, "read_note", json!({"path": 5})));
    let bad = peer.answer(1);
    assert!(bad["error"]["message"].as_str().unwrap().contains("argument `path`"), "schema checked: {bad}");
    peer.send_line(&call(2, "fetch", json!({"host": "127.0.0.1", "port": w.port})));
    assert!(peer.answer(2)["error"]["message"].as_str().unwrap().contains("denied by the profile"));
    peer.send_line(&call(3, "bare", json!({"x": "y"})));
    let d = peer.answer(3);
    assert!(d["error"]["message"].as_str().unwrap().contains("the profile denies destructive tools"), "{d}");
    peer.send_line(&call(4, "read_note", json!({"path": w.data.join("note.txt")})));
    let ok = peer.answer(4);
    assert_eq!(ok["result"]["content"][0]["text"], "a note\n", "control: {ok}");
    peer.send_line(
        &json!({"jsonrpc": "2.0", "id": 5, "method": "server/discover", "params": {"_meta": meta}}).to_string(),
    );
    let posture = &peer.answer(5)["result"]["_meta"]["dev.mcp-warden/posture"];
    assert!(posture["layers"].as_array().is_some_and(|l| l.iter().any(|l| l["layer"] == "landlock")), "{posture}");
    peer.send_line(
        &json!({"jsonrpc": "2.0", "id": "mcp-warden/9", "method": "tools/list", "params": {"_meta": meta}}).to_string(),
    );
    peer.close();
    assert!(peer.child.wait().unwrap().success());
    let refused: Vec<Value> = w.mcp_records("request").into_iter().filter(|r| r["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 4, "bad arguments, denied, destructive, a reserved id: {refused:?}");
    assert_eq!(w.records("posture").len(), 1);
}

/// A server request with no client request in flight is refused (the client never sees it), and
/// the server gets an error rather than waiting forever.
#[test]
fn a_server_request_outside_a_client_request_is_dropped() {
    let w = World::new(Who::current());
    let server = w.s.file(
        "unsolicited.py",
        r#"import json, sys
def send(m): sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
init = json.loads(sys.stdin.readline())
send({"jsonrpc": "2.0", "id": init["id"], "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "u", "version": "1"}}})
send({"jsonrpc": "2.0", "id": "s1", "method": "roots/list"})
answer = json.loads(sys.stdin.readline())
send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": answer}})
for line in sys.stdin:
    pass
"#,
        Who::current(),
    );
    let mut args = w.warden_args(&["--allow-read", w.s.path().to_str().unwrap()]);
    *args.last_mut().unwrap() = server.display().to_string();
    let mut c = Command::new(warden());
    c.args(args).env("XDG_STATE_HOME", w.s.path()).stderr(Stdio::null());
    let mut peer = RawPeer::spawn(c);
    peer.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"raw","version":"1"}}}"#);
    assert!(peer.answer(1)["result"].is_object());
    let (told, before) = peer.notification("notifications/message");
    assert!(before.iter().all(|l| !l.contains("roots/list")), "the client never saw the request: {before:?}");
    let error = told["params"]["data"]["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("mcp-warden refused the request"), "the server got an error, and said so: {told}");
    peer.close();
    let rest = peer.rest();
    assert!(peer.child.wait().unwrap().success());
    assert!(!rest.contains("roots/list"), "nor later: {rest}");
    let refused: Vec<Value> = w.mcp_records("request").into_iter().filter(|r| r["from"] == "server").collect();
    assert_eq!(refused[0]["outcome"], "refused", "{refused:?}");
}
