//! The symlinks met on the way to a path as it was written (`/lib64` -> `usr/lib64`,
//! `/etc/resolv.conf` -> `../run/...`): the hidden root (`fs-hide`) recreates them, so that a path
//! written through them still resolves there to the granted, canonical path.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Linux's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// One piece of a path still to resolve.
enum Part {
    Root,
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> impl Iterator<Item = Part> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir => Some(Part::Root),
        Component::ParentDir => Some(Part::Parent),
        Component::Normal(n) => Some(Part::Name(n.to_os_string())),
        Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Every symlink the kernel follows to resolve the absolute `path`, as (where the link is, with
/// its directory already resolved; what it says, verbatim), in the order they are met. A path
/// that does not resolve yields the links met before the failure.
pub fn symlinks_on(path: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    let mut pending: VecDeque<Part> = parts(path).collect();
    let mut at = PathBuf::from("/");
    while let Some(part) = pending.pop_front() {
        let name = match part {
            Part::Root => {
                at = PathBuf::from("/");
                continue;
            }
            Part::Parent => {
                at.pop();
                continue;
            }
            Part::Name(n) => n,
        };
        let next = at.join(&name);
        let Ok(target) = std::fs::read_link(&next) else {
            at = next;
            continue;
        };
        if found.len() == MAX_HOPS {
            break;
        }
        // The target's own parts come first, then what was left of the path.
        for p in parts(&target).collect::<Vec<_>>().into_iter().rev() {
            pending.push_front(p);
        }
        found.push((next, target));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_on_the_way_are_found_with_their_text_relative_or_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("usr/lib64")).unwrap();
        std::fs::write(d.join("usr/lib64/ld.so"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib64", d.join("lib64")).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::create_dir_all(d.join("run/resolve")).unwrap();
        std::fs::write(d.join("run/resolve/stub.conf"), "").unwrap();
        std::os::unix::fs::symlink("../run/resolve/stub.conf", d.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink(d.join("etc"), d.join("conf")).unwrap();
        assert_eq!(symlinks_on(&d.join("lib64/ld.so")), vec![(d.join("lib64"), PathBuf::from("usr/lib64"))]);
        assert_eq!(
            symlinks_on(&d.join("conf/resolv.conf")),
            vec![
                (d.join("conf"), d.join("etc")),
                (d.join("etc/resolv.conf"), PathBuf::from("../run/resolve/stub.conf"))
            ]
        );
        assert_eq!(symlinks_on(&d.join("usr/lib64/ld.so")), vec![]);
    }

    #[test]
    fn a_symlink_loop_ends() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink("b", d.join("a")).unwrap();
        std::os::unix::fs::symlink("a", d.join("b")).unwrap();
        assert_eq!(symlinks_on(&d.join("a/x")).len(), MAX_HOPS);
    }
}
