//! The eBPF layer and the audit log: whether the layer can run on this host, the cgroup it is
//! scoped to, its ring buffer, audit mode, and where the log goes.

use std::path::{Path, PathBuf};

use crate::audit::Destination;
use crate::host::HostFacts;
use crate::profile::Size;

use super::error::PlanError;
use super::{Inputs, RunOptions};

#[derive(Debug, Clone)]
pub struct MonitorPlan {
    /// `--mode audit`: the eBPF layer and seccomp log instead of denying, Landlock is off.
    pub audit_mode: bool,
    /// Where the audit log goes (when the monitor or the MCP layer runs).
    pub audit_log: Destination,
    /// Bytes of the eBPF ring buffer.
    pub ring_bytes: u32,
    /// `--monitor-level full`.
    pub full: bool,
    /// Why the eBPF layer cannot run on this host, if it cannot.
    pub unavailable: Option<String>,
    /// Our cgroup v2 directory, under which the server's monitored cgroup is created.
    pub cgroup_parent: Option<PathBuf>,
}

impl MonitorPlan {
    /// `program`: the server command's program name, for the default log's file name.
    pub fn resolve(
        options: &RunOptions,
        profile: &str,
        program: &str,
        host: &HostFacts,
        inputs: &Inputs<'_>,
    ) -> Result<Self, PlanError> {
        let audit_log = match &options.audit_log {
            Some(d) => Destination::parse(d),
            // A systemd service logs to the journal.
            None if inputs.var("INVOCATION_ID").is_some() && Path::new("/run/systemd/journal/socket").exists() => {
                Destination::Journal(None)
            }
            None => Destination::File(default_audit_log(inputs, profile, program)),
        };
        Ok(MonitorPlan {
            audit_mode: options.audit_mode,
            audit_log,
            ring_bytes: ring_size(options.audit_buffer.unwrap_or(Size(4 << 20)))?,
            full: options.monitor_full,
            unavailable: unavailable(host),
            cgroup_parent: host.cgroups.v2.as_ref().map(|v2| v2.own.clone()),
        })
    }
}

/// The ring buffer must be a power-of-two multiple of the page size.
fn ring_size(size: Size) -> Result<u32, PlanError> {
    let ok = size.0 >= 4096 && size.0.is_power_of_two() && size.0 <= 1 << 30;
    if ok {
        Ok(size.0 as u32)
    } else {
        Err(PlanError::Invalid {
            what: format!("--audit-buffer {size}"),
            why: "must be a power of two between 4K and 1G (e.g. 64K, 4M)".into(),
        })
    }
}

/// Why the eBPF layer cannot run on this host, if it cannot.
fn unavailable(host: &HostFacts) -> Option<String> {
    if !host.bpf_capable() {
        return Some("loading eBPF needs root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN".into());
    }
    match &host.cgroups.v2 {
        None => Some("no cgroup v2 hierarchy is mounted (needed to scope the probes)".into()),
        Some(v2) if nix::unistd::access(&v2.own, nix::unistd::AccessFlags::W_OK).is_err() => {
            Some(format!("cannot create a cgroup under {}", v2.own.display()))
        }
        Some(_) => None,
    }
}

/// `$XDG_STATE_HOME` (or `~/.local/state`) of the invoking user.
pub fn state_home(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("XDG_STATE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".local/state")))
}

/// `$XDG_STATE_HOME/mcp-warden/audit/<profile>-<program>.jsonl` (of the invoking user).
fn default_audit_log(inputs: &Inputs<'_>, profile: &str, program: &str) -> PathBuf {
    let state = state_home(|k| inputs.var(k)).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    state.join("mcp-warden/audit").join(format!("{}-{}.jsonl", file_safe(&profile_stem(profile)), file_safe(program)))
}

/// A profile's name without its directory and `.toml`.
pub fn profile_stem(profile: &str) -> String {
    Path::new(profile).file_stem().map_or_else(|| profile.to_string(), |s| s.to_string_lossy().into_owned())
}

/// `s` with everything but letters, digits, `-` and `_` replaced by `_`.
pub fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
