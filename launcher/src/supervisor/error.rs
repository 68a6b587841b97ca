//! `SupervisorError`: every way the supervisor can refuse or fail a run, with the hint and exit
//! status `main` shows for it.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::ebpf::MonitorError;
use crate::layers::cgroup::CgroupError;
use crate::layers::landlock::LandlockError;
use crate::stage2::{Step, StepError};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    #[error("failed to compile the seccomp filter: {0}")]
    Seccomp(#[from] seccompiler::BackendError),
    #[error("failed to {action}: {source}")]
    Sys { action: &'static str, source: std::io::Error },
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error(
        "refusing to fork the sandbox: the launcher has {0} threads (stage 2 must fork from a single-threaded process)"
    )]
    Threads(u64),
    #[error("failed to {}: {}", .0.step.describe(), describe_errno(.0.errno))]
    Stage2(StepError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("cannot write the audit log {path}: {source}")]
    AuditLog { path: String, source: std::io::Error },
    #[error("cannot answer the server's DNS: the DNS namespace failed: {0}")]
    Dns(std::io::Error),
}

fn describe_errno(errno: i32) -> String {
    if errno == 0 {
        "not enforced".into()
    } else {
        format!("{} ({})", std::io::Error::from_raw_os_error(errno), Errno::from_raw(errno))
    }
}

impl crate::error::Diagnose for SupervisorError {
    fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::Stage2(e) => e.exit_code(),
            _ => 125,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SupervisorError::Cgroup(_) => "limits that need a cgroup fall back to rlimits with `--require limits=best-effort`".into(),
            SupervisorError::Monitor(_) => {
                "`mcp-warden doctor` shows which eBPF program types load here; `--require monitor=best-effort` runs without the eBPF layer".into()
            }
            SupervisorError::Dns(_) => "mcp-warden answers the server's DNS from a network namespace of its own, which needs user namespaces without privileges (`unshare -Urn true` shows whether this host allows them) and, in a container, a seccomp profile that allows clone(CLONE_NEWNET) and rtnetlink sockets (the one `mcp-warden export --format seccomp` writes does): run as root, or remove `dns = true` and the HOST:PORT entries (the server then resolves no name)".into(),
            SupervisorError::AuditLog { .. } => "choose another file with --audit-log PATH (or - for stderr), or run without a complete log with `--require audit-log=best-effort`".into(),
            SupervisorError::Landlock(LandlockError::Create(_)) => {
                "`mcp-warden doctor` shows this kernel's Landlock support; `--require landlock=best-effort` runs with what it has".into()
            }
            SupervisorError::Stage2(e) => match (e.step, e.errno) {
                (Step::Exec, libc::EACCES) => {
                    "Landlock denied the exec: the program (or its interpreter) must be under an --allow-exec path".into()
                }
                (Step::Exec, libc::ENOENT) => "check the program path, or a script's interpreter line".into(),
                (Step::MapUserNamespace, _) => "this host refuses the user namespace that the PID namespace and the filesystem view need unprivileged: run as root, or without them (`--require pid-namespace=off --require fs-view=off`, less protection)".into(),
                (Step::HideOutsideGrants, _) => "this host refuses the mounts of the hidden root (`mcp-warden doctor`): `--require fs-hide=best-effort` runs with the filesystem view alone (stat, readlink and inotify of paths outside the grants then answer)".into(),
                (Step::MountView, _) => "this host refuses the mounts of the filesystem view (`mcp-warden doctor`): run as root, or without the view (`--require fs-view=off`: chmod, utimes and xattrs outside the write grants, and ld.so runs of written files, are then open)".into(),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// `map_err` for a failed system call: `failed to <action>: <error>` (std and nix errors alike).
pub(super) fn sys_err<E: Into<std::io::Error>>(action: &'static str) -> impl FnOnce(E) -> SupervisorError {
    move |e| SupervisorError::Sys { action, source: e.into() }
}

/// `s` as a C string for stage 2; `what` names it in the error when it holds a NUL byte.
pub(super) fn cstring(what: &str, s: &OsStr) -> Result<CString, SupervisorError> {
    CString::new(s.as_bytes()).map_err(|_| SupervisorError::Nul { what: format!("{what} `{}`", s.to_string_lossy()) })
}
