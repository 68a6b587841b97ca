//! `cargo xtask demo`: the main job: a real MCP server under mcp-warden's embedded `strict`
//! profile, driven by the official MCP client, and an attack it blocks.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::setup::setup;
use crate::util::{output, run, step, target_dir, test_env};

pub fn demo() -> Result<()> {
    setup()?;
    step("building mcp-warden");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = target_dir().join("release/mcp-warden");
    let env = test_env();
    // The server is told to serve all of `demo/` (too broad: it includes a private key), while
    // mcp-warden grants only `demo/notes`. The server's own path check allows the key; the kernel
    // does not.
    let demo = env.join("demo");
    let notes = demo.join("notes");
    std::fs::create_dir_all(&notes)?;
    std::fs::create_dir_all(demo.join("ssh"))?;
    std::fs::write(notes.join("todo.md"), "- ship mcp-warden\n")?;
    std::fs::write(demo.join("ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\n(demo key)\n")?;
    let server = env.join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let python = env.join("venv/bin/python");
    let client = env.join("clients/mcp_session.py");
    let launcher_args = |c: &mut Command| {
        c.args(["--profile", "strict", "--allow-read"]).arg(env.join("node")).arg("--allow-write").arg(&notes);
        c.args(["--", "node"]).arg(&server).arg(&demo);
    };
    let session = |tool: &str, path: &Path| -> Result<String> {
        let mut c = Command::new(&python);
        c.arg(&client).args([tool, &format!("{{\"path\": \"{}\"}}", path.display()), "--"]).arg(&warden).arg("run");
        launcher_args(&mut c);
        output(&mut c)
    };
    step(
        "the official filesystem MCP server under mcp-warden's embedded `strict` profile, driven by the official Python MCP client:",
    );
    eprintln!(
        "    mcp-warden run --profile strict --allow-read {} --allow-write {} -- node .../server-filesystem/dist/index.js {}",
        env.join("node").display(),
        notes.display(),
        demo.display()
    );
    println!("{}", summarize(&session("read_text_file", &notes.join("todo.md"))?)?);
    step("a prompt-injected call for the private key: inside the server's own root, outside mcp-warden's grant:");
    println!("{}", summarize(&session("read_text_file", &demo.join("ssh/id_ed25519"))?)?);
    step("what this host enforces for that server (`mcp-warden explain`, excerpt):");
    let mut c = Command::new(&warden);
    c.arg("explain");
    launcher_args(&mut c);
    let explain = output(&mut c)?;
    for line in explain.lines().skip_while(|l| !l.starts_with("layers")).take(13) {
        println!("{line}");
    }
    Ok(())
}

/// One line for a client session's JSON summary.
fn summarize(json: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).context("client output is not JSON")?;
    let tools = v["tools"].as_array().map_or(0, Vec::len);
    let verdict = if v["is_error"].as_bool() == Some(true) { "tool error" } else { "ok" };
    Ok(format!(
        "    server {:?}, {tools} tools listed; read_text_file -> {verdict}: {:?}",
        v["server"].as_str().unwrap_or("?"),
        v["text"].as_str().unwrap_or("").trim()
    ))
}
