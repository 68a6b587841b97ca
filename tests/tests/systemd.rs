//! Running servers as services: every shipped and generated unit passes `systemd-analyze
//! verify`; a socket-activated server (systemd-socket-activate --accept --inetd, which needs no
//! systemd as PID 1) is reached through `mcp-warden connect` by the official MCP client; the audit
//! log goes to the journal as structured fields; the Debian package installs into a throwaway root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_warden_tests::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn everything() -> PathBuf {
    let p = test_env().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(p.exists(), "{} is missing: run `cargo xtask setup`", p.display());
    p
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart runs the built binary (verify
/// checks that the program exists; /usr/bin/mcp-warden is not installed here). Any message, even
/// a warning such as an unknown key, fails.
fn verify(units: &[PathBuf]) {
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for unit in units {
        let text = std::fs::read_to_string(unit).unwrap().replace("/usr/bin/mcp-warden", warden().to_str().unwrap());
        let copy = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let o = Command::new("systemd-analyze").arg("verify").arg("--man=no").args(&copies).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {units:?}:\n{stderr}");
}

#[test]
fn shipped_and_generated_units_pass_systemd_analyze_verify() {
    verify(&[repo().join("dist/systemd/mcp-warden@.service")]);
    let s = Scratch::new(Who::current());
    let notes = s.mkdir("notes", Who::current());
    let user = if is_root() {
        "mcpw-test".to_string()
    } else {
        nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name
    };
    let generate = |name: &str, extra: &[&str]| -> PathBuf {
        let out = s.join(name);
        let mut c = Command::new(warden());
        c.args(["systemd-unit", "--name", name, "--server-user", &user, "--output"]).arg(&out).args(extra);
        c.args(["--", "--profile", "filesystem", "--", "node", everything().to_str().unwrap()]).arg(&notes);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let stdio = generate("notes", &[]);
    let service = stdio.join("mcp-warden-notes@.service");
    let text = std::fs::read_to_string(&service).unwrap();
    assert!(text.contains(&format!("ReadWritePaths={}", notes.canonicalize().unwrap().display())), "{text}");
    assert!(
        text.contains("CapabilityBoundingSet=CAP_BPF ") && text.contains("EnvironmentFile=-/etc/mcp-warden/notes.env")
    );
    let args = std::fs::read_to_string(stdio.join("notes.args")).unwrap();
    assert!(args.contains(&format!("--user\n{user}\n--profile\nfilesystem\n--\nnode\n")), "{args}");
    verify(&[stdio.join("mcp-warden-notes.socket"), service]);

    let http = generate("search", &["--listen", "8931"]);
    let text = std::fs::read_to_string(http.join("mcp-warden-search.service")).unwrap();
    assert!(text.contains("[Install]") && !http.join("mcp-warden-search.socket").exists());
    assert!(std::fs::read_to_string(http.join("search.args")).unwrap().starts_with("# mcp-warden run arguments"));
    assert!(std::fs::read_to_string(http.join("search.args")).unwrap().contains("--allow-bind\n8931\n"));
    verify(&[http.join("mcp-warden-search.service")]);

    // A unit that could not start is refused when it is generated.
    let o = Command::new(warden())
        .args(["systemd-unit", "--name", "bad", "--output"])
        .arg(s.join("bad"))
        .args(["--", "--profile", "no-such-profile", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!s.join("bad").exists());
}

per_identity!(
    /// `systemd-socket-activate --accept --inetd` stands in for systemd's `Accept=yes` socket: one
    /// sandboxed server per connection, its stdio on the connection. The desktop side is the official
    /// MCP client running `mcp-warden connect SOCKET` as its server command.
    a_socket_activated_server_is_reached_through_connect,
    |who: Who| {
        let s = Scratch::new(Who::current());
        let socket = s.join("everything.sock");
        // One marker per identity: the root and the user variant of this test may run at the same time.
        let marker = format!("mcpw-sock-{}-{}", std::process::id(), who as u8);
        let mut args: Vec<String> =
            vec!["--accept".into(), "--inetd".into(), "-l".into(), socket.display().to_string(), "--".into()];
        args.extend([warden().display().to_string(), "run".into()]);
        if is_root() {
            args.extend(["--user".into(), "mcpw-test".into()]);
        }
        args.extend(["--profile", "everything", "--", "node"].map(String::from));
        args.extend([everything().display().to_string(), "stdio".into(), marker.clone()]);
        let mut activator = Command::new("systemd-socket-activate")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the socket did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

        let python = test_env().join("venv/bin/python");
        let client = test_env().join("clients/mcp_session.py");
        let mut c = command_as(who, &python);
        c.arg(&client)
            .args(["echo", r#"{"message": "through the socket"}"#, "--"])
            .arg(warden())
            .arg("connect")
            .arg(&socket);
        c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
        let o = run(c, None, Duration::from_secs(60));
        assert_eq!(o.code(), Some(0), "{who:?}\n{}", o.describe());
        let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
        assert_eq!(v["text"], "Echo: through the socket", "{v}");
        assert_eq!(v["server"], "mcp-servers/everything");
        // The client's half-close reached each server: none is left running (the activator itself
        // has the marker in its command line).
        let servers = || -> Vec<u32> { processes_with(&marker).into_iter().filter(|p| *p != activator.id()).collect() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !servers().is_empty() {
            assert!(Instant::now() < deadline, "servers left after their clients disconnected: {:?}", servers());
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = activator.kill();
        let _ = activator.wait();

        // Nothing listening: a clear error, status 125.
        let o = Command::new(warden()).args(["connect"]).arg(s.join("nobody.sock")).output().unwrap();
        assert_eq!(o.status.code(), Some(125));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot connect to"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
);

/// The journal's native protocol, received on a datagram socket standing in for journald's.
#[test]
fn audit_records_go_to_the_journal_as_structured_fields() {
    let s = Scratch::new(Who::current());
    let path = s.join("journal.sock");
    let journal = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    journal.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Received while the run goes on, as journald does: a full queue would block the writers.
    let receiver = std::thread::spawn(move || {
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = journal.recv(&mut buf) {
            entries.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        entries
    });
    let also = s.join("also.jsonl");
    let o = Sandbox::new(Who::current())
        .arg("--mcp")
        .grant("--audit-log", format!("journal,{}", also.display()))
        .env("MCP_WARDEN_JOURNAL_SOCKET", path.to_str().unwrap())
        .probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let entries = receiver.join().unwrap();
    let start = entries
        .iter()
        .find(|e| e.contains("MCP_WARDEN_KIND=start\n") && e.contains("MCP_WARDEN_WRITER=mcp\n"))
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert!(start.contains("SYSLOG_IDENTIFIER=mcp-warden\n") && start.contains("PRIORITY=6\n"), "{start}");
    assert!(start.contains("MESSAGE={\"ts\":"), "the record's JSON as the message: {start}");
    assert!(start.contains("MCP_WARDEN_PROFILE=strict\n"), "{start}");
    if is_root() {
        assert!(entries.iter().any(|e| e.contains("MCP_WARDEN_KIND=exec\n")), "eBPF events too: {entries:?}");
    }
    assert!(std::fs::read_to_string(&also).unwrap().contains("\"kind\":\"start\""), "and the file");

    // No journal to talk to: refused, like any unwritable log.
    let o = Sandbox::new(Who::current())
        .arg("--mcp")
        .grant("--audit-log", "journal")
        .env("MCP_WARDEN_JOURNAL_SOCKET", s.join("absent.sock").to_str().unwrap())
        .probe(&["exit", "0"]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
}

/// `cargo xtask dist` builds the .deb; it installs into a throwaway root with every file, and the
/// installed binary runs.
#[test]
fn the_debian_package_installs_into_a_throwaway_root() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["run", "--quiet", "--locked", "-p", "xtask", "--", "dist", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "cargo xtask dist:\n{}", String::from_utf8_lossy(&o.stderr));
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let st = Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()).status().unwrap();
    assert!(st.success());
    for file in [
        "usr/bin/mcp-warden",
        "usr/share/mcp-warden/profiles/strict.toml",
        "usr/share/mcp-warden/profiles/fetch.toml",
        "lib/systemd/system/mcp-warden@.service",
        "usr/share/man/man1/mcp-warden.1.gz",
        "usr/share/bash-completion/completions/mcp-warden",
        "usr/share/zsh/vendor-completions/_mcp-warden",
        "usr/share/fish/vendor_completions.d/mcp-warden.fish",
        "usr/share/doc/mcp-warden/deploy.md",
    ] {
        assert!(root.path().join(file).is_file(), "{file} missing from the package");
    }
    let v = Command::new(root.path().join("usr/bin/mcp-warden")).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("mcp-warden {}", env!("CARGO_PKG_VERSION")));
    let info = Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "mcp-warden");
    let man = Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {} | head -c 200", root.path().join("usr/share/man/man1/mcp-warden.1.gz").display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH mcp-warden"), "a man page");
}
