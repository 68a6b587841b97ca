//! Every server a user already has works under `wrap`: a Claude Desktop config of 15 real servers
//! from npm and PyPI that have NO shipped profile (tests/proof/servers.json), written in the
//! forms their READMEs give (`npx -y PKG`, `npx PKG@latest`, `npx -y PKG@x.y.z`, `uvx PKG`,
//! `uvx PKG@latest`, `uvx --from`, `uv tool install` and `pipx install` console scripts, `python -m`
//! from a venv, `node script.js`, `python script.py`, `env` keys), installed by the set-up into a
//! user's home. After `mcp-warden wrap --write`, each one completes initialize, tools/list and a
//! benign tool call through the official Python SDK client, sandboxed by the defaults `wrap`
//! chose (its runtime profile and its own installation), run as the unprivileged test user.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

fn servers() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proof/servers.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone()
}

/// `$HOME` in the list's strings is the proof home.
fn home_in(value: &Value, home: &Path) -> Value {
    serde_json::from_str(&value.to_string().replace("$HOME", &home.display().to_string())).unwrap()
}

/// `program` as `who` with the proof home's environment and `env`.
fn in_home(who: Who, home: &Path, env: &[(String, String)], program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut vars =
        vec![("HOME", home.display().to_string()), ("XDG_STATE_HOME", state_home(who).display().to_string())];
    vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    command_with_env(who, &vars, program)
}

/// The test user when the tests run as root: desktop clients start servers as their user.
fn desktop_user() -> Who {
    if is_root() { Who::User } else { Who::current() }
}

#[test]
fn fifteen_unknown_servers_work_after_wrap() {
    let who = desktop_user();
    let home = need(test_env().join("proof-home"));
    let servers = servers();
    assert!(servers.len() >= 15, "the proof needs at least 15 servers");
    let scratch = Scratch::new(who);
    let config = scratch.join("claude_desktop_config.json");
    let entries: serde_json::Map<String, Value> =
        servers.iter().map(|s| (s["name"].as_str().unwrap().to_string(), home_in(&s["config_entry"], &home))).collect();
    std::fs::write(&config, serde_json::to_string_pretty(&json!({"mcpServers": entries})).unwrap()).unwrap();
    chown_to(&config, who);

    let mut wrap = in_home(who, &home, &[], warden());
    wrap.args(["wrap", "--write"]).arg(&config);
    let o = run(wrap, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "wrap --write\n{}", o.describe());
    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();

    let client = need(test_env().join("clients/mcp_session.py"));
    let python = need(test_env().join("venv/bin/python"));
    let mut failures = Vec::new();
    for server in &servers {
        let name = server["name"].as_str().unwrap();
        let entry = &wrapped["mcpServers"][name];
        let verdict = o.stderr.lines().find(|l| l.starts_with(&format!("mcp-warden: {name}: would")));
        if !verdict.is_some_and(|l| l.contains("would start;")) {
            failures.push(format!("{name}: wrap's verdict is not `would start`: {verdict:?}"));
        }
        let env: Vec<(String, String)> = entry["env"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let call = home_in(&server["call"], &home);
        let mut c = in_home(who, &home, &env, &python);
        c.arg(&client).arg(call["tool"].as_str().unwrap()).arg(call["arguments"].to_string()).arg("--");
        c.arg(entry["command"].as_str().unwrap());
        c.args(entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()));
        let session = run(c, None, Duration::from_secs(120));
        let result: Option<Value> = serde_json::from_str(session.stdout.trim()).ok();
        let expect = server["expect_substring"].as_str().unwrap();
        match result {
            Some(r) if r["is_error"] == false && r["text"].as_str().is_some_and(|t| t.contains(expect)) => {
                eprintln!("wrap proof: {name}: ok ({} tools)", r["tools"].as_array().map_or(0, Vec::len));
            }
            _ => failures.push(format!("{name}: the session failed\n{}", session.describe())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} servers failed after wrap:\n{}",
        failures.len(),
        servers.len(),
        failures.join("\n\n")
    );
}
