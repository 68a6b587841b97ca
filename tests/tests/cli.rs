//! The launcher as a command: errors and exit statuses, stdio passthrough, signal forwarding, and
//! what is left behind when it is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use mcp_warden_tests::*;

fn warden(args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run(warden_as(Who::current(), &args), None, Duration::from_secs(60))
}

#[track_caller]
fn assert_failure(o: &Output, code: i32, message: &str, hint: &str) {
    assert_eq!(o.code(), Some(code), "exit status\n{}", o.describe());
    assert!(o.stdout.is_empty(), "nothing on stdout\n{}", o.describe());
    let first = o.stderr.lines().find(|l| l.starts_with("mcp-warden: ") && !l.contains("warning:")).unwrap_or("");
    assert!(first.contains(message), "message `{message}`\n{}", o.describe());
    assert!(o.stderr.lines().any(|l| l.starts_with("hint: ") && l.contains(hint)), "hint `{hint}`\n{}", o.describe());
}

#[test]
fn bad_profiles_are_refused_with_location_and_hint() {
    let s = Scratch::new(Who::current());
    let bad = s.file("bad.toml", "extends = [\"strict\"]\n\n[filesystem]\nraed = [\"/srv\"]\n", Who::current());
    let o = warden(&["run", "--profile", bad.to_str().unwrap(), "--", "/bin/true"]);
    assert_failure(
        &o,
        125,
        &format!("invalid profile {}:4:1: unknown key `raed`", bad.display()),
        "did you mean `read`?",
    );

    let o = warden(&["check", bad.to_str().unwrap()]);
    assert_failure(&o, 125, "unknown key `raed`", "did you mean `read`?");

    let o = warden(&["run", "--profile", "strikt", "--", "/bin/true"]);
    assert_failure(&o, 125, "no embedded profile named `strikt`", "did you mean `strict`?");

    let cyc_a = s.file("a.toml", "extends = [\"b.toml\"]\n", Who::current());
    s.file("b.toml", "extends = [\"a.toml\"]\n", Who::current());
    let o = warden(&["check", cyc_a.to_str().unwrap()]);
    assert_failure(&o, 125, "profile `extends` cycle:", "remove one of the `extends` entries");

    let missing = s.file("missing.toml", "[filesystem]\nread = [\"/does/not/exist\"]\n", Who::current());
    let o = warden(&["run", "--profile", missing.to_str().unwrap(), "--", "/bin/true"]);
    assert_failure(&o, 125, "filesystem.read path `/does/not/exist`", "trailing `?`");
}

#[test]
fn bad_flags_and_commands_have_their_exit_statuses() {
    let o = warden(&["run", "--max-memory", "12Q", "--", "/bin/true"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("unknown size suffix"), "{}", o.describe());

    let o = warden(&["run", "--allow-connect=-bad-:80", "--", "/bin/true"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("nor a host name"), "{}", o.describe());

    let o = warden(&["run", "--", "no-such-server-xyz"]);
    assert_failure(&o, 127, "command not found: `no-such-server-xyz`", "--pass-env PATH");

    let o = warden(&["run", "--", "/etc/passwd"]);
    assert_failure(&o, 126, "`/etc/passwd` is not executable", "mode");

    let o = warden(&["run", "--", probe().to_str().unwrap(), "exit", "0"]);
    let dir = probe_dir();
    assert_failure(&o, 125, "is outside the profile's exec allow-list", &format!("--allow-exec {}", dir.display()));

    let o = warden(&["run", "--require", "seccomp=sometimes", "--", "/bin/true"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
}

#[test]
fn a_required_layer_that_cannot_be_enforced_refuses_to_start() {
    // The eBPF layer needs privileges an unprivileged launcher does not have: required, it
    // refuses; best-effort (strict's default), it runs and says so.
    let user = Who::User;
    let args = |level: &str| {
        let require = format!("monitor={level}");
        let args: Vec<&OsStr> = ["run", "--require", &require, "--", "/bin/true"].map(OsStr::new).to_vec();
        run(warden_as(user, &args), None, Duration::from_secs(30))
    };
    let o = args("required");
    assert_failure(&o, 125, "monitor is required but cannot be enforced on this host", "--require monitor=best-effort");
    let o = args("best-effort");
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(o.stderr.contains("warning: monitor is best-effort and not fully enforced"), "{}", o.describe());
}

per_identity!(exit_statuses_and_deaths_by_signal_propagate, |who: Who| {
    let sb = Sandbox::new(who);
    assert_eq!(sb.probe(&["exit", "0"]).code(), Some(0));
    assert_eq!(sb.probe(&["exit", "7"]).code(), Some(7));
    assert_eq!(sb.probe(&["raise", "9"]).code(), Some(128 + 9), "SIGKILL -> 137");
    assert_eq!(sb.probe(&["raise", "6"]).code(), Some(128 + 6), "SIGABRT -> 134");
    let no_ns = Sandbox::new(who).grant("--require", "pid-namespace=off");
    assert_eq!(no_ns.probe(&["exit", "7"]).code(), Some(7));
    assert_eq!(no_ns.probe(&["raise", "15"]).code(), Some(128 + 15));
});

per_identity!(stdio_passes_through_byte_for_byte, |who: Who| {
    let data: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let sb = Sandbox::new(who);
    let mut cmd = warden_as(who, &["run".as_ref(), "--".as_ref(), "/bin/cat".as_ref()]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn({
        let data = data.clone();
        move || {
            use std::io::Write;
            stdin.write_all(&data).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdout is the server's, unchanged");
    // and the launcher itself writes nothing there
    let o = sb.probe(&["exit", "0"]);
    assert!(o.stdout.is_empty(), "{}", o.describe());
});

/// Spawns the probe with `action`, waits for its READY line, and returns the launcher child.
fn spawn_ready(sb: &Sandbox, action: &[&str]) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let p = probe();
    let mut cmd: Vec<&OsStr> = vec![p.as_os_str()];
    cmd.extend(action.iter().map(OsStr::new));
    let mut child = sb.spawn(&cmd);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "probe did not start");
    (child, stdout)
}

per_identity!(term_int_and_hup_are_forwarded_to_the_server, |who: Who| {
    for (sig, ns) in [(libc::SIGTERM, true), (libc::SIGINT, true), (libc::SIGHUP, true), (libc::SIGTERM, false)] {
        let mut sb = Sandbox::new(who);
        if !ns {
            sb = sb.grant("--require", "pid-namespace=off");
        }
        let (mut child, mut stdout) = spawn_ready(&sb, &["trap", &sig.to_string()]);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(launcher_pid(&child) as i32),
            nix::sys::signal::Signal::try_from(sig).unwrap(),
        )
        .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(rest.trim(), "OK got the signal", "{who:?} signal {sig} ns={ns}");
        assert_eq!(status.code(), Some(42), "{who:?} signal {sig}: the server's own exit status");
    }
});

per_identity!(a_server_that_ignores_sigterm_is_killed_after_the_stop_timeout, |who: Who| {
    let sb = Sandbox::new(who).grant("--stop-timeout", "1");
    let (mut child, _stdout) = spawn_ready(&sb, &["ignore-term"]);
    let started = Instant::now();
    let launcher = launcher_pid(&child);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 9), "{who:?}: killed after the grace period");
    assert!(started.elapsed() < Duration::from_secs(30), "{who:?}: within a bound, not never");
});

per_identity!(a_vanished_client_gets_its_server_stopped, |who: Who| {
    let sb = Sandbox::new(who).grant("--stop-timeout", "1");
    let (mut child, stdout) = spawn_ready(&sb, &["spawn-tree", "0", "290.5"]);
    // The client goes away: nobody reads the server's output any more.
    drop(stdout);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{who:?}: the server outlived its client");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 15), "{who:?}: stopped with SIGTERM");
});

per_identity!(sigkill_of_the_launcher_leaves_no_server_process_or_cgroup, |who: Who| {
    let marker = format!("299.{}{}", std::process::id(), who as u8);
    // With a private TMPDIR: the killed launcher cannot remove it; the next start does.
    let s = Scratch::new(who);
    let profile = s.file("tmp.toml", "extends = [\"strict\"]\n[filesystem]\nprivate-tmp = true\n", who);
    let sb = Sandbox::new(who).profile(&profile).grant("--max-processes", "64");
    let (mut child, _stdout) = spawn_ready(&sb, &["spawn-tree", "3", &marker]);
    // A just-exec'd process shows an empty cmdline until the kernel finishes setting up its
    // stack, after its parent's spawn() returned: poll briefly instead of sampling once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_with(&marker).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "{who:?}: probe and three grandchildren should run: {:?}",
            processes_with(&marker)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // runuser stands between us and the launcher for the test user: kill the launcher itself.
    let launcher = launcher_pid(&child);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() {
        assert!(Instant::now() < deadline, "{who:?}: server tree survived the launcher: {:?}", processes_with(&marker));
        std::thread::sleep(Duration::from_millis(20));
    }
    let tmp_of = |pid: u32| -> Vec<String> {
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("mcp-warden-tmp.{pid}.")))
            .collect()
    };
    assert_eq!(tmp_of(launcher).len(), 1, "{who:?}: the killed launcher's private TMPDIR is still there");
    let o = Sandbox::new(who).profile(&profile).probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(tmp_of(launcher).is_empty(), "{who:?}: the next start removed the stale private TMPDIR");
    if is_root() {
        // The dead launcher's cgroup is removed by the next launcher that uses that hierarchy.
        let stale = format!("mcp-warden.{launcher}");
        let o = Sandbox::new(Who::Root).grant("--max-processes", "64").probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(0), "{}", o.describe());
        assert!(cgroups_named(&stale).is_empty(), "stale cgroup {stale} was cleaned up");
    }
});

fn cgroups_named(name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines().filter(|l| l.contains(" - cgroup")) {
        let mount = line.split(' ').nth(4).unwrap();
        for entry in walk(std::path::Path::new(mount), 3) {
            if entry.file_name().and_then(|n| n.to_str()) == Some(name) {
                found.push(entry);
            }
        }
    }
    found
}

fn walk(dir: &std::path::Path, depth: usize) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
            out.extend(walk(&e.path(), depth - 1));
        }
    }
    out
}

#[test]
fn no_cgroup_is_left_after_a_normal_run() {
    if !is_root() {
        skip(module_path!(), "cgroups are only created when the launcher runs as root here");
        return;
    }
    let sb = Sandbox::new(Who::Root).grant("--max-processes", "32").grant("--max-memory", "1G");
    let (mut child, _stdout) = spawn_ready(&sb, &["trap", "15"]);
    let launcher = launcher_pid(&child);
    let name = format!("mcp-warden.{launcher}");
    let while_running = cgroups_named(&name);
    assert!(!while_running.is_empty(), "the server runs in its own cgroup(s)");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
    assert!(cgroups_named(&name).is_empty(), "removed after the server ended: {while_running:?}");
}

#[test]
fn explain_doctor_check_and_profiles_report() {
    let o = warden(&["explain", "--", "/bin/true"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    for needle in [
        "profile   strict",
        "layers on this host:",
        "landlock",
        "seccomp",
        "rx   /usr",
        "rule clone3",
        "verdict: `run` would start",
    ] {
        assert!(o.stdout.contains(needle), "explain shows `{needle}`\n{}", o.stdout);
    }
    let denies = |name: &str| {
        o.stdout.lines().any(|l| l.trim_start().starts_with("deny ") && l.split_whitespace().any(|w| w == name))
    };
    assert!(denies("bpf") && denies("io_uring_setup") && denies("ptrace"), "{}", o.stdout);
    if is_root() {
        assert!(o.stdout.contains("root (uid 0) WITHOUT capabilities"), "running as root is called out\n{}", o.stdout);
    }
    let o = warden(&["explain", "--require", "monitor=off", "--allow-connect", "10.0.0.0/8:5432", "--", "/bin/true"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(o.stdout.contains("checked by the network broker") && o.stdout.contains("10.0.0.0/8:5432"), "{}", o.stdout);
    let user = Who::User;
    let args: Vec<&std::ffi::OsStr> =
        ["explain", "--require", "monitor=required", "--", "/bin/true"].iter().map(std::ffi::OsStr::new).collect();
    let o = run(warden_as(user, &args), None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stdout.contains("verdict: `run` would REFUSE"), "{}", o.stdout);

    let o = warden(&["doctor"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let mut needles = vec!["landlock        ABI", "seccomp filter  yes", "cgroup v2", "btf", "cgroup_sock_addr"];
    if is_root() {
        // the program types the eBPF layer relies on load here as root (design notes, section 3)
        needles.extend(["tracepoint         loads", "raw_tracepoint     loads", "cgroup_sock_addr   loads"]);
    }
    for needle in needles {
        assert!(o.stdout.contains(needle), "doctor shows `{needle}`\n{}", o.stdout);
    }
    let o = warden(&["check", "strict"]);
    assert_eq!((o.code(), o.stdout.trim()), (Some(0), "strict: ok (strict (embedded))"));
    let o = warden(&["profiles", "list"]);
    assert!(o.stdout.starts_with("strict"), "{}", o.stdout);
    let o = warden(&["profiles", "show", "strict"]);
    assert!(o.stdout.contains("[filesystem]"), "{}", o.stdout);
}
