//! Namespaces: the clone flags of the fork into a PID (and user) namespace, the user namespace's
//! id mapping, and the server's fork under a PID-1 reaper that forwards signals and reaps orphans.

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use crate::plan::PidNamespace;
use crate::sys::{self, Forked};

/// The namespaces stage 2 is forked into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// A user namespace that maps the launcher's own ids: what lets an unprivileged launcher
    /// create the others.
    pub user: bool,
    /// The server tree's own PID namespace, stage 2 its PID-1 reaper.
    pub pid: bool,
    /// A mount namespace for the filesystem view.
    pub mount: bool,
    /// An IPC namespace: the host's System V shared memory, semaphores and message queues are
    /// out of reach (as root always; unprivileged inside the user namespace).
    pub ipc: bool,
}

impl Namespaces {
    /// The PID namespace the plan chose, and a mount namespace when the filesystem view applies
    /// (`may_mount`: root, or an unprivileged launcher whose user namespaces work).
    pub fn new(pid_namespace: PidNamespace, view: bool, privileged: bool) -> Namespaces {
        let pid = pid_namespace != PidNamespace::Off;
        let user = pid_namespace == PidNamespace::WithUserNamespace || (view && !privileged);
        Namespaces { user, pid, mount: view, ipc: privileged || user }
    }

    /// The `clone` flags that put stage 2 into these namespaces.
    pub fn clone_flags(self) -> libc::c_int {
        let mut flags = 0;
        if self.user {
            flags |= libc::CLONE_NEWUSER;
        }
        if self.pid {
            flags |= libc::CLONE_NEWPID;
        }
        if self.mount {
            flags |= libc::CLONE_NEWNS;
        }
        if self.ipc {
            flags |= libc::CLONE_NEWIPC;
        }
        flags
    }
}

/// One line of `uid_map`/`gid_map`: `id` inside maps to `id` outside, a range of one.
pub fn identity_map(id: u32) -> String {
    format!("{id} {id} 1")
}

/// Maps our own uid and gid to themselves in the new user namespace; until then the process is
/// `nobody` there. `setgroups` must be denied before an unprivileged process may write `gid_map`.
pub fn map_own_ids(uid: u32, gid: u32) -> std::io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", identity_map(uid))?;
    std::fs::write("/proc/self/gid_map", identity_map(gid))
}

/// Forks the server inside the PID namespace stage 2 is PID 1 of (no new namespace: the fork
/// into it happened when the supervisor forked stage 2).
///
/// Stage 2, the reaper once the server is forked, is a copy of the supervisor: the client's whole
/// environment is in its memory, and it is in the server's own Landlock domain, which lets the
/// server at it. So it is made not dumpable first: its `/proc/PID/environ`, `mem` and the rest
/// answer `EACCES` to anyone without `CAP_SYS_PTRACE`. The server's `execve` makes it dumpable
/// again, as any program.
pub fn fork_server() -> std::io::Result<Forked> {
    nix::sys::prctl::set_dumpable(false)?;
    sys::fork_into_namespaces(0)
}

/// PID 1 of the server's namespace: forward the supervisor's signals to every process in the
/// namespace, reap orphans, and return the status to exit with once the server is gone (its
/// code, or 128+N for signal N). When PID 1 exits the kernel kills whatever is left in the
/// namespace; when the supervisor dies, our parent-death signal kills us.
///
/// Every descriptor is closed first, so the reaper holds nothing the server's peers wait on
/// (stdio, the error pipe, the supervisor's pidfd): the caller must only exit afterwards, without
/// dropping any descriptor it still owns.
pub fn reap(server: Pid, forwarded: &SigSet) -> i32 {
    let _ = sys::close_from(0);
    let mut set = *forwarded;
    set.add(Signal::SIGCHLD);
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            // kill(-1) from PID 1 reaches every process in the namespace except PID 1.
            let _ = kill(Pid::from_raw(-1), sig);
            continue;
        }
        if let Some(status) = reap_children(server) {
            return status;
        }
    }
}

/// Reaps every child that has exited; `Some(status)` once the server is among them.
fn reap_children(server: Pid) -> Option<i32> {
    loop {
        match sys::reap(None) {
            sys::Reaped::Child { pid, status } if pid == server.as_raw() => return Some(status),
            sys::Reaped::Child { .. } => continue,
            sys::Reaped::Running | sys::Reaped::NoChildren => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_themselves() {
        assert_eq!(identity_map(1000), "1000 1000 1");
    }

    #[test]
    fn a_user_namespace_comes_with_what_an_unprivileged_launcher_creates() {
        let flags = |pid, view, privileged| Namespaces::new(pid, view, privileged).clone_flags();
        let ipc = libc::CLONE_NEWIPC;
        assert_eq!(flags(PidNamespace::Off, false, true), ipc, "root always gets its own IPC namespace");
        assert_eq!(flags(PidNamespace::Off, false, false), 0, "no user namespace: no IPC namespace");
        assert_eq!(flags(PidNamespace::Plain, false, true), libc::CLONE_NEWPID | ipc);
        assert_eq!(flags(PidNamespace::Plain, true, true), libc::CLONE_NEWPID | libc::CLONE_NEWNS | ipc);
        assert_eq!(
            flags(PidNamespace::WithUserNamespace, false, false),
            libc::CLONE_NEWUSER | libc::CLONE_NEWPID | ipc
        );
        assert_eq!(flags(PidNamespace::Off, true, false), libc::CLONE_NEWUSER | libc::CLONE_NEWNS | ipc);
        let all = libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS | ipc;
        assert_eq!(flags(PidNamespace::WithUserNamespace, true, false), all);
    }
}
