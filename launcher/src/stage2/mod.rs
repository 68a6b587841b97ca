//! Stage 2: the forked, single-threaded child that hardens itself step by step and then executes
//! the server. Every fallible piece of work (parsing, path lookups, ruleset and filter
//! compilation, cgroup creation) was done by the supervisor before the fork; what remains here is
//! a system call or a few per step. A failing step reports `(step, errno)` on the error pipe and
//! exits, so a server is never half-started.
//!
//! The checklist: [`harden_and_exec`] makes one call per step, in this order. The numbers are the
//! steps' wire values ([`Step`] is declared in this order; [`Step::checklist`] renders it).
//!
//! 1. `map_user_namespace`: in a new user namespace (an unprivileged launcher's PID namespace or
//!    filesystem view), map our own uid and gid to themselves.
//! 2. `sanitize`: the MCP layer's pipes become stdin and stdout; every other inherited fd is
//!    marked close-on-exec; every signal disposition is reset (the mask stays blocked).
//! 3. `join_cgroups`: through the `cgroup.procs` files the supervisor opened.
//! 4. `hide_outside_grants`: in the new mount namespace, the root becomes a read-only tmpfs
//!    holding only the granted paths (see [`crate::layers::fs_hide`]); when that fails before
//!    `pivot_root` and the layer is best-effort, the failure goes to the supervisor as a warning
//!    and step 5 builds the view instead.
//! 5. `mount_view`: unless step 4 made the hidden root, every mount read-only and `nosuid`, the
//!    write grants bound back writable and `noexec` (see [`crate::layers::fs_view`]).
//! 6. `set_rlimits`: the supervisor's list, `CORE=0` always.
//! 7. `setsid`: a new session, without a controlling terminal.
//! 8. `chdir`: the server's working directory.
//! 9. `drop_bounding_caps`: when `CAP_SETPCAP` is effective.
//! 10. `switch_identity`: `setgroups`, `setresgid`, `setresuid`, when root runs the server as a
//!     user.
//! 11. `clear_caps`: ambient, inheritable, effective and permitted sets.
//! 12. `arm_parent_death_signal`: `PR_SET_PDEATHSIG(SIGKILL)`, then the supervisor's pidfd is
//!     checked; if the supervisor is already gone, stage 2 exits 125 with nobody to tell.
//! 13. `set_no_new_privs`: setuid and file-capability programs gain nothing from here on.
//! 14. `restrict_landlock`: `landlock_restrict_self`, when the plan has a ruleset.
//! 15. `landlock_not_enforced`: step 14's status check: a required ruleset that the kernel
//!     enforced only in part fails here (errno 0).
//! 16. `close_inherited_fds`: every descriptor inherited from the supervisor that stage 2 no
//!     longer needs (its eBPF objects, its logs...) is closed: the server never holds them, and
//!     the listener finds a free slot under a low `RLIMIT_NOFILE`.
//! 17. `hand_over_listener`: the filter with the user-notification listener (refusals recorded by
//!     the supervisor, the network broker's calls): install it, send the listener's fd number to
//!     the supervisor and wait until it holds a duplicate. Done at its place in step 18's order.
//! 18. `install_seccomp`: the filters, in the supervisor's order.
//! 19. `fork_server`: in a PID namespace, fork; the parent stays as PID 1, reaps and exits with
//!     the server's status; the child re-arms its parent-death signal (step 12's number).
//! 20. `unblock_signals`: the empty signal mask.
//! 21. `exec_server`: `execve` with the explicit argv and environment.
//!
//! Every call goes through the [`Kernel`] seam; `run` uses the real kernel, the unit tests a
//! double that records the order.

mod kernel;
#[cfg(test)]
mod recorder;
mod step;
#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use ::landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use seccompiler::BpfProgram;

pub use kernel::{HideFailure, Kernel, Real};
pub use step::{Step, StepError};

use crate::layers::fs_hide::HidePlan;
use crate::layers::fs_view::ViewPlan;
use crate::layers::namespaces::Namespaces;
use crate::layers::seccomp::Filter;
use crate::profile::Level;
use crate::sys::{self, Forked};

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
    /// The cgroup v2 directory stage 2 is created in (`clone3` with `CLONE_INTO_CGROUP`), and the
    /// index of its `cgroup.procs` in `cgroup_procs`, which is then not written (nor needed).
    pub cgroup_v2: Option<(OwnedFd, usize)>,
    /// The namespaces the supervisor forked stage 2 into.
    pub namespaces: Namespaces,
    /// The filesystem view's mounts (applied when `namespaces.mount` and the root is not hidden).
    pub view: ViewPlan,
    /// The hidden root and its requirement (applied first when `namespaces.mount`).
    pub hide: Option<(HidePlan, Level)>,
    pub landlock: Option<(RulesetCreated, Level)>,
    /// The seccomp filters in install order; at most one carries a listener.
    pub seccomp: Vec<Filter>,
    /// What becomes the server's stdin, stdout and stderr (`None`: inherited): the MCP layer's
    /// pipes, or pipes relaying a client's file or terminal.
    pub stdio: [Option<OwnedFd>; 3],
    /// The channel the listener goes to the supervisor through (with a listener filter).
    pub listener_channel: Option<UnixStream>,
    /// The signals the supervisor blocked before the fork and forwards.
    pub forwarded: SigSet,
    /// pidfd of the supervisor, to detect that it died before the parent-death signal was armed.
    pub supervisor: OwnedFd,
    /// Write end of the error pipe (close-on-exec: EOF tells the supervisor the exec happened).
    pub error_pipe: OwnedFd,
}

/// The status stage 2 leaves with when the supervisor died before the parent-death signal was
/// armed (nobody reads it; the server never starts).
const SUPERVISOR_GONE: i32 = 125;

/// How [`harden_and_exec`] ends when no step failed.
#[derive(Debug, PartialEq, Eq)]
enum Outcome<E> {
    /// The server was executed. Only a double's `exec` returns: the real one replaces the process.
    Executed(E),
    /// Exit quietly with this status: the supervisor is gone, or this process was the PID-1
    /// reaper and the server has exited.
    Exit(i32),
}

/// Runs stage 2 in the forked child. Never returns.
pub fn run(mut s: Stage2) -> ! {
    match harden_and_exec(&mut Real, &mut s) {
        Ok(Outcome::Executed(never)) => match never {},
        // Leave without dropping anything: the reaper has closed every descriptor already.
        Ok(Outcome::Exit(status)) => sys::exit_now(status),
        Err(err) => {
            // If the supervisor is gone there is nobody to tell; exit either way.
            let _ = File::from(s.error_pipe).write_all(&err.to_bytes());
            sys::exit_now(err.exit_code())
        }
    }
}

/// The hardening sequence: one call per step of the checklist above, each with the reason for its
/// place. Conditional steps decide inside whether they apply.
fn harden_and_exec<K: Kernel>(k: &mut K, s: &mut Stage2) -> Result<Outcome<K::Executed>, StepError> {
    // First: until the ids are mapped we are `nobody` in the new user namespace and can join nothing.
    map_user_namespace(k, s)?;
    // Before anything else touches fds or signals: the server inherits stdio and default dispositions.
    sanitize(k, s)?;
    // Early: from here on everything we do counts against the server's cgroup and its probes see it.
    join_cgroups(k, s)?;
    // While we hold CAP_SYS_ADMIN over the new mount namespace, before Landlock forbids mounts, and
    // before the rlimits (the grants' clones are descriptors: a low RLIMIT_NOFILE must not stop it).
    let hidden = hide_outside_grants(k, s)?;
    // Only where the hidden root was not made (no such plan, or a best-effort one that failed).
    if !hidden {
        mount_view(k, s)?;
    }
    // While still privileged: after the identity switch, nobody should raise them back.
    set_rlimits(k, s)?;
    // Before seccomp, which need not allow it: no controlling terminal, so TIOCSTI has no target.
    setsid(k)?;
    // Before the identity switch and Landlock: the path resolves with the launcher's own rights.
    chdir(k, s)?;
    // Needs CAP_SETPCAP, so before the identity switch takes it away.
    drop_bounding_caps(k)?;
    // Groups, then gid, then uid: after setresuid neither could change.
    switch_identity(k, s)?;
    // After the switch, which needed CAP_SETUID/CAP_SETGID; a root server keeps uid 0, no capability.
    clear_caps(k)?;
    // After the identity switch, which clears the parent-death signal; then check nobody died meanwhile.
    if let ControlFlow::Break(status) = arm_parent_death_signal(k, s)? {
        return Ok(Outcome::Exit(status));
    }
    // Before Landlock and seccomp: an unprivileged process may use neither without it.
    set_no_new_privs(k)?;
    // After everything that needs the filesystem unrestricted (the /proc writes, chdir).
    restrict_landlock(k, s)?;
    // After Landlock consumed its ruleset; before the listener needs a descriptor of its own.
    close_inherited_fds(k, s)?;
    // Last hardening step, so the filters need not allow any set-up syscall above; the listener
    // must reach the supervisor before exec.
    install_seccomp(k, s)?;
    // After every filter, so the reaper and the server both run under all of them.
    if let ControlFlow::Break(status) = fork_server(k, s)? {
        return Ok(Outcome::Exit(status));
    }
    // Just before exec: a signal forwarded during set-up waits for the server instead of killing us.
    unblock_signals(k)?;
    // Success replaces the process; the close-on-exec error pipe then tells the supervisor.
    exec_server(k, s).map(Outcome::Executed)
}

/// Tags a failed call with its step.
fn at(step: Step) -> impl Fn(Errno) -> StepError + Copy {
    move |errno| StepError { step, errno: errno as i32 }
}

fn map_user_namespace<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    if !s.namespaces.user {
        return Ok(());
    }
    let (uid, gid) = s.own_ids;
    k.map_user_namespace(uid, gid).map_err(at(Step::MapUserNamespace))
}

/// Every fd above stdio is marked close-on-exec rather than closed: the error pipe and the
/// Landlock ruleset must stay usable until exec. Ignored signals would survive exec.
fn sanitize<K: Kernel>(k: &mut K, s: &mut Stage2) -> Result<(), StepError> {
    let failed = at(Step::Sanitize);
    if s.stdio.iter().any(Option::is_some) {
        k.redirect_stdio(std::mem::take(&mut s.stdio)).map_err(failed)?;
    }
    k.mark_inherited_fds_cloexec().map_err(failed)?;
    k.reset_signal_dispositions().map_err(failed)
}

fn join_cgroups<K: Kernel>(k: &mut K, s: &mut Stage2) -> Result<(), StepError> {
    s.cgroup_procs.iter_mut().try_for_each(|procs| k.join_cgroup(procs)).map_err(at(Step::JoinCgroups))?;
    s.cgroup_procs.clear(); // closed: step 15 keeps only what is still to be used
    Ok(())
}

fn set_rlimits<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    k.set_rlimits(&s.rlimits).map_err(at(Step::SetRlimits))
}

/// `Ok(true)` when the root is now hidden. A failure is reported as a warning (and the view built
/// instead) only when the layer is best-effort and the failure left the namespace as it was.
fn hide_outside_grants<K: Kernel>(k: &mut K, s: &Stage2) -> Result<bool, StepError> {
    let Some((hide, level)) = s.hide.as_ref().filter(|_| s.namespaces.mount) else { return Ok(false) };
    let Err(failure) = k.hide_outside_grants(hide) else { return Ok(true) };
    let error = at(Step::HideOutsideGrants)(failure.errno);
    if !failure.undone || *level == Level::Required {
        return Err(error);
    }
    k.report_warning(s.error_pipe.as_fd(), error).map_err(at(Step::HideOutsideGrants))?;
    Ok(false)
}

fn mount_view<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    if !s.namespaces.mount {
        return Ok(());
    }
    k.mount_view(&s.view).map_err(at(Step::MountView))
}

fn setsid<K: Kernel>(k: &mut K) -> Result<(), StepError> {
    k.setsid().map_err(at(Step::Setsid))
}

fn chdir<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    k.chdir(&s.cwd).map_err(at(Step::Chdir))
}

/// Skipped without CAP_SETPCAP (an unprivileged launcher without a user namespace): there are
/// no capabilities to keep, and no_new_privs stops file capabilities on exec.
fn drop_bounding_caps<K: Kernel>(k: &mut K) -> Result<(), StepError> {
    if !k.can_drop_bounding_set() {
        return Ok(());
    }
    k.drop_bounding_set().map_err(at(Step::DropBoundingCaps))
}

fn switch_identity<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    let Some((uid, gid)) = s.switch_to else { return Ok(()) };
    k.switch_identity(uid, gid).map_err(at(Step::SwitchIdentity))
}

fn clear_caps<K: Kernel>(k: &mut K) -> Result<(), StepError> {
    k.clear_caps().map_err(at(Step::ClearCaps))
}

/// If the supervisor died before this point, nothing would deliver the signal: check its pidfd
/// (`getppid()` says nothing inside a PID namespace) and stop if it is gone.
fn arm_parent_death_signal<K: Kernel>(k: &mut K, s: &Stage2) -> Result<ControlFlow<i32>, StepError> {
    let failed = at(Step::ArmParentDeathSignal);
    k.set_parent_death_signal().map_err(failed)?;
    match k.process_exited(s.supervisor.as_fd()).map_err(failed)? {
        true => Ok(ControlFlow::Break(SUPERVISOR_GONE)),
        false => Ok(ControlFlow::Continue(())),
    }
}

/// setuid and file-capability programs gain nothing from here on.
fn set_no_new_privs<K: Kernel>(k: &mut K) -> Result<(), StepError> {
    k.set_no_new_privs().map_err(at(Step::SetNoNewPrivs))
}

/// The status is checked, not assumed: a required ruleset must be enforced in full.
fn restrict_landlock<K: Kernel>(k: &mut K, s: &mut Stage2) -> Result<(), StepError> {
    let Some((ruleset, level)) = s.landlock.take() else { return Ok(()) };
    match k.restrict_landlock(ruleset, level).map_err(at(Step::RestrictLandlock))? {
        true => Ok(()),
        false => Err(StepError { step: Step::LandlockNotEnforced, errno: 0 }),
    }
}

/// What stage 2 still uses from here on: the error pipe, the supervisor's pidfd and the listener
/// channel. Everything else it holds was dropped already (the ruleset, the cgroup files, the view's
/// clones), so no Rust object owns a descriptor this closes.
fn close_inherited_fds<K: Kernel>(k: &mut K, s: &Stage2) -> Result<(), StepError> {
    let mut keep = vec![s.error_pipe.as_raw_fd(), s.supervisor.as_raw_fd()];
    keep.extend(s.listener_channel.as_ref().map(|c| c.as_raw_fd()));
    k.close_inherited_fds(&keep).map_err(at(Step::CloseInheritedFds))
}

/// The filters in the supervisor's order (it puts a filter that may refuse `seccomp()` after the
/// others).
fn install_seccomp<K: Kernel>(k: &mut K, s: &mut Stage2) -> Result<(), StepError> {
    for filter in std::mem::take(&mut s.seccomp) {
        match filter {
            Filter::Plain(program) => k.install_seccomp(&program).map_err(at(Step::InstallSeccomp))?,
            Filter::Listener(program) => hand_over_listener(k, s, &program)?,
        }
    }
    Ok(())
}

/// The handshake (write the fd number, wait for the supervisor to take a duplicate with
/// `pidfd_getfd`) uses only calls no filter stops. Our copy of the listener and the channel are
/// closed afterwards.
fn hand_over_listener<K: Kernel>(k: &mut K, s: &mut Stage2, program: &BpfProgram) -> Result<(), StepError> {
    let failed = at(Step::HandOverListener);
    let mut channel =
        s.listener_channel.take().ok_or(StepError { step: Step::HandOverListener, errno: libc::EINVAL })?;
    let listener = k.install_listener_filter(program).map_err(failed)?;
    k.send_listener(&mut channel, listener.as_fd()).map_err(failed)?;
    k.await_ack(&mut channel).map_err(failed)
}

/// In a PID namespace stage 2 is PID 1: it forks the server and stays behind as its reaper
/// (`Break` with the server's status). The server's parent is then the reaper: it re-arms its
/// parent-death signal to die with it (the kernel also kills the namespace when PID 1 exits).
fn fork_server<K: Kernel>(k: &mut K, s: &Stage2) -> Result<ControlFlow<i32>, StepError> {
    if !s.namespaces.pid {
        return Ok(ControlFlow::Continue(()));
    }
    match k.fork().map_err(at(Step::ForkServer))? {
        Forked::Parent(server) => Ok(ControlFlow::Break(k.reap(Pid::from_raw(server), &s.forwarded))),
        Forked::Child => {
            k.set_parent_death_signal().map_err(at(Step::ArmParentDeathSignal))?;
            Ok(ControlFlow::Continue(()))
        }
    }
}

fn unblock_signals<K: Kernel>(k: &mut K) -> Result<(), StepError> {
    k.unblock_signals().map_err(at(Step::UnblockSignals))
}

fn exec_server<K: Kernel>(k: &mut K, s: &Stage2) -> Result<K::Executed, StepError> {
    k.exec(&s.program, &s.argv, &s.env).map_err(at(Step::Exec))
}
