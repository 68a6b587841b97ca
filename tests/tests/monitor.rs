//! The eBPF layer: the audit log of the server's process tree, in-kernel network enforcement by
//! address and protocol, counted drops, and cleanup. These tests load BPF programs, which needs
//! root; they also compare the host's list of loaded programs before and after, so they run one
//! at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mcp_warden_tests::*;
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, "loading eBPF programs needs root (CI runs as root)");
    false
}

fn read_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

fn summary(events: &[Value]) -> &Value {
    events.iter().rev().find(|e| e["kind"] == "summary").expect("a summary record ends the log")
}

/// Our programs currently loaded on the host (the shared set stays loaded between runs).
fn our_programs() -> usize {
    const OURS: [&str; 6] = ["sys_enter", "sys_exit", "connect4", "sendmsg4", "bind4", "sock_create"];
    aya::programs::loaded_programs().flatten().filter(|p| p.name_as_str().is_some_and(|n| OURS.contains(&n))).count()
}

/// The shared probes' attachments (link pins) of every build.
fn attached() -> Vec<String> {
    let mut names = Vec::new();
    for build in builds() {
        for link in std::fs::read_dir(build.join("links")).into_iter().flatten().flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            if !name.starts_with("srv-") {
                names.push(name); // a server's own socket-program links are not shared
            }
        }
    }
    names.sort();
    names
}

/// Servers registered in the shared maps of every build.
fn registered() -> usize {
    let mut n = 0;
    for build in builds() {
        if let Ok(map) = aya::maps::MapData::from_pin(build.join("maps/SERVERS"))
            // The value is ebpf-common's `Server` (48 bytes).
            && let Ok(servers) = aya::maps::HashMap::<_, u64, [u8; 48]>::try_from(aya::maps::Map::HashMap(map))
        {
            n += servers.keys().count();
        }
    }
    n
}

/// Ring buffers in the shared `RINGS` map of every build (in use or kept free for later servers).
fn rings() -> usize {
    let mut n = 0;
    for build in builds() {
        if let Ok(map) = aya::maps::MapData::from_pin(build.join("maps/RINGS"))
            && let Ok(rings) = aya::maps::HashOfMaps::<_, u32>::try_from(aya::maps::Map::HashOfMaps(map))
        {
            n += rings.keys().count();
        }
    }
    n
}

/// The tree level's tracepoints: attached while the shared probes are loaded.
const TREE: [&str; 3] = ["sched_process_exec", "sched_process_exit", "task_newtask"];

/// The per-syscall tracepoints are attached (a `full` server runs, or one was killed).
fn full_attached() -> bool {
    attached().iter().any(|l| l.starts_with("sys_"))
}

const PINS: &str = "/sys/fs/bpf/mcp-warden";

/// The pin directories of the shared probes, one per build.
fn builds() -> Vec<std::path::PathBuf> {
    std::fs::read_dir(PINS).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// Spawns `cmd` in `sb` and waits for its first line on stdout (the probe's `READY`).
fn started(sb: &Sandbox, cmd: &[&OsStr]) -> std::process::Child {
    let mut child = sb.spawn(cmd);
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "READY", "{cmd:?}");
    child
}

/// Sends `signal` to the launcher of `child`.
fn signal_launcher(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher_pid(child) as i32), signal).unwrap();
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_process_tree_is_audited_and_its_network_is_enforced_by_address() {
    if !root_or_skip("a_process_tree_is_audited") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let data = s.mkdir("data", Who::Root);
    let known = s.file("data/known.txt", "audited\n", Who::Root);
    let log = s.join("audit.jsonl");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tp, up) = (tcp.local_addr().unwrap().port(), udp.local_addr().unwrap().port());
    let script = format!(
        r#"
import errno, socket
def attempt(label, f):
    try:
        f(); print(label, "ok")
    except OSError as e:
        print(label, errno.errorcode[e.errno])
def tcp(host):
    c = socket.socket(); c.settimeout(5); c.connect((host, {tp})); c.close()
def udp(host):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.sendto(b"x", (host, {up})); c.close()
attempt("tcp-allowed", lambda: tcp("127.0.0.1"))
attempt("tcp-forbidden-addr", lambda: tcp("127.0.0.2"))
attempt("udp-allowed", lambda: udp("127.0.0.1"))
attempt("udp-forbidden-addr", lambda: udp("127.0.0.2"))
"#
    );
    let shell = format!("cat {}; /usr/bin/python3 -c '{script}'", known.display());
    // A process outside the sandbox opening its own marker file the whole time.
    let outside_marker = s.file("outside-marker", "", Who::Root);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outside = {
        let stop = stop.clone();
        let marker = outside_marker.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::read(&marker);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // `full`: opens, syscall counts and each call's result (the default level is tested below).
    let o = Sandbox::new(Who::Root)
        .grant("--monitor-level", "full")
        .grant("--audit-log", &log)
        .grant("--allow-read", &data)
        .grant("--allow-connect", format!("127.0.0.1:{tp}"))
        .grant("--allow-connect", format!("udp:127.0.0.1:{up}"))
        .exec(&[OsStr::new("/bin/sh"), OsStr::new("-c"), OsStr::new(&shell)]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    outside.join().unwrap();
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let out: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        out,
        vec!["audited", "tcp-allowed ok", "tcp-forbidden-addr EPERM", "udp-allowed ok", "udp-forbidden-addr EPERM"],
        "inside: allowed destinations work, the forbidden address fails with EPERM\n{}",
        o.describe()
    );
    assert!(o.stderr.contains("mcp-warden: audit:"), "one-line summary on stderr\n{}", o.stderr);

    let events = read_log(&log);
    // The probes' events; `deny` records come from the supervisor and name their caller from /proc.
    for e in events.iter().filter(|e| !["summary", "start", "deny"].contains(&e["kind"].as_str().unwrap_or(""))) {
        for field in ["ts", "kind", "pid", "ppid", "tid", "comm", "uid", "cgroup_id", "exec_id"] {
            assert!(e.get(field).is_some_and(|v| !v.is_null()), "field {field} in {e}");
        }
    }
    let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        events.iter().find(|e| pred(e)).cloned().unwrap_or_else(|| panic!("no {what} event in the log"))
    };
    let sh = find(&|e| e["kind"] == "exec" && e["path"] == "/bin/sh" && e["result"] == 0, "exec of sh");
    assert_eq!(sh["argv"][0], "/bin/sh");
    let cat = find(&|e| e["kind"] == "exec" && e["argv"][0] == "cat" && e["result"] == 0, "exec of cat");
    assert_eq!(cat["ppid"], sh["pid"], "cat's parent is the shell");
    assert_ne!(cat["exec_id"], sh["exec_id"], "each exec gets its own id");
    let py = find(&|e| e["kind"] == "exec" && e["path"] == "/usr/bin/python3", "exec of python3");
    assert_eq!(py["ppid"], sh["pid"]);
    let open = find(&|e| e["kind"] == "open" && e["path"] == known.to_str().unwrap(), "open of the known file");
    assert_eq!((open["comm"].as_str(), open["verdict"].as_str()), (Some("cat"), Some("allow")));
    assert!(open["result"].as_i64().is_some_and(|fd| fd >= 0), "{open}");
    assert_eq!(open["exec_id"], cat["exec_id"]);
    let conn = |addr: &str, kind: &str| -> Value {
        find(&|e| e["kind"] == kind && e["addr"] == addr && e["pid"] == py["pid"], &format!("{kind} to {addr}"))
    };
    let ok = conn("127.0.0.1", "connect");
    assert_eq!(
        (ok["port"].as_u64(), ok["proto"].as_str(), ok["verdict"].as_str()),
        (Some(tp as u64), Some("tcp"), Some("allow"))
    );
    // python's settimeout makes the socket non-blocking: a successful connect starts as EINPROGRESS
    assert!(ok["result"] == 0 || ok["errno"] == "EINPROGRESS", "the allowed connect went ahead: {ok}");
    let denied = conn("127.0.0.2", "connect");
    assert_eq!((denied["verdict"].as_str(), denied["enforced"].as_bool()), (Some("deny"), Some(true)));
    assert_eq!(denied["errno"], "EPERM", "{denied}");
    let sent = conn("127.0.0.1", "send");
    assert_eq!(
        (sent["port"].as_u64(), sent["proto"].as_str(), sent["verdict"].as_str()),
        (Some(up as u64), Some("udp"), Some("allow"))
    );
    assert_eq!(conn("127.0.0.2", "send")["verdict"], "deny");
    let cat_exit = find(&|e| e["kind"] == "exit" && e["pid"] == cat["pid"], "exit of cat");
    assert_eq!((cat_exit["code"].as_i64(), cat_exit["signal"].as_i64()), (Some(0), None), "{cat_exit}");
    find(&|e| e["kind"] == "fork" && e["child"] == cat["pid"], "fork of cat");
    // Nothing from outside the server's cgroup.
    assert!(
        !events.iter().any(|e| e["path"] == outside_marker.to_str().unwrap()),
        "events of a process outside the server's cgroup leaked into the log"
    );
    let sum = summary(&events);
    assert_eq!(sum["dropped"], 0);
    assert!(sum["denials"].as_u64().unwrap() >= 2, "{sum}");
    assert_eq!(sum["exit_code"], 0);
    let calls = &sum["syscalls"][py["pid"].to_string()];
    assert!(
        calls["connect"].as_u64().unwrap() >= 2 && calls["sendto"].as_u64().unwrap() >= 2,
        "per-process counts by name: {calls}"
    );
}

#[test]
fn a_process_killed_by_a_signal_exits_with_that_signal() {
    if !root_or_skip("killed_by_a_signal") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).probe(&["raise", "9"]);
    assert_eq!(o.code(), Some(137), "{}", o.describe());
    let events = read_log(&log);
    let e = events.iter().find(|e| e["kind"] == "exit" && e["comm"] == "warden-probe").expect("the probe's exit");
    assert_eq!((e["code"].as_i64(), e["signal"].as_i64()), (None, Some(9)), "{e}");
    assert_eq!(summary(&events)["signal"], 9);
}

#[test]
fn a_denied_syscall_is_an_event_not_a_mystery() {
    if !root_or_skip("a_denied_syscall_is_an_event") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).probe(&["io-uring"]);
    assert_denied(&o, &["EPERM"], "io_uring_setup");
    let events = read_log(&log);
    let e = events.iter().find(|e| e["kind"] == "deny").expect("a deny event");
    assert_eq!(
        (e["syscall"].as_str(), e["layer"].as_str(), e["verdict"].as_str(), e["errno"].as_str()),
        (Some("io_uring_setup"), Some("seccomp"), Some("deny"), Some("EPERM"))
    );
}

#[test]
fn audit_mode_logs_what_would_be_denied_and_denies_nothing() {
    if !root_or_skip("audit_mode") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let secret = s.file("secret", "s3cr3t", Who::Root);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let sb = Sandbox::new(Who::Root)
        .grant("--mode", "audit")
        .grant("--monitor-level", "full")
        .grant("--audit-log", &log)
        .grant("--allow-connect", "127.0.0.2:1");
    assert_ok(&sb.probe(&["read", secret.to_str().unwrap()]), "audit mode: the read goes through");
    assert_ok(&sb.probe(&["tcp-connect", "127.0.0.1", &port]), "audit mode: the connect goes through");
    let events = read_log(&log);
    let open =
        events.iter().find(|e| e["kind"] == "open" && e["path"] == secret.to_str().unwrap()).expect("open logged");
    assert_eq!((open["verdict"].as_str(), open["enforced"].as_bool()), (Some("deny"), Some(false)));
    let conn = events.iter().find(|e| e["kind"] == "connect").expect("connect logged");
    assert_eq!((conn["verdict"].as_str(), conn["enforced"].as_bool()), (Some("deny"), Some(false)));
    assert!(events.iter().any(|e| e["kind"] == "summary" && e["mode"] == "audit"));
}

#[test]
fn a_burst_larger_than_the_ring_buffer_is_counted_not_lost() {
    if !root_or_skip("a_burst_is_counted") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let prefix = "/nonexistent/mcpw-burst-";
    let n = 20_000;
    let o = Sandbox::new(Who::Root)
        .grant("--monitor-level", "full")
        .grant("--audit-log", &log)
        .grant("--audit-buffer", "16K")
        .probe(&["open-burst", prefix, &n.to_string()]);
    assert_ok(&o, "burst");
    let events = read_log(&log);
    let logged = events
        .iter()
        .filter(|e| e["kind"] == "open" && e["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .count() as u64;
    let sum = summary(&events);
    let dropped = sum["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "a 16K ring buffer cannot hold a 20000-open burst: drops must show ({logged} logged)");
    assert!(
        logged + dropped >= n,
        "every event is either logged or counted: {logged} logged + {dropped} dropped < {n}"
    );
    assert!(o.stderr.contains(&format!("{dropped} dropped")), "the stderr summary says so\n{}", o.stderr);
}

#[test]
fn attachments_entries_and_cgroups_are_gone_after_exit_and_after_sigkill() {
    if !root_or_skip("cleanup") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    wait_until("no launcher of an earlier test is registered", || !full_attached() && registered() == 0);
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");

    // Normal exit: the launcher removes its entries; the tree level's tracepoints stay attached.
    let sb = Sandbox::new(Who::Root).grant("--audit-log", &log);
    let p = probe();
    let mut child = started(&sb, &[p.as_os_str(), OsStr::new("trap"), OsStr::new("15")]);
    let launcher = launcher_pid(&child);
    assert_eq!(attached(), TREE, "the tree level's tracepoints");
    assert_eq!(registered(), 1);
    let cgroup = format!("mcp-warden.{launcher}");
    signal_launcher(&child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(42));
    assert_eq!(attached(), TREE, "only the tree level's tracepoints stay attached: {:?}", attached());
    assert_eq!(registered(), 0, "the server's entries are removed");
    assert!(!cgroup_exists(&cgroup), "cgroup {cgroup} removed");

    // SIGKILL of the launcher: its attachments and entries stay (one set: nothing grows) until the
    // next launcher, which removes the entries when it starts and the attachments when it leaves;
    // the cgroup it could not remove is cleaned up by the next launcher too.
    let full = Sandbox::new(Who::Root).grant("--audit-log", &log).grant("--monitor-level", "full");
    let mut child = full.spawn(&[p.as_os_str(), OsStr::new("sleep"), OsStr::new("60")]);
    let launcher = launcher_pid(&child);
    wait_until("the server is registered", || registered() == 1);
    let cgroup = format!("mcp-warden.{launcher}");
    signal_launcher(&child, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    assert!(full_attached(), "left by the killed launcher: {:?}", attached());
    assert_eq!(registered(), 1, "and its entry");
    wait_until("the server tree is gone", || !cgroup_has_processes(&cgroup));
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(!cgroup_exists(&cgroup), "the stale cgroup {cgroup} was removed by the next run");
    assert_eq!(attached(), TREE, "the next launcher detached the per-syscall tracepoints: {:?}", attached());
    assert_eq!(registered(), 0, "the killed launcher's entries were removed");
}

/// The default level: the tree and the network decisions, and no per-syscall program attached (it
/// would slow every process of the host). A `full` server attaches them only while it runs.
#[test]
fn the_default_level_records_the_tree_and_network_without_per_syscall_tracing() {
    if !root_or_skip("default_level") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let full_log = s.join("full.jsonl");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let p = probe();
    let sb = Sandbox::new(Who::Root).grant("--audit-log", &log).grant("--allow-connect", format!("127.0.0.1:{port}"));
    let mut child = started(&sb, &[p.as_os_str(), OsStr::new("trap"), OsStr::new("15")]);
    assert!(!attached().iter().any(|l| l.starts_with("sys_")), "no per-syscall program: {:?}", attached());
    // A `full` server beside it attaches them for as long as it runs.
    let full = Sandbox::new(Who::Root).grant("--audit-log", &full_log).grant("--monitor-level", "full");
    let mut other = started(&full, &[p.as_os_str(), OsStr::new("trap"), OsStr::new("15")]);
    assert!(attached().contains(&"sys_enter".to_string()), "{:?}", attached());
    let term = |c: &std::process::Child| signal_launcher(c, nix::sys::signal::Signal::SIGTERM);
    term(&other);
    assert_eq!(other.wait().unwrap().code(), Some(42));
    assert!(!attached().iter().any(|l| l.starts_with("sys_")), "detached with the last full server: {:?}", attached());
    assert!(!attached().is_empty(), "the tree server still runs");
    term(&child);
    assert_eq!(child.wait().unwrap().code(), Some(42));

    // What the default level records, in a server that runs a tree and tries the network.
    let o = sb.exec(&[
        OsStr::new("/bin/sh"),
        OsStr::new("-c"),
        OsStr::new(&format!(
            "{p} tcp-connect 127.0.0.1 {port}; {p} tcp-connect 127.0.0.2 {port}; /bin/sh -c 'exit 7'; exit 0",
            p = p.display()
        )),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let events = read_log(&log);
    let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        events.iter().find(|e| pred(e)).cloned().unwrap_or_else(|| panic!("no {what} event in the log"))
    };
    let sh = find(&|e| e["kind"] == "exec" && e["argv"][0] == "/bin/sh" && e["argv"][2].is_string(), "exec of sh");
    let inner = find(&|e| e["kind"] == "exec" && e["argv"][2] == "exit 7", "exec of the inner shell");
    assert_eq!(inner["ppid"], sh["pid"], "the inner shell's parent is the outer one");
    find(&|e| e["kind"] == "fork" && e["child"] == inner["pid"], "fork of the inner shell");
    let exit = find(&|e| e["kind"] == "exit" && e["pid"] == inner["pid"], "exit of the inner shell");
    assert_eq!((exit["code"].as_i64(), exit["signal"].as_i64()), (Some(7), None), "{exit}");
    let allowed = find(&|e| e["kind"] == "connect" && e["addr"] == "127.0.0.1", "allowed connect");
    assert_eq!(allowed["verdict"], "allow");
    assert!(allowed.get("result").is_none(), "the default level does not follow an allowed call: {allowed}");
    let denied = find(&|e| e["kind"] == "connect" && e["addr"] == "127.0.0.2", "denied connect");
    assert_eq!((denied["verdict"].as_str(), denied["errno"].as_str()), (Some("deny"), Some("EPERM")), "{denied}");
    assert!(!events.iter().any(|e| e["kind"] == "open"), "no open events at the default level");
    let sum = summary(&events);
    assert_eq!(sum["syscalls"], serde_json::json!({}), "no syscall counts at the default level");
    assert_eq!(sum["dropped"], 0);
}

/// Twenty servers at once share one set of programs: the host runs each probe once per event,
/// whatever the number of servers.
#[test]
fn many_servers_share_one_set_of_programs() {
    if !root_or_skip("many_servers") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let p = probe();
    let one = {
        let sb = Sandbox::new(Who::Root).grant("--audit-log", s.join("one.jsonl"));
        let mut child = started(&sb, &[p.as_os_str(), OsStr::new("trap"), OsStr::new("15")]);
        let counts = (our_programs(), attached());
        signal_launcher(&child, nix::sys::signal::Signal::SIGTERM);
        assert_eq!(child.wait().unwrap().code(), Some(42));
        counts
    };
    let mut children = Vec::new();
    for i in 0..20 {
        let sb = Sandbox::new(Who::Root).grant("--audit-log", s.join(&format!("{i}.jsonl")));
        let child = started(&sb, &[p.as_os_str(), OsStr::new("trap"), OsStr::new("15")]);
        children.push(child);
    }
    assert_eq!(registered(), 20);
    assert_eq!((our_programs(), attached()), one, "twenty servers load and attach what one does");
    for child in &children {
        signal_launcher(child, nix::sys::signal::Signal::SIGTERM);
    }
    for mut child in children {
        assert_eq!(child.wait().unwrap().code(), Some(42));
    }
    assert_eq!(registered(), 0);
    assert_eq!(attached(), TREE);
    // A surplus ring is deleted by a child of its launcher, after an RCU grace period, so that no
    // exit waits for it: the last deletions may still be under way when the launchers are gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rings() > 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(rings() <= 2, "at most two rings are kept for later servers, not twenty: {}", rings());
    for i in 0..20 {
        let events = read_log(&s.join(&format!("{i}.jsonl")));
        assert!(
            events.iter().any(|e| e["kind"] == "exec" && e["comm"] == "warden-probe"),
            "each server's log holds its own events ({i})"
        );
        let pids: std::collections::HashSet<_> =
            events.iter().filter(|e| e["kind"] == "exec").map(|e| e["pid"].clone()).collect();
        assert_eq!(pids.len(), 1, "and only its own ({i}): {pids:?}");
    }
}

fn v2_root() -> std::path::PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")).expect("cgroup2 mounted");
    std::path::PathBuf::from(line.split(' ').nth(4).unwrap())
}

fn cgroup_exists(name: &str) -> bool {
    v2_root().join(name).exists()
}

fn cgroup_has_processes(name: &str) -> bool {
    std::fs::read_to_string(v2_root().join(name).join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
}

#[test]
fn without_privileges_the_monitor_is_reported_or_refused() {
    let who = Who::User;
    if is_root() && nix::unistd::User::from_name(TEST_USER).ok().flatten().is_none() {
        panic!("test user missing: run `cargo xtask setup`");
    }
    let s = Scratch::new(who);
    let log = s.join("audit.jsonl");
    let o = Sandbox::new(who).grant("--audit-log", &log).probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(0), "best-effort by default: the server runs\n{}", o.describe());
    assert!(
        o.stderr.contains("monitor is best-effort and not fully enforced: loading eBPF needs root or CAP_BPF"),
        "and the shortfall is reported\n{}",
        o.stderr
    );
    let events = read_log(&log);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["start"], "no probe events without the eBPF layer (the supervisor's log only starts)");
    assert_eq!(events[0]["writer"], "supervisor");
    let o = Sandbox::new(who).grant("--require", "monitor=required").probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("monitor is required but cannot be enforced on this host"), "{}", o.stderr);
    // Without the eBPF layer the network broker enforces address rules: the run goes ahead
    // (the broker's own tests are in attacks.rs and servers.rs).
    let o = Sandbox::new(who).grant("--allow-connect", "127.0.0.1:5432").probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
}

/// The optional BPF LSM layer: detection is reported in the summary; where the hooks load, they
/// see the server's execs and opens.
#[test]
fn bpf_lsm_is_detected_and_used_only_where_it_loads() {
    if !root_or_skip("bpf_lsm") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let log = s.join("audit.jsonl");
    let victim = Victim::start(Who::Root);
    // Let the hooks attach (just after the server starts) before the attempt.
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).grant("--allow-exec", "/usr/bin").exec(&[
        "/bin/sh".as_ref(),
        "-c".as_ref(),
        format!("sleep 0.5; {} ptrace {}", probe().display(), victim.pid()).as_ref(),
    ]);
    assert_denied(&o, &["EPERM"], "ptrace (seccomp, and the LSM hook where loaded)");
    let events = read_log(&log);
    let lsm = &summary(&events)["lsm"];
    match lsm["loaded"].as_bool() {
        Some(false) => {
            let reason = lsm["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "the summary says why the LSM hooks are not loaded: {lsm}");
            skip(
                "bpf_lsm_is_detected_and_used_only_where_it_loads (behaviour checks)",
                &format!("the BPF LSM hooks do not load on this host: {reason}"),
            );
        }
        Some(true) => {
            assert!(lsm["file_opens"].as_u64().unwrap() > 0, "file_open hook counted: {lsm}");
            assert!(
                events.iter().any(|e| e["kind"] == "lsm" && e["hook"] == "bprm_check_security"),
                "exec seen by the bprm_check_security hook"
            );
        }
        None => panic!("summary without lsm status: {lsm}"),
    }
}

/// Where the kernel refuses the BPF LSM hooks, the refusal is remembered until reboot (trying them
/// parses the kernel's BTF on every run); `doctor` forgets it and the next run tries again.
#[test]
fn a_refused_bpf_lsm_is_remembered_until_doctor_forgets_it() {
    if !root_or_skip("a_refused_bpf_lsm_is_remembered") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let reason = |name: &str| -> Value {
        let log = s.join(name);
        let o = Sandbox::new(Who::Root).grant("--audit-log", &log).probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(0), "{}", o.describe());
        summary(&read_log(&log))["lsm"].clone()
    };
    let doctor = || run(warden_as(Who::Root, &["doctor".as_ref()]), None, Duration::from_secs(30));
    assert!(doctor().stdout.contains("bpf lsm"), "doctor reports the BPF LSM state");
    let first = reason("first.jsonl");
    if first["loaded"] == true {
        skip("a_refused_bpf_lsm_is_remembered", "the BPF LSM hooks load on this host: nothing to remember");
        return;
    }
    let tried = first["reason"].as_str().unwrap_or_default().to_string();
    assert!(!tried.contains("remembered"), "after doctor, a run tries the hooks: {first}");
    let second = reason("second.jsonl");
    let remembered = second["reason"].as_str().unwrap_or_default();
    assert!(remembered.contains("remembered for this boot") && remembered.starts_with(&tried), "{second}");
    let forgotten = doctor();
    assert!(forgotten.stdout.contains("forgotten: the next run tries again"), "{}", forgotten.describe());
    let third = reason("third.jsonl");
    assert!(!third["reason"].as_str().unwrap_or_default().contains("remembered"), "{third}");
}

/// A launcher killed with SIGKILL does not take its server's network rules with it: the socket
/// programs' links are pinned, so a process the server left behind (no PID namespace here) stays
/// refused until the next launcher kills it. Control: the same flood to an allowed port arrives.
#[test]
fn a_killed_launcher_leaves_its_servers_network_closed() {
    if !root_or_skip("killed_launcher_network") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let p = probe();
    let flood = |allowed: u16, target: &std::net::UdpSocket| -> usize {
        let port = target.local_addr().unwrap().port();
        let script = format!("{p} udp-flood {port} 3 & exec {p} trap 15", p = p.display());
        let sb = Sandbox::new(Who::Root)
            .grant("--audit-log", s.join("flood.jsonl"))
            .grant("--require", "pid-namespace=off")
            .grant("--allow-connect", format!("udp:127.0.0.1:{allowed}"));
        let mut child = started(&sb, &[OsStr::new("/bin/sh"), OsStr::new("-c"), OsStr::new(&script)]);
        signal_launcher(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        // What arrives before and in the second after the launcher died.
        target.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 16];
        let end = Instant::now() + Duration::from_secs(1);
        let mut got = 0;
        while Instant::now() < end {
            if target.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
        // The next launcher kills what the killed one left.
        let o = Sandbox::new(Who::Root).grant("--audit-log", s.join("next.jsonl")).probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(0), "{}", o.describe());
        got
    };
    let forbidden = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    assert_eq!(flood(other_port, &forbidden), 0, "a forbidden destination stays refused after SIGKILL of the launcher");
    let allowed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    assert!(flood(allowed_port, &allowed) > 0, "control: the flood reaches an allowed destination");
    assert_eq!(registered(), 0, "the next launcher removed the killed one's entries");
}

/// The tree level's records, attacked: the network broker's connects (made by the launcher for
/// a host-name rule) are the server's; a process whose main thread ends first exits when its
/// last thread does, with that status; an argument too long for its slot is cut with an
/// ellipsis and the next ones are still read.
#[test]
fn broker_connects_thread_exits_and_long_arguments_are_recorded_right() {
    if !root_or_skip("tree_records") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(Who::Root);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let log = s.join("broker.jsonl");
    let o = Sandbox::new(Who::Root)
        .grant("--audit-log", &log)
        .grant("--allow-connect", format!("localhost:{port}"))
        .probe(&["tcp-connect", "127.0.0.1", &port]);
    assert_ok(&o, "a connect to a host-name destination, through the broker");
    let events = read_log(&log);
    assert!(
        events.iter().any(|e| e["kind"] == "connect" && e["addr"] == "127.0.0.1" && e["verdict"] == "allow"),
        "the broker's connect is in the server's log: {events:?}"
    );

    let log = s.join("threads.jsonl");
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).probe(&["leader-exit", "7"]);
    assert_eq!(o.code(), Some(7), "{}", o.describe());
    let events = read_log(&log);
    let probe_exec = events.iter().find(|e| e["kind"] == "exec" && e["comm"] == "warden-probe").expect("the exec");
    let exits: Vec<&Value> = events.iter().filter(|e| e["kind"] == "exit" && e["pid"] == probe_exec["pid"]).collect();
    assert_eq!(exits.len(), 1, "one exit for the process, when its last thread ends: {exits:?}");
    assert_eq!(exits[0]["code"], 7, "{:?}", exits[0]);

    let log = s.join("args.jsonl");
    let long = format!("exit 0 #{}", "A".repeat(5000));
    let o = Sandbox::new(Who::Root).grant("--audit-log", &log).exec(&[
        OsStr::new("/bin/sh"),
        OsStr::new("-c"),
        OsStr::new(&long),
        OsStr::new("after"),
    ]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let events = read_log(&log);
    let sh = events.iter().find(|e| e["kind"] == "exec" && e["argv"][0] == "/bin/sh").expect("the exec of sh");
    let cut = sh["argv"][2].as_str().unwrap();
    assert!(cut.starts_with("exit 0 #AAA") && cut.ends_with('…') && cut.len() < 100, "cut with an ellipsis: {cut}");
    assert_eq!(sh["argv"][3], "after", "the argument after the long one is read: {sh}");
}
