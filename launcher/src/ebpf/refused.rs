//! Which layer refused a call the probes saw fail (`RefusedEvent`): the hidden root (a path outside
//! every grant does not exist there: `ENOENT`), the filesystem view (a write outside the write
//! grants meets a read-only mount: `EROFS`), Landlock (`EACCES`/`EXDEV` on a path outside the
//! grants, a TCP port not granted, a signal out of scope), or none (a file's own permissions
//! refused it inside the grants, or a path inside them does not exist: not reported).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mcp_warden_ebpf_common::RefusedEvent;
use syscalls::Sysno;

use super::event::cstr;
use crate::audit::record::DenyLayer;
use crate::layers::landlock::FsAccess;

/// A refusal attributed to a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    pub layer: DenyLayer,
    pub syscall: String,
    pub args: BTreeMap<String, String>,
    pub path: Option<String>,
    pub reason: String,
}

/// What a refusal is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    pub grants: &'a [(PathBuf, FsAccess)],
    /// The server's root is the hidden root (fs-hide).
    pub hidden: bool,
    /// Where the call's relative paths start (its working directory or `*at` directory, read from
    /// /proc when the event is decoded), if known.
    pub base: Option<&'a Path>,
}

/// The layer that refused `e`, or `None` when no sandbox layer did.
pub fn attribute(e: &RefusedEvent, judge: &Judge<'_>) -> Option<Attributed> {
    let hidden = judge.hidden;
    let errno = -e.ret as i32;
    let sys = Sysno::new(e.nr as usize);
    let syscall = sys.map_or_else(|| format!("syscall_{}", e.nr), |s| s.name().to_string());
    let path = Some(cstr(&e.path)).filter(|p| !p.is_empty());
    let mut args = BTreeMap::new();
    if e.fd >= 0 {
        let key = if path.is_some() { "dirfd" } else { "fd" };
        args.insert(key.to_string(), e.fd.to_string());
    }
    if let Some(second) = Some(cstr(&e.path2)).filter(|p| !p.is_empty()) {
        args.insert("new_path".to_string(), second);
    }
    let (layer, reason) = match (sys, errno) {
        (Some(Sysno::ioctl), libc::EROFS) => {
            (DenyLayer::FsView, "an inode-flag change outside the write grants: the view mounts it read-only".into())
        }
        (Some(Sysno::ioctl), _) => return None,
        (_, libc::ENOENT) if hidden && outside_every_grant(path.as_deref(), &args, judge) => {
            (DenyLayer::FsHide, "outside every grant: the server's root holds only the granted paths".into())
        }
        (_, libc::EROFS) if hidden && outside_every_grant(path.as_deref(), &args, judge) => {
            (DenyLayer::FsHide, "outside every grant: the hidden root is read-only".into())
        }
        (_, libc::EROFS) => {
            (DenyLayer::FsView, "outside the write grants: the filesystem view mounts it read-only".into())
        }
        (Some(Sysno::connect | Sysno::bind), libc::EACCES) => {
            (DenyLayer::Landlock, "a TCP port the profile does not grant (Landlock)".into())
        }
        (Some(Sysno::kill | Sysno::tkill | Sysno::tgkill), libc::EPERM) => (
            DenyLayer::Landlock,
            "a signal to a process outside the sandbox (Landlock's signal scope, or another user's process)".into(),
        ),
        (_, libc::EACCES | libc::EXDEV) => (DenyLayer::Landlock, landlock_reason(path.as_deref(), &args, judge)?),
        _ => return None,
    };
    Some(Attributed { layer, syscall, args, path, reason })
}

/// Does the call name a path outside every grant (read, write or exec)? Judged on the path as
/// resolved on the host (the grants are the same paths there): `..` and symlinks are followed, so
/// `W/../secret` and a link planted in W are judged by where they lead. A relative path is judged
/// only when it climbs (`..`); a truncated one counts as outside.
fn outside_every_grant(path: Option<&str>, args: &BTreeMap<String, String>, judge: &Judge<'_>) -> bool {
    let granted = |p: &Path| judge.grants.iter().any(|(dir, _)| p.starts_with(dir));
    named(path, args).any(|p| match resolved(p, judge.base) {
        Some(r) => truncated(p) || !granted(&r),
        None => climbs(p),
    })
}

/// The paths a call names.
fn named<'a>(path: Option<&'a str>, args: &'a BTreeMap<String, String>) -> impl Iterator<Item = &'a str> {
    path.into_iter().chain(args.get("new_path").map(String::as_str))
}

/// A path as the kernel would resolve it on the host; a relative one from `base`, and `None` for a
/// relative one when `base` is unknown.
fn resolved(p: &str, base: Option<&Path>) -> Option<PathBuf> {
    let path = Path::new(p);
    match (path.is_absolute(), base) {
        (true, _) => Some(crate::paths::resolve(path, Path::new("/"))),
        (false, Some(base)) => Some(crate::paths::resolve(path, base)),
        (false, None) => None,
    }
}

/// The probes copy at most PATH_LEN - 1 bytes: a path that long may have been cut.
fn truncated(p: &str) -> bool {
    p.len() >= mcp_warden_ebpf_common::PATH_LEN - 1
}

fn climbs(p: &str) -> bool {
    Path::new(p).components().any(|c| c == std::path::Component::ParentDir)
}

/// Landlock's reason for a refused file call, or `None` when every path it names is inside a
/// write grant (then the file's own permissions refused it).
fn landlock_reason(path: Option<&str>, args: &BTreeMap<String, String>, judge: &Judge<'_>) -> Option<String> {
    let paths: Vec<&str> = path.into_iter().chain(args.get("new_path").map(String::as_str)).collect();
    if paths.is_empty() {
        return Some("the descriptor was opened without the right to change it (Landlock)".into());
    }
    if paths.iter().any(|p| !Path::new(p).is_absolute() && judge.base.is_none()) {
        return Some(
            "outside the profile's write grants (Landlock; a relative path, not checked against the grants)".into(),
        );
    }
    let writable = |p: &str| {
        !truncated(p)
            && resolved(p, judge.base)
                .is_some_and(|r| judge.grants.iter().any(|(dir, a)| a.write && r.starts_with(dir)))
    };
    match paths.iter().all(|p| writable(p)) {
        true => None,
        false => Some("outside the profile's write grants (Landlock)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_ebpf_common::{Header, PATH_LEN};

    fn event(nr: i64, errno: i32, path: &str) -> RefusedEvent {
        let mut p = [0u8; PATH_LEN];
        p[..path.len()].copy_from_slice(path.as_bytes());
        let hdr = Header { kind: 9, pid: 1, tid: 1, uid: 0, ktime_ns: 0, cgroup_id: 0, comm: [0; 16] };
        RefusedEvent { hdr, nr: nr as u32, _pad: 0, ret: -(errno as i64), fd: -1, path: p, path2: [0; PATH_LEN] }
    }

    fn judge(grants: &[(PathBuf, FsAccess)], hidden: bool) -> Judge<'_> {
        Judge { grants, hidden, base: None }
    }

    fn grants() -> Vec<(PathBuf, FsAccess)> {
        vec![("/work".into(), FsAccess::WRITE), ("/usr".into(), FsAccess::EXEC)]
    }

    #[test]
    fn a_read_only_mount_is_the_views_refusal() {
        let a = attribute(&event(libc::SYS_chmod, libc::EROFS, "/home/u/.ssh/id_ed25519"), &judge(&grants(), false))
            .unwrap();
        assert_eq!((a.layer, a.syscall.as_str()), (DenyLayer::FsView, "chmod"));
        assert_eq!(a.path.as_deref(), Some("/home/u/.ssh/id_ed25519"));
    }

    #[test]
    fn eacces_outside_the_grants_is_landlocks_and_inside_is_nobodys() {
        let a = attribute(&event(libc::SYS_mkdir, libc::EACCES, "/etc/evil"), &judge(&grants(), false)).unwrap();
        assert_eq!(a.layer, DenyLayer::Landlock);
        assert_eq!(
            attribute(&event(libc::SYS_mkdir, libc::EACCES, "/work/ro-by-mode/x"), &judge(&grants(), false)),
            None
        );
        assert_eq!(
            attribute(&event(libc::SYS_unlink, libc::EPERM, "/work/x"), &judge(&grants(), false)),
            None,
            "EPERM on a file is its mode"
        );
        let a = attribute(&event(libc::SYS_connect, libc::EACCES, ""), &judge(&grants(), false)).unwrap();
        assert!(a.reason.contains("TCP port"), "{a:?}");
    }

    #[test]
    fn enoent_outside_every_grant_is_the_hidden_roots_and_inside_is_nobodys() {
        let a =
            attribute(&event(libc::SYS_chmod, libc::ENOENT, "/home/u/.ssh/id_rsa"), &judge(&grants(), true)).unwrap();
        assert_eq!(a.layer, DenyLayer::FsHide);
        assert_eq!(attribute(&event(libc::SYS_unlink, libc::ENOENT, "/work/gone"), &judge(&grants(), true)), None);
        assert_eq!(attribute(&event(libc::SYS_unlink, libc::ENOENT, "/usr/gone"), &judge(&grants(), true)), None);
        assert_eq!(
            attribute(&event(libc::SYS_chmod, libc::ENOENT, "/home/u/x"), &judge(&grants(), false)),
            None,
            "no hidden root"
        );
    }

    #[test]
    fn climbing_out_of_a_grant_and_planted_links_are_judged_where_they_lead() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir(&w).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", w.join("link")).unwrap();
        let grants = vec![(std::fs::canonicalize(&w).unwrap(), FsAccess::WRITE)];
        let at = |p: &std::path::Path| p.to_str().unwrap().to_string();
        for path in [at(&w.join("../secret")), at(&w.join("link")), "../x".to_string()] {
            let a = attribute(&event(libc::SYS_chmod, libc::ENOENT, &path), &judge(&grants, true));
            assert_eq!(a.map(|a| a.layer), Some(DenyLayer::FsHide), "{path}");
        }
        assert_eq!(attribute(&event(libc::SYS_chmod, libc::ENOENT, &at(&w.join("gone"))), &judge(&grants, true)), None);
        let long = format!("{}/{}", at(&w), "a/".repeat(200));
        assert!(
            attribute(&event(libc::SYS_chmod, libc::ENOENT, &long[..PATH_LEN - 1]), &judge(&grants, true)).is_some()
        );
    }

    #[test]
    fn a_relative_path_through_a_planted_link_is_judged_from_the_callers_directory() {
        let dir = tempfile::tempdir().unwrap();
        let w = std::fs::canonicalize(dir.path()).unwrap().join("w");
        std::fs::create_dir(&w).unwrap();
        std::os::unix::fs::symlink("/root", w.join("rootlnk")).unwrap();
        let grants = vec![(w.clone(), FsAccess::WRITE)];
        let judge = Judge { grants: &grants, hidden: true, base: Some(&w) };
        let a = attribute(&event(libc::SYS_mkdir, libc::ENOENT, "rootlnk/x"), &judge).unwrap();
        assert_eq!(a.layer, DenyLayer::FsHide);
        assert_eq!(attribute(&event(libc::SYS_mkdir, libc::ENOENT, "gone/x"), &judge), None, "inside the grant");
        let a = attribute(&event(libc::SYS_mkdir, libc::EROFS, "/newtop"), &judge).unwrap();
        assert_eq!(a.layer, DenyLayer::FsHide, "the hidden root's own tmpfs");
    }
}
