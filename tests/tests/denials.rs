//! Every refusal is an event: each call the seccomp filter refuses (whole calls and argument rules)
//! and each destination the network broker refuses is a `deny` record naming the call, the
//! arguments that decided it, the path or address, and the layer; stderr gets a line naming what
//! would allow it; the summary counts them. As root (with the eBPF layer) and unprivileged (without
//! it). Each attack sits next to a control that does the legitimate version and is not recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::Path;

use mcp_warden_tests::*;
use serde_json::Value;

fn read_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

fn denies(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["kind"] == "deny").collect()
}

/// Runs the probe with `action` under `strict` (plus `extra` launcher arguments), logging to a
/// scratch file; returns the output and the log's records.
fn logged(who: Who, s: &Scratch, extra: &[&str], action: &[&str]) -> (Output, Vec<Value>) {
    // The log outside the write grant (mcp-warden refuses a log the server could reach).
    let logs = Scratch::new(who);
    let log = logs.join("audit.jsonl");
    let mut sandbox = Sandbox::new(who).grant("--audit-log", &log).grant("--allow-write", s.path());
    for a in extra {
        sandbox = sandbox.arg(a);
    }
    let o = sandbox.probe(action);
    (o, read_log(&log))
}

per_identity!(argument_rule_refusals_name_the_arguments_that_decided, |who: Who| {
    let s = Scratch::new(who);
    // socket(AF_INET, SOCK_DGRAM): the socket-family rule.
    let (o, events) = logged(who, &s, &[], &["socket", "2", "2"]);
    assert_denied(&o, &["EPERM"], "a UDP socket under strict");
    let d = denies(&events);
    assert_eq!(d.len(), 1, "one deny record: {d:?}");
    assert_eq!(
        (d[0]["layer"].as_str(), d[0]["syscall"].as_str(), d[0]["errno"].as_str()),
        (Some("seccomp"), Some("socket"), Some("EPERM"))
    );
    assert_eq!((d[0]["args"]["family"].as_str(), d[0]["args"]["type"].as_str()), (Some("AF_INET"), Some("SOCK_DGRAM")));
    assert!(d[0]["pid"].as_u64().is_some() && d[0]["comm"] == "warden-probe", "{}", d[0]);
    assert!(
        o.stderr.contains("mcp-warden: seccomp: refused socket(family=AF_INET")
            && o.stderr.contains("[network] udp = true"),
        "stderr names the call and the key that allows it\n{}",
        o.describe()
    );
    // Control: a socket the profile allows (TCP, with a connect grant) is not a refusal.
    let (o, events) = logged(who, &s, &["--allow-connect", "443"], &["socket", "2", "1"]);
    assert_ok(&o, "a TCP socket with --allow-connect");
    assert!(denies(&events).is_empty(), "{events:?}");
});

per_identity!(mode_bit_refusals_name_the_mode_and_the_path, |who: Who| {
    let s = Scratch::new(who);
    let file = s.file("tool", "#!/bin/sh\n", who);
    let (o, events) = logged(who, &s, &[], &["chmod", file.to_str().unwrap(), "4755", "fchmodat"]);
    assert_denied(&o, &["EPERM"], "chmod u+s");
    let d = denies(&events);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0]["syscall"].as_str(), d[0]["args"]["mode"].as_str()), (Some("fchmodat"), Some("04755")));
    assert_eq!(d[0]["path"].as_str(), file.to_str(), "the path is read from the caller's memory");
    // Control: a plain chmod of the same file works and is not recorded.
    let (o, events) = logged(who, &s, &[], &["chmod", file.to_str().unwrap(), "755", "fchmodat"]);
    assert_ok(&o, "chmod 755 of a granted file");
    assert!(denies(&events).is_empty(), "{events:?}");
});

per_identity!(whole_call_and_flag_refusals_are_events, |who: Who| {
    let s = Scratch::new(who);
    for (action, syscall, field, value) in [
        (&["io-uring"][..], "io_uring_setup", None, None),
        (&["clone-newuser"][..], "clone", Some("flags"), Some("CLONE_NEWUSER")),
        (&["personality"][..], "personality", Some("persona"), None),
    ] {
        let (o, events) = logged(who, &s, &[], action);
        assert_denied(&o, &["EPERM"], syscall);
        let d = denies(&events);
        let e =
            d.iter().find(|e| e["syscall"] == syscall).unwrap_or_else(|| panic!("a deny record for {syscall}: {d:?}"));
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        if let Some(field) = field {
            assert!(e["args"][field].is_string(), "{syscall} names its {field}: {e}");
        }
        if let (Some(field), Some(value)) = (field, value) {
            assert_eq!(e["args"][field], value, "{e}");
        }
    }
});

per_identity!(broker_refusals_name_the_destination, |who: Who| {
    let s = Scratch::new(who);
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = allowed.local_addr().unwrap().port().to_string();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port().to_string();
    // A host name: the broker decides, as root too (the eBPF programs match addresses only).
    let grant = format!("localhost:{port}");
    let (o, events) = logged(who, &s, &["--allow-connect", &grant], &["tcp-connect", "127.0.0.1", &other_port]);
    assert_denied(&o, &["EACCES"], "a connect to a port the profile does not name");
    let d = denies(&events);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0]["layer"].as_str(), d[0]["syscall"].as_str()), (Some("broker"), Some("connect")));
    assert_eq!(d[0]["args"]["address"], format!("127.0.0.1:{other_port}"));
    assert!(o.stderr.contains("mcp-warden: network: refused connect("), "{}", o.describe());
    // Control: the granted destination.
    let (o, events) = logged(who, &s, &["--allow-connect", &grant], &["tcp-connect", "127.0.0.1", &port]);
    assert_ok(&o, "a connect to the granted host and port");
    assert!(denies(&events).is_empty(), "{events:?}");
});

/// With the eBPF layer (root), the summary's `denials` counts the supervisor's refusals too.
#[test]
fn the_summary_counts_the_supervisors_refusals() {
    if !is_root() {
        skip("the_summary_counts_the_supervisors_refusals", "the summary is the eBPF layer's, which needs root");
        return;
    }
    let s = Scratch::new(Who::Root);
    let (o, events) = logged(Who::Root, &s, &[], &["socket", "2", "2"]);
    assert_denied(&o, &["EPERM"], "a UDP socket under strict");
    let sum = events.iter().rev().find(|e| e["kind"] == "summary").expect("a summary record");
    assert!(sum["denials_by_kind"]["seccomp"].as_u64() >= Some(1), "{sum}");
    assert!(sum["denials"].as_u64() >= Some(1), "{sum}");
}

/// With the eBPF layer at `--monitor-level full` (root), the hidden root's, the filesystem view's
/// and Landlock's refusals of calls that change files, ports or signals are `deny` records too
/// (`open` and `exec` records carry their own verdict); a call the file's own permissions refuse
/// inside the grants is not one.
#[test]
fn landlock_and_view_refusals_are_events_at_the_full_monitor_level() {
    if !is_root() {
        skip("landlock_and_view_refusals_are_events_at_the_full_monitor_level", "the eBPF layer needs root");
        return;
    }
    const FULL: [&str; 2] = ["--monitor-level", "full"];
    let who = Who::Root;
    let s = Scratch::new(who);
    let outside = Scratch::new(who);
    let victim = outside.file("victim", "x\n", who);
    let mine = s.file("mine", "x\n", who);
    let layer_of = |events: &[Value], syscall: &str| -> (String, String, String) {
        let d = denies(events);
        let e =
            d.iter().find(|e| e["syscall"] == syscall).unwrap_or_else(|| panic!("a deny record for {syscall}: {d:?}"));
        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        (text("layer"), text("path"), text("errno"))
    };
    // The hidden root: a path outside every grant does not exist for the server.
    let (o, events) = logged(who, &s, &FULL, &["utimes", victim.to_str().unwrap()]);
    assert_denied(&o, &["ENOENT"], "utimes outside the grants, under the hidden root");
    assert_eq!(layer_of(&events, "utimensat"), ("fs-hide".into(), victim.display().to_string(), "ENOENT".into()));
    // The view (the hidden root off): a metadata write outside the write grants meets a read-only mount.
    let (o, events) =
        logged(who, &s, &[&FULL[..], &["--require", "fs-hide=off"]].concat(), &["utimes", victim.to_str().unwrap()]);
    assert_denied(&o, &["EROFS"], "utimes outside the grants");
    assert_eq!(layer_of(&events, "utimensat"), ("fs-view".into(), victim.display().to_string(), "EROFS".into()));
    // Landlock: a rename out of the write grant (the view off, so Landlock is the one to refuse).
    let target = outside.join("moved");
    let (o, events) = logged(
        who,
        &s,
        &[&FULL[..], &["--require", "fs-view=off", "--require", "fs-hide=off"]].concat(),
        &["rename", mine.to_str().unwrap(), target.to_str().unwrap()],
    );
    assert_denied(&o, &["EXDEV", "EACCES"], "a rename out of the write grant");
    let (layer, path, _) = layer_of(&events, "rename");
    assert_eq!((layer.as_str(), path.as_str()), ("landlock", mine.to_str().unwrap()));
    // Landlock: a TCP port the profile does not grant.
    let (o, events) =
        logged(who, &s, &[&FULL[..], &["--allow-connect", "443"]].concat(), &["tcp-connect", "127.0.0.1", "9"]);
    assert_denied(&o, &["EACCES"], "a TCP port not granted");
    assert_eq!(layer_of(&events, "connect").0, "landlock");
    // Control: the same metadata write inside the write grant is neither refused nor recorded.
    let (o, events) = logged(who, &s, &FULL, &["utimes", mine.to_str().unwrap()]);
    assert_ok(&o, "utimes inside the write grant");
    assert!(denies(&events).is_empty(), "{events:?}");
    let sum = events.iter().rev().find(|e| e["kind"] == "summary").expect("a summary");
    let by_kind = &sum["denials_by_kind"];
    assert!(by_kind.get("fs-view").is_none() && by_kind.get("landlock").is_none(), "{sum}");
}
