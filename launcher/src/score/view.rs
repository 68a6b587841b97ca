//! What the score assumes about the host: which layers apply ([`HostView`]: every layer, or this
//! host's), the mechanisms that follow from them, and the powerful unix sockets the server's user
//! could connect to here.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use serde::Serialize;

use crate::host::{HostFacts, LANDLOCK_TARGET_ABI};
use crate::plan::{Enforcement, Layer, Plan};
use crate::profile::{Level, Violation};

use super::data::{Data, SocketKind};

/// A socket of the data's list that exists here and that the server's user may connect to (its
/// mode bits allow it; no capability helps, every one is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub path: PathBuf,
    pub kind: SocketKind,
}

/// Which layers apply: the score of a profile assumes every layer; the score on this host counts
/// a best-effort layer this host lacks as not applied. A required layer this host lacks counts as
/// applied: `run` refuses to start without it (`refusal` says so).
#[derive(Debug, Clone)]
pub struct HostView {
    applied: BTreeSet<Layer>,
    landlock_abi: i32,
    pids_cgroup: bool,
    sockets: Vec<Socket>,
    refusal: Option<String>,
}

impl HostView {
    /// Every layer the plan does not turn off applies, in full.
    pub fn every_layer(plan: &Plan, sockets: Vec<Socket>) -> HostView {
        let applied = plan
            .layers()
            .iter()
            .filter(|r| r.level != Level::Off && r.enforcement != Enforcement::Off)
            .map(|r| r.layer)
            // The broker runs whenever the plan has address rules, whatever `network`'s level.
            .chain([Layer::Network])
            .collect();
        HostView {
            applied,
            landlock_abi: LANDLOCK_TARGET_ABI,
            pids_cgroup: plan.level(Layer::Limits) != Level::Off,
            sockets,
            refusal: None,
        }
    }

    /// The layers as `run` would apply them on the host `host` describes.
    pub fn this_host(plan: &Plan, host: &HostFacts, sockets: Vec<Socket>) -> HostView {
        let mut applied = BTreeSet::new();
        for r in plan.layers() {
            let on = match (r.level, &r.enforcement) {
                // Disabled by the profile itself (`pid-namespace = false`): off everywhere.
                (_, Enforcement::Off) if r.level != Level::Off => false,
                (Level::Required, _) => true,
                (Level::BestEffort, Enforcement::Full | Enforcement::Partial(_)) => true,
                (Level::BestEffort, _) => false,
                // Off is only a requirement for the network layer: its broker still runs.
                (Level::Off, _) => r.layer == Layer::Network && host.seccomp_filter && host.notifies(),
            };
            if on {
                applied.insert(r.layer);
            }
        }
        let landlock_abi = match plan.level(Layer::Landlock) {
            Level::Required => LANDLOCK_TARGET_ABI,
            _ => host.landlock.as_ref().ok().copied().unwrap_or(0),
        };
        let pids_cgroup = match plan.level(Layer::Limits) {
            Level::Off => false,
            Level::Required => true,
            Level::BestEffort => plan.cgroup_limits().iter().any(|w| w.file == "pids.max"),
        };
        let refusal = plan.clone().check_requirements().err().map(|e| e.to_string());
        HostView { applied, landlock_abi, pids_cgroup, sockets, refusal }
    }

    /// Why `run` would refuse to start the server on this host, if it would.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    pub fn sockets(&self) -> &[Socket] {
        &self.sockets
    }

    /// The layers that apply.
    pub fn applied(&self) -> &BTreeSet<Layer> {
        &self.applied
    }

    /// This view with `layer` absent (for the tests of what each layer covers).
    #[cfg(test)]
    pub(crate) fn without(mut self, layer: Layer) -> HostView {
        self.applied.remove(&layer);
        if layer == Layer::Limits {
            self.pids_cgroup = false;
        }
        self
    }
}

/// The mechanisms that enforce something under a view: what the assessors read. In audit mode
/// nothing that can log instead of refusing refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mechanisms {
    /// Landlock's filesystem rules.
    pub landlock_fs: bool,
    /// Landlock's TCP port rules (ABI 4).
    pub landlock_net: bool,
    /// Landlock's abstract-socket and signal scoping (ABI 6).
    pub landlock_scope: bool,
    /// The main seccomp filter, refusing (not logging).
    pub seccomp: bool,
    /// The network broker checks every connect and send destination.
    pub broker: bool,
    /// The eBPF cgroup programs check ports and addresses.
    pub ebpf: bool,
    pub fs_view: bool,
    pub pid_ns: bool,
    /// A pids cgroup enforces max-processes (RLIMIT_NPROC does not bind uid 0).
    pub pids_cgroup: bool,
}

impl Mechanisms {
    pub fn of(plan: &Plan, view: &HostView) -> Mechanisms {
        let on = |l| view.applied.contains(&l);
        let enforcing = !plan.audit_mode();
        let landlock = on(Layer::Landlock) && enforcing;
        Mechanisms {
            landlock_fs: landlock,
            landlock_net: landlock && view.landlock_abi >= 4,
            landlock_scope: landlock && view.landlock_abi >= 6,
            seccomp: on(Layer::Seccomp) && enforcing && plan.syscalls().action != Violation::Log,
            broker: on(Layer::Network) && enforcing && plan.net().broker.is_some(),
            ebpf: on(Layer::Monitor) && enforcing,
            fs_view: on(Layer::FsView),
            pid_ns: on(Layer::PidNamespace),
            pids_cgroup: view.pids_cgroup,
        }
    }
}

/// The sockets of the data's list that exist on this host and that the server's user may
/// connect to. `env` is the launcher's environment (`$SSH_AUTH_SOCK`, `$XDG_RUNTIME_DIR`).
pub fn reachable_sockets(plan: &Plan, data: &Data, env: &dyn Fn(&str) -> Option<String>) -> Vec<Socket> {
    let id = plan.identity();
    // A switched server's runtime directory is its user's, not the launcher's.
    let own = format!("/run/user/{}", id.uid);
    let runtime_dir = if id.switch { own } else { env("XDG_RUNTIME_DIR").unwrap_or(own) };
    let groups: Vec<u32> = if id.switch {
        vec![id.gid]
    } else {
        let mut g: Vec<u32> = nix::unistd::getgroups().unwrap_or_default().iter().map(|g| g.as_raw()).collect();
        g.push(id.gid);
        g
    };
    let mut out = Vec::new();
    for class in &data.sockets {
        for written in &class.paths {
            let path = match written.split_once('/') {
                Some(("$XDG_RUNTIME_DIR", rest)) => format!("{runtime_dir}/{rest}"),
                _ if written == "$SSH_AUTH_SOCK" => match env("SSH_AUTH_SOCK") {
                    Some(p) => p,
                    None => continue,
                },
                _ => written.clone(),
            };
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.file_type().is_socket() && may_write(&meta, id.uid, &groups) {
                out.push(Socket { path: path.into(), kind: class.kind });
            }
        }
    }
    out
}

/// The mode bits' answer for a write (a unix socket's connect) by `uid` with `groups`.
fn may_write(meta: &std::fs::Metadata, uid: u32, groups: &[u32]) -> bool {
    let mode = meta.mode();
    if meta.uid() == uid {
        mode & 0o200 != 0
    } else if groups.contains(&meta.gid()) {
        mode & 0o020 != 0
    } else {
        mode & 0o002 != 0
    }
}
