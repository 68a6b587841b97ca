//! `mcp-warden export`: the plan of `run`'s arguments, written for the container runtime
//! (`--format seccomp`) or the kubelet (`--format kubernetes`). The export is this command's
//! product, so it goes to stdout; what the kubelet cannot enforce is listed in it and on stderr.

use std::io::Write;

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::{CommandError, Failure};
use crate::export::Export;

pub fn command(out: &mut dyn Write, args: ExportArgs) -> Result<i32, Failure> {
    let export = Export {
        seccomp_path: args.seccomp_path.clone().unwrap_or_else(|| format!("mcp-warden/{}.json", args.name)),
        name: args.name,
        profile: args.run.profile.clone(),
        image: args.image,
        warden_image: args.warden_image,
        cilium: args.cilium,
    };
    let plan = super::build_plan(args.run)?;
    match args.format {
        ExportFormat::Seccomp => crate::export::write_seccomp(out, &plan)?,
        ExportFormat::Kubernetes => {
            for line in crate::export::write_kubernetes(out, &plan, &export)?.not_mapped {
                eprintln!("mcp-warden: not enforced by the kubelet: {line}");
            }
        }
    }
    Ok(0)
}

/// Copies the running binary to `path`, executable by everyone (the Pod's containers run as
/// another uid than the initContainer may).
pub fn install(path: &std::path::Path) -> Result<i32, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| CommandError::new(format!("install to {}: {e}", path.display()));
    std::fs::copy("/proc/self/exe", path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    eprintln!("mcp-warden: installed {}", path.display());
    Ok(0)
}
