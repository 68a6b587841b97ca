//! The public escape suite: every row of tests/escapes/suite.toml, as root and as an unprivileged
//! user, under `strict` plus the row's grants, next to the same attack without mcp-warden (which
//! must succeed, or the row proves nothing). The verdicts make docs/escape-suite.md; the test fails
//! when the committed table differs from this run (`MCPW_UPDATE_DOCS=1` rewrites it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_warden_tests::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Suite {
    escape: Vec<Escape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Escape {
    id: String,
    attack: String,
    action: Vec<String>,
    #[serde(default)]
    grants: Vec<String>,
    expect: Vec<String>,
    layer: String,
    /// Who the attack works for without mcp-warden: `always` (default), `root` (the host already
    /// refuses it to users), `never` (the host refuses it to everyone; the row documents the verdict).
    #[serde(default = "always")]
    control: String,
    /// Control verdicts that also mean the attack got through (`EFAULT`: access was granted, the
    /// address was not mapped).
    #[serde(default)]
    works: Vec<String>,
}

fn always() -> String {
    "always".into()
}

/// What the placeholders stand for, for one user.
struct Targets {
    _scratch: Scratch,
    _victim: Victim,
    _listeners: (std::net::TcpListener, std::net::UdpSocket, std::os::unix::net::UnixListener),
    values: Vec<(&'static str, String)>,
}

impl Targets {
    fn new(who: Who) -> Targets {
        let s = Scratch::new(who);
        let secret = s.file("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n", who);
        let rc = s.file("bashrc", "# rc\n", who);
        let file = s.file("victim.conf", "setting = 1\n", who);
        let dir = s.mkdir("dir", who);
        std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();
        chown_to(&dir.join("link"), who);
        let link = s.join("key-link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        chown_to(&link, who);
        let tool = s.file("dir/tool", "#!/bin/sh\n", who);
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = s.join("service.sock");
        let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let victim = Victim::start(who);
        let values = vec![
            ("{secret}", secret.display().to_string()),
            ("{rc}", rc.display().to_string()),
            ("{file}", file.display().to_string()),
            ("{link}", link.display().to_string()),
            ("{dir}", dir.display().to_string()),
            ("{port}", tcp.local_addr().unwrap().port().to_string()),
            ("{udp}", udp.local_addr().unwrap().port().to_string()),
            ("{unix}", sock.display().to_string()),
            ("{victim}", victim.pid().to_string()),
        ];
        Targets { _scratch: s, _victim: victim, _listeners: (tcp, udp, unix), values }
    }

    fn fill(&self, s: &str) -> String {
        self.values.iter().fold(s.to_string(), |acc, (k, v)| acc.replace(k, v))
    }
}

fn doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/escape-suite.md")
}

#[test]
fn the_escape_suite_is_blocked_and_documented() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("escapes/suite.toml")).unwrap();
    let suite: Suite = toml::from_str(&text).unwrap();
    let whos = Who::all();
    let targets: Vec<(Who, Targets)> = whos.iter().map(|w| (*w, Targets::new(*w))).collect();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for e in &suite.escape {
        let mut cells = Vec::new();
        for (who, t) in &targets {
            let action: Vec<String> = e.action.iter().map(|a| t.fill(a)).collect();
            let action: Vec<&str> = action.iter().map(String::as_str).collect();
            // The attack first (an attack that writes must not find the control's result).
            let mut sb = Sandbox::new(*who).env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI");
            for pair in e.grants.chunks(2) {
                sb = sb.grant(&pair[0], t.fill(&pair[1]));
            }
            let o = sb.probe(&action);
            let verdict = o.verdict().to_string();
            // `fork-bomb` reports how far it got: "OK forked 18 then EAGAIN".
            let errno = verdict.strip_prefix("ERR ").or_else(|| verdict.rsplit_once(" then ").map(|(_, e)| e));
            if !errno.is_some_and(|x| e.expect.iter().any(|want| want == x)) {
                failures.push(format!(
                    "{} ({who:?}): expected one of {:?}, got `{verdict}`\n{}",
                    e.id,
                    e.expect,
                    o.describe()
                ));
            }
            let mut control = command_as(*who, probe());
            control.args(&action).env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI");
            let control = run(control, None, Duration::from_secs(60));
            let cv = control.verdict();
            let control_ok = cv.starts_with("OK") || e.works.iter().any(|w| cv == format!("ERR {w}"));
            let expected = match e.control.as_str() {
                "always" => true,
                "root" => *who == Who::Root,
                _ => false,
            };
            if expected && !control_ok {
                failures.push(format!("{} ({who:?}): the attack fails even without mcp-warden: {cv}", e.id));
            }
            let without =
                if control_ok { "works".to_string() } else { format!("fails (`{}`)", cv.trim_start_matches("ERR ")) };
            cells.push((without, errno.unwrap_or(&verdict).to_string()));
        }
        rows.push((e, cells));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let columns: Vec<String> =
        whos.iter().map(|w| format!("as {}", if *w == Who::Root { "root" } else { "a user" })).collect();
    let mut table = format!(
        "| # | attack | without mcp-warden | {} | blocked by |\n|---:|---|---|{}---|\n",
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    for (i, (e, cells)) in rows.iter().enumerate() {
        let without = cells.iter().map(|c| c.0.as_str()).collect::<Vec<_>>();
        let without =
            if without.iter().all(|w| *w == without[0]) { without[0].to_string() } else { without.join(" / ") };
        let verdicts: Vec<String> = cells.iter().map(|c| format!("blocked: `{}`", c.1)).collect();
        table.push_str(&format!(
            "| {} | {} (`{}`) | {without} | {} | {} |\n",
            i + 1,
            e.attack,
            e.id,
            verdicts.join(" | "),
            e.layer
        ));
    }
    let doc = format!(
        "# The escape suite\n\n\
         Every attack below is a row of [tests/escapes/suite.toml](../tests/escapes/suite.toml), run by \
         `tests/tests/escapes.rs` (part of `cargo xtask test`, so of CI) under the `strict` profile plus the row's \
         grants, {} The \"without mcp-warden\" column is the same attack by the same user with no sandbox: it has \
         to work, or the row would prove nothing; where the host itself already refuses an attack to users (or to \
         everyone), the row says so. The errno is what the attacking process got.\n\n\
         This file is generated by the test; it fails when the table here differs from the run \
         (`MCPW_UPDATE_DOCS=1 cargo test -p mcp-warden-tests --test escapes` rewrites it).\n\n{table}",
        if whos.len() == 2 { "as root and as an unprivileged user." } else { "as the current (unprivileged) user." }
    );
    let path = doc_path();
    if std::env::var_os("MCPW_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    } else if whos.len() == 2 {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == doc,
            "docs/escape-suite.md is not this run's table: run `MCPW_UPDATE_DOCS=1 cargo test -p mcp-warden-tests --test escapes`"
        );
    } else {
        skip(module_path!(), "not root: the committed table has a root column this run cannot check");
    }
}
