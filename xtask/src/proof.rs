//! The install phase of the `wrap` proof (tests/tests/wrap_proof.rs): the real servers of
//! tests/proof/servers.json, none of which has a shipped profile, installed into a user's home
//! (`proof-home` in the test environment) the way their READMEs say: `npx -y PKG` and `uvx PKG`
//! fill the launchers' caches, `uv tool install` and `pipx install` put console scripts in
//! `~/.local/bin`, `npm install` and a venv hold the rest. Redone only when the list changes.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::util::{run, step};

const SERVERS: &str = "tests/proof/servers.json";

pub fn install(env: &Path) -> Result<()> {
    let list = std::fs::read_to_string(SERVERS).with_context(|| format!("read {SERVERS}"))?;
    let home = env.join("proof-home");
    let stamp = env.join("proof-home.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(list.as_str()) {
        step("wrap proof: servers installed (tests/proof/servers.json unchanged)");
        return Ok(());
    }
    let servers: serde_json::Value = serde_json::from_str(&list).context("tests/proof/servers.json")?;
    let servers = servers.as_array().context("a list of servers")?;
    step(&format!(
        "wrap proof: installing {} real servers into {} as their READMEs say (about 2 minutes, 1.8 GB)",
        servers.len(),
        home.display()
    ));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home)?;
    for server in servers {
        let name = server["name"].as_str().unwrap_or("?");
        for argv in server["install"].as_array().into_iter().flatten() {
            let words: Vec<String> = argv
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .map(|w| w.replace("$HOME", &home.display().to_string()))
                .collect();
            step(&format!("wrap proof: {name}: {}", words.join(" ")));
            run(&mut install_command(env, &home, &words)?)?;
        }
    }
    std::fs::write(&stamp, list)?;
    Ok(())
}

/// One install step as the proof home's user would run it: uv and uvx from the test
/// environment, Debian's Python for the environments (readable by the test user), the home's
/// `~/.local/bin` on PATH (pipx, installed there by `uv tool install`).
fn install_command(env: &Path, home: &Path, words: &[String]) -> Result<Command> {
    let (program, args) = words.split_first().context("an empty install step")?;
    let tools = env.join("venv/bin");
    let program = match program.as_str() {
        "uv" | "uvx" => tools.join(program),
        "pipx" => home.join(".local/bin/pipx"),
        other => other.into(),
    };
    let mut c = Command::new(program);
    c.args(args).current_dir(home).stdin(Stdio::null()).stdout(Stdio::null());
    let path = format!("{}:{}:/usr/local/bin:/usr/bin:/bin", home.join(".local/bin").display(), tools.display());
    c.env("HOME", home).env("PATH", path).env("UV_PYTHON", "/usr/bin/python3");
    c.env("PIPX_DEFAULT_PYTHON", "/usr/bin/python3").env("npm_config_update_notifier", "false");
    c.env_remove("XDG_CACHE_HOME").env_remove("XDG_DATA_HOME").env_remove("UV_CACHE_DIR");
    Ok(c)
}
