//! Who the server runs as (the profile's or `--user`'s user and group, looked up on this host) and
//! whether its tree gets its own PID namespace.

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

use crate::host::HostFacts;
use crate::profile::{Level, Process};

use super::Inputs;
use super::error::PlanError;

/// Who the server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
    /// `setgroups`/`setresgid`/`setresuid` are needed (started as root with a user named).
    pub switch: bool,
}

/// How the server tree gets its own PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidNamespace {
    Off,
    /// `CLONE_NEWPID` (root).
    Plain,
    /// `CLONE_NEWUSER | CLONE_NEWPID`, mapping the caller's own uid and gid (unprivileged).
    WithUserNamespace,
}

impl Identity {
    /// The user and group `process` names (the command line's merged in), or the launcher's own
    /// identity. Running as root without a switch is allowed, with a warning.
    pub fn resolve(
        process: &Process,
        host: &HostFacts,
        inputs: &Inputs<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<Identity, PlanError> {
        let Some(user_name) = &process.user else {
            if process.group.is_some() {
                return Err(PlanError::Invalid {
                    what: "group".into(),
                    why: "a group switch needs a user switch too: set [process] user (or --user)".into(),
                });
            }
            return Ok(Identity::unchanged(host, inputs, warnings));
        };
        let user = lookup_user(user_name)?;
        let gid = match &process.group {
            None => user.gid,
            Some(g) => lookup_group(g)?,
        };
        if !host.is_root() {
            if user.uid.as_raw() == host.euid && gid.as_raw() == nix::unistd::getegid().as_raw() {
                return Ok(Identity {
                    uid: host.euid,
                    gid: gid.as_raw(),
                    name: user.name,
                    home: user.dir,
                    switch: false,
                });
            }
            return Err(PlanError::SwitchNeedsRoot { user: user_name.clone(), uid: host.euid });
        }
        if user.uid.as_raw() == 0 && user_name != "root" && user_name != "0" {
            warnings
                .push(format!("user `{user_name}` is uid 0: the server runs as root with every capability dropped"));
        }
        Ok(Identity { uid: user.uid.as_raw(), gid: gid.as_raw(), name: user.name, home: user.dir, switch: true })
    }

    /// The launcher's own user, with `$HOME` as the home directory.
    fn unchanged(host: &HostFacts, inputs: &Inputs<'_>, warnings: &mut Vec<String>) -> Identity {
        let uid = host.euid;
        let me = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        if uid == 0 {
            warnings.push(
                "the server runs as root (uid 0) with every capability dropped; name an unprivileged user with `--user` or [process] user to switch (user = \"root\" silences this)".into(),
            );
        }
        Identity {
            uid,
            gid: nix::unistd::getegid().as_raw(),
            name: me.as_ref().map_or_else(|| uid.to_string(), |u| u.name.clone()),
            home: inputs.var("HOME").map(PathBuf::from).or(me.map(|u| u.dir)).unwrap_or_else(|| "/".into()),
            switch: false,
        }
    }
}

fn lookup_user(name: &str) -> Result<User, PlanError> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    found.ok().flatten().ok_or_else(|| PlanError::UnknownId { kind: "user", name: name.to_string() })
}

fn lookup_group(name: &str) -> Result<Gid, PlanError> {
    match name.parse::<u32>() {
        Ok(gid) => Ok(Gid::from_raw(gid)),
        Err(_) => Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid)
            .ok_or_else(|| PlanError::UnknownId { kind: "group", name: name.to_string() }),
    }
}

/// How this run can create namespaces (the PID namespace, the filesystem view's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceAccess {
    /// `CAP_SYS_ADMIN` (root): plain namespaces.
    Privileged,
    /// Inside a user namespace of its own that maps the launcher's ids: unprivileged, where the
    /// host allows user namespaces, and never with a user switch (which needs root).
    UserNamespace,
}

impl NamespaceAccess {
    /// `None` when this run can create no namespace.
    pub fn of(identity: &Identity, host: &HostFacts) -> Option<NamespaceAccess> {
        if host.clone_namespaces.is_err() {
            None
        } else if host.has_cap(caps::Capability::CAP_SYS_ADMIN) {
            Some(NamespaceAccess::Privileged)
        } else if host.user_namespaces.is_ok() && !identity.switch {
            Some(NamespaceAccess::UserNamespace)
        } else {
            None
        }
    }
}

impl PidNamespace {
    /// Root gets a plain PID namespace; an unprivileged launcher one inside a user namespace,
    /// unless the user is switched (which needs root) or user namespaces are unavailable.
    pub fn resolve(level: Level, process: &Process, identity: &Identity, host: &HostFacts) -> PidNamespace {
        match (level, process.pid_namespace.unwrap_or(true)) {
            (Level::Off, _) | (_, false) => PidNamespace::Off,
            _ => match NamespaceAccess::of(identity, host) {
                Some(NamespaceAccess::Privileged) => PidNamespace::Plain,
                Some(NamespaceAccess::UserNamespace) => PidNamespace::WithUserNamespace,
                None => PidNamespace::Off,
            },
        }
    }
}
