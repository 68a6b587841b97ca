//! `mcp-warden explain`: the resolved Plan, layer by layer, and the verdict `run` would reach.
//! The report is this command's product, so it goes to stdout; `run` never calls it.

use std::io::{self, Write};

use crate::plan::{Enforcement, PidNamespace, Plan};

pub fn render(out: &mut dyn Write, plan: &Plan, refusal: Option<&str>) -> io::Result<()> {
    render_command(out, plan)?;
    render_layers(out, plan)?;
    render_mcp(out, plan)?;
    render_filesystem(out, plan)?;
    render_blind_spots(out, plan)?;
    render_network(out, plan)?;
    render_syscalls(out, plan)?;
    render_limits(out, plan)?;
    writeln!(out, "\nenvironment (everything else dropped):")?;
    for (k, _) in plan.env() {
        writeln!(out, "  {}", k.to_string_lossy())?;
    }
    for w in plan.warnings() {
        writeln!(out, "\nwarning: {w}")?;
    }
    match refusal {
        Some(why) => writeln!(out, "\nverdict: `run` would REFUSE to start this server: {why}"),
        None if plan.fails_at_start() => writeln!(
            out,
            "\nverdict: `run` would start this server, but it would fail at once: it cannot read its own installation (see the warning above)"
        ),
        None => writeln!(out, "\nverdict: `run` would start this server with the protections above"),
    }
}

fn render_command(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "profile   {} ({})", plan.profile(), plan.chain().join(" <- "))?;
    if let Some(d) = plan.description() {
        writeln!(out, "          {d}")?;
    }
    writeln!(out, "program   {}", plan.program().display())?;
    if let Some((package, script)) = &plan.command().npx {
        writeln!(
            out,
            "installed {package}: the copy npx/uvx installed, {}, run directly (npm and uv do not run in the sandbox)",
            script.display()
        )?;
    }
    writeln!(out, "argv      {:?}", plan.argv())?;
    writeln!(out, "cwd       {}", plan.cwd().display())?;
    let id = plan.identity();
    let who = if id.switch {
        format!("{} (uid {}, gid {}), switched from root", id.name, id.uid, id.gid)
    } else if id.uid == 0 {
        "root (uid 0) WITHOUT capabilities: no user switch configured".to_string()
    } else {
        format!("{} (uid {}, gid {}), unchanged", id.name, id.uid, id.gid)
    };
    writeln!(out, "identity  {who}")?;
    if let Some(learn) = plan.learn() {
        writeln!(
            out,
            "learning  `{}`: file calls and destinations recorded into {} (the baseline's grants are in the lists below; `mcp-warden learn show {}` drafts the profile)",
            learn.name,
            learn.dir.display(),
            learn.name
        )?;
    } else if plan.trace_files() {
        writeln!(
            out,
            "explain   every file call is handed to the supervisor, which explains each one the grants refuse"
        )?;
    }
    writeln!(
        out,
        "privilege every capability dropped (bounding, ambient, inheritable, permitted, effective); no_new_privs; new session; parent-death SIGKILL"
    )
}

fn render_layers(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nlayers on this host:")?;
    for r in plan.layers() {
        let state = match &r.enforcement {
            Enforcement::Full => "enforced".to_string(),
            Enforcement::Partial(why) => format!("PARTIAL: {why}"),
            Enforcement::Missing(why) => format!("NOT ENFORCED: {why}"),
            Enforcement::Off => "off".to_string(),
        };
        writeln!(out, "  {:<14} {:<12} {state}", r.layer.name(), r.level.to_string())?;
        writeln!(out, "  {:<14} {:<12} via {}", "", "", r.mechanism)?;
    }
    Ok(())
}

fn render_mcp(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    let Some(m) = plan.mcp() else {
        return writeln!(out, "\nmcp layer: off (stdio is not proxied)");
    };
    writeln!(
        out,
        "\nmcp layer: on (the JSON-RPC stream is proxied; every message is audited to {})",
        m.audit.describe()
    )?;
    writeln!(out, "  tools          {}", m.tools.describe())?;
    let rates: Vec<String> = m.rates.iter().map(|(t, r)| format!("{t}={r}")).collect();
    writeln!(out, "  rate limits    {}", if rates.is_empty() { "none".into() } else { rates.join(", ") })?;
    writeln!(
        out,
        "  arguments      checked against each tool's inputSchema; {} profile constraint(s)",
        m.constraints.len()
    )?;
    writeln!(out, "  redaction      {}", if m.redactor.is_some() { "on" } else { "OFF" })?;
    writeln!(
        out,
        "  server errors  {}",
        if m.hide_errors { "hidden from the client (audit log only)" } else { "passed to the client" }
    )?;
    writeln!(out, "  annotations    {}", m.annotations.describe())?;
    if m.annotations.enforce {
        let scratch: Vec<String> = m.scratch.iter().map(|d| d.display().to_string()).collect();
        writeln!(
            out,
            "  scratch        {} (a read-only tool may still write files there; so it may in the private TMPDIR)",
            if scratch.is_empty() { "none".into() } else { scratch.join(", ") }
        )?;
    }
    writeln!(
        out,
        "  sampling       {}",
        if m.sampling {
            "allowed during a client request"
        } else {
            "refused (the server may not ask the client's model)"
        }
    )?;
    writeln!(out, "  roots          narrowed to the filesystem grants before the server sees them")?;
    writeln!(out, "  eras           2025 (initialize) and 2026-07-28 (server/discover, _meta per request) alike")?;
    match &m.pins {
        Some(p) => writeln!(out, "  tool pins      {}", p.display()),
        None => writeln!(out, "  tool pins      off"),
    }
}

fn render_filesystem(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nfilesystem (Landlock; everything else denied):")?;
    for (path, (access, origin)) in plan.paths() {
        writeln!(out, "  {:<4} {:<40} {origin}", access.letters(), path.display())?;
    }
    for s in &plan.fs().skipped {
        writeln!(out, "  --   {:<40} {} (optional, absent on this host)", s.value.display(), s.origin)?;
    }
    Ok(())
}

/// Each route Landlock does not see, and what closes it here (or `OPEN`).
fn render_blind_spots(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nwhat Landlock does not see, on this host:")?;
    for spot in plan.blind_spots() {
        match spot.closed_by {
            Some(by) => writeln!(out, "  closed  {} — {by}", spot.route)?,
            None => writeln!(out, "  OPEN    {}", spot.route)?,
        }
    }
    Ok(())
}

fn render_network(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nnetwork:")?;
    let ports = |set: &std::collections::BTreeSet<u16>| {
        if set.is_empty() { "none".to_string() } else { set.iter().map(u16::to_string).collect::<Vec<_>>().join(", ") }
    };
    if plan.ports().connect_any_port {
        writeln!(out, "  tcp connect ports  any (a learning run: the broker checks and records each destination)")?;
    } else {
        writeln!(out, "  tcp connect ports  {}", ports(&plan.ports().connect))?;
    }
    writeln!(out, "  tcp bind ports     {}", ports(&plan.ports().bind))?;
    for a in &plan.net().address_rules {
        writeln!(out, "  address rule       {} ({})", a.value, a.origin)?;
    }
    let s = plan.syscalls().sockets;
    writeln!(out, "  udp                {}", if s.udp { "allowed" } else { "denied" })?;
    writeln!(out, "  unix sockets       {}", if s.unix { "allowed" } else { "denied (socketpair allowed)" })
}

fn render_syscalls(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nsyscalls (seccomp, on violation: {:?}):", plan.syscalls().action)?;
    let names: Vec<&str> = plan.syscalls().deny.iter().map(|s| s.name()).collect();
    for chunk in names.chunks(8) {
        writeln!(out, "  deny {}", chunk.join(" "))?;
    }
    for rule in plan.syscalls().conditional_rules() {
        writeln!(out, "  rule {rule}")?;
    }
    Ok(())
}

fn render_limits(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    writeln!(out, "\nlimits:")?;
    for l in &crate::plan::limits::LIMITS {
        let value = plan.limits().get(l.key).map_or_else(|| "unlimited".into(), |v| l.unit.show(v));
        writeln!(out, "  {:<12}{value}", l.label)?;
    }
    writeln!(out, "  core dumps  off")?;
    for w in plan.cgroup_limits() {
        writeln!(out, "  cgroup      {}={} via {}", w.file, w.value, w.backend)?;
    }
    let ns = match plan.pid_namespace() {
        PidNamespace::Off => "none",
        PidNamespace::Plain => "own PID namespace",
        PidNamespace::WithUserNamespace => "own user + PID namespace",
    };
    writeln!(out, "  pid ns      {ns}")
}

/// `mcp-warden explain [run arguments]`: exit 125 when `run` would refuse.
pub fn command(out: &mut dyn Write, args: crate::cli::RunArgs) -> Result<i32, crate::error::Failure> {
    let mut plan = super::build_plan(args)?;
    let refusal = plan.check_requirements().err().map(|e| e.to_string());
    render(out, &plan, refusal.as_deref()).map_err(crate::error::CommandError::output)?;
    super::score::explain_line(out, &plan).map_err(crate::error::CommandError::output)?;
    Ok(if refusal.is_some() { crate::error::EXIT_LAUNCHER } else { 0 })
}
