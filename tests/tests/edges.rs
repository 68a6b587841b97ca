//! Bad input at the edges, faults, and a small soak: nothing garbled, nothing dropped silently,
//! nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use mcp_warden_tests::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

per_identity!(non_utf8_and_very_long_arguments_and_environment_pass_through_unchanged, |who: Who| {
    let p = probe();
    let weird = OsString::from_vec(b"\xff\xfe-not-utf8-\x01".to_vec());
    let long: Vec<OsString> = (0..2000).map(|i| OsString::from(format!("{i:0100}"))).collect();
    let mut cmd: Vec<&OsStr> = vec![p.as_os_str(), OsStr::new("args-hex"), weird.as_os_str()];
    cmd.extend(long.iter().map(OsString::as_os_str));
    let o = Sandbox::new(who).exec(&cmd);
    assert_ok(&o, "args");
    let got: Vec<&str> = o.verdict().trim_start_matches("OK ").split(' ').collect();
    assert_eq!(got.len(), 2001, "{who:?}: every argument arrives");
    assert_eq!(got[0], hex(weird.as_bytes()), "{who:?}: byte for byte");
    assert_eq!(got[2000], hex(long[1999].as_bytes()));

    let big = "x".repeat(100_000);
    let o = Sandbox::new(who).env("MCPW_BIG", &big).grant("--pass-env", "MCPW_BIG").probe(&["env-len", "MCPW_BIG"]);
    assert_eq!(o.verdict(), "OK 100000 bytes", "{who:?}\n{}", o.describe());
});

#[test]
fn deep_extends_chains_symlinked_profiles_and_cycles() {
    let who = Who::current();
    let s = Scratch::new(who);
    let dir = s.mkdir("profiles", who);
    for i in 0..40 {
        let base = if i == 39 { "strict".to_string() } else { format!("p{}.toml", i + 1) };
        std::fs::write(
            dir.join(format!("p{i}.toml")),
            format!("extends = [\"{base}\"]\n[process]\nmax-open-files = {}\n", 100 + i),
        )
        .unwrap();
    }
    // a symlink elsewhere: relative `extends` resolve next to the real file
    let link = s.join("link.toml");
    std::os::unix::fs::symlink(dir.join("p0.toml"), &link).unwrap();
    let o = Sandbox::new(who).profile(&link).probe(&["open-fds", "50"]);
    assert_ok(&o, "a 40-deep chain through a symlink loads; the nearest max-open-files (100) applies");
    let o = Sandbox::new(who).profile(&link).probe(&["open-fds", "200"]);
    assert_denied(&o, &["EMFILE"], "max-open-files = 100 from the top of the chain");

    std::fs::write(dir.join("c1.toml"), "extends = [\"c2.toml\"]\n").unwrap();
    std::fs::write(dir.join("c2.toml"), "extends = [\"c3.toml\"]\n").unwrap();
    std::fs::write(dir.join("c3.toml"), "extends = [\"c1.toml\"]\n").unwrap();
    let o = Sandbox::new(who).profile(dir.join("c1.toml")).probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(
        o.stderr.contains("cycle") && o.stderr.contains("c1.toml -> ") && o.stderr.contains("c3.toml -> "),
        "{}",
        o.stderr
    );
}

#[test]
fn an_unwritable_audit_log_refuses_to_start() {
    if !is_root() {
        skip(module_path!(), "the audit log is only opened when the eBPF layer loads, which needs root");
        return;
    }
    let o = Sandbox::new(Who::Root).grant("--audit-log", "/proc/mcpw-no-such-dir/audit.jsonl").probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("cannot write the audit log /proc/mcpw-no-such-dir/audit.jsonl"), "{}", o.stderr);
    assert!(o.stderr.contains("hint:"), "{}", o.stderr);
}

per_identity!(
    /// A small soak: concurrent servers started and stopped for a few rounds leave no process,
    /// cgroup or (as root) BPF program behind. `cargo xtask` has no full 50 x 20 run yet.
    concurrent_servers_leave_nothing_behind,
    |who: Who| {
        const CONCURRENT: usize = 8;
        const ROUNDS: usize = 3;
        let marker = format!("288.{}{}", std::process::id(), who as u8);
        for _ in 0..ROUNDS {
            let children: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let p = probe();
                    let sb = Sandbox::new(who).grant("--max-processes", "16").grant("--stop-timeout", "2");
                    sb.spawn(&[p.as_os_str(), OsStr::new("spawn-tree"), OsStr::new("2"), OsStr::new(&marker)])
                })
                .collect();
            // let them all start, then stop them the way a client would: SIGTERM to the launcher
            let mut children: Vec<_> = children
                .into_iter()
                .map(|mut c| {
                    let mut line = String::new();
                    std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.as_mut().unwrap()), &mut line)
                        .unwrap();
                    assert_eq!(line.trim(), "READY");
                    c
                })
                .collect();
            for c in &mut children {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(launcher_pid(c) as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            for c in children {
                let o = wait_output(c, Duration::from_secs(60));
                assert!(matches!(o.code(), Some(143) | Some(137)), "{who:?}: stopped: {}", o.describe());
            }
        }
        assert!(processes_with(&marker).is_empty(), "{who:?}: processes left: {:?}", processes_with(&marker));
        let stale: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/pids")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix("mcp-warden.").is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect();
        assert!(stale.is_empty(), "{who:?}: cgroups of finished launchers left: {stale:?}");
    }
);

per_identity!(
    /// An audit log that cannot be written (here `/dev/full`: every write fails with ENOSPC, like a
    /// full disk): with `audit-log` required (the default) the run is refused before the server
    /// starts; best-effort, the server runs, the shortfall is announced, and every lost record is
    /// counted. Control: a writable log.
    an_unwritable_audit_log_refuses_the_run_or_is_counted,
    |who: Who| {
        let s = Scratch::new(who);
        let ok = s.join("audit.jsonl");
        let o = Sandbox::new(who).arg("--mcp").grant("--audit-log", &ok).probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(0), "{who:?}: control\n{}", o.describe());
        assert!(std::fs::read_to_string(&ok).unwrap().contains("\"kind\":\"start\""), "a start record");

        let o = Sandbox::new(who).arg("--mcp").grant("--audit-log", "/dev/full").probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(125), "{who:?}\n{}", o.describe());
        assert!(o.stderr.contains("cannot write the audit log /dev/full: No space left on device"), "{}", o.stderr);
        assert!(o.stderr.contains("--require audit-log=best-effort"), "with the way out: {}", o.stderr);
        assert!(!o.stdout.contains("OK"), "the server did not run");

        let o = Sandbox::new(who)
            .arg("--mcp")
            .grant("--audit-log", "/dev/full")
            .grant("--require", "audit-log=best-effort")
            .probe(&["exit", "0"]);
        assert_eq!(o.code(), Some(0), "{who:?}\n{}", o.describe());
        assert!(
            o.stderr.contains("audit-log is best-effort: the server runs and every record is counted as lost"),
            "{}",
            o.stderr
        );
        if is_root() && who == Who::Root {
            assert!(o.stderr.contains("log lines LOST"), "the eBPF summary counts them: {}", o.stderr);
        }
    }
);

per_identity!(a_server_killed_by_a_real_time_signal_ends_the_launcher_with_its_status, |who: Who| {
    // SIGRTMIN+5 (39 on Linux): a signal nix cannot name. The status must come back, not a hang.
    for extra in [&[][..], &["--require", "pid-namespace=off"][..]] {
        let mut sb = Sandbox::new(who);
        for a in extra {
            sb = sb.arg(a);
        }
        let o = sb.probe(&["raise", "39"]);
        assert_eq!(o.code(), Some(128 + 39), "{extra:?}: {}", o.describe());
    }
});
