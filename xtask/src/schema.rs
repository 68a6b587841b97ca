//! `cargo xtask schema`: docs/profile.schema.json and docs/audit-log.schema.json.

use std::process::Command;

use anyhow::Result;

use crate::util::{output, step};

/// Regenerates both JSON Schemas from the types (a unit test checks each is current).
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
    step("writing docs/audit-log.schema.json (mcp-warden generate audit-schema)");
    let text = output(Command::new("cargo").args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "mcp-warden",
        "--",
        "generate",
        "audit-schema",
    ]))?;
    std::fs::write("docs/audit-log.schema.json", text)?;
    Ok(())
}
