//! What each layer will enforce on this host: the requirement levels (profile, then `--require`),
//! the enforcement of each layer (full, partial, missing, off) and the mechanism behind it.

use std::collections::BTreeMap;

use crate::host::{HostFacts, LANDLOCK_TARGET_ABI};
use crate::layers::fs_hide::HidePlan;
use crate::layers::namespaces::Namespaces;
use crate::profile::{Level, Require, Violation};

use super::identity::PidNamespace;
use super::layer::Layer;
use super::monitor::MonitorPlan;

/// Whether a layer is enforced in full on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    Full,
    Partial(String),
    Missing(String),
    Off,
}

#[derive(Debug, Clone)]
pub struct LayerReport {
    pub layer: Layer,
    pub level: Level,
    pub enforcement: Enforcement,
    /// What enforces it, for `explain`.
    pub mechanism: String,
}

/// The requirement of each layer: the merged `[require]` (the command line's `--require`
/// included), else the layer's default. Landlock has no log-only mode: in audit mode the
/// filesystem is open and every open is logged with the verdict the allow-list would have given.
pub fn levels(require: &Require, audit_mode: bool) -> BTreeMap<Layer, Level> {
    let mut levels: BTreeMap<Layer, Level> =
        Layer::ALL.into_iter().map(|l| (l, l.required_by(require).unwrap_or(l.default_level()))).collect();
    if audit_mode {
        levels.insert(Layer::Landlock, Level::Off);
        levels.insert(Layer::FsView, Level::Off);
        levels.insert(Layer::FsHide, Level::Off);
    }
    levels
}

pub fn landlock(host: &HostFacts) -> (Enforcement, String) {
    match &host.landlock {
        Ok(abi) if *abi >= LANDLOCK_TARGET_ABI => (
            Enforcement::Full,
            format!(
                "Landlock ABI {abi} (uses ABI {LANDLOCK_TARGET_ABI} features: fs rights, TCP ports, socket and signal scoping)"
            ),
        ),
        Ok(abi) => {
            let missing: Vec<&str> = [
                (2, "refer"),
                (3, "truncate"),
                (4, "TCP port rules"),
                (5, "device ioctl"),
                (6, "abstract-socket and signal scoping"),
            ]
            .iter()
            .filter(|(v, _)| v > abi)
            .map(|(_, n)| *n)
            .collect();
            (
                Enforcement::Partial(format!("kernel Landlock ABI {abi} lacks: {}", missing.join(", "))),
                format!("Landlock ABI {abi}"),
            )
        }
        Err(why) => (Enforcement::Missing(format!("Landlock is {why}")), "Landlock".into()),
    }
}

pub fn seccomp(host: &HostFacts, denied: usize, action: Violation) -> (Enforcement, String) {
    let refusals = match (action, &host.user_notification) {
        (Violation::Errno, Ok(())) => "each refusal recorded by the supervisor (user notification)".to_string(),
        (Violation::Errno, Err(why)) => format!("refusals NOT recorded: {why}"),
        (Violation::Kill, _) => "a refusal kills the process (SIGSYS)".into(),
        (Violation::Log, _) => "refusals only logged by the kernel (on-violation = \"log\")".into(),
    };
    match host.seccomp_filter {
        true => (Enforcement::Full, format!("seccomp-bpf, {denied} syscalls denied + argument rules; {refusals}")),
        false => (Enforcement::Missing("the kernel has no seccomp filter mode".into()), "seccomp-bpf".into()),
    }
}

pub fn monitor(m: &MonitorPlan) -> (Enforcement, String) {
    match &m.unavailable {
        None => (
            Enforcement::Full,
            format!(
                "eBPF: {} and cgroup socket programs; audit log {}{}",
                if m.full {
                    "scheduler and syscall tracepoints (exec, fork, exit, opens, syscalls, file refusals; --monitor-level full slows every process of the host while it runs)"
                } else {
                    "scheduler tracepoints (exec, fork, exit; --monitor-level tree)"
                },
                m.audit_log.describe(),
                if m.audit_mode { " (audit mode: nothing denied)" } else { "" }
            ),
        ),
        Some(why) => (Enforcement::Missing(why.clone()), "eBPF (not loaded)".into()),
    }
}

/// `writers`: the eBPF layer or the MCP layer runs, so there is something to log.
pub fn audit_log(m: &MonitorPlan, writers: bool, level: Level) -> (Enforcement, String) {
    if !writers {
        return (Enforcement::Off, "nothing to log: neither the eBPF layer nor the MCP layer runs".into());
    }
    (
        Enforcement::Full,
        format!(
            "{}: a start record is written first; {}",
            m.audit_log.describe(),
            if level == Level::Required {
                "a log that cannot be written refuses the run"
            } else {
                "a log that cannot be written is reported, and every record is counted as lost"
            }
        ),
    )
}

/// Why this run can create no namespace (see [`super::NamespaceAccess`]).
fn no_namespaces(host: &HostFacts) -> String {
    if let Err(why) = &host.clone_namespaces {
        return why.to_string();
    }
    match &host.user_namespaces {
        Err(why) => format!("not root and no user namespaces: {why}"),
        Ok(()) => "a user switch needs root, which this run does not have".into(),
    }
}

/// The filesystem view: how this host builds it, or why it cannot.
pub fn fs_view(ns: Namespaces, host: &HostFacts, writable: usize) -> (Enforcement, String) {
    let view = format!(
        "mount namespace: every mount read-only and nosuid; {writable} write grant(s) bound writable and noexec (unless exec-granted)"
    );
    match ns {
        Namespaces { mount: true, user: false, .. } => (Enforcement::Full, format!("CLONE_NEWNS, {view}")),
        Namespaces { mount: true, user: true, .. } => {
            (Enforcement::Full, format!("CLONE_NEWUSER|CLONE_NEWNS (own uid mapped), {view}"))
        }
        Namespaces { mount: false, .. } => (
            Enforcement::Missing(no_namespaces(host)),
            "none: metadata writes (chmod, chown, utimes, xattrs) and executable mappings of written files are open"
                .into(),
        ),
    }
}

/// What decides how the hidden root is built here.
#[derive(Debug)]
pub struct HideInputs<'a> {
    pub ns: Namespaces,
    pub host: &'a HostFacts,
    /// The fs-view layer is not off (the hidden root uses its mount namespace).
    pub view_on: bool,
    /// Landlock is not off (its ptrace scoping refuses other processes' `/proc` links).
    pub landlock_on: bool,
    /// This host has a directory to build the new root on.
    pub staging: bool,
    /// The hidden root, when it is built.
    pub plan: Option<&'a HidePlan>,
}

/// The hidden root: how this host builds it, or why it cannot.
pub fn fs_hide(h: &HideInputs<'_>) -> (Enforcement, String) {
    let open = "none: stat, readlink, inotify and other lookups of paths outside the grants answer";
    let missing = |why: &str| (Enforcement::Missing(why.to_string()), open.to_string());
    if !h.view_on {
        return missing("it builds on the fs-view layer, which is off");
    }
    if !h.ns.mount {
        return missing(&no_namespaces(h.host));
    }
    if !h.staging {
        return missing("no directory to build the new root on (/tmp, /mnt, /var/tmp, /run)");
    }
    let Some(plan) = h.plan else {
        return missing("`/` is granted: a root holding the grants would hold the whole host");
    };
    let mechanism = format!(
        "a read-only tmpfs root holding only the granted paths ({} binds with the view's flags, the host's /proc among them) and the symlinks leading to them; pivot_root, old root detached: lookups outside the grants answer ENOENT",
        plan.view.binds.len()
    );
    match h.landlock_on {
        true => (Enforcement::Full, mechanism),
        false => (
            Enforcement::Partial(
                "Landlock is off: /proc/PID/root of another process of the same user leads back to the host's tree"
                    .into(),
            ),
            mechanism,
        ),
    }
}

/// `disabled`: the profile says `pid-namespace = false`; `switch`: the server's user is switched.
pub fn pid_namespace(ns: PidNamespace, disabled: bool, host: &HostFacts) -> (Enforcement, String) {
    match ns {
        PidNamespace::Plain => (Enforcement::Full, "CLONE_NEWPID, mcp-warden as PID 1 reaper".into()),
        PidNamespace::WithUserNamespace => {
            (Enforcement::Full, "CLONE_NEWUSER|CLONE_NEWPID (own uid mapped), mcp-warden as PID 1 reaper".into())
        }
        PidNamespace::Off if disabled => {
            (Enforcement::Off, "disabled by the profile (process.pid-namespace = false)".into())
        }
        PidNamespace::Off => (
            Enforcement::Missing(no_namespaces(host)),
            "none: only the direct child gets the parent-death signal".into(),
        ),
    }
}
