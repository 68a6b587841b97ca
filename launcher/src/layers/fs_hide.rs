//! The hidden root (`fs-hide`): the server's `/` becomes a read-only tmpfs that holds only the
//! granted paths, so that a lookup of any other path (`stat`, `readlink`, `inotify_add_watch`,
//! `access`, `listxattr`, `open(O_PATH)`, which Landlock does not check) answers ENOENT.
//!
//! What the new root holds:
//! - every grant beneath no other, bound from the host (a recursive clone) with the flags the view
//!   gives it: read-only unless write-granted, a write grant `noexec` unless exec-granted,
//!   `nosuid` always; grants beneath another follow the view's rule (see [`ViewPlan::hidden`]).
//!   A read grant keeps exec as in the view (Python and Node load native modules from read
//!   grants: `mmap(PROT_EXEC)` of a file it cannot write is not what this layer is for);
//! - the host's `/proc`, read-only and `nosuid` (runtimes read `/proc/self/...`; other
//!   processes' `root`, `cwd` and `fd` links stay refused by Landlock's ptrace scoping);
//! - the symlinks met on the way to each grant as written, to the program and to the working
//!   directory (merged-usr `/lib64` -> `usr/lib64`, `/etc/resolv.conf` -> `../run/...`), and
//!   `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr`;
//! - the working directory, empty, when no grant holds it.
//!
//! Order: the grants and `/proc` are cloned (`open_tree`) first, from the untouched host tree; a
//! tmpfs is mounted on a staging directory and filled (directories and mount points, links, the
//! clones attached parents first); `pivot_root` into it and the old root detached; the tmpfs made
//! read-only last. Until `pivot_root` succeeded a failure is undone (the staging tmpfs detached),
//! so a best-effort layer can fall back to the view; after it, stage 2 must stop.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, UnmountFlags, mount, mount_change, move_mount, unmount,
};

use crate::layers::fs_view::{self, ViewPlan};
use crate::layers::landlock::FsAccess;
use crate::sys::mount::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, add_mount_attributes};

/// Directories the tmpfs may be built on, in order of preference: any directory of the host
/// does (the new root's contents do not depend on it), and it is detached with the old root.
const STAGING: [&str; 4] = ["/tmp", "/mnt", "/var/tmp", "/run"];

/// Links every program may expect in `/dev`; they lead into the server's own `/proc/self`.
const DEV_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// The hidden root's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidePlan {
    /// The grants' binds (`/proc` among them), parents before children.
    pub view: ViewPlan,
    /// Symlinks outside every bind: (location, target as written).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Empty directories outside every bind (the working directory).
    pub dirs: Vec<PathBuf>,
    /// Where the tmpfs is mounted while it is filled.
    pub staging: PathBuf,
}

/// A failed build: the error, and whether the mount namespace is as it was before.
#[derive(Debug)]
pub struct HideFailed {
    pub error: io::Error,
    /// `true` until `pivot_root` succeeded: the view can still be built instead.
    pub undone: bool,
}

/// The first staging directory of this host (a real directory, not a symlink).
pub fn staging_dir() -> Option<PathBuf> {
    STAGING.iter().map(PathBuf::from).find(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
}

impl HidePlan {
    /// The hidden root for canonical `paths`, the symlinks on the way to them (`links`), the
    /// working directory `cwd`; `None` when `/` itself is granted (nothing would be hidden).
    pub fn new(
        paths: &BTreeMap<PathBuf, FsAccess>,
        links: &BTreeMap<PathBuf, PathBuf>,
        cwd: &Path,
        staging: PathBuf,
    ) -> Option<HidePlan> {
        if paths.contains_key(Path::new("/")) {
            return None;
        }
        let mut paths = paths.clone();
        paths.entry(PathBuf::from("/proc")).or_insert(FsAccess::READ);
        let view = ViewPlan::hidden(&paths);
        let bound = |p: &Path| view.binds.iter().any(|b| p.starts_with(&b.path));
        let dev = DEV_LINKS.iter().map(|(l, t)| (PathBuf::from(l), PathBuf::from(t)));
        let links = links.iter().map(|(l, t)| (l.clone(), t.clone())).chain(dev).filter(|(l, _)| !bound(l)).collect();
        let dirs = [cwd].into_iter().filter(|d| !bound(d)).map(Path::to_path_buf).collect();
        Some(HidePlan { view, links, dirs, staging })
    }
}

/// Replaces this process's root (in its own, new mount namespace) with the hidden root. Stage 2
/// calls it while it holds `CAP_SYS_ADMIN` over that namespace, before Landlock.
pub fn apply(plan: &HidePlan) -> Result<(), HideFailed> {
    let undone = |error| HideFailed { error, undone: true };
    // Private first: the host's `/` is usually shared, and our mounts must not propagate to it.
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(|e| undone(e.into()))?;
    // Every clone from the host tree as it is, before anything is mounted on it.
    let clones = plan.view.binds.iter().map(fs_view::clone_grant).collect::<io::Result<Vec<_>>>().map_err(undone)?;
    mount_staging(&plan.staging).map_err(undone)?;
    if let Err(e) = fill(plan, clones).and_then(|root| pivot_into(&root)) {
        let _ = unmount(&plan.staging, UnmountFlags::DETACH);
        let _ = rustix::process::chdir("/");
        return Err(undone(e));
    }
    seal().map_err(|error| HideFailed { error, undone: false })
}

/// A small tmpfs (it holds directories, empty files and links only) on the staging directory.
fn mount_staging(staging: &Path) -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount("tmpfs", staging, "tmpfs", flags, c"mode=0755,size=1m,nr_inodes=16384")?;
    Ok(())
}

/// Directories, links, then the clones, parents before children; returns the new root's fd.
fn fill(plan: &HidePlan, clones: Vec<OwnedFd>) -> io::Result<OwnedFd> {
    let root = rustix::fs::open(&plan.staging, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for dir in &plan.dirs {
        make_dirs(root.as_fd(), &relative(dir)?)?;
    }
    for (link, target) in &plan.links {
        let rel = relative(link)?;
        if let Some(parent) = rel.parent() {
            make_dirs(root.as_fd(), parent)?;
        }
        ignore_exists(rustix::fs::symlinkat(target.as_path(), root.as_fd(), &rel))?;
    }
    for (i, (bind, clone)) in plan.view.binds.iter().zip(clones).enumerate() {
        let rel = relative(&bind.path)?;
        // A grant beneath another is attached on its parent's bind, where its path exists.
        if !plan.view.binds[..i].iter().any(|b| bind.path.starts_with(&b.path)) {
            make_mount_point(root.as_fd(), &rel, clone.as_fd())?;
        }
        move_mount(clone.as_fd(), c"", root.as_fd(), &rel, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    }
    Ok(root)
}

/// `pivot_root(".", ".")` stacks the old root on the new one; detaching it leaves the new root
/// alone, with nothing of the host reachable but the binds.
fn pivot_into(root: &OwnedFd) -> io::Result<()> {
    rustix::process::fchdir(root)?;
    rustix::process::pivot_root(".", ".")?;
    Ok(())
}

/// After `pivot_root`: the old root detached, then the tmpfs made read-only.
fn seal() -> io::Result<()> {
    unmount(".", UnmountFlags::DETACH)?;
    rustix::process::chdir("/")?;
    add_mount_attributes(None, c"/", false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
}

/// A directory for a directory, an empty file for anything else (a file, a device node).
fn make_mount_point(root: BorrowedFd<'_>, rel: &Path, clone: BorrowedFd<'_>) -> io::Result<()> {
    if let Some(parent) = rel.parent() {
        make_dirs(root, parent)?;
    }
    if FileType::from_raw_mode(rustix::fs::fstat(clone)?.st_mode) == FileType::Directory {
        return ignore_exists(rustix::fs::mkdirat(root, rel, Mode::from_raw_mode(0o755)));
    }
    let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat(root, rel, flags, Mode::from_raw_mode(0o644)) {
        Ok(_) => Ok(()),
        Err(e) => ignore_exists(Err(e)),
    }
}

/// `mkdir -p` beneath `root`.
fn make_dirs(root: BorrowedFd<'_>, rel: &Path) -> io::Result<()> {
    let mut at = PathBuf::new();
    for part in rel.components() {
        at.push(part);
        ignore_exists(rustix::fs::mkdirat(root, &at, Mode::from_raw_mode(0o755)))?;
    }
    Ok(())
}

fn ignore_exists(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e != rustix::io::Errno::EXIST => Err(e.into()),
        _ => Ok(()),
    }
}

/// `/a/b` as `a/b`, for the `*at` calls beneath the new root (the plan's paths are absolute).
fn relative(path: &Path) -> io::Result<PathBuf> {
    path.strip_prefix("/").map(Path::to_path_buf).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(paths: &[(&str, FsAccess)], links: &[(&str, &str)], cwd: &str) -> HidePlan {
        let paths = paths.iter().map(|(p, a)| (PathBuf::from(p), *a)).collect();
        let links = links.iter().map(|(l, t)| (PathBuf::from(l), PathBuf::from(t))).collect();
        HidePlan::new(&paths, &links, Path::new(cwd), "/tmp".into()).unwrap()
    }

    #[test]
    fn proc_is_bound_read_only_and_grants_beneath_it_need_no_bind_of_their_own() {
        let p = plan(&[("/proc/meminfo", FsAccess::READ), ("/usr", FsAccess::EXEC)], &[], "/usr");
        let binds: Vec<_> = p.view.binds.iter().map(|b| (b.path.to_str().unwrap(), b.writable, b.noexec)).collect();
        assert_eq!(binds, vec![("/proc", false, false), ("/usr", false, false)]);
        assert!(p.dirs.is_empty(), "the working directory is inside a grant");
    }

    #[test]
    fn links_inside_a_bind_are_already_there_and_the_cwd_outside_is_made() {
        let p = plan(
            &[("/usr", FsAccess::EXEC), ("/run/r.conf", FsAccess::READ)],
            &[("/lib64", "usr/lib64"), ("/usr/lib/x", "y"), ("/etc/resolv.conf", "../run/r.conf")],
            "/home/u",
        );
        let links: Vec<_> = p.links.iter().map(|(l, _)| l.to_str().unwrap()).collect();
        assert_eq!(links, vec!["/etc/resolv.conf", "/lib64", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"]);
        assert_eq!(p.dirs, vec![PathBuf::from("/home/u")]);
    }

    #[test]
    fn a_granted_dev_keeps_its_own_links_and_granting_the_root_hides_nothing() {
        let p = plan(&[("/dev", FsAccess::WRITE)], &[], "/");
        assert!(p.links.is_empty(), "{:?}", p.links);
        let paths = [(PathBuf::from("/"), FsAccess::READ)].into_iter().collect();
        assert_eq!(HidePlan::new(&paths, &BTreeMap::new(), Path::new("/"), "/tmp".into()), None);
    }
}
