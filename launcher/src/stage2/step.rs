//! Stage 2's steps, declared once and in order: the wire number, the name and the "failed to ..."
//! text of each step all come from this declaration, and [`StepError`] is what a failing step
//! sends the supervisor.

use strum::{EnumMessage, FromRepr, IntoStaticStr, VariantArray};

/// The steps of stage 2, in the order [`super::harden_and_exec`] runs them. A step's number (its
/// wire value, and its number in the checklist) is its position, counting from 1; its name is the
/// function that runs it; its message completes "failed to ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRepr, VariantArray, IntoStaticStr, EnumMessage)]
#[strum(serialize_all = "snake_case")]
#[repr(u32)]
pub enum Step {
    #[strum(message = "map the user namespace's uid and gid")]
    MapUserNamespace = 1,
    #[strum(message = "sanitize inherited file descriptors and signals")]
    Sanitize,
    #[strum(message = "join the server's cgroups")]
    JoinCgroups,
    #[strum(message = "hide the host's tree (a tmpfs root holding only the granted paths)")]
    HideOutsideGrants,
    #[strum(message = "build the filesystem view (read-only mounts, writable noexec grants)")]
    MountView,
    #[strum(message = "set resource limits")]
    SetRlimits,
    #[strum(message = "start a new session (setsid)")]
    Setsid,
    #[strum(message = "change to the working directory")]
    Chdir,
    #[strum(message = "drop the capability bounding set")]
    DropBoundingCaps,
    #[strum(message = "switch user and group")]
    SwitchIdentity,
    #[strum(message = "clear capabilities")]
    ClearCaps,
    #[strum(message = "arm the parent-death signal")]
    ArmParentDeathSignal,
    #[strum(message = "set no_new_privs")]
    SetNoNewPrivs,
    #[strum(message = "enforce the Landlock ruleset")]
    RestrictLandlock,
    #[strum(message = "enforce Landlock in full (the kernel enforced only part of the ruleset)")]
    LandlockNotEnforced,
    #[strum(message = "close the file descriptors inherited from the supervisor")]
    CloseInheritedFds,
    #[strum(message = "hand the seccomp listener to the supervisor")]
    HandOverListener,
    #[strum(message = "install the seccomp filter")]
    InstallSeccomp,
    #[strum(message = "fork the server under the PID-1 reaper")]
    ForkServer,
    #[strum(message = "unblock signals")]
    UnblockSignals,
    #[strum(serialize = "exec_server", message = "execute the server")]
    Exec,
}

impl Step {
    /// Every step, in declaration order (derived: there is no second list to keep).
    pub const ALL: &'static [Step] = <Step as VariantArray>::VARIANTS;

    /// The step with this wire number.
    pub fn from_u32(v: u32) -> Option<Step> {
        Step::from_repr(v)
    }

    /// The wire number, which is also the step's number in the checklist.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The stage-2 function that runs the step (`restrict_landlock`, `exec_server`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// "failed to <this>".
    pub fn describe(self) -> &'static str {
        // Every variant has a message (a unit test checks); the fallback only keeps this total.
        self.get_message().unwrap_or("complete a hardening step")
    }

    /// The checklist, one line per step: `<number>. <name>: <description>`. The `//!` list of
    /// [`super`] and the architecture document's table are checked against it.
    pub fn checklist() -> String {
        Step::ALL.iter().map(|s| format!("{}. {}: {}\n", s.number(), s.name(), s.describe())).collect()
    }
}

/// A failed step, as stage 2 reports it: which step, and the errno the kernel returned (0 for
/// [`Step::LandlockNotEnforced`], which is a status, not a failed call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("failed to {}: errno {errno}", step.describe())]
pub struct StepError {
    pub step: Step,
    pub errno: i32,
}

impl StepError {
    pub const WIRE_LEN: usize = 8;

    pub fn to_bytes(self) -> [u8; Self::WIRE_LEN] {
        let mut b = [0u8; Self::WIRE_LEN];
        b[..4].copy_from_slice(&self.step.number().to_le_bytes());
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
