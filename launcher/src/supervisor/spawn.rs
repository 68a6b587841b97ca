//! Forking stage 2 from the single-threaded launcher (into a new PID namespace when the plan asks
//! for one), then learning from the error pipe whether it executed the server.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::error::{SupervisorError, sys_err};
use crate::plan::{Layer, Plan};
use crate::profile::Level;
use crate::stage2::{self, Stage2, Step, StepError};
use crate::sys;

/// Stage 2, forked and on its way to exec the server.
pub struct Stage2Child {
    pub pid: Pid,
    /// Read end of the error pipe: EOF when the exec happened, `(step, errno)` when a step failed
    /// (or, for a best-effort step that stage 2 went past, a warning).
    error_pipe: OwnedFd,
    /// The hidden root is required: its failure is never a warning.
    hide_required: bool,
}

/// Forks stage 2, which hardens itself and executes the server; returns in the supervisor only.
/// `error_pipe` is the read end of the pipe whose write end `stage2` carries.
pub fn fork_stage2(plan: &Plan, mut stage2: Stage2, error_pipe: OwnedFd) -> Result<Stage2Child, SupervisorError> {
    // After fork only the forking thread exists in the child: any other thread's locks (the
    // allocator's, tracing's) would stay held forever there.
    let threads = sys::thread_count().map_err(sys_err("count the launcher's threads"))?;
    if threads != 1 {
        return Err(SupervisorError::Threads(threads));
    }
    let ns_flags = plan.namespaces().clone_flags();
    let (forked, in_cgroup) = fork(ns_flags, stage2.cgroup_v2.as_ref())?;
    match forked {
        sys::Forked::Child => {
            drop(error_pipe);
            if let Some((_, index)) = stage2.cgroup_v2.take()
                && in_cgroup
            {
                // Created in it: its `cgroup.procs` is not written (a write would migrate anyway).
                drop(stage2.cgroup_procs.remove(index));
            }
            stage2::run(stage2)
        }
        // `stage2` is dropped on return: the supervisor must not keep the child's ends (the error
        // pipe's write end, whose EOF says the exec happened; the server's MCP pipe ends, whose
        // EOF tells the proxy the server is gone; the broker channel; the cgroup files).
        sys::Forked::Parent(pid) => Ok(Stage2Child {
            pid: Pid::from_raw(pid),
            error_pipe,
            hide_required: plan.level(Layer::FsHide) == Level::Required,
        }),
    }
}

/// Forks into the cgroup v2 directory when there is one (no migration to wait for), else (or if the
/// kernel refuses `clone3` there) plainly, stage 2 then joining through `cgroup.procs`. Returns
/// whether the child was created in the cgroup.
fn fork(ns_flags: libc::c_int, cgroup: Option<&(OwnedFd, usize)>) -> Result<(sys::Forked, bool), SupervisorError> {
    if let Some((dir, _)) = cgroup {
        match sys::fork_into_cgroup(ns_flags, dir.as_fd()) {
            Ok(forked) => return Ok((forked, true)),
            Err(e) => tracing::debug!("clone3 into the cgroup refused ({e}); stage 2 joins it instead"),
        }
    }
    Ok((sys::fork_into_namespaces(ns_flags).map_err(sys_err("fork the sandboxed process"))?, false))
}

impl Stage2Child {
    /// Waits until stage 2 executed the server (the close-on-exec error pipe reaches EOF) and
    /// returns the server's pid. When a step failed, reaps stage 2 and returns the failure;
    /// `listener_error`, when taking the seccomp listener failed, is why stage 2 failed its step,
    /// so it is returned in its place.
    pub fn wait_for_exec(self, listener_error: Option<SupervisorError>) -> Result<Pid, SupervisorError> {
        let warning = |e: &StepError| e.step == Step::HideOutsideGrants && !self.hide_required;
        let Some(err) = read_stage2_error(self.error_pipe, warning) else { return Ok(self.pid) };
        let _ = waitpid(self.pid, None);
        Err(listener_error.unwrap_or(SupervisorError::Stage2(err)))
    }
}

/// Reads the error pipe to EOF: `None` when stage 2 executed the server (close-on-exec closed
/// the pipe), `Some` when it reported a failed step. Reports for which `warning` holds are said on
/// stderr, and the reading goes on.
fn read_stage2_error(pipe: OwnedFd, warning: impl Fn(&StepError) -> bool) -> Option<StepError> {
    let mut file = std::fs::File::from(pipe);
    loop {
        let report = read_report(&mut file)?;
        if !warning(&report) {
            return Some(report);
        }
        tracing::warn!(
            "fs-hide is best-effort and was not applied: {report}; the filesystem view runs without it (stat, readlink and inotify of paths outside the grants answer)"
        );
    }
}

/// One `(step, errno)` record; `None` at EOF.
fn read_report(file: &mut std::fs::File) -> Option<StepError> {
    let mut buf = [0u8; StepError::WIRE_LEN];
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if got == buf.len() { StepError::from_bytes(&buf) } else { None }
}
