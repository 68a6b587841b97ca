//! The Pod half of `mcp-warden export`: a Pod that passes the `restricted` Pod Security Standard,
//! runs the server under mcp-warden as its entrypoint (installed by an initContainer into a
//! shared volume), under the exported `Localhost` seccomp profile, with the plan's memory limit,
//! its environment pass-list and a volume for each write grant.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::plan::Plan;

use super::{Export, Target};

/// Where the initContainer puts mcp-warden, in the volume both containers share.
pub const BIN_DIR: &str = "/opt/mcp-warden/bin";
/// mcp-warden's state (pins), in a volume of its own: the root filesystem is read-only.
const STATE_DIR: &str = "/var/lib/mcp-warden";
/// The uid the containers run as when the image names none (the `nonroot` of distroless images).
const NON_ROOT_UID: i64 = 65532;

pub fn pod(plan: &Plan, export: &Export, target: &Target) -> Pod {
    let grants = write_grants(plan);
    let mut volumes = vec![empty_dir("mcp-warden-bin"), empty_dir("mcp-warden-state")];
    volumes.extend(grants.iter().map(|(name, _)| empty_dir(name)));
    Pod {
        metadata: ObjectMeta {
            name: Some(export.name.clone()),
            labels: Some(export.labels()),
            annotations: Some(BTreeMap::from([
                ("mcp-warden.dev/profile".to_string(), plan.profile().to_string()),
                ("mcp-warden.dev/not-enforced-by-the-kubelet".to_string(), target.not_mapped.join("; ")),
            ])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(NON_ROOT_UID),
                run_as_group: Some(NON_ROOT_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "Localhost".into(),
                    localhost_profile: Some(export.seccomp_path.clone()),
                }),
                ..Default::default()
            }),
            init_containers: Some(vec![installer(export)]),
            containers: vec![server(plan, export, &grants)],
            volumes: Some(volumes),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Copies the static mcp-warden of `--warden-image` into the shared volume.
fn installer(export: &Export) -> Container {
    Container {
        name: "install-mcp-warden".into(),
        image: Some(export.warden_image.clone()),
        command: Some(vec!["/mcp-warden".into(), "install".into(), format!("{BIN_DIR}/mcp-warden")]),
        security_context: Some(restricted()),
        volume_mounts: Some(vec![mount("mcp-warden-bin", BIN_DIR, false)]),
        ..Default::default()
    }
}

/// The server's container: `mcp-warden run --profile P --audit-log - -- <server>`, the MCP
/// stream on its stdin and stdout.
fn server(plan: &Plan, export: &Export, grants: &[(String, String)]) -> Container {
    let mut command = vec![format!("{BIN_DIR}/mcp-warden"), "run".into(), "--profile".into(), export.profile.clone()];
    command.extend(["--audit-log".into(), "-".into(), "--".into()]);
    command.extend(plan.argv().iter().map(|a| a.to_string_lossy().into_owned()));
    let mut mounts = vec![mount("mcp-warden-bin", BIN_DIR, true), mount("mcp-warden-state", STATE_DIR, false)];
    mounts.extend(grants.iter().map(|(name, path)| mount(name, path, false)));
    Container {
        name: "server".into(),
        image: Some(export.image.clone()),
        command: Some(command),
        stdin: Some(true),
        env: Some(environment(plan, export)),
        resources: resources(plan),
        security_context: Some(restricted()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The `restricted` profile's container settings, and a read-only root filesystem: every place
/// the server may write is a volume.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..Default::default()
    }
}

/// Variables the image and the runtime provide (from the image's `Env`, or set by mcp-warden).
const IMAGE_PROVIDES: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR"];

/// The pass-list's plain names but those the image provides, each from the key of the same name in the Secret `NAME-env`
/// (optional: a missing key leaves the variable unset, as on a desktop). mcp-warden's state
/// directory is set, so pins survive in their volume.
fn environment(plan: &Plan, export: &Export) -> Vec<EnvVar> {
    let mut env = vec![EnvVar { name: "XDG_STATE_HOME".into(), value: Some(STATE_DIR.into()), value_from: None }];
    for name in plan.env_pass().iter().filter(|n| !n.ends_with('*') && !IMAGE_PROVIDES.contains(&n.as_str())) {
        env.push(EnvVar {
            name: name.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: format!("{}-env", export.name),
                    key: name.clone(),
                    optional: Some(true),
                }),
                ..Default::default()
            }),
        });
    }
    env
}

/// The plan's memory limit; the other limits have no Pod field (the entrypoint sets them).
fn resources(plan: &Plan) -> Option<ResourceRequirements> {
    let memory = plan.limits().get("max-memory")?;
    let limits = BTreeMap::from([("memory".to_string(), Quantity(memory.to_string()))]);
    Some(ResourceRequirements { limits: Some(limits.clone()), requests: Some(limits), ..Default::default() })
}

/// `(volume name, path)` of each write grant outside the kernel's own filesystems.
fn write_grants(plan: &Plan) -> Vec<(String, String)> {
    let kernel = ["/dev", "/proc", "/sys"];
    plan.paths()
        .iter()
        .filter(|(p, (access, _))| access.write && !kernel.iter().any(|k| p.starts_with(k)) && p != &Path::new("/"))
        .enumerate()
        .map(|(i, (p, _))| (format!("grant-{i}"), p.display().to_string()))
        .collect()
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(read_only), ..Default::default() }
}
