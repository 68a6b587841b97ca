//! The MCP layer's configuration: the merged `[mcp]` section (the command line's `--allow-tool`,
//! `--rate-limit`, ... included) compiled into tool filters, rate limits, argument constraints,
//! redaction, and where this server's tool pins live.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::audit::Destination;
use crate::mcp::McpConfig;
use crate::mcp::policy::{Constraint, Rate, ToolFilter};
use crate::profile::vars::Vars;
use crate::profile::{ArgConstraint, Mcp};

use super::error::PlanError;
use super::monitor::{file_safe, profile_stem};

/// The layer's configuration; `pins`: this server's pin file (when a state directory is known).
pub fn resolve_mcp(
    m: &Mcp,
    vars: &Vars,
    cwd: &Path,
    audit: Destination,
    pins: Option<PathBuf>,
) -> Result<McpConfig, PlanError> {
    let tools = ToolFilter::new(&m.allow_tools, &m.deny_tools).map_err(|e| invalid(e.to_string()))?;
    let mut rates: Vec<(String, Rate)> = Vec::new();
    for (tool, rate) in &m.rate_limits {
        rates.push((tool.clone(), rate.parse().map_err(|e| invalid(format!("rate-limits.{tool}: {e}")))?));
    }
    let constraints = m.constraints.iter().map(|c| constraint(c, vars, cwd)).collect::<Result<_, _>>()?;
    let redactor = match m.redact.unwrap_or(true) {
        true => Some(
            crate::mcp::redact::Redactor::new(&m.redact_patterns, &m.redact_keys)
                .map_err(|e| invalid(e.to_string()))?,
        ),
        false => None,
    };
    Ok(McpConfig {
        tools,
        rates,
        constraints,
        redactor,
        hide_errors: m.hide_errors.unwrap_or(false),
        pins: if m.pin_tools.unwrap_or(true) { pins } else { None },
        log_arguments: m.log_arguments.unwrap_or(false),
        audit,
    })
}

fn invalid(why: String) -> PlanError {
    PlanError::Invalid { what: "[mcp] section".into(), why }
}

/// One `[[mcp.constraints]]` entry, its globs and patterns compiled and its directories resolved.
fn constraint(c: &ArgConstraint, vars: &Vars, cwd: &Path) -> Result<Constraint, PlanError> {
    let tool = globset::Glob::new(&c.tool).map_err(|e| invalid(format!("constraint tool `{}`: {e}", c.tool)))?;
    let pattern = match &c.pattern {
        Some(p) => Some(
            regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| invalid(format!("constraint pattern `{p}`: {e}")))?,
        ),
        None => None,
    };
    let mut under = Vec::new();
    for raw in &c.under {
        for dir in vars.expand_many(raw).map_err(|e| invalid(format!("constraint under `{raw}`: {e}")))? {
            let dir = cwd.join(dir);
            under.push(dir.canonicalize().map_err(|e| invalid(format!("constraint under `{}`: {e}", dir.display())))?);
        }
    }
    Ok(Constraint {
        tool: tool.compile_matcher(),
        argument: c.argument.clone(),
        max_length: c.max_length,
        pattern,
        one_of: c.one_of.clone(),
        under,
    })
}

/// This server's pin file under the invoking user's state directory (when one is known).
pub fn pins_file(profile: &str, command: &[OsString], state_home: Option<PathBuf>) -> Option<PathBuf> {
    let key = pins_key(profile, command);
    state_home.map(|s| crate::mcp::pins::pins_dir(&s).join(format!("{key}.json")))
}

/// A server's identity for its tool pins: the profile, the program and a hash of the command.
fn pins_key(profile: &str, command: &[OsString]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for a in command {
        h.update(a.as_encoded_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{digest}", file_safe(&profile_stem(profile)), file_safe(&program_name(command)))
}

/// The file name of the command's program (`server` when there is none).
pub fn program_name(command: &[OsString]) -> String {
    command
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server".into())
}
