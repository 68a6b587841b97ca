//! The MCP axis: what the MCP-aware layer polices when it is on: which tools the model may call,
//! whether tool definitions are pinned, whether secrets are redacted from results.

use super::{Assessor, Axis, Ctx, Finding, Grade, graded, list};

pub const ASSESSORS: &[Assessor] = &[
    Assessor {
        id: "mcp.tool-allow-list",
        axis: Axis::Mcp,
        title: "the tools the model may call",
        layers: &[],
        grades: &[ALLOW_LIST, DENY_LIST, EVERY_TOOL],
        hint: "list the tools the server's job needs in [mcp] allow-tools (--allow-tool NAME)",
        assess: tools,
    },
    Assessor {
        id: "mcp.tool-pinning",
        axis: Axis::Mcp,
        title: "tool definitions pinned (a changed description or schema is blocked)",
        layers: &[],
        grades: &[PINNED, UNPINNED],
        hint: "turn the MCP layer on ([mcp] section, --mcp) and keep pin-tools = true (the default)",
        assess: pins,
    },
    Assessor {
        id: "mcp.redaction",
        axis: Axis::Mcp,
        title: "secrets redacted from tool results",
        layers: &[],
        grades: &[REDACT_ON, REDACT_OFF],
        hint: "turn the MCP layer on ([mcp] section, --mcp) and keep redact = true (the default; no --no-redact)",
        assess: redaction,
    },
];

const ALLOW_LIST: Grade = Grade { name: "allow-list", badness: 0, means: "only the listed tools" };
const DENY_LIST: Grade = Grade { name: "deny-list", badness: 25, means: "every tool but the denied ones" };
const EVERY_TOOL: Grade = Grade { name: "every-tool", badness: 30, means: "every tool the server offers" };
const PINNED: Grade = Grade { name: "pinned", badness: 0, means: "pinned at the first tools/list" };
const UNPINNED: Grade = Grade { name: "unpinned", badness: 30, means: "a server may change its tools at any time" };
const REDACT_ON: Grade = Grade { name: "on", badness: 0, means: "secrets redacted from results" };
const REDACT_OFF: Grade = Grade { name: "off", badness: 30, means: "results pass as the server wrote them" };

fn tools(c: &Ctx<'_>) -> Finding {
    let Some(m) = c.plan.mcp() else {
        return graded(&EVERY_TOOL, "the MCP layer is off");
    };
    let (allow, deny) = m.tools.lists();
    if !allow.is_empty() {
        graded(&ALLOW_LIST, list(allow, 5))
    } else if !deny.is_empty() {
        graded(&DENY_LIST, format!("denied: {}", list(deny, 5)))
    } else {
        graded(&EVERY_TOOL, "no allow-tools list")
    }
}

fn pins(c: &Ctx<'_>) -> Finding {
    match c.plan.mcp().map(|m| m.pins.as_ref()) {
        None => graded(&UNPINNED, "the MCP layer is off"),
        Some(None) => graded(&UNPINNED, "pin-tools = false, or no state directory to keep pins in"),
        Some(Some(file)) => graded(&PINNED, file.display().to_string()),
    }
}

fn redaction(c: &Ctx<'_>) -> Finding {
    match c.plan.mcp().map(|m| m.redactor.is_some()) {
        None => graded(&REDACT_OFF, "the MCP layer is off"),
        Some(false) => graded(&REDACT_OFF, "redact = false (--no-redact)"),
        Some(true) => graded(&REDACT_ON, "on"),
    }
}
