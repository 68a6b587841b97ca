//! The seam between stage 2's checklist and the kernel: one method per operation stage 2 performs,
//! and [`Real`], which makes the calls (through nix, rustix, landlock, seccompiler, the layer
//! files and [`crate::sys`]). Unit tests drive the same checklist with a double that records every
//! call in one ordered list (`recorder.rs`), so they can assert the order without hardening, forking
//! or executing anything.
//!
//! Every method returns the kernel's errno unchanged; nothing here turns one failure into another.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use ::landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::Pid;
use seccompiler::{BpfProgram, sock_filter};

use crate::layers::fs_hide::{self, HidePlan};
use crate::layers::fs_view::{self, ViewPlan};
use crate::layers::{capabilities, identity, landlock, namespaces, rlimits};
use crate::profile::Level;
use crate::stage2::StepError;
use crate::sys::{self, Forked};

/// The operations of stage 2, in the order [`super::harden_and_exec`] calls them.
pub trait Kernel {
    /// What a successful [`Kernel::exec`] returns: nothing at all for the real kernel (`execve`
    /// replaces the process), `()` for a double.
    type Executed;

    /// Writes `setgroups`, `uid_map` and `gid_map` of the new user namespace.
    fn map_user_namespace(&mut self, uid: u32, gid: u32) -> Result<(), Errno>;
    /// Makes the MCP layer's pipes fds 0 and 1.
    /// Puts each given descriptor in place of stdin, stdout and stderr (in that order).
    fn redirect_stdio(&mut self, stdio: [Option<OwnedFd>; 3]) -> Result<(), Errno>;
    /// Marks every fd from 3 upwards close-on-exec.
    fn mark_inherited_fds_cloexec(&mut self) -> Result<(), Errno>;
    /// Closes every descriptor above stdio except `keep`.
    fn close_inherited_fds(&mut self, keep: &[RawFd]) -> Result<(), Errno>;
    /// Resets every catchable signal to its default disposition.
    fn reset_signal_dispositions(&mut self) -> Result<(), Errno>;
    /// Moves this process into a cgroup through its pre-opened `cgroup.procs`.
    fn join_cgroup(&mut self, procs: &mut File) -> Result<(), Errno>;
    fn set_rlimits(&mut self, limits: &[(Resource, u64)]) -> Result<(), Errno>;
    /// Replaces the root of the new mount namespace with the hidden root.
    fn hide_outside_grants(&mut self, hide: &HidePlan) -> Result<(), HideFailure>;
    /// Sends a best-effort step's failure to the supervisor, which reports it and goes on waiting.
    fn report_warning(&mut self, pipe: BorrowedFd<'_>, warning: StepError) -> Result<(), Errno>;
    /// Builds the filesystem view in the new mount namespace.
    fn mount_view(&mut self, view: &ViewPlan) -> Result<(), Errno>;
    fn setsid(&mut self) -> Result<(), Errno>;
    fn chdir(&mut self, dir: &CStr) -> Result<(), Errno>;
    /// Is `CAP_SETPCAP` effective (else the bounding set cannot be, and need not be, dropped)?
    fn can_drop_bounding_set(&mut self) -> bool;
    fn drop_bounding_set(&mut self) -> Result<(), Errno>;
    /// `setgroups`, `setresgid`, `setresuid`.
    fn switch_identity(&mut self, uid: u32, gid: u32) -> Result<(), Errno>;
    /// Clears the ambient, inheritable, effective and permitted sets.
    fn clear_caps(&mut self) -> Result<(), Errno>;
    /// `PR_SET_PDEATHSIG(SIGKILL)`.
    fn set_parent_death_signal(&mut self) -> Result<(), Errno>;
    /// Has the process behind `pidfd` exited?
    fn process_exited(&mut self, pidfd: BorrowedFd<'_>) -> Result<bool, Errno>;
    fn set_no_new_privs(&mut self) -> Result<(), Errno>;
    /// `landlock_restrict_self`; `Ok(false)` when the kernel enforced less than `level` requires.
    fn restrict_landlock(&mut self, ruleset: RulesetCreated, level: Level) -> Result<bool, Errno>;
    /// Installs the filter that carries the user-notification listener and returns the listener.
    fn install_listener_filter(&mut self, program: &[sock_filter]) -> Result<OwnedFd, Errno>;
    /// Tells the supervisor the listener's fd number, for `pidfd_getfd`.
    fn send_listener(&mut self, channel: &mut UnixStream, listener: BorrowedFd<'_>) -> Result<(), Errno>;
    /// Waits until the supervisor says it holds a duplicate of the listener.
    fn await_ack(&mut self, channel: &mut UnixStream) -> Result<(), Errno>;
    fn install_seccomp(&mut self, program: &BpfProgram) -> Result<(), Errno>;
    fn fork(&mut self) -> Result<Forked, Errno>;
    /// Runs PID 1's reaper loop until `server` is gone; returns the status to exit with.
    fn reap(&mut self, server: Pid, forwarded: &SigSet) -> i32;
    /// Sets the empty signal mask.
    fn unblock_signals(&mut self) -> Result<(), Errno>;
    fn exec(&mut self, program: &CStr, argv: &[CString], env: &[CString]) -> Result<Self::Executed, Errno>;
}

/// A failed hidden root: the kernel's errno, and whether the mount namespace is as it was (the
/// failure came before `pivot_root`), so that the view can still be built instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HideFailure {
    pub errno: Errno,
    pub undone: bool,
}

/// The kernel itself.
#[derive(Debug, Default)]
pub struct Real;

impl Kernel for Real {
    type Executed = std::convert::Infallible;

    fn map_user_namespace(&mut self, uid: u32, gid: u32) -> Result<(), Errno> {
        namespaces::map_own_ids(uid, gid).map_err(io_errno)
    }

    fn redirect_stdio(&mut self, stdio: [Option<OwnedFd>; 3]) -> Result<(), Errno> {
        let [stdin, stdout, stderr] = stdio;
        stdin.map_or(Ok(()), |fd| nix::unistd::dup2_stdin(&fd))?;
        stdout.map_or(Ok(()), |fd| nix::unistd::dup2_stdout(&fd))?;
        stderr.map_or(Ok(()), |fd| nix::unistd::dup2_stderr(&fd))
    }

    fn mark_inherited_fds_cloexec(&mut self) -> Result<(), Errno> {
        sys::cloexec_from(3).map_err(io_errno)
    }

    fn close_inherited_fds(&mut self, keep: &[RawFd]) -> Result<(), Errno> {
        sys::close_all_but(keep).map_err(io_errno)
    }

    fn reset_signal_dispositions(&mut self) -> Result<(), Errno> {
        sys::reset_signal_dispositions().map_err(io_errno)
    }

    fn join_cgroup(&mut self, procs: &mut File) -> Result<(), Errno> {
        // "0" means the writing process.
        procs.write_all(b"0").map_err(io_errno)
    }

    fn set_rlimits(&mut self, limits: &[(Resource, u64)]) -> Result<(), Errno> {
        rlimits::set_all(limits)
    }

    fn hide_outside_grants(&mut self, hide: &HidePlan) -> Result<(), HideFailure> {
        fs_hide::apply(hide).map_err(|f| HideFailure { errno: io_errno(f.error), undone: f.undone })
    }

    fn report_warning(&mut self, pipe: BorrowedFd<'_>, warning: StepError) -> Result<(), Errno> {
        nix::unistd::write(pipe, &warning.to_bytes()).map(drop)
    }

    fn mount_view(&mut self, view: &ViewPlan) -> Result<(), Errno> {
        fs_view::apply(view).map_err(io_errno)
    }

    fn setsid(&mut self) -> Result<(), Errno> {
        nix::unistd::setsid().map(drop)
    }

    fn chdir(&mut self, dir: &CStr) -> Result<(), Errno> {
        nix::unistd::chdir(dir)
    }

    fn can_drop_bounding_set(&mut self) -> bool {
        capabilities::can_drop_bounding_set()
    }

    fn drop_bounding_set(&mut self) -> Result<(), Errno> {
        capabilities::drop_bounding_set().map_err(rustix_errno)
    }

    fn switch_identity(&mut self, uid: u32, gid: u32) -> Result<(), Errno> {
        identity::switch_to(uid, gid)
    }

    fn clear_caps(&mut self) -> Result<(), Errno> {
        capabilities::clear_all().map_err(rustix_errno)
    }

    fn set_parent_death_signal(&mut self) -> Result<(), Errno> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
    }

    fn process_exited(&mut self, pidfd: BorrowedFd<'_>) -> Result<bool, Errno> {
        sys::pidfd_exited(pidfd).map_err(io_errno)
    }

    fn set_no_new_privs(&mut self) -> Result<(), Errno> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn restrict_landlock(&mut self, ruleset: RulesetCreated, level: Level) -> Result<bool, Errno> {
        let status = landlock::restrict(ruleset).map_err(io_errno)?;
        Ok(landlock::satisfies(&status, level))
    }

    fn install_listener_filter(&mut self, program: &[sock_filter]) -> Result<OwnedFd, Errno> {
        sys::notify::install(program).map_err(io_errno)
    }

    fn send_listener(&mut self, channel: &mut UnixStream, listener: BorrowedFd<'_>) -> Result<(), Errno> {
        // `write`, not the `sendto` std's socket writes make: a learning run's listener filter
        // hands every `sendto` to the supervisor, which is waiting for these very bytes.
        let bytes = listener.as_raw_fd().to_ne_bytes();
        match rustix::io::write(&*channel, &bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(Errno::EIO),
            Err(e) => Err(Errno::from_raw(e.raw_os_error())),
        }
    }

    fn await_ack(&mut self, channel: &mut UnixStream) -> Result<(), Errno> {
        let mut ack = [0u8; 1];
        channel.read_exact(&mut ack).map_err(io_errno)
    }

    fn install_seccomp(&mut self, program: &BpfProgram) -> Result<(), Errno> {
        seccompiler::apply_filter(program).map_err(seccomp_errno)
    }

    fn fork(&mut self) -> Result<Forked, Errno> {
        namespaces::fork_server().map_err(io_errno)
    }

    fn reap(&mut self, server: Pid, forwarded: &SigSet) -> i32 {
        namespaces::reap(server, forwarded)
    }

    fn unblock_signals(&mut self) -> Result<(), Errno> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
    }

    fn exec(&mut self, program: &CStr, argv: &[CString], env: &[CString]) -> Result<Self::Executed, Errno> {
        nix::unistd::execve(program, argv, env)
    }
}

/// The errno of an I/O error. The few that carry none did not come from a failed system call: a
/// broker channel the supervisor closed reads as end-of-file; those report `EIO`.
fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn rustix_errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// The errno of the failed `prctl(PR_SET_NO_NEW_PRIVS)` or `seccomp` call. `EmptyFilter` makes no
/// call (seccompiler refuses an empty program before the kernel sees it): `EINVAL`, which is what
/// the kernel answers for an empty program. The other variants come from compilation and TSYNC,
/// which `apply_filter` does not do.
fn seccomp_errno(e: seccompiler::Error) -> Errno {
    match e {
        seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => io_errno(io),
        _ => Errno::EINVAL,
    }
}
