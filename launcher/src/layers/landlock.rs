//! The Landlock layer: filesystem rights per path, TCP bind/connect ports, and scoping of abstract
//! unix sockets and signals. The ruleset is built (every path opened) in the supervisor before the
//! fork, so a missing path fails there; stage 2 only calls `restrict_self`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::profile::Level;

/// The Landlock feature level requested (see [`crate::host::LANDLOCK_TARGET_ABI`]).
const TARGET: ABI = ABI::V6;

/// The rights a path is granted. `write` does not imply `exec`: a directory the server can write
/// into is not one it can run programs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FsAccess {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl FsAccess {
    pub const READ: FsAccess = FsAccess { read: true, write: false, exec: false };
    pub const WRITE: FsAccess = FsAccess { read: true, write: true, exec: false };
    pub const EXEC: FsAccess = FsAccess { read: true, write: false, exec: true };

    pub fn union(self, o: FsAccess) -> FsAccess {
        FsAccess { read: self.read || o.read, write: self.write || o.write, exec: self.exec || o.exec }
    }

    /// Does `self` cover everything `o` grants?
    pub fn covers(self, o: FsAccess) -> bool {
        self.union(o) == self
    }

    fn rights(self, is_dir: bool) -> BitFlags<AccessFs> {
        let mut r = BitFlags::empty();
        if self.read {
            r |= AccessFs::ReadFile | AccessFs::ReadDir;
        }
        if self.write {
            // Not MakeChar/MakeBlock (device nodes) nor IoctlDev: no profile needs them.
            r |= AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::MakeReg
                | AccessFs::MakeDir
                | AccessFs::MakeSym
                | AccessFs::MakeFifo
                | AccessFs::MakeSock
                | AccessFs::RemoveFile
                | AccessFs::RemoveDir
                | AccessFs::Refer;
        }
        if self.exec {
            r |= AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir;
        }
        if is_dir { r } else { r & AccessFs::from_file(TARGET) }
    }

    /// `r`, `rw`, `rx`, `rwx` for display.
    pub fn letters(self) -> String {
        let mut s = String::new();
        if self.read {
            s.push('r');
        }
        if self.write {
            s.push('w');
        }
        if self.exec {
            s.push('x');
        }
        s
    }
}

/// TCP ports the server may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPorts {
    pub connect: BTreeSet<u16>,
    pub bind: BTreeSet<u16>,
    /// TCP connects to any port (a learning run, whose broker checks and records each one):
    /// Landlock then restricts binding only.
    pub connect_any_port: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("failed to create the Landlock ruleset: {0}")]
    Create(#[source] landlock::RulesetError),
    #[error("failed to open {} for a Landlock rule: {source}", path.display())]
    Open { path: PathBuf, source: landlock::PathFdError },
    #[error("failed to add the Landlock rule for {what}: {source}")]
    Rule { what: String, source: landlock::RulesetError },
}

/// Builds the ruleset. With `Required`, every feature of the target ABI must be supported by the
/// kernel (the crate's hard requirement); with `BestEffort`, the kernel's subset is used and the
/// status is reported after `restrict_self`.
pub fn prepare(
    paths: &BTreeMap<PathBuf, FsAccess>,
    ports: &NetPorts,
    level: Level,
) -> Result<RulesetCreated, LandlockError> {
    let compat = if level == Level::Required { CompatLevel::HardRequirement } else { CompatLevel::BestEffort };
    let mut ruleset = Ruleset::default()
        .set_compatibility(compat)
        .handle_access(AccessFs::from_all(TARGET))
        .and_then(|r| r.handle_access(net_access(ports)))
        .and_then(|r| r.scope(Scope::from_all(TARGET)))
        .and_then(|r| r.create())
        .map_err(LandlockError::Create)?;
    for (path, access) in paths {
        let fd = PathFd::new(path).map_err(|source| LandlockError::Open { path: path.clone(), source })?;
        let rights = access.rights(is_dir(path));
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|source| LandlockError::Rule { what: path.display().to_string(), source })?;
    }
    let rules = ports
        .connect
        .iter()
        .map(|p| (*p, AccessNet::ConnectTcp))
        .chain(ports.bind.iter().map(|p| (*p, AccessNet::BindTcp)));
    for (port, right) in rules {
        ruleset = ruleset
            .add_rule(NetPort::new(port, right))
            .map_err(|source| LandlockError::Rule { what: format!("TCP port {port}"), source })?;
    }
    Ok(ruleset)
}

/// The network rights the ruleset handles (restricts): all of them, but connecting when any port
/// may be reached.
fn net_access(ports: &NetPorts) -> BitFlags<AccessNet> {
    if ports.connect_any_port { AccessNet::BindTcp.into() } else { AccessNet::from_all(TARGET) }
}

fn is_dir(path: &Path) -> bool {
    path.metadata().map(|m| m.is_dir()).unwrap_or(false)
}

/// Enforces the ruleset on the calling (single-threaded) process; [`satisfies`] says whether the
/// status meets the requirement. The error is the kernel's: from `landlock_restrict_self`, or from
/// the `PR_SET_NO_NEW_PRIVS` prctl the crate makes first.
pub fn restrict(ruleset: RulesetCreated) -> Result<RestrictionStatus, std::io::Error> {
    use landlock::{RestrictSelfError, RulesetError};
    ruleset.restrict_self().map_err(|e| match e {
        RulesetError::RestrictSelf(
            RestrictSelfError::SetNoNewPrivsCall { source, .. } | RestrictSelfError::RestrictSelfCall { source, .. },
        ) => source,
        // restrict_self makes no other call today; a later crate version's error keeps its text.
        other => std::io::Error::other(other),
    })
}

/// Whether a status satisfies the requirement.
pub fn satisfies(status: &RestrictionStatus, level: Level) -> bool {
    match level {
        Level::Required => status.ruleset == RulesetStatus::FullyEnforced,
        Level::BestEffort | Level::Off => true,
    }
}
