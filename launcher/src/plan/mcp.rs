//! The MCP layer's configuration: the merged `[mcp]` section (the command line's `--allow-tool`,
//! `--rate-limit`, ... included) compiled into tool filters, rate limits, argument constraints,
//! redaction, and where this server's tool pins live.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::audit::Destination;
use crate::audit::record::{LayerPosture, Posture};
use crate::mcp::McpConfig;
use crate::mcp::annotations::AnnotationPolicy;
use crate::mcp::policy::{Constraint, Rate, ToolFilter};
use crate::profile::vars::Vars;
use crate::profile::{ArgConstraint, Mcp, Permit};

use super::report::{Enforcement, LayerReport};

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
        annotations: AnnotationPolicy {
            destructive: m.destructive.unwrap_or(Permit::Allow),
            open_world: m.open_world.unwrap_or(Permit::Allow),
            require: m.require_annotations.unwrap_or(false),
            enforce: m.enforce_annotations.unwrap_or(true),
        },
        sampling: m.sampling.unwrap_or(false),
        scratch: m.scratch.iter().map(|d| directory(d, vars, cwd, "scratch")).collect::<Result<Vec<_>, _>>()?.concat(),
        // filled in once the plan is resolved
        grants: Vec::new(),
        posture: None,
    })
}

/// The posture the layer tells the client and writes to its log: each layer, requested against
/// enforced on this host, and a short hash of the whole plan.
pub fn posture(layers: &[LayerReport], plan_debug: &str) -> Posture {
    use sha2::Digest;
    let digest: String =
        sha2::Sha256::digest(plan_debug.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let layers = layers
        .iter()
        .map(|r| {
            let (enforced, why) = match &r.enforcement {
                Enforcement::Full => ("full", None),
                Enforcement::Partial(why) => ("partial", Some(why.clone())),
                Enforcement::Missing(why) => ("missing", Some(why.clone())),
                Enforcement::Off => ("off", None),
            };
            LayerPosture {
                layer: r.layer.name().into(),
                requested: r.level.to_string(),
                enforced: enforced.into(),
                why,
            }
        })
        .collect();
    Posture { layers, plan: digest }
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
    let under = c
        .under
        .iter()
        .map(|raw| directory(raw, vars, cwd, "constraint under"))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    Ok(Constraint {
        tool: tool.compile_matcher(),
        argument: c.argument.clone(),
        max_length: c.max_length,
        pattern,
        one_of: c.one_of.clone(),
        under,
    })
}

/// The canonical directories a path entry names (variables expanded, relative to `cwd`).
fn directory(raw: &str, vars: &Vars, cwd: &Path, what: &str) -> Result<Vec<PathBuf>, PlanError> {
    let mut dirs = Vec::new();
    for dir in vars.expand_many(raw).map_err(|e| invalid(format!("{what} `{raw}`: {e}")))? {
        let dir = cwd.join(dir);
        dirs.push(dir.canonicalize().map_err(|e| invalid(format!("{what} `{}`: {e}", dir.display())))?);
    }
    Ok(dirs)
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
