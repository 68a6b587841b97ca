//! HostFacts: what this kernel and this process can enforce, probed once per run without
//! changing anything (no ruleset, filter or namespace is created).

use std::path::Path;
use std::sync::Arc;

use caps::{CapSet, Capability, CapsHashSet};

use crate::layers::cgroup::CgroupFacts;
use crate::sys;

/// The Landlock ABI (feature level) this mcp-warden uses in full: filesystem rights including
/// refer (2), truncate (3), TCP ports (4), device ioctl (5), and abstract-socket and signal
/// scoping (6).
pub const LANDLOCK_TARGET_ABI: i32 = 6;

#[derive(Debug, Clone)]
pub struct HostFacts {
    pub kernel: String,
    pub arch: &'static str,
    /// Landlock ABI version, or why there is none.
    pub landlock: Result<i32, LandlockUnavailable>,
    /// seccomp filter mode is available.
    pub seccomp_filter: bool,
    /// seccomp user notification with `pidfd_getfd` (Linux 5.6): refused calls and the network
    /// broker's calls can be handed to the supervisor. Probed for real: a container's seccomp
    /// profile may refuse the call on a kernel that has it.
    pub user_notification: Result<(), NotifyUnavailable>,
    /// The broker can swap a server's socket for one of its own (`SECCOMP_ADDFD_FLAG_SETFD` and
    /// `SO_NETNS_COOKIE`, Linux 5.14): what routes the server's DNS to mcp-warden's resolver.
    pub socket_swap: bool,
    pub euid: u32,
    pub effective_caps: CapsHashSet,
    /// Unprivileged user namespaces can be created (needed for a PID namespace without root).
    pub user_namespaces: Result<(), UserNsUnavailable>,
    /// `clone` with the namespace flags this run would use gets past the seccomp filter this
    /// launcher already runs under, if any (a container runtime's default profile refuses it).
    pub clone_namespaces: Result<(), CloneFiltered>,
    pub cgroups: CgroupFacts,
    pub btf: bool,
    /// The kernel runs x32-ABI syscalls (x86-64 only): the seccomp layer then guards that number
    /// space too.
    pub x32_abi: bool,
}

/// Is the kernel release (`6.18.44-foo`) at least `major.minor`? An unreadable release is not.
pub fn kernel_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

impl HostFacts {
    pub fn probe() -> Self {
        let effective_caps = caps::read(None, CapSet::Effective).unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        HostFacts {
            kernel: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            arch: std::env::consts::ARCH,
            landlock: sys::landlock_abi_version().map_err(|e| match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) => LandlockUnavailable::NotEnabled,
                Some(libc::ENOSYS) => LandlockUnavailable::NotBuilt,
                _ => LandlockUnavailable::Other(Arc::new(e)),
            }),
            user_notification: probe_user_notification(),
            socket_swap: kernel_at_least(
                &nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
                (5, 14),
            ),
            seccomp_filter: status.lines().any(|l| l.starts_with("Seccomp_filters:"))
                || status.lines().any(|l| l.starts_with("Seccomp:")),
            euid: nix::unistd::geteuid().as_raw(),
            user_namespaces: probe_user_namespaces(),
            clone_namespaces: probe_clone_namespaces(&effective_caps),
            effective_caps,
            cgroups: CgroupFacts::probe(),
            btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            #[cfg(target_arch = "x86_64")]
            x32_abi: sys::x32_abi_enabled(),
            #[cfg(not(target_arch = "x86_64"))]
            x32_abi: false,
        }
    }

    /// Refused calls and the broker's calls can be handed to the supervisor.
    pub fn notifies(&self) -> bool {
        self.user_notification.is_ok()
    }

    pub fn has_cap(&self, cap: Capability) -> bool {
        self.effective_caps.contains(&cap)
    }

    pub fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// The capabilities the eBPF layer will need (for `doctor`).
    pub fn bpf_capable(&self) -> bool {
        self.has_cap(Capability::CAP_SYS_ADMIN)
            || (self.has_cap(Capability::CAP_BPF) && self.has_cap(Capability::CAP_PERFMON))
    }
}

fn read_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Why this kernel has no Landlock.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LandlockUnavailable {
    #[error("built into the kernel but not enabled (add landlock to the lsm= boot parameter)")]
    NotEnabled,
    #[error("not built into this kernel (CONFIG_SECURITY_LANDLOCK)")]
    NotBuilt,
    #[error("unavailable: {0}")]
    Other(Arc<std::io::Error>),
}

impl crate::error::Diagnose for LandlockUnavailable {}

/// Why an unprivileged process cannot create user namespaces here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNsUnavailable {
    #[error("the kernel has no user namespaces (CONFIG_USER_NS)")]
    NotBuilt,
    #[error("user.max_user_namespaces is 0")]
    MaxZero,
    #[error("kernel.unprivileged_userns_clone is 0")]
    UnprivilegedOff,
    #[error("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)")]
    AppArmor,
}

impl crate::error::Diagnose for UserNsUnavailable {}

fn probe_user_namespaces() -> Result<(), UserNsUnavailable> {
    if !Path::new("/proc/self/ns/user").exists() {
        return Err(UserNsUnavailable::NotBuilt);
    }
    if read_int("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err(UserNsUnavailable::MaxZero);
    }
    if read_int("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Err(UserNsUnavailable::UnprivilegedOff);
    }
    if read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return Err(UserNsUnavailable::AppArmor);
    }
    Ok(())
}

/// Why refused calls cannot be handed to the supervisor in this process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyUnavailable {
    #[error("this kernel lacks pidfd_getfd (Linux 5.6) or pidfds")]
    Kernel,
    #[error(
        "a seccomp filter this launcher runs under refuses pidfd_getfd ({0}): a container's default profile without CAP_SYS_PTRACE (run the container under the profile `mcp-warden export` writes, or containers-common's)"
    )]
    Filtered(String),
}

impl crate::error::Diagnose for NotifyUnavailable {}

fn probe_user_notification() -> Result<(), NotifyUnavailable> {
    sys::notify::supported().map_err(|e| match e {
        rustix::io::Errno::NOSYS => NotifyUnavailable::Kernel,
        e => NotifyUnavailable::Filtered(std::io::Error::from(e).to_string()),
    })
}

/// A seccomp filter this launcher runs under refuses `clone` into new namespaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a seccomp filter this launcher runs under refuses clone into new namespaces ({0}): a container's default profile (moby's refuses it without CAP_SYS_ADMIN; run the container under the profile `mcp-warden export` writes, or containers-common's)"
)]
pub struct CloneFiltered(pub String);

impl crate::error::Diagnose for CloneFiltered {}

/// The flags of the namespaces a run creates: a user namespace too without `CAP_SYS_ADMIN`.
fn probe_clone_namespaces(caps: &CapsHashSet) -> Result<(), CloneFiltered> {
    let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
    if !caps.contains(&Capability::CAP_SYS_ADMIN) {
        flags |= libc::CLONE_NEWUSER;
    }
    sys::clone_filtered(flags).map_err(|e| CloneFiltered(e.to_string()))
}

/// One eBPF program type and whether it loads on this host.
#[derive(Debug, Clone)]
pub struct BpfSupport {
    pub name: &'static str,
    /// What mcp-warden uses (or would use) it for.
    pub role: &'static str,
    pub loads: Result<bool, LoadRefused>,
}

/// The kernel's answer when it refused to load a program (the innermost cause aya reports).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadRefused(pub String);

impl crate::error::Diagnose for LoadRefused {}

/// Tries to load a trivial program of each type mcp-warden cares about (aya's feature probe:
/// tracing and LSM programs are loaded against a real attach point, so "loads" means it). Only
/// `doctor` calls this: it loads programs, and `run` need not pay for it.
pub fn probe_bpf_program_types() -> Vec<BpfSupport> {
    use aya::programs::{LsmAttachType, ProgramType};
    let types: [(&str, &str, ProgramType); 9] = [
        ("tracepoint", "observation: exec, fork, exit, opens", ProgramType::TracePoint),
        ("raw_tracepoint", "observation: per-syscall counts and denials", ProgramType::RawTracePoint),
        ("cgroup_sock_addr", "enforcement: connect/sendmsg/bind allow-list", ProgramType::CgroupSockAddr),
        ("cgroup_sock", "enforcement: socket creation", ProgramType::CgroupSock),
        ("cgroup_skb", "(unused)", ProgramType::CgroupSkb),
        ("kprobe", "(unused; load only, attach not tried)", ProgramType::KProbe),
        ("tracing (fentry)", "(unused)", ProgramType::Tracing),
        ("lsm", "(optional BPF LSM layer)", ProgramType::Lsm(LsmAttachType::Mac)),
        ("socket_filter", "(baseline)", ProgramType::SocketFilter),
    ];
    types
        .into_iter()
        .map(|(name, role, ty)| BpfSupport {
            name,
            role,
            loads: aya::sys::is_program_supported(ty).map_err(|e| {
                // The innermost cause is the kernel's answer (e.g. "Operation not permitted").
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                LoadRefused(cause.to_string())
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v595", (5, 14)));
        assert!(kernel_at_least("5.14.0-427.el9.x86_64", (5, 14)));
        assert!(!kernel_at_least("5.10.209", (5, 14)));
        assert!(!kernel_at_least("4.19", (5, 14)));
        assert!(!kernel_at_least("", (5, 14)));
    }
}
