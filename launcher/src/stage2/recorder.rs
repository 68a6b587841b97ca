//! The test double of [`Kernel`]: every call is appended to ONE ordered list, whatever its kind,
//! so a test can assert "rlimits, bounding set, identity, pdeathsig, nnp, landlock, seccomp" as a
//! sequence. It can be told to fail the first call of a given kind with a given errno. It changes
//! nothing in the test process: no fork, no exec, no filter.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use ::landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use seccompiler::{BpfProgram, sock_filter};

use super::StepError;
use super::kernel::HideFailure;
use super::kernel::Kernel;
use crate::layers::fs_hide::HidePlan;
use crate::layers::fs_view::ViewPlan;
use crate::profile::Level;
use crate::sys::Forked;

/// One call, with the arguments a test may want to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    MapUserNamespace {
        uid: u32,
        gid: u32,
    },
    RedirectStdio,
    MarkInheritedFdsCloexec,
    /// How many descriptors were kept.
    CloseInheritedFds {
        kept: usize,
    },
    ResetSignalDispositions,
    JoinCgroup,
    SetRlimits(Vec<(Resource, u64)>),
    HideOutsideGrants {
        binds: usize,
    },
    ReportWarning(StepError),
    MountView {
        binds: usize,
    },
    Setsid,
    Chdir(CString),
    CanDropBoundingSet,
    DropBoundingSet,
    SwitchIdentity {
        uid: u32,
        gid: u32,
    },
    ClearCaps,
    SetParentDeathSignal,
    ProcessExited,
    SetNoNewPrivs,
    RestrictLandlock(Level),
    InstallListenerFilter,
    SendListener,
    AwaitAck,
    InstallSeccomp {
        instructions: usize,
    },
    Fork,
    Reap {
        server: i32,
    },
    UnblockSignals,
    Exec(CString),
}

impl Op {
    /// Same kind of call, whatever the arguments.
    pub fn is(&self, other: &Op) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// The recording double, with the answers of its queries.
#[derive(Debug)]
pub struct Recorder {
    pub ops: Vec<Op>,
    /// Fail a call of this kind (the arguments are ignored) with this errno, after letting the
    /// given number of such calls succeed.
    pub fail: Option<(Op, usize, Errno)>,
    /// Whether `CAP_SETPCAP` is effective.
    pub may_drop_bounding_set: bool,
    /// Whether the supervisor is already gone when its pidfd is checked.
    pub supervisor_exited: bool,
    /// Whether the kernel enforced the Landlock ruleset as far as the level requires.
    pub landlock_satisfied: bool,
    /// Which side of the fork the double continues as.
    pub forked: Forked,
    /// The status the reaper returns.
    pub server_status: i32,
    /// A failing hidden root had already replaced the root (it cannot be undone).
    pub hide_broken: bool,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ops: Vec::new(),
            fail: None,
            may_drop_bounding_set: true,
            supervisor_exited: false,
            landlock_satisfied: true,
            forked: Forked::Child,
            server_status: 0,
            hide_broken: false,
        }
    }
}

impl Recorder {
    /// A double that fails call number `nth` (from 0) of `op`'s kind with `errno`.
    pub fn failing(op: Op, nth: usize, errno: Errno) -> Self {
        Recorder { fail: Some((op, nth, errno)), ..Recorder::default() }
    }

    fn record(&mut self, op: Op) -> Result<(), Errno> {
        let failure = match &mut self.fail {
            Some((kind, 0, errno)) if kind.is(&op) => Some(*errno),
            Some((kind, before, _)) if kind.is(&op) => {
                *before -= 1;
                None
            }
            _ => None,
        };
        self.ops.push(op);
        match failure {
            Some(errno) => {
                self.fail = None;
                Err(errno)
            }
            None => Ok(()),
        }
    }

    /// Where the first call of `op`'s kind is in the list.
    pub fn position(&self, op: &Op) -> Option<usize> {
        self.ops.iter().position(|o| o.is(op))
    }
}

/// A descriptor to hand back where the kernel would create one.
fn dev_null() -> Result<OwnedFd, Errno> {
    File::open("/dev/null").map(OwnedFd::from).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

impl Kernel for Recorder {
    type Executed = ();

    fn map_user_namespace(&mut self, uid: u32, gid: u32) -> Result<(), Errno> {
        self.record(Op::MapUserNamespace { uid, gid })
    }
    fn redirect_stdio(&mut self, _stdio: [Option<OwnedFd>; 3]) -> Result<(), Errno> {
        self.record(Op::RedirectStdio)
    }
    fn mark_inherited_fds_cloexec(&mut self) -> Result<(), Errno> {
        self.record(Op::MarkInheritedFdsCloexec)
    }
    fn close_inherited_fds(&mut self, keep: &[std::os::fd::RawFd]) -> Result<(), Errno> {
        self.record(Op::CloseInheritedFds { kept: keep.len() })
    }
    fn reset_signal_dispositions(&mut self) -> Result<(), Errno> {
        self.record(Op::ResetSignalDispositions)
    }
    fn join_cgroup(&mut self, _procs: &mut File) -> Result<(), Errno> {
        self.record(Op::JoinCgroup)
    }
    fn set_rlimits(&mut self, limits: &[(Resource, u64)]) -> Result<(), Errno> {
        self.record(Op::SetRlimits(limits.to_vec()))
    }

    fn hide_outside_grants(&mut self, hide: &HidePlan) -> Result<(), HideFailure> {
        let undone = !self.hide_broken;
        self.record(Op::HideOutsideGrants { binds: hide.view.binds.len() })
            .map_err(|errno| HideFailure { errno, undone })
    }
    fn report_warning(&mut self, _pipe: BorrowedFd<'_>, warning: StepError) -> Result<(), Errno> {
        self.record(Op::ReportWarning(warning))
    }
    fn mount_view(&mut self, view: &ViewPlan) -> Result<(), Errno> {
        self.record(Op::MountView { binds: view.binds.len() })
    }
    fn setsid(&mut self) -> Result<(), Errno> {
        self.record(Op::Setsid)
    }
    fn chdir(&mut self, dir: &CStr) -> Result<(), Errno> {
        self.record(Op::Chdir(dir.to_owned()))
    }
    fn can_drop_bounding_set(&mut self) -> bool {
        self.ops.push(Op::CanDropBoundingSet);
        self.may_drop_bounding_set
    }
    fn drop_bounding_set(&mut self) -> Result<(), Errno> {
        self.record(Op::DropBoundingSet)
    }
    fn switch_identity(&mut self, uid: u32, gid: u32) -> Result<(), Errno> {
        self.record(Op::SwitchIdentity { uid, gid })
    }
    fn clear_caps(&mut self) -> Result<(), Errno> {
        self.record(Op::ClearCaps)
    }
    fn set_parent_death_signal(&mut self) -> Result<(), Errno> {
        self.record(Op::SetParentDeathSignal)
    }
    fn process_exited(&mut self, _pidfd: BorrowedFd<'_>) -> Result<bool, Errno> {
        self.record(Op::ProcessExited).map(|()| self.supervisor_exited)
    }
    fn set_no_new_privs(&mut self) -> Result<(), Errno> {
        self.record(Op::SetNoNewPrivs)
    }
    fn restrict_landlock(&mut self, _ruleset: RulesetCreated, level: Level) -> Result<bool, Errno> {
        self.record(Op::RestrictLandlock(level)).map(|()| self.landlock_satisfied)
    }
    fn install_listener_filter(&mut self, _program: &[sock_filter]) -> Result<OwnedFd, Errno> {
        self.record(Op::InstallListenerFilter).and_then(|()| dev_null())
    }
    fn send_listener(&mut self, _channel: &mut UnixStream, _listener: BorrowedFd<'_>) -> Result<(), Errno> {
        self.record(Op::SendListener)
    }
    fn await_ack(&mut self, _channel: &mut UnixStream) -> Result<(), Errno> {
        self.record(Op::AwaitAck)
    }
    fn install_seccomp(&mut self, program: &BpfProgram) -> Result<(), Errno> {
        self.record(Op::InstallSeccomp { instructions: program.len() })
    }
    fn fork(&mut self) -> Result<Forked, Errno> {
        self.record(Op::Fork).map(|()| self.forked)
    }
    fn reap(&mut self, server: Pid, _forwarded: &SigSet) -> i32 {
        self.ops.push(Op::Reap { server: server.as_raw() });
        self.server_status
    }
    fn unblock_signals(&mut self) -> Result<(), Errno> {
        self.record(Op::UnblockSignals)
    }
    fn exec(&mut self, program: &CStr, _argv: &[CString], _env: &[CString]) -> Result<(), Errno> {
        self.record(Op::Exec(program.to_owned()))
    }
}
