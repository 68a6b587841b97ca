//! The MCP-aware layer, with real servers (the official everything and filesystem servers, and
//! tests/clients/leaky_server.py built on the official Python SDK) driven by the official Python
//! SDK client. Each point of the layer is tried against a call it must refuse or change, next to
//! a control that legitimate calls still work.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

fn everything() -> PathBuf {
    need(test_env().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
}

fn leaky() -> PathBuf {
    need(test_env().join("clients/leaky_server.py"))
}

struct Run {
    steps: Vec<Value>,
    stderr: String,
}

/// Runs `mcp_steps.py STEPS -- mcp-warden ARGS` as `who`, with its own state directory (pins).
fn steps<S: AsRef<std::ffi::OsStr>>(who: Who, state: &Path, steps: Value, warden_args: &[S]) -> Run {
    let client = need(test_env().join("clients/mcp_steps.py"));
    let mut c: Command = command_as(who, venv_python());
    c.arg(&client).arg(steps.to_string()).arg("--").arg(warden()).args(warden_args);
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
    c.env("XDG_STATE_HOME", state);
    let o = run(c, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "{who:?}: MCP session failed\n{}", o.describe());
    let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
    Run { steps: v["steps"].as_array().unwrap().clone(), stderr: o.stderr }
}

/// The official everything server under its profile with `extra` flags.
fn everything_args(log: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--profile", "everything", "--audit-log", log].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(["--".to_string(), "node".to_string(), everything().display().to_string(), "stdio".to_string()]);
    args
}

/// The leaky server under the `python` profile with the MCP layer and `extra` flags.
fn leaky_args(log: &str, extra: &[&str]) -> Vec<String> {
    let clients = test_env().join("clients");
    let mut args: Vec<String> =
        ["run", "--profile", "python", "--mcp", "--audit-log", log, "--allow-read"].map(String::from).to_vec();
    args.push(clients.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(["--".to_string(), venv_python().display().to_string(), leaky().display().to_string()]);
    args
}

fn audit(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .filter(|v: &Value| v["kind"] == "mcp")
        .collect()
}

fn error_message(step: &Value) -> &str {
    step["error"]["message"].as_str().unwrap_or_else(|| panic!("expected a JSON-RPC error, got {step}"))
}

per_identity!(denied_tools_are_hidden_and_refused_without_reaching_the_server, |who: Who| {
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = everything_args(log.to_str().unwrap(), &["--deny-tool", "get-env", "--deny-tool", "toggle-*"]);
    let r =
        steps(who, s.path(), json!([["list"], ["call", "get-env", {}], ["call", "echo", {"message": "hi"}]]), &args);
    let tools: Vec<&str> = r.steps[0]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(!tools.contains(&"get-env") && !tools.iter().any(|t| t.starts_with("toggle-")), "{tools:?}");
    assert!(tools.contains(&"echo"), "control: other tools stay");
    assert_eq!(r.steps[1]["error"]["code"], -32602);
    assert!(error_message(&r.steps[1]).contains("tool `get-env` is denied by the profile"));
    assert_eq!(r.steps[2]["text"], "Echo: hi", "control");
    let events = audit(&log);
    let refused: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(refused[0]["tool"], "get-env");
    // The server never answered a get-env call: no response for it.
    assert!(!events.iter().any(|e| e["message"] == "response" && e["tool"] == "get-env"));
});

#[test]
fn rate_limits_refuse_with_a_retry_time() {
    let who = Who::current();
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = leaky_args(log.to_str().unwrap(), &["--rate-limit", "echo=2/min"]);
    let call = |m: &str| json!(["call", "echo", {"message": m}]);
    let r = steps(who, s.path(), json!([call("1"), call("2"), call("3"), ["call", "add", {"a": 1, "b": 2}]]), &args);
    assert_eq!((r.steps[0]["text"].as_str(), r.steps[1]["text"].as_str()), (Some("1"), Some("2")));
    let msg = error_message(&r.steps[2]);
    assert!(msg.contains("rate limit echo=2/min reached; retry in"), "{msg}");
    let retry = r.steps[2]["error"]["data"]["retryAfterMs"].as_u64().unwrap();
    assert!((29_000..=30_000).contains(&retry), "{retry}");
    assert_eq!(r.steps[3]["text"], "3", "control: other tools are not limited");
}

per_identity!(arguments_are_checked_against_the_schema_and_the_profile, |who: Who| {
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = leaky_args(log.to_str().unwrap(), &[]);
    let r = steps(
        who,
        s.path(),
        json!([["list"], ["call", "add", {"a": 1, "b": "two"}], ["call", "add", {"a": 1}], ["call", "add", {"a": 1, "b": 2}]]),
        &args,
    );
    assert!(error_message(&r.steps[1]).contains("argument `b`"), "{}", r.steps[1]);
    assert!(error_message(&r.steps[2]).contains("\"b\" is a required property"), "{}", r.steps[2]);
    assert_eq!(r.steps[3]["text"], "3", "control");

    // A profile constraint: the filesystem server's path arguments stay under its directory,
    // checked before the server sees the call (the server has its own check; this one is the
    // profile's).
    let notes = s.mkdir("notes", who);
    s.file("notes/a.md", "inside\n", who);
    let outside = s.file("outside.md", "outside\n", who);
    let profile = s.file(
        "fs.toml",
        "extends = [\"filesystem\"]\n[mcp]\n[[mcp.constraints]]\ntool = \"read_*\"\nargument = \"path\"\nunder = [\"${args:dirs}\"]\nmax-length = 4096\n",
        who,
    );
    let fs = need(test_env().join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
    let args = [
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--audit-log",
        log.to_str().unwrap(),
        "--",
        "node",
        fs.to_str().unwrap(),
        notes.to_str().unwrap(),
    ];
    let inside = notes.join("a.md");
    let escape = format!("{}/../outside.md", notes.display());
    let r = steps(
        who,
        s.path(),
        json!([["list"], ["call", "read_text_file", {"path": inside}], ["call", "read_text_file", {"path": escape}], ["call", "read_text_file", {"path": outside}]]),
        &args,
    );
    assert_eq!(r.steps[1]["text"], "inside\n", "control");
    for step in &r.steps[2..] {
        assert!(error_message(step).contains("is outside the allowed directories"), "{step}");
    }
});

per_identity!(secrets_in_tool_results_are_redacted_and_counted, |who: Who| {
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = leaky_args(log.to_str().unwrap(), &[]);
    let r = steps(
        who,
        s.path(),
        json!([["call", "get_config", {}], ["call", "get_user", {}], ["call", "echo", {"message": "plain text 42"}]]),
        &args,
    );
    let text = r.steps[0]["text"].as_str().unwrap();
    for secret in
        ["hunter2-prod", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "ghp_0123456789", "4111-1111", "MIIEowIBAAKCAQEA"]
    {
        assert!(!text.contains(secret), "{who:?}: {secret} reached the client:\n{text}");
    }
    assert!(text.contains("host: db.internal"), "control: the rest of the output stays: {text}");
    let user = r.steps[1]["text"].as_str().unwrap();
    assert!(!user.contains("sk-live") && !user.contains("tok-999") && user.contains("\"plan\": \"pro\""), "{user}");
    assert_eq!(r.steps[2]["text"], "plain text 42", "control");
    let counts: Vec<u64> = audit(&log).iter().filter_map(|e| e["redactions"].as_u64()).collect();
    // get_config's text is counted twice: in `content` and in `structuredContent`.
    assert_eq!(counts, [12, 2, 0], "redactions per call");

    // --no-redact: the output passes as the server wrote it.
    let args = leaky_args(log.to_str().unwrap(), &["--no-redact"]);
    let r = steps(who, s.path(), json!([["call", "get_config", {}]]), &args);
    assert!(r.steps[0]["text"].as_str().unwrap().contains("hunter2-prod"));
});

#[test]
fn server_errors_can_be_kept_from_the_client() {
    let who = Who::current();
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let r = steps(who, s.path(), json!([["call", "crash", {}]]), &leaky_args(log.to_str().unwrap(), &[]));
    assert!(r.steps[0]["text"].as_str().unwrap().contains("postgres://admin"), "control: shown by default");
    let r = steps(
        who,
        s.path(),
        json!([["call", "crash", {}], ["call", "add", {"a": 2, "b": 2}]]),
        &leaky_args(log.to_str().unwrap(), &["--hide-errors"]),
    );
    let text = r.steps[0]["text"].as_str().unwrap();
    assert!(
        r.steps[0]["is_error"].as_bool().unwrap() && !text.contains("postgres") && !text.contains("Traceback"),
        "{text}"
    );
    assert!(text.contains("details are in mcp-warden's audit log"));
    assert_eq!(r.steps[1]["text"], "4", "control");
    let full = audit(&log).into_iter().rfind(|e| e["outcome"] == "tool-error").unwrap();
    assert!(full["error"].to_string().contains("/srv/app/internal/db.py"), "the audit log keeps it: {full}");
}

per_identity!(a_changed_tool_is_blocked_until_accepted, |who: Who| {
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = leaky_args(log.to_str().unwrap(), &[]);
    let r = steps(
        who,
        s.path(),
        json!([["list"], ["call", "add", {"a": 1, "b": 2}], ["call", "update", {}], ["list"], ["call", "add", {"a": 1, "b": 2}], ["call", "echo", {"message": "still here"}]]),
        &args,
    );
    assert_eq!(r.steps[1]["text"], "3", "control: before the change");
    let after: Vec<&str> = r.steps[3]["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(!after.contains(&"add"), "the changed tool is hidden: {after:?}");
    assert!(error_message(&r.steps[4]).contains("changed since it was pinned"));
    assert_eq!(r.steps[5]["text"], "still here", "control: the others still work");
    assert!(r.stderr.contains("mcp-warden: tool add: changed since it was pinned"), "{}", r.stderr);

    // Accept it (the pins live in the invoking user's state directory).
    let mut list = command_as(who, warden());
    list.args(["pins", "list"]).env("XDG_STATE_HOME", s.path());
    let o = run(list, None, Duration::from_secs(30));
    let line = o.stdout.lines().find(|l| l.contains("CHANGED: add")).unwrap_or_else(|| panic!("{}", o.describe()));
    let server = line.split_whitespace().next().unwrap();
    let mut accept = command_as(who, warden());
    accept.args(["pins", "accept", server, "add"]).env("XDG_STATE_HOME", s.path());
    let o = run(accept, None, Duration::from_secs(30));
    assert!(o.status.success() && o.stderr.contains("accepted the new definitions of add"), "{}", o.describe());
    let r = steps(who, s.path(), json!([["call", "update", {}], ["list"], ["call", "add", {"a": 2, "b": 3}]]), &args);
    assert!(r.steps[1]["descriptions"]["add"].as_str().unwrap().contains("id_rsa"), "the accepted definition is shown");
    assert_eq!(r.steps[2]["text"], "5");
});

#[test]
fn every_request_and_response_is_audited() {
    let who = Who::current();
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    steps(
        who,
        s.path(),
        json!([["list"], ["call", "echo", {"message": "secret value"}], ["ping"]]),
        &leaky_args(log.to_str().unwrap(), &[]),
    );
    let events = audit(&log);
    let methods: Vec<(&str, &str)> =
        events.iter().map(|e| (e["message"].as_str().unwrap(), e["method"].as_str().unwrap_or(""))).collect();
    for expected in [
        ("request", "initialize"),
        ("response", "initialize"),
        ("notification", "notifications/initialized"),
        ("request", "tools/list"),
        ("response", "tools/list"),
        ("request", "tools/call"),
        ("response", "tools/call"),
        ("request", "ping"),
        ("response", "ping"),
    ] {
        assert!(methods.contains(&expected), "{expected:?} missing from {methods:?}");
    }
    let call = events.iter().find(|e| e["message"] == "request" && e["method"] == "tools/call").unwrap();
    assert_eq!(call["tool"], "echo");
    assert_eq!(call["arguments"], json!({"message": "string(12)"}), "the shape, not the value");
    assert_eq!(call["outcome"], "allowed");
    let response = events.iter().find(|e| e["message"] == "response" && e["method"] == "tools/call").unwrap();
    assert!(response["duration_ms"].as_f64().unwrap() > 0.0 && response["redactions"] == 0);
    assert!(!std::fs::read_to_string(&log).unwrap().contains("secret value"), "values are not logged by default");
}

#[test]
fn sampling_progress_and_large_messages_pass_through() {
    let who = Who::current();
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let args = everything_args(log.to_str().unwrap(), &["--mcp", "--allow-sampling"]);
    let r = steps(
        who,
        s.path(),
        json!([["call", "trigger-sampling-request", {"prompt": "hello"}], ["call-progress", "trigger-long-running-operation", {"duration": 1, "steps": 3}]]),
        &args,
    );
    assert!(
        r.steps[0]["text"].as_str().unwrap().contains("sampled by the test client"),
        "server -> client request: {}",
        r.steps[0]
    );
    assert_eq!(r.steps[1]["progress"], 3, "progress notifications: {}", r.steps[1]);
    let r = steps(
        who,
        s.path(),
        json!([["call-big", "echo", "message", 10 << 20]]),
        &leaky_args(log.to_str().unwrap(), &[]),
    );
    assert_eq!(
        (&r.steps[0]["length"], &r.steps[0]["all_x"]),
        (&json!(10 << 20), &json!(true)),
        "a 10 MB request and result"
    );
}

/// Bad input on the stream, with a raw JSON-RPC peer: malformed JSON, invalid UTF-8 and a
/// line longer than the layer parses do not crash it, lose the following messages or stop the
/// other direction. The overlong line cannot be policed, so it is dropped (and counted).
#[test]
fn malformed_input_does_not_break_the_stream() {
    let s = Scratch::new(Who::current());
    let log = s.join("audit.jsonl");
    let mut c = Command::new(warden());
    c.args(leaky_args(log.to_str().unwrap(), &[]));
    c.env("XDG_STATE_HOME", s.path()).stderr(Stdio::null());
    let mut peer = RawPeer::spawn(c);
    peer.send(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#);
    peer.send(b"\n");
    assert!(peer.answer(1)["result"]["serverInfo"].is_object());
    peer.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    peer.send(b"{this is not json\n");
    peer.send(b"\xff\xfe\x00 invalid utf-8 \xc3\x28\n");
    // 70 MB without a newline until the end: beyond what the layer parses; dropped.
    let mut long = br#"{"jsonrpc":"2.0","method":"notifications/x","params":{"pad":""#.to_vec();
    long.extend(std::iter::repeat_n(b'a', 70 << 20));
    long.extend_from_slice(b"\"}}\n");
    peer.send(&long);
    peer.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"add\",\"arguments\":{\"a\":20,\"b\":22}}}\n");
    let r = peer.answer(2);
    assert_eq!(r["result"]["content"][0]["text"], "42", "{r}");
    peer.close();
    let status = peer.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let events = audit(&log);
    assert_eq!(events.iter().filter(|e| e["message"] == "malformed").count(), 3, "the three bad lines are counted");
}
