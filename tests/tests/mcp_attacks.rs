//! Attacks independent reviews made on the MCP layer and its annotations guard, each kept as a
//! test next to its control: a line the layer cannot parse, a stray or malformed response that
//! would end a call early, a hard link out of a scratch directory, two server requests with one
//! id, a client reusing a pending id, ids that do not round-trip, a retry that is not one,
//! task-augmented calls, a cancelled call's guard, a tool listed twice, a pipelining client, TCP
//! Fast Open.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::process::{Command, Stdio};

use mcp_warden_tests::*;
use serde_json::{Value, json};

/// The launcher in front of `server ARGS` under the `python` profile with the MCP layer, `dir`
/// writable, `extra` flags; the audit log in `log`.
fn launcher(s: &Scratch, dir: &std::path::Path, extra: &[&str], server: &[&str]) -> Command {
    launcher_with(s, "python", dir, extra, server)
}

/// [`launcher`] under `profile`.
fn launcher_with(s: &Scratch, profile: &str, dir: &std::path::Path, extra: &[&str], server: &[&str]) -> Command {
    let clients = test_env().join("clients");
    let mut c = Command::new(warden());
    c.args(["run", "--profile", profile, "--mcp", "--audit-log"]).arg(s.join("audit.jsonl"));
    c.arg("--allow-read").arg(&clients).arg("--allow-write").arg(dir).args(extra);
    c.arg("--")
        .arg(venv_python())
        .args(server.iter().map(|a| if a.ends_with(".py") { clients.join(a) } else { a.into() }));
    c.env("XDG_STATE_HOME", s.path()).stderr(Stdio::null());
    c
}

fn initialize(peer: &mut RawPeer) {
    peer.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"raw","version":"1"}}}"#);
    assert!(peer.answer(1)["result"].is_object());
    peer.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
}

fn call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no result text: {answer}")).to_string()
}

/// serde_json stops at 128 levels of nesting, other parsers do not: a line the layer cannot
/// parse is dropped (the client gets a parse error), never relayed unchecked. Control: the same
/// call, less deep, is refused by the deny list as it should be, and an allowed call works.
#[test]
fn a_line_the_layer_cannot_parse_never_reaches_the_server() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let c = launcher(&s, &dir, &["--deny-tool", "write_note"], &["annotated_server.py"]);
    let mut peer = RawPeer::spawn(c);
    initialize(&mut peer);
    let target = dir.join("deep.txt");
    let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"write_note","arguments":{{"path":"{}","text":"x"}},"_meta":{{"x":{deep}}}}}}}"#,
        target.display()
    );
    peer.send_line(&line);
    let dropped = peer.answer(Value::Null);
    assert_eq!(dropped["error"]["code"], -32700, "{dropped}");
    peer.send_line(&call(3, "write_note", json!({"path": target, "text": "x"})));
    assert!(peer.answer(json!(3))["error"]["message"].as_str().unwrap().contains("denied by the profile"));
    peer.send_line(&call(4, "read_note", json!({"path": "/etc/hostname"})));
    assert!(peer.answer(json!(4))["result"].is_object(), "control");
    peer.close();
    assert!(peer.child.wait().unwrap().success());
    assert!(!target.exists(), "the denied tool never ran");
}

/// A response with neither result nor error (or a null one), or one whose id is the call's as
/// another JSON type (`"2"`, `2.0` for `2`), does not end the call: the read-only guard holds
/// until the real answer, which is policed (redacted) like any, and the others never reach the
/// client.
#[test]
fn a_stray_response_does_not_end_a_call() {
    for mode in ["stray", "nullresult", "retyped"] {
        let who = Who::current();
        let s = Scratch::new(who);
        let dir = s.mkdir("data", who);
        let mut peer = RawPeer::spawn(launcher(&s, &dir, &[], &["evil_server.py", mode, dir.to_str().unwrap()]));
        initialize(&mut peer);
        peer.send_line(&call(2, "peek", json!({})));
        let (answer, before) = peer.answer_after(json!(2));
        let t = text(&answer);
        assert!(t.contains("stray-write: BLOCKED EACCES"), "{mode}: {answer}");
        assert!(before.iter().all(|l| !l.contains("forged")), "{mode}: a forged answer reached the client: {before:?}");
        if mode == "stray" {
            assert!(t.contains("[REDACTED]") && !t.contains("ghp_"), "the real result is redacted: {t}");
        }
        peer.close();
        assert!(peer.child.wait().unwrap().success());
        assert!(!dir.join("stray.txt").exists(), "{mode}");
    }
}

// A hard link in a scratch directory to a file elsewhere in the write grants is not a way to
// write during a read-only call; a new file in scratch is (control), and is the server's.
per_identity!(a_hard_link_in_scratch_is_not_a_way_out, |who: Who| {
    scratch_escape(who, "hardlink", "hardlink-append");
});

// Nor is a scratch directory swapped for a symlink to the rest of the write grants between
// calls: the supervisor opened the directory itself before the server ran.
per_identity!(a_scratch_directory_swapped_for_a_symlink_is_not_a_way_out, |who: Who| {
    scratch_escape(who, "symscratch", "symlink-append");
});

/// `evil_server.py MODE` tries to append to `data/victim` through the scratch directory during
/// a read-only call (`attempt` names the try in its report); `data/victim` must stay as it was. A
/// new file in scratch is the control.
fn scratch_escape(who: Who, mode: &str, attempt: &str) {
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let scratch = s.mkdir("data/scratch", who);
    s.file("data/victim", "original\n", who);
    let profile = format!("extends = [\"python\"]\n[mcp]\nscratch = [\"{}\"]\n", scratch.display());
    let profile = s.file("p.toml", &profile, who);
    let clients = test_env().join("clients");
    let mut c = command_as(who, warden());
    c.args(["run", "--profile", profile.to_str().unwrap(), "--audit-log"]).arg(s.join("audit.jsonl"));
    c.arg("--allow-read").arg(&clients).arg("--allow-write").arg(&dir).arg("--").arg(venv_python());
    c.arg(clients.join("evil_server.py")).args([mode, dir.to_str().unwrap()]);
    c.env("XDG_STATE_HOME", s.path()).stderr(Stdio::null());
    let mut peer = RawPeer::spawn(c);
    initialize(&mut peer);
    peer.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert!(peer.answer(json!(2))["result"]["tools"].is_array());
    peer.send_line(&call(3, "peek", json!({})));
    let t = text(&peer.answer(json!(3)));
    if mode == "symscratch" {
        // the open went beneath the directory the supervisor holds: the scratch directory,
        // renamed, not the file the symlink now points at
        assert!(dir.join("scratch.real/victim").exists(), "{t}");
    } else {
        assert!(t.contains(&format!("{attempt}: BLOCKED EACCES")), "{mode}: {t}");
    }
    peer.close();
    assert!(peer.child.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(dir.join("victim")).unwrap(), "original\n", "{mode}");
    if mode == "hardlink" {
        assert!(t.contains("scratch-new: OK"), "control: {t}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(scratch.join("new.txt")).unwrap().uid(), who.uid());
    }
}

/// Two server requests with one id: the second is refused, and the client's answer to the first
/// (roots) is still narrowed to the grants.
#[test]
fn a_server_request_reusing_an_id_is_refused() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let mut peer = RawPeer::spawn(launcher(&s, &dir, &[], &["evil_server.py", "dupid", dir.to_str().unwrap()]));
    initialize(&mut peer);
    peer.send_line(&call(2, "peek", json!({})));
    let request = peer.answer(json!(77));
    assert_eq!(request["method"], "roots/list", "{request}");
    let roots = json!([{"uri": "file:///root"}, {"uri": format!("file://{}", dir.display())}]);
    peer.send_line(&json!({"jsonrpc": "2.0", "id": 77, "result": {"roots": roots}}).to_string());
    let t = text(&peer.answer(json!(2)));
    assert!(!t.contains("file:///root\""), "{t}");
    assert!(t.contains(&format!("file://{}", dir.display())), "control: {t}");
    peer.close();
    assert!(peer.child.wait().unwrap().success());
}

/// The rate-limit exemption of a 2026 retry holds only for the `requestState` the server handed
/// out, once: an invented one is a new call.
#[test]
fn an_invented_retry_is_rate_limited() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let mut peer = RawPeer::spawn(launcher(&s, &dir, &["--rate-limit", "read_note=1/h"], &["annotated_server.py"]));
    initialize(&mut peer);
    let retry = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "read_note", "arguments": {"path": "/etc/hostname"}, "requestState": "x", "inputResponses": {}}})
            .to_string()
    };
    peer.send_line(&retry(2));
    let first = peer.answer(json!(2));
    assert_ne!(first["error"]["code"], -32029, "the first call reaches the server: {first}");
    peer.send_line(&retry(3));
    assert_eq!(peer.answer(json!(3))["error"]["code"], -32029, "an invented retry counts");
    peer.close();
    assert!(peer.child.wait().unwrap().success());
}

// TCP Fast Open connects inside a send, where neither Landlock's connect rule nor the broker
// looks: refused. Control: a plain connect to the same allowed port.
per_identity!(tcp_fast_open_is_refused, |who: Who| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "import socket, errno\n\
         def attempt(f):\n    try:\n        f(); return 'OK'\n    except OSError as e:\n        return errno.errorcode.get(e.errno, str(e.errno))\n\
         a = socket.socket(); print('fastopen', attempt(lambda: a.sendto(b'x', 0x20000000, ('127.0.0.1', {port}))))\n\
         b = socket.socket(); print('connect', attempt(lambda: b.connect(('127.0.0.1', {port}))))\n"
    );
    let o = Sandbox::new(who).profile("python").grant("--allow-connect", format!("127.0.0.1:{port}")).exec(&[
        venv_python().as_os_str(),
        std::ffi::OsStr::new("-c"),
        std::ffi::OsStr::new(&script),
    ]);
    assert!(o.stdout.contains("fastopen EPERM"), "{}", o.describe());
    assert!(o.stdout.contains("connect OK"), "control: {}", o.describe());
});

/// Kills `pid` after 60 s unless `done` is set first: a wedged relay fails the test instead of
/// hanging it.
fn watchdog(pid: u32) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if !watched.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    });
    done
}

/// A server that provokes a refusal per message (50 stray responses before each answer) while
/// nobody reads the launcher's stderr: the layer tells the first few and counts the rest in the
/// audit log, so the relay never blocks on stderr, and every answer arrives.
#[test]
fn a_server_provoking_a_message_per_line_cannot_stall_the_relay_on_stderr() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let mut c = launcher(&s, &dir, &[], &["sync_server.py", "stray"]);
    c.stderr(Stdio::piped()); // held, never read
    let mut peer = RawPeer::spawn(c);
    let done = watchdog(peer.child.id());
    initialize(&mut peer);
    for i in 0..500 {
        peer.send_line(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}}", 100 + i));
        assert!(peer.answer(json!(100 + i))["result"].is_object());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.close();
    assert!(peer.child.wait().unwrap().success());
    let dropped = std::fs::read_to_string(s.join("audit.jsonl")).unwrap().matches("\"malformed\"").count();
    assert!(dropped >= 500 * 50, "every stray is in the audit log: {dropped}");
}

/// A client that pipelines far more than a pipe holds (100,000 requests, 200 MiB of answers) to a
/// server that answers one line at a time and writes synchronously, the client writing every
/// request while it reads the answers: the relay keeps both directions moving (it reads the
/// server while what it queued for the client is short, whatever waits for the server's stdin:
/// the server only reads once its answer is written), so every request is answered. A relay that
/// stopped reading the server once the server's stdin queue was long wedged with it.
#[test]
fn a_client_pipelining_past_the_pipes_does_not_wedge_a_synchronous_server() {
    use std::io::{BufRead, Write};
    const CALLS: usize = 100_000;
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let mut c = launcher(&s, &dir, &[], &["sync_server.py"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let done = watchdog(child.id());
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut requests = String::from(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"raw\",\"version\":\"1\"}}}\n",
        );
        requests
            .extend((0..CALLS).map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}}\n", 100 + i)));
        stdin.write_all(requests.as_bytes()).unwrap(); // closed when the thread ends: the client's EOF
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    assert!(stdout.read_line(&mut line).unwrap() > 0 && line.contains("\"id\":1"), "{line}");
    for i in 0..CALLS {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "wedged: {i} of {CALLS} answered");
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["id"], json!(100 + i), "{line}");
        assert_eq!(answer["result"]["pad"].as_str().map(str::len), Some(2048), "{line}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
}

/// `scripted_server.py` behind the launcher, initialized; its `initialize` result.
fn scripted(s: &Scratch, profile: &str, dir: &std::path::Path, mode: &[&str]) -> (RawPeer, Value) {
    let server: Vec<&str> = ["scripted_server.py"].into_iter().chain(mode.iter().copied()).collect();
    let mut peer = RawPeer::spawn(launcher_with(s, profile, dir, &[], &server));
    peer.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"raw","version":"1"}}}"#);
    let init = peer.answer(1);
    assert!(init["result"].is_object(), "{init}");
    peer.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    (peer, init)
}

/// The scripted server under `python`, as the current user, its write grant `data` of a scratch
/// directory (kept alive by the caller): initialized, with the initialize answer.
fn python_scripted() -> (Scratch, std::path::PathBuf, RawPeer, Value) {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let (peer, init) = scripted(&s, "python", &dir, &[]);
    (s, dir, peer, init)
}

fn script(id: impl Into<Value>, tool: &str, steps: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call", "params": {"name": tool, "arguments": {"script": steps}}})
        .to_string()
}

fn finish(mut peer: RawPeer) {
    peer.close();
    assert!(peer.child.wait().unwrap().success());
}

/// During a read-only call the server sends, with the call's id, "answers" the official SDKs'
/// clients reject (an extra member, another `jsonrpc`, a result or error of the wrong type, a
/// batch): none is taken for the answer, so the guard holds (the write is refused) and the real
/// answer reaches the client. Control: the real answer after each, and a writer's write.
#[test]
fn a_forged_answer_the_sdks_reject_does_not_end_a_call() {
    let (_s, dir, mut peer, _) = python_scripted();
    let forged = [
        r#"{"jsonrpc":"2.0","id":{id},"result":{"content":[]},"x":1}"#,
        r#"{"jsonrpc":"1.0","id":{id},"result":{}}"#,
        r#"{"id":{id},"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":{id},"result":5}"#,
        r#"{"jsonrpc":"2.0","id":{id},"result":[]}"#,
        r#"[{"jsonrpc":"2.0","id":{id},"result":{}}]"#,
        r#"{"jsonrpc":"2.0","id":{id},"error":"boom"}"#,
        r#"{"jsonrpc":"2.0","id":{id},"error":{"code":"x","message":"m"}}"#,
    ];
    for (i, f) in forged.iter().enumerate() {
        let target = dir.join(format!("forged-{i}"));
        let id = 10 + i as i64;
        peer.send_line(&script(id, "peek", json!([["raw", f], ["sleep", 0.1], ["write", target]])));
        let (answer, before) = peer.answer_after(json!(id));
        assert!(text(&answer).contains("BLOCKED EACCES"), "{f}: {answer}");
        let answers =
            before.iter().filter(|l| serde_json::from_str::<Value>(l).map_or(true, |v| v.get("id").is_some()));
        assert_eq!(answers.count(), 0, "{f}: a forged answer reached the client: {before:?}");
        assert!(!target.exists(), "{f}");
    }
    let target = dir.join("control");
    peer.send_line(&script(30, "writer", json!([["write", target]])));
    assert!(text(&peer.answer(30)).ends_with(": OK"), "control");
    finish(peer);
}

/// A client request reusing the id of one still pending is refused by the layer (the server
/// never sees it): otherwise the first request's answer (a ping's) would end the second, a
/// read-only call, and its guard. Control: the ping is answered, and the id is free again after.
#[test]
fn a_client_request_reusing_a_pending_id_is_refused() {
    let (_s, dir, mut peer, _) = python_scripted();
    let target = dir.join("reused");
    // one write: the layer reads both before the server can answer the ping
    let call = script(7, "writer", json!([["write", target]]));
    peer.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}}\n{call}\n").as_bytes());
    let refused = peer.answer(7);
    assert!(refused["error"]["message"].as_str().unwrap().contains("still pending"), "{refused}");
    assert_eq!(peer.answer(7)["result"], json!({}), "control: the ping's answer");
    peer.send_line(&script(8, "peek", json!([])));
    assert_eq!(text(&peer.answer(8)), "ok");
    assert!(!target.exists(), "the refused call never ran");
    peer.send_line(&call);
    assert!(text(&peer.answer(7)).ends_with(": OK"), "control: id 7 is free once answered");
    finish(peer);
}

/// Ids a client does not read back as sent: a server's `roots/list` with id `7.0` (a JavaScript
/// client answers `7`, which the layer would not know for the roots reply and would forward
/// un-narrowed) is refused to the server; so are client requests with such ids; a client
/// response to no request of the server's never reaches it. Control: `roots/list` with id 7 is
/// relayed and its answer narrowed to the grants.
#[test]
fn ids_that_do_not_round_trip_are_refused() {
    let (_s, dir, mut peer, _) = python_scripted();
    let roots = json!({"roots": [{"uri": "file:///root"}, {"uri": format!("file://{}", dir.display())}]});
    // the server reads the next line after its request: the layer's refusal (a relayed request
    // would leave it to read the ping the client sends a second later instead)
    let ask = |srv_id: &str| {
        json!([["raw", format!(r#"{{"jsonrpc":"2.0","id":{srv_id},"method":"roots/list"}}"#)], ["read"]])
    };
    peer.send_line(&script(2, "peek", ask("7.0")));
    std::thread::sleep(std::time::Duration::from_secs(1));
    peer.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    let (answer, before) = peer.answer_after(2);
    assert!(before.iter().all(|l| !l.contains("roots/list")), "the request reached the client: {before:?}");
    let t = text(&answer);
    assert!(t.contains("mcp-warden refused the request") && t.contains("2^53"), "{t}");
    peer.answer(3);
    peer.send_line(&script(4, "peek", ask("7")));
    assert_eq!(peer.answer(7)["method"], "roots/list", "control");
    peer.send_line(&json!({"jsonrpc": "2.0", "id": 7, "result": roots}).to_string());
    let t = text(&peer.answer(4));
    assert!(!t.contains("file:///root\"") && t.contains(&dir.display().to_string()), "control: narrowed: {t}");
    // a reply to no request of the server's (here: to `7.0`, as a JavaScript client reads it)
    // never reaches it; the server reads its next two lines: the refusal and the ping after
    peer.send_line(&script(
        5,
        "peek",
        json!([["raw", r#"{"jsonrpc":"2.0","id":7.0,"method":"roots/list"}"#], ["read"], ["read"]]),
    ));
    peer.send_line(&json!({"jsonrpc": "2.0", "id": 7, "result": roots}).to_string());
    peer.send_line(r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#);
    let t = text(&peer.answer(5));
    assert!(!t.contains("file:///root"), "a reply to no request of the server's reached it: {t}");
    assert!(t.contains(r#""method": "ping""#) || t.contains(r#""method":"ping""#), "control: the next line: {t}");
    for bad in ["7.5", "2.0", "18446744073709551616", "9007199254740992", "null"] {
        peer.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#));
    }
    peer.send_line(r#"{"jsonrpc":"2.0","id":"9007199254740992","method":"ping"}"#);
    let (control, before) = peer.answer_after("9007199254740992");
    assert_eq!(control["result"], json!({}), "control: a string id");
    let refused = before.iter().filter(|l| l.contains("2^53")).count();
    assert_eq!(refused, 5, "{before:?}");
    finish(peer);
}

/// A task-augmented `tools/call` would be answered at once with a task handle (ending the
/// guard) and its result fetched through `tasks/result`, unpoliced: refused, and `tasks` is taken
/// out of the server's capabilities. Control: the same call without `task` runs.
#[test]
fn task_augmented_requests_are_refused() {
    let (_s, dir, mut peer, init) = python_scripted();
    let capabilities = &init["result"]["capabilities"];
    assert!(capabilities.get("tasks").is_none(), "{init}");
    assert!(capabilities["tools"].is_object(), "control: {init}");
    let target = dir.join("task");
    let mut call: Value = serde_json::from_str(&script(2, "writer", json!([["write", target]]))).unwrap();
    call["params"]["task"] = json!({"ttl": 60000});
    peer.send_line(&call.to_string());
    let refused = peer.answer(2);
    assert!(refused["error"]["message"].as_str().unwrap().contains("does not police task-augmented"), "{refused}");
    assert!(!target.exists());
    peer.send_line(&script(3, "writer", json!([["write", target]])));
    assert!(text(&peer.answer(3)).ends_with(": OK"), "control");
    finish(peer);
}

/// A cancelled read-only call (which the server, as the spec says, never answers) ends at the
/// cancellation: a later writer's write is not refused in its name, and a late answer to it is
/// dropped. Control: the guard of a call in flight still holds.
#[test]
fn a_cancelled_call_ends_its_guard() {
    let (_s, dir, mut peer, _) = python_scripted();
    peer.send_line(&script(2, "peek", json!([["noresp"]])));
    peer.send_line(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"user"}}"#);
    peer.send_line(&script(3, "writer", json!([["write", dir.join("after")]])));
    let t = text(&peer.answer(3));
    assert!(t.ends_with(": OK"), "{t}");
    let late = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#;
    peer.send_line(&script(4, "peek", json!([["raw", late], ["write", dir.join("during")]])));
    let (answer, before) = peer.answer_after(4);
    assert!(before.is_empty(), "the late answer reached the client: {before:?}");
    assert!(text(&answer).contains("BLOCKED EACCES"), "control: {answer}");
    finish(peer);
}

/// A tool listed twice in one `tools/list` (read-only first, writing second; pinning off): the
/// client could be shown one and the layer hold the other. Every copy is hidden and a call of it
/// refused. Control: the other tools are listed and callable.
#[test]
fn a_tool_listed_twice_is_hidden_and_refused() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let profile = s.file("p.toml", "extends = [\"python\"]\n[mcp]\npin-tools = false\n", who);
    let (mut peer, _) = scripted(&s, profile.to_str().unwrap(), &dir, &["dup"]);
    peer.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let list = peer.answer(2);
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["peek", "writer"], "{list}");
    let target = dir.join("dup");
    peer.send_line(&script(3, "dup", json!([["write", target]])));
    let refused = peer.answer(3);
    assert!(refused["error"]["message"].as_str().unwrap().contains("not in the server's tools/list"), "{refused}");
    assert!(!target.exists());
    peer.send_line(&script(4, "peek", json!([])));
    assert_eq!(text(&peer.answer(4)), "ok", "control");
    finish(peer);
}
