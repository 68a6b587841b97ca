//! The filesystem view: the server's own mount namespace, where every mount is read-only and
//! `nosuid`, and only the write grants are bound back writable, `noexec` unless also exec-granted.
//!
//! It closes what Landlock does not see (Landlock checks paths on open and execve only):
//! - metadata writes (chmod, chown, utimes, xattrs, inode flags) on any path outside the write
//!   grants, by path or by an fd opened read-only: the mount is read-only, the kernel says EROFS;
//! - executable mappings of files the server can write: the dynamic loader (`ld.so WORK/x`) and
//!   `/proc/self/fd/N` of a deleted or `O_TMPFILE` file fail on a `noexec` mount (EPERM/EACCES);
//! - setuid and setgid programs anywhere in the view gain nothing (`nosuid`).
//!
//! Order (see [`Bind`]): every grant is cloned (`open_tree`) BEFORE the root is made read-only,
//! because a clone keeps its flags and the recursive read-only pass would otherwise reach the
//! grants too; the clones are attached (`move_mount`) after it, parents before children.
//! Everything happens in stage 2, after the fork into the new mount namespace (as root, or in a
//! user namespace that maps the caller's own ids), and before Landlock, which forbids mounting.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MountPropagationFlags, MoveMountFlags, OpenTreeFlags, mount_change, move_mount, open_tree};

use crate::layers::landlock::FsAccess;
use crate::sys::mount::{MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, add_mount_attributes};

/// One grant bound back over the read-only view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub path: PathBuf,
    /// Read-write (a write grant); else the bind only restores exec inside a noexec parent.
    pub writable: bool,
    /// Mapping files executable from here is refused.
    pub noexec: bool,
}

/// The mounts of the view, in the order they are attached (parents before children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewPlan {
    pub binds: Vec<Bind>,
}

impl ViewPlan {
    /// The binds for a plan's granted paths (canonical), over the host's read-only tree. A write
    /// grant becomes a writable bind, `noexec` unless it is also exec-granted; an exec grant
    /// beneath a `noexec` bind gets a bind of its own so that its programs still run; a bind that
    /// would change nothing is left out.
    pub fn new(paths: &BTreeMap<PathBuf, FsAccess>) -> ViewPlan {
        ViewPlan { binds: binds(paths, false) }
    }

    /// The binds of the hidden root (`fs-hide`), where nothing of the host is there unless bound:
    /// every grant beneath no other gets a bind with the flags it has in the view (read-only
    /// unless write-granted; a write grant `noexec` unless exec-granted); grants beneath another
    /// follow [`ViewPlan::new`]'s rule.
    pub fn hidden(paths: &BTreeMap<PathBuf, FsAccess>) -> ViewPlan {
        ViewPlan { binds: binds(paths, true) }
    }

    /// Paths written through the view (for `explain`).
    pub fn writable(&self) -> impl Iterator<Item = &Path> {
        self.binds.iter().filter(|b| b.writable).map(|b| b.path.as_path())
    }
}

/// Parents before children. `hidden`: a grant beneath no other is bound too (nothing else is
/// there to inherit from).
fn binds(paths: &BTreeMap<PathBuf, FsAccess>, hidden: bool) -> Vec<Bind> {
    let mut binds: Vec<Bind> = Vec::new();
    let mut ordered: Vec<(&PathBuf, &FsAccess)> = paths.iter().collect();
    ordered.sort_by_key(|(p, _)| p.components().count());
    for (path, access) in ordered {
        let inherited = binds.iter().rev().find(|b| path.starts_with(&b.path));
        let wanted = match (access.write, inherited) {
            // A device node is written through, never changed: a read-only bind still lets the
            // server write to /dev/null, but not chmod the host's node.
            (true, _) if is_device(path) => Some(Bind { path: path.clone(), writable: false, noexec: true }),
            (true, _) => Some(Bind { path: path.clone(), writable: true, noexec: !access.exec }),
            (false, None) if hidden => Some(Bind { path: path.clone(), writable: false, noexec: false }),
            // A grant without write inside a write grant is not writable (a read grant keeps a
            // repository's hooks unchanged); an exec grant there keeps its programs runnable, and
            // what runs from it was not written by the server.
            (false, Some(parent)) if parent.writable || (parent.noexec && access.exec) => {
                Some(Bind { path: path.clone(), writable: false, noexec: parent.noexec && !access.exec })
            }
            _ => None,
        };
        if let Some(bind) = wanted.filter(|b| !same_as(inherited, b)) {
            binds.push(bind);
        }
    }
    binds
}

/// Builds the view in this process's (new, private) mount namespace. Stage 2 calls it while it
/// still holds `CAP_SYS_ADMIN` over that namespace, before Landlock (which forbids mounting).
pub fn apply(view: &ViewPlan) -> io::Result<()> {
    // Private first: the host's `/` is usually shared, and our mounts must not propagate to it.
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)?;
    // Clone every grant before the root turns read-only: a detached clone keeps its own flags.
    let clones = view.binds.iter().map(clone_grant).collect::<io::Result<Vec<_>>>()?;
    add_mount_attributes(None, c"/", true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)?;
    for (bind, clone) in view.binds.iter().zip(clones) {
        move_mount(clone.as_fd(), c"", CWD, &bind.path, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    }
    Ok(())
}

/// A detached recursive copy of the grant's mounts, with the bind's flags added.
pub(crate) fn clone_grant(bind: &Bind) -> io::Result<OwnedFd> {
    let path = CString::new(bind.path.as_os_str().as_bytes())?;
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
    let clone = open_tree(CWD, path.as_c_str(), flags)?;
    let mut set = MOUNT_ATTR_NOSUID;
    if bind.noexec {
        set |= MOUNT_ATTR_NOEXEC;
    }
    if !bind.writable {
        set |= MOUNT_ATTR_RDONLY;
    }
    add_mount_attributes(Some(clone.as_fd()), c"", true, set)?;
    Ok(clone)
}

fn is_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
}

fn same_as(parent: Option<&Bind>, b: &Bind) -> bool {
    parent.is_some_and(|p| p.writable == b.writable && p.noexec == b.noexec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(grants: &[(&str, FsAccess)]) -> Vec<(String, bool, bool)> {
        let paths = grants.iter().map(|(p, a)| (PathBuf::from(p), *a)).collect();
        ViewPlan::new(&paths).binds.into_iter().map(|b| (b.path.display().to_string(), b.writable, b.noexec)).collect()
    }

    #[test]
    fn write_grants_are_writable_and_noexec_read_grants_need_no_bind() {
        let rwx = FsAccess { read: true, write: true, exec: true };
        assert_eq!(
            plan(&[("/usr", FsAccess::EXEC), ("/home/u/notes", FsAccess::WRITE), ("/srv/app", rwx)]),
            vec![("/srv/app".into(), true, false), ("/home/u/notes".into(), true, true)]
        );
    }

    #[test]
    fn an_exec_grant_inside_a_write_grant_keeps_its_programs_runnable_but_not_writable() {
        assert_eq!(
            plan(&[("/w", FsAccess::WRITE), ("/w/bin", FsAccess::EXEC), ("/w/data", FsAccess::READ)]),
            vec![("/w".into(), true, true), ("/w/bin".into(), false, false), ("/w/data".into(), false, true)]
        );
    }

    #[test]
    fn a_read_grant_inside_a_write_grant_is_read_only() {
        let binds = plan(&[("/w", FsAccess::WRITE), ("/w/repo/.git/hooks", FsAccess::READ)]);
        assert_eq!(binds, [("/w".into(), true, true), ("/w/repo/.git/hooks".into(), false, true)]);
    }

    #[test]
    fn a_writable_device_node_is_bound_read_only() {
        assert_eq!(plan(&[("/dev/null", FsAccess::WRITE)]), vec![("/dev/null".into(), false, true)]);
    }

    #[test]
    fn hidden_every_outermost_grant_is_bound_with_the_flags_it_has_in_the_view() {
        let paths = [("/usr", FsAccess::EXEC), ("/usr/share", FsAccess::READ), ("/etc/passwd", FsAccess::READ)];
        let paths = paths.iter().map(|(p, a)| (PathBuf::from(p), *a)).collect();
        let binds: Vec<_> = ViewPlan::hidden(&paths)
            .binds
            .into_iter()
            .map(|b| (b.path.display().to_string(), b.writable, b.noexec))
            .collect();
        assert_eq!(binds, vec![("/usr".into(), false, false), ("/etc/passwd".into(), false, false)]);
    }

    #[test]
    fn nested_write_grants_with_the_same_flags_are_one_bind() {
        assert_eq!(plan(&[("/w", FsAccess::WRITE), ("/w/sub", FsAccess::WRITE)]), vec![("/w".into(), true, true)]);
    }
}
