//! Human-readable reports: `explain` (a Plan) and `doctor` (HostFacts). These commands' output is
//! their product, so they write to the given writer (stdout); `run` never calls them.

use std::io::{self, Write};

use crate::host::{BpfSupport, HostFacts, LANDLOCK_TARGET_ABI};
use crate::plan::{Enforcement, PidNamespace, Plan};
use crate::sandbox::seccomp::DEFAULT_DENY;

pub fn explain(out: &mut dyn Write, plan: &Plan, refusal: Option<&str>) -> io::Result<()> {
    writeln!(out, "profile   {} ({})", plan.profile, plan.chain.join(" <- "))?;
    if let Some(d) = &plan.description {
        writeln!(out, "          {d}")?;
    }
    writeln!(out, "program   {}", plan.program.display())?;
    if let Some((package, script)) = &plan.npx {
        writeln!(
            out,
            "installed {package}: the copy npx/uvx installed, {}, run directly (npm and uv do not run in the sandbox)",
            script.display()
        )?;
    }
    writeln!(out, "argv      {:?}", plan.argv)?;
    writeln!(out, "cwd       {}", plan.cwd.display())?;
    let id = &plan.identity;
    let who = if id.switch {
        format!("{} (uid {}, gid {}), switched from root", id.name, id.uid, id.gid)
    } else if id.uid == 0 {
        "root (uid 0) WITHOUT capabilities: no user switch configured".to_string()
    } else {
        format!("{} (uid {}, gid {}), unchanged", id.name, id.uid, id.gid)
    };
    writeln!(out, "identity  {who}")?;
    writeln!(
        out,
        "privilege every capability dropped (bounding, ambient, inheritable, permitted, effective); no_new_privs; new session; parent-death SIGKILL"
    )?;

    writeln!(out, "\nlayers on this host:")?;
    for r in &plan.layers {
        let state = match &r.enforcement {
            Enforcement::Full => "enforced".to_string(),
            Enforcement::Partial(why) => format!("PARTIAL: {why}"),
            Enforcement::Missing(why) => format!("NOT ENFORCED: {why}"),
            Enforcement::Off => "off".to_string(),
        };
        writeln!(out, "  {:<14} {:<12} {state}", r.layer.name(), r.level.to_string())?;
        writeln!(out, "  {:<14} {:<12} via {}", "", "", r.mechanism)?;
    }

    match &plan.mcp {
        None => writeln!(out, "\nmcp layer: off (stdio is not proxied)")?,
        Some(m) => {
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
            match &m.pins {
                Some(p) => writeln!(out, "  tool pins      {}", p.display())?,
                None => writeln!(out, "  tool pins      off")?,
            }
        }
    }

    writeln!(out, "\nfilesystem (Landlock; everything else denied):")?;
    for (path, (access, origin)) in &plan.paths {
        writeln!(out, "  {:<4} {:<40} {origin}", access.letters(), path.display())?;
    }
    for s in &plan.skipped {
        writeln!(out, "  --   {:<40} {} (optional, absent on this host)", s.value, s.origin)?;
    }

    writeln!(out, "\nnetwork:")?;
    let ports = |set: &std::collections::BTreeSet<u16>| {
        if set.is_empty() { "none".to_string() } else { set.iter().map(u16::to_string).collect::<Vec<_>>().join(", ") }
    };
    writeln!(out, "  tcp connect ports  {}", ports(&plan.ports.connect))?;
    writeln!(out, "  tcp bind ports     {}", ports(&plan.ports.bind))?;
    for a in &plan.address_rules {
        writeln!(out, "  address rule       {} ({})", a.value, a.origin)?;
    }
    let s = plan.syscalls.sockets;
    writeln!(out, "  udp                {}", if s.udp { "allowed" } else { "denied" })?;
    writeln!(out, "  unix sockets       {}", if s.unix { "allowed" } else { "denied (socketpair allowed)" })?;

    writeln!(out, "\nsyscalls (seccomp, on violation: {:?}):", plan.syscalls.action)?;
    let names: Vec<&str> = plan.syscalls.deny.iter().map(|s| s.name()).collect();
    for chunk in names.chunks(8) {
        writeln!(out, "  deny {}", chunk.join(" "))?;
    }
    for rule in plan.syscalls.conditional_rules() {
        writeln!(out, "  rule {rule}")?;
    }

    writeln!(out, "\nlimits:")?;
    let l = &plan.limits;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    writeln!(out, "  processes   {}", opt(l.processes.map(|v| v.to_string())))?;
    writeln!(out, "  open files  {}", opt(l.open_files.map(|v| v.to_string())))?;
    writeln!(out, "  memory      {}", opt(l.memory.map(|v| v.to_string())))?;
    writeln!(out, "  file size   {}", opt(l.file_size.map(|v| v.to_string())))?;
    writeln!(out, "  cpu time    {}", opt(l.cpu_time.map(|v| format!("{v}s"))))?;
    writeln!(out, "  core dumps  off")?;
    for w in &plan.cgroup_limits {
        writeln!(out, "  cgroup      {}={} via {}", w.file, w.value, w.backend)?;
    }
    writeln!(
        out,
        "  pid ns      {}",
        match plan.pid_namespace {
            PidNamespace::Off => "none",
            PidNamespace::Plain => "own PID namespace",
            PidNamespace::WithUserNamespace => "own user + PID namespace",
        }
    )?;

    writeln!(out, "\nenvironment (everything else dropped):")?;
    for (k, _) in &plan.env {
        writeln!(out, "  {}", k.to_string_lossy())?;
    }
    for w in &plan.warnings {
        writeln!(out, "\nwarning: {w}")?;
    }
    match refusal {
        Some(why) => writeln!(out, "\nverdict: `run` would REFUSE to start this server: {why}"),
        None => writeln!(out, "\nverdict: `run` would start this server with the protections above"),
    }
}

pub fn doctor(out: &mut dyn Write, host: &HostFacts, bpf: &[BpfSupport]) -> io::Result<()> {
    let yes = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "kernel          {} ({})", host.kernel, host.arch)?;
    writeln!(out, "euid            {}", host.euid)?;
    let mut caps: Vec<String> = host.effective_caps.iter().map(|c| c.to_string()).collect();
    caps.sort();
    writeln!(
        out,
        "capabilities    {}",
        if caps.is_empty() { "none".to_string() } else { format!("{} effective", caps.len()) }
    )?;
    match &host.landlock {
        Ok(abi) if *abi >= LANDLOCK_TARGET_ABI => {
            writeln!(out, "landlock        ABI {abi}: full (mcp-warden uses ABI {LANDLOCK_TARGET_ABI} features)")?
        }
        Ok(abi) => writeln!(
            out,
            "landlock        ABI {abi}: partial (mcp-warden uses ABI {LANDLOCK_TARGET_ABI} features; `required` will refuse)"
        )?,
        Err(why) => writeln!(out, "landlock        unavailable: {why}")?,
    }
    writeln!(out, "seccomp filter  {}", yes(host.seccomp_filter))?;
    writeln!(out, "                default deny-set: {} syscalls (docs/syscalls.md)", DEFAULT_DENY.len())?;
    if host.arch == "x86_64" {
        writeln!(
            out,
            "x32 syscalls    {}",
            if host.x32_abi { "enabled: guarded by an extra seccomp filter" } else { "disabled in this kernel" }
        )?;
    }
    writeln!(
        out,
        "user namespaces {}",
        match &host.user_namespaces {
            Ok(()) => "available to unprivileged users".to_string(),
            Err(why) => format!("unavailable: {why}"),
        }
    )?;
    writeln!(
        out,
        "pid namespace   {}",
        if host.has_cap(caps::Capability::CAP_SYS_ADMIN) {
            "yes (CAP_SYS_ADMIN)"
        } else if host.user_namespaces.is_ok() {
            "yes (through a user namespace)"
        } else {
            "no"
        }
    )?;
    match &host.cgroups.v2 {
        Some(v2) => {
            writeln!(out, "cgroup v2       mounted at {}; our cgroup {}", v2.mount.display(), v2.own.display())?;
            writeln!(
                out,
                "                controllers: [{}]; delegated to children: [{}]",
                v2.controllers.join(" "),
                v2.subtree_control.join(" ")
            )?;
        }
        None => writeln!(out, "cgroup v2       not mounted")?,
    }
    for (ctrl, dir) in &host.cgroups.v1 {
        writeln!(out, "cgroup v1       {ctrl}: {}", dir.display())?;
    }
    for ctrl in ["pids", "memory"] {
        let how = match host.cgroups.backend_for(ctrl) {
            Some(b) => format!("enforced through {b}"),
            None if ctrl == "pids" => "no writable cgroup: RLIMIT_NPROC only (does not bind uid 0)".into(),
            None => "no writable cgroup: RLIMIT_DATA only".into(),
        };
        writeln!(out, "limit {ctrl:<9} {how}")?;
    }
    writeln!(out, "btf             {}", yes(host.btf))?;
    writeln!(out, "ebpf            privileges to load programs: {}", yes(host.bpf_capable()))?;
    for t in bpf {
        let verdict = match &t.loads {
            Ok(true) => "loads".to_string(),
            Ok(false) => "not supported by this kernel".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        writeln!(out, "  {:<18} {verdict:<34} {}", t.name, t.role)?;
    }
    Ok(())
}
