//! Attacks an independent review made on the MCP layer and its annotations guard, each kept as a
//! test next to its control: a line the layer cannot parse, a stray response that would end a
//! call early, a hard link out of a scratch directory, two server requests with one id, a retry
//! that is not one, TCP Fast Open.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::process::{Command, Stdio};

use mcp_warden_tests::*;
use serde_json::{Value, json};

/// The launcher in front of `server ARGS` under the `python` profile with the MCP layer, `dir`
/// writable, `extra` flags; the audit log in `log`.
fn launcher(s: &Scratch, dir: &std::path::Path, extra: &[&str], server: &[&str]) -> Command {
    let clients = test_env().join("clients");
    let mut c = Command::new(warden());
    c.args(["run", "--profile", "python", "--mcp", "--audit-log"]).arg(s.join("audit.jsonl"));
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

/// A client that pipelines far more than a pipe holds (2000 requests, 4 MiB of answers) to a
/// server that answers one line at a time and writes synchronously, reading none of the answers
/// until it has sent every request: the relay keeps both directions moving (it reads a side only
/// while what it queued for the other is short, and writes only as far as a pipe takes), so every
/// request is answered. A relay whose writes blocked would wedge with the server.
#[test]
fn a_client_pipelining_past_the_pipes_does_not_wedge_a_synchronous_server() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("data", who);
    let mut peer = RawPeer::spawn(launcher(&s, &dir, &[], &["sync_server.py"]));
    let done = watchdog(peer.child.id());
    initialize(&mut peer);
    let requests: String =
        (0..2000).map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}}\n", 100 + i)).collect();
    peer.send(requests.as_bytes());
    for i in 0..2000 {
        let answer = peer.answer(json!(100 + i));
        assert_eq!(answer["result"]["pad"].as_str().map(str::len), Some(2048), "{answer}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.close();
    assert!(peer.child.wait().unwrap().success());
}
