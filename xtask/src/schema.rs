//! `cargo xtask schema`: docs/profile.schema.json.

use std::process::Command;

use anyhow::Result;

use crate::util::{output, step};

/// Regenerates docs/profile.schema.json from the profile types (a unit test checks it is current).
pub fn schema() -> Result<()> {
    step("writing docs/profile.schema.json (mcp-warden profiles schema)");
    let text = output(Command::new("cargo").args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "mcp-warden",
        "--",
        "profiles",
        "schema",
    ]))?;
    std::fs::write("docs/profile.schema.json", text)?;
    Ok(())
}
