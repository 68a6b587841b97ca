//! `mcp-warden export`: what of a resolved plan a container runtime and the kubelet can enforce
//! themselves, in their own formats, with the rest listed as what the entrypoint covers.
//!
//! - [`seccomp`]: the OCI / Kubernetes `Localhost` seccomp profile;
//! - [`pod`]: a `restricted` Pod running the server under mcp-warden;
//! - [`network`]: the NetworkPolicy, and Cilium's `toFQDNs` form on request.

pub mod network;
pub mod pod;
pub mod seccomp;

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::plan::Plan;

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the rule for {syscall} compares argument {arg} in a way the export cannot write: {cmps}")]
    Unexportable { syscall: &'static str, arg: u8, cmps: String },
    #[error("building the seccomp profile: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("serializing the export: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing the export: {0}")]
    Output(#[from] io::Error),
}

impl crate::error::Diagnose for ExportError {}

/// What the user asked for, besides the plan.
#[derive(Debug, Clone)]
pub struct Export {
    /// The Pod's and the policies' name, and the `app.kubernetes.io/name` label.
    pub name: String,
    /// The profile argument `run` gets inside the Pod (an embedded name or a path in the image).
    pub profile: String,
    /// The image holding the server.
    pub image: String,
    /// The image holding a static mcp-warden at `/mcp-warden`.
    pub warden_image: String,
    /// The profile's path under the kubelet's seccomp directory.
    pub seccomp_path: String,
    /// Also write the CiliumNetworkPolicy for host names.
    pub cilium: bool,
}

impl Export {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), self.name.clone()),
            ("app.kubernetes.io/part-of".to_string(), "mcp-warden".to_string()),
        ])
    }
}

/// What the exported objects leave to the entrypoint: the layers no Kubernetes field expresses.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub not_mapped: Vec<String>,
}

impl Target {
    pub fn of(plan: &Plan, export: &Export) -> Target {
        let mut not_mapped = vec![
            "per-path filesystem grants (Landlock, the filesystem view): the entrypoint".to_string(),
            format!(
                "the deny-set calls the launcher needs to build the sandbox ({}, clone into user, PID, mount, IPC and network namespaces, and rtnetlink sockets when mcp-warden answers DNS): allowed by the Localhost profile, denied to the server by the entrypoint's own filter",
                seccomp::LAUNCHER_NEEDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
            "rlimits (processes, open files, file size, CPU time): the entrypoint".to_string(),
        ];
        if !plan.net().host_rules.is_empty() {
            not_mapped.push(match export.cilium {
                true => "host names: the CiliumNetworkPolicy (toFQDNs; Cilium's `*` matches one label, mcp-warden's one or more) and the entrypoint's resolver".into(),
                false => "host names: a NetworkPolicy holds addresses only; the entrypoint's resolver enforces them (a CNI with FQDN policies can too: --cilium)".into(),
            });
        }
        if !plan.net().deny.is_empty() && plan.net().connect_any.is_empty() {
            not_mapped.push("`deny` ranges for host names: the entrypoint".into());
        }
        if plan.mcp().is_some() {
            not_mapped
                .push("the MCP layer (tool policy, annotations, rate limits, redaction, pins): the entrypoint".into());
        }
        Target { not_mapped }
    }
}

/// Writes the seccomp profile as JSON.
pub fn write_seccomp(out: &mut dyn Write, plan: &Plan) -> Result<(), ExportError> {
    let profile = seccomp::profile(plan.syscalls(), plan.net().dns.is_some())?;
    writeln!(out, "{}", serde_json::to_string_pretty(&profile)?)?;
    Ok(())
}

/// Writes the Kubernetes objects as one YAML stream of JSON documents (JSON is YAML; `kubectl
/// apply -f` takes it), headed by comments that say what the entrypoint enforces and how to
/// install the seccomp profile. Returns what the kubelet does not enforce.
pub fn write_kubernetes(out: &mut dyn Write, plan: &Plan, export: &Export) -> Result<Target, ExportError> {
    let target = Target::of(plan, export);
    writeln!(out, "# mcp-warden export: profile `{}` for `{}`", plan.profile(), export.name)?;
    writeln!(
        out,
        "# seccomp: `mcp-warden export --format seccomp` into <kubelet root>/seccomp/{} on every node",
        export.seccomp_path
    )?;
    writeln!(out, "# not enforced by the kubelet (the mcp-warden entrypoint enforces them):")?;
    for line in &target.not_mapped {
        writeln!(out, "#   - {line}")?;
    }
    let mut docs = vec![
        serde_json::to_value(pod::pod(plan, export, &target))?,
        serde_json::to_value(network::network_policy(plan, export))?,
    ];
    if export.cilium {
        docs.extend(network::cilium_policy(plan, export));
    }
    for doc in docs {
        writeln!(out, "---\n{}", serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(target)
}
