//! Stage 2: the forked, single-threaded child that hardens itself step by step and then executes
//! the server. Every fallible piece of work (parsing, path lookups, ruleset and filter
//! compilation, cgroup creation) was done by the supervisor before the fork; what remains here is
//! one system call per step. A failing step reports `(step, errno)` on the error pipe and exits,
//! so a server is never half-started.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use ::landlock::RulesetCreated;
use caps::CapSet;
use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid};
use seccompiler::BpfProgram;

use crate::layers::landlock;
use crate::plan::PidNamespace;
use crate::profile::Level;
use crate::sys;

/// The steps, in order; their numbers are the design's (docs/design in README), and the
/// supervisor turns `(step, errno)` back into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    MapUserNamespace = 0,
    Sanitize = 1,
    JoinCgroup = 2,
    SetRlimits = 3,
    Setsid = 6,
    Chdir = 61,
    DropBoundingCaps = 7,
    SwitchIdentity = 8,
    ClearCaps = 9,
    ParentDeathSignal = 10,
    NoNewPrivs = 11,
    RestrictLandlock = 12,
    LandlockNotEnforced = 121,
    InstallBroker = 130,
    InstallSeccomp = 13,
    ForkServer = 131,
    Exec = 14,
}

impl Step {
    pub fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        [
            MapUserNamespace,
            Sanitize,
            JoinCgroup,
            SetRlimits,
            Setsid,
            Chdir,
            DropBoundingCaps,
            SwitchIdentity,
            ClearCaps,
            ParentDeathSignal,
            NoNewPrivs,
            RestrictLandlock,
            LandlockNotEnforced,
            InstallBroker,
            InstallSeccomp,
            ForkServer,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    /// "failed to <this>".
    pub fn describe(self) -> &'static str {
        match self {
            Step::MapUserNamespace => "map the user namespace's uid and gid",
            Step::Sanitize => "sanitize inherited file descriptors and signals",
            Step::JoinCgroup => "join the server's cgroup",
            Step::SetRlimits => "set resource limits",
            Step::Setsid => "start a new session (setsid)",
            Step::Chdir => "change to the working directory",
            Step::DropBoundingCaps => "drop the capability bounding set",
            Step::SwitchIdentity => "switch user and group",
            Step::ClearCaps => "clear capabilities",
            Step::ParentDeathSignal => "arm the parent-death signal",
            Step::NoNewPrivs => "set no_new_privs",
            Step::RestrictLandlock => "enforce the Landlock ruleset",
            Step::LandlockNotEnforced => "enforce Landlock in full (the kernel enforced only part of the ruleset)",
            Step::InstallBroker => "hand the network broker's seccomp listener to the supervisor",
            Step::InstallSeccomp => "install the seccomp filter",
            Step::ForkServer => "fork the server under the PID-1 reaper",
            Step::Exec => "execute the server",
        }
    }
}

/// A failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepError {
    pub step: Step,
    pub errno: i32,
}

impl StepError {
    pub const WIRE_LEN: usize = 8;

    pub fn to_bytes(self) -> [u8; Self::WIRE_LEN] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(self.step as u32).to_le_bytes());
        b[4..].copy_from_slice(&self.errno.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::WIRE_LEN]) -> Option<Self> {
        let step = Step::from_u32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
        Some(StepError { step, errno: i32::from_le_bytes([b[4], b[5], b[6], b[7]]) })
    }

    /// 127 when the program is not found, 126 when it cannot be executed, 125 otherwise.
    pub fn exit_code(self) -> i32 {
        match (self.step, self.errno) {
            (Step::Exec, libc::ENOENT) => 127,
            (Step::Exec, _) => 126,
            _ => 125,
        }
    }
}

fn step<T>(step: Step, r: Result<T, impl Into<i32>>) -> Result<T, StepError> {
    r.map_err(|e| StepError { step, errno: e.into() })
}

fn io_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn nix_errno(e: Errno) -> i32 {
    e as i32
}

/// Everything stage 2 needs, prepared by the supervisor.
#[derive(Debug)]
pub struct Stage2 {
    pub program: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: CString,
    /// `Some` when started as root with a user to switch to: (uid, gid).
    pub switch_to: Option<(u32, u32)>,
    /// The ids the launcher runs with, mapped to themselves inside a new user namespace.
    pub own_ids: (u32, u32),
    pub rlimits: Vec<(Resource, u64)>,
    pub cgroup_procs: Vec<File>,
    pub pid_namespace: PidNamespace,
    pub landlock: Option<(RulesetCreated, Level)>,
    pub seccomp: Vec<BpfProgram>,
    /// The MCP layer's pipes, to become the server's stdin and stdout.
    pub stdio: Option<(OwnedFd, OwnedFd)>,
    /// The network broker's filter and the channel its listener goes to the supervisor through.
    pub broker: Option<(Vec<seccompiler::sock_filter>, std::os::unix::net::UnixStream)>,
    /// The signals the supervisor blocked before the fork and forwards.
    pub forwarded: SigSet,
    /// pidfd of the supervisor, to detect that it died before the parent-death signal was armed.
    pub supervisor: OwnedFd,
    /// Write end of the error pipe (close-on-exec: EOF tells the supervisor the exec happened).
    pub error_pipe: OwnedFd,
}

/// Runs stage 2 in the forked child. Never returns.
pub fn run(mut s: Stage2) -> ! {
    let err = match harden_and_exec(&mut s) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // If the supervisor is gone there is nobody to tell; exit either way.
    let _ = File::from(s.error_pipe).write_all(&err.to_bytes());
    sys::exit_now(err.exit_code())
}

/// The hardening sequence. The order matters; each constraint is stated where it bites.
fn harden_and_exec(s: &mut Stage2) -> Result<std::convert::Infallible, StepError> {
    // 0. In a new user namespace (unprivileged PID namespace), map our own uid/gid to themselves
    //    first: until then we are "nobody" and cannot join anything. `setgroups` must be denied
    //    before an unprivileged process may write gid_map.
    if s.pid_namespace == PidNamespace::WithUserNamespace {
        let (uid, gid) = s.own_ids;
        step(Step::MapUserNamespace, std::fs::write("/proc/self/setgroups", "deny").map_err(io_errno))?;
        step(Step::MapUserNamespace, std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).map_err(io_errno))?;
        step(Step::MapUserNamespace, std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")).map_err(io_errno))?;
    }

    // 1. Sanitize: nothing inherited beyond stdio reaches the server (every other fd is marked
    //    close-on-exec; the error pipe and the ruleset must stay usable until exec), and no
    //    ignored signal survives into it. The signal mask stays blocked until just before exec.
    if let Some((stdin, stdout)) = s.stdio.take() {
        step(Step::Sanitize, nix::unistd::dup2_stdin(&stdin).map_err(nix_errno))?;
        step(Step::Sanitize, nix::unistd::dup2_stdout(&stdout).map_err(nix_errno))?;
    }
    step(Step::Sanitize, sys::cloexec_from(3).map_err(io_errno))?;
    step(Step::Sanitize, sys::reset_signal_dispositions().map_err(io_errno))?;

    // 2. Join the cgroups (pids/memory limits) through the files the supervisor opened while
    //    privileged; "0" means the writing process.
    for procs in &mut s.cgroup_procs {
        step(Step::JoinCgroup, procs.write_all(b"0").map_err(io_errno))?;
    }

    // 3. rlimits, while still privileged (an unprivileged process cannot raise them back, and
    //    nobody should after the identity switch). CORE=0 is always in the list.
    for (resource, value) in &s.rlimits {
        step(Step::SetRlimits, setrlimit(*resource, *value, *value).map_err(nix_errno))?;
    }

    // 4./5. Namespaces were created by the fork itself (clone flags); no mounts are changed.

    // 6. A new session: no controlling terminal, so TIOCSTI into the client's terminal has no
    //    target (the seccomp filter also denies it); then the working directory.
    step(Step::Setsid, nix::unistd::setsid().map_err(nix_errno))?;
    step(Step::Chdir, nix::unistd::chdir(s.cwd.as_c_str()).map_err(nix_errno))?;

    // 7. Drop the bounding set: needs CAP_SETPCAP, so before the identity switch. Without it
    //    (an unprivileged launcher without a user namespace) the bounding set is inert anyway:
    //    there are no capabilities to keep and no_new_privs stops file capabilities on exec.
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
        step(Step::DropBoundingCaps, caps::clear(None, CapSet::Bounding).map_err(|_| libc::EPERM))?;
    }

    // 8. Identity: supplementary groups, then gid, then uid (after setresuid we could no longer
    //    change the groups).
    if let Some((uid, gid)) = s.switch_to {
        let gid = Gid::from_raw(gid);
        step(Step::SwitchIdentity, nix::unistd::setgroups(&[gid]).map_err(nix_errno))?;
        step(Step::SwitchIdentity, nix::unistd::setresgid(gid, gid, gid).map_err(nix_errno))?;
        let uid = Uid::from_raw(uid);
        step(Step::SwitchIdentity, nix::unistd::setresuid(uid, uid, uid).map_err(nix_errno))?;
    }

    // 9. Clear every remaining capability set (a root server without a user switch keeps uid 0
    //    but no capability; ambient first, as it cannot exceed permitted/inheritable).
    for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        step(Step::ClearCaps, caps::clear(None, set).map_err(|_| libc::EPERM))?;
    }

    // 10. Die with the supervisor. The identity switch clears the parent-death signal, hence
    //     here; and if the supervisor died before this point, nothing would deliver it, so check.
    step(Step::ParentDeathSignal, nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(nix_errno))?;
    if step(Step::ParentDeathSignal, sys::pidfd_exited(s.supervisor.as_fd()).map_err(io_errno))? {
        sys::exit_now(125);
    }

    // 11. no_new_privs: setuid/file-capability binaries gain nothing; required by seccomp for an
    //     unprivileged process and by Landlock.
    step(Step::NoNewPrivs, nix::sys::prctl::set_no_new_privs().map_err(nix_errno))?;

    // 12. Landlock, after everything that needs the filesystem unrestricted. The status is
    //     checked, not assumed: a required ruleset must be enforced in full.
    if let Some((ruleset, level)) = s.landlock.take() {
        let status = step(Step::RestrictLandlock, landlock::restrict(ruleset).map_err(|_| libc::EPERM))?;
        if !landlock::satisfies(&status, level) {
            return Err(StepError { step: Step::LandlockNotEnforced, errno: 0 });
        }
    }

    // 13. seccomp last, so the filter need not allow any setup syscall above. The network
    //     broker's filter first: its listener must reach the supervisor before exec, and the
    //     handshake (write the fd number, wait for the supervisor to take a duplicate with
    //     pidfd_getfd) uses only calls that neither filter stops.
    if let Some((program, mut channel)) = s.broker.take() {
        let listener = step(Step::InstallBroker, sys::notify::install(&program).map_err(io_errno))?;
        step(Step::InstallBroker, channel.write_all(&listener.as_raw_fd().to_ne_bytes()).map_err(io_errno))?;
        let mut ack = [0u8; 1];
        step(Step::InstallBroker, channel.read_exact(&mut ack).map_err(io_errno))?;
    }
    for program in &s.seccomp {
        step(Step::InstallSeccomp, seccompiler::apply_filter(program).map_err(|e| seccomp_errno(&e)))?;
    }

    // In a PID namespace we are PID 1: fork the server and stay behind as its reaper.
    if s.pid_namespace != PidNamespace::Off {
        match step(Step::ForkServer, sys::fork_into_namespaces(0).map_err(io_errno))? {
            sys::Forked::Parent(server) => reap(Pid::from_raw(server), &s.forwarded),
            sys::Forked::Child => {
                // Our parent is the reaper now; die with it (the kernel also kills the whole
                // namespace when PID 1 exits).
                step(Step::ParentDeathSignal, nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(nix_errno))?;
            }
        }
    }

    // 14. Exec with the explicit argv and environment, signals unblocked.
    step(Step::Sanitize, sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(nix_errno))?;
    let err = nix::unistd::execve(&s.program, &s.argv, &s.env).unwrap_err();
    Err(StepError { step: Step::Exec, errno: err as i32 })
}

fn seccomp_errno(e: &seccompiler::Error) -> i32 {
    match e {
        seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(libc::EINVAL),
        _ => libc::EINVAL,
    }
}

/// PID 1 of the server's namespace: forward the supervisor's signals to every process in the
/// namespace, reap orphans, and exit with the server's status. When we exit, the kernel kills
/// whatever is left in the namespace; when the supervisor dies, our parent-death signal does.
fn reap(server: Pid, forwarded: &SigSet) -> ! {
    // Hold nothing the server's peers wait on: stdio, the error pipe, the supervisor's pidfd.
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
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == server => sys::exit_now(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == server => sys::exit_now(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_round_trip_and_map_exit_codes() {
        for (step, errno, code) in [
            (Step::Exec, libc::ENOENT, 127),
            (Step::Exec, libc::EACCES, 126),
            (Step::RestrictLandlock, libc::EPERM, 125),
            (Step::LandlockNotEnforced, 0, 125),
        ] {
            let e = StepError { step, errno };
            assert_eq!(StepError::from_bytes(&e.to_bytes()), Some(e));
            assert_eq!(e.exit_code(), code);
        }
        assert_eq!(StepError::from_bytes(&[99, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
