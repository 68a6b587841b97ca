//! `mcp-warden doctor`: what this host supports (HostFacts) and which eBPF program types load.

use std::io::{self, Write};

use crate::host::{BpfSupport, HostFacts, LANDLOCK_TARGET_ABI};
use crate::layers::seccomp::DEFAULT_DENY;

/// The report, section by section.
pub fn render(out: &mut dyn Write, host: &HostFacts, bpf: &[BpfSupport]) -> io::Result<()> {
    identity(out, host)?;
    kernel_filters(out, host)?;
    namespaces(out, host)?;
    cgroups(out, host)?;
    ebpf(out, host, bpf)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn identity(out: &mut dyn Write, host: &HostFacts) -> io::Result<()> {
    writeln!(out, "kernel          {} ({})", host.kernel, host.arch)?;
    writeln!(out, "euid            {}", host.euid)?;
    let mut caps: Vec<String> = host.effective_caps.iter().map(|c| c.to_string()).collect();
    caps.sort();
    writeln!(
        out,
        "capabilities    {}",
        if caps.is_empty() { "none".to_string() } else { format!("{} effective", caps.len()) }
    )
}

fn kernel_filters(out: &mut dyn Write, host: &HostFacts) -> io::Result<()> {
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
    writeln!(
        out,
        "seccomp notify  {} (refused calls recorded by the supervisor; the network broker)",
        match &host.user_notification {
            Ok(()) => "yes".to_string(),
            Err(why) => format!("no: {why}"),
        }
    )?;
    writeln!(
        out,
        "dns answering   {} (the server's DNS answered by mcp-warden: the broker swaps its socket, Linux 5.14{})",
        yes(host.notifies() && host.socket_swap),
        if host.is_root() { "" } else { "; unprivileged, a user namespace too" }
    )?;
    writeln!(out, "                default deny-set: {} syscalls (docs/syscalls.md)", DEFAULT_DENY.len())?;
    if host.is_root() {
        let lsm = match crate::ebpf::lsm_probe::forget() {
            Some(why) => format!("refused on this boot ({why}); forgotten: the next run tries again"),
            None => "no refusal remembered: the next run tries the hooks".into(),
        };
        writeln!(out, "bpf lsm         {lsm}")?;
        // Loading the shared probes again is what retries the hooks.
        let probes = match crate::ebpf::unload_unused() {
            (_, 0) => "no launcher uses them: unloaded, the next monitored run loads and verifies them".to_string(),
            (_, n) => format!("in use by running launchers ({n} build(s)): kept"),
        };
        writeln!(out, "ebpf probes     {probes}")?;
    }
    if host.arch == "x86_64" {
        writeln!(
            out,
            "x32 syscalls    {}",
            if host.x32_abi { "enabled: guarded by an extra seccomp filter" } else { "disabled in this kernel" }
        )?;
    }
    Ok(())
}

fn namespaces(out: &mut dyn Write, host: &HostFacts) -> io::Result<()> {
    writeln!(
        out,
        "user namespaces {}",
        match (&host.user_namespaces, &host.clone_namespaces) {
            (Err(why), _) => format!("unavailable: {why}"),
            (Ok(()), Err(why)) => format!("allowed by the kernel, refused to this process: {why}"),
            (Ok(()), Ok(())) => "available to unprivileged users".to_string(),
        }
    )?;
    let how = if let Err(why) = &host.clone_namespaces {
        format!("no: {why}")
    } else if host.has_cap(caps::Capability::CAP_SYS_ADMIN) {
        "yes (CAP_SYS_ADMIN)".into()
    } else if host.user_namespaces.is_ok() {
        "yes (through a user namespace)".into()
    } else {
        "no".into()
    };
    writeln!(out, "pid namespace   {how}")?;
    writeln!(
        out,
        "fs view         {how}: read-only nosuid mounts, write grants noexec (closes chmod/chown/utimes/xattrs outside the write grants, and ld.so or /proc/self/fd runs of written files)"
    )?;
    let hide = match (how.as_str(), crate::layers::fs_hide::staging_dir()) {
        (no, _) if no.starts_with("no") => "no: stat, readlink and inotify of paths outside the grants answer".to_string(),
        (_, None) => "no directory to build the new root on (/tmp, /mnt, /var/tmp, /run): stat, readlink and inotify of paths outside the grants answer".to_string(),
        (_, Some(dir)) => format!("{how}: a read-only tmpfs root (built on {}) holding only the granted paths; stat, readlink, inotify, access, listxattr and O_PATH outside the grants answer ENOENT", dir.display()),
    };
    writeln!(out, "fs hide         {hide}")
}

fn cgroups(out: &mut dyn Write, host: &HostFacts) -> io::Result<()> {
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
    Ok(())
}

fn ebpf(out: &mut dyn Write, host: &HostFacts, bpf: &[BpfSupport]) -> io::Result<()> {
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

/// `mcp-warden doctor`.
pub fn command(out: &mut dyn Write) -> Result<i32, crate::error::Failure> {
    render(out, &HostFacts::probe(), &crate::host::probe_bpf_program_types())
        .map_err(crate::error::CommandError::output)?;
    Ok(0)
}
