//! A path as the kernel would resolve it, whether or not it exists yet: the longest existing
//! prefix canonicalized (symlinks and `..` followed), the rest appended with `.` and `..` applied.
//! Used wherever a decision depends on where a path leads (a record outside the write grants, a
//! refused call judged against the grants), so that `..`, a planted symlink or a directory still
//! to be created cannot make a path look elsewhere.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed at most while resolving one path (the kernel's limit): past it the
/// path does not resolve for the kernel either.
const MAX_LINKS: usize = 40;

/// `path` resolved; a relative one against `cwd`.
pub fn resolve(path: &Path, cwd: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let parts: Vec<Component<'_>> = absolute.components().collect();
    let (mut out, rest) = (1..=parts.len())
        .rev()
        .find_map(|i| {
            let prefix: PathBuf = parts[..i].iter().collect();
            std::fs::canonicalize(&prefix).ok().map(|c| (c, &parts[i..]))
        })
        .unwrap_or((PathBuf::from("/"), &parts[..]));
    for c in rest {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Every directory whose entries are read while `path` (a relative one against `cwd`) is resolved,
/// each as the symlink-free path it is, in order: the directory of each component, and of every
/// symbolic link on the way (an absolute target starts again at `/`). Whoever may write one of
/// them can make `path` lead elsewhere next time, by renaming an entry or planting a link.
pub fn directories_read(path: &Path, cwd: &Path) -> Vec<PathBuf> {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut pending: VecDeque<OsString> = names(&absolute);
    let (mut at, mut dirs, mut links) = (PathBuf::from("/"), Vec::new(), 0);
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            at.pop();
            continue;
        }
        dirs.push(at.clone());
        let next = at.join(&name);
        match std::fs::read_link(&next) {
            Ok(target) if links < MAX_LINKS => {
                links += 1;
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                for n in names(&target).into_iter().rev() {
                    pending.push_front(n);
                }
            }
            _ => at = next,
        }
    }
    dirs.dedup();
    dirs
}

/// The names of `path`'s components, `..` kept, `/` and `.` dropped.
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_links_and_missing_directories_resolve_where_they_lead() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("w")).unwrap();
        std::os::unix::fs::symlink(base.join("w"), base.join("link")).unwrap();
        assert_eq!(resolve(&base.join("link/new/x.jsonl"), Path::new("/")), base.join("w/new/x.jsonl"));
        assert_eq!(resolve(&base.join("nonexist/../w/x"), Path::new("/")), base.join("w/x"));
        assert_eq!(resolve(Path::new("sub/x"), &base.join("w")), base.join("w/sub/x"));
        assert_eq!(resolve(Path::new("./x"), &base.join("link")), base.join("w/x"));
    }

    #[test]
    fn the_directories_a_resolution_reads_include_every_links_own() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for d in ["out", "w", "safe"] {
            std::fs::create_dir(base.join(d)).unwrap();
        }
        std::fs::write(base.join("safe/p.toml"), "").unwrap();
        // out/a -> w/b -> safe/p.toml: the file is outside w, but w/b is w's to retarget
        std::os::unix::fs::symlink(base.join("w/b"), base.join("out/a")).unwrap();
        std::os::unix::fs::symlink(base.join("safe/p.toml"), base.join("w/b")).unwrap();
        let read = directories_read(&base.join("out/a"), Path::new("/"));
        assert!(read.contains(&base.join("w")), "{read:?}");
        assert_eq!(read.last(), Some(&base.join("safe")));
        // a relative link, and `..`, resolve from the directory the link is in
        std::os::unix::fs::symlink("../safe", base.join("out/rel")).unwrap();
        let read = directories_read(Path::new("out/rel/../safe/p.toml"), &base);
        assert!(!read.contains(&base.join("w")), "{read:?}");
        assert_eq!(read.last(), Some(&base.join("safe")));
        // control: a plain path reads its ancestors only
        let read = directories_read(&base.join("safe/p.toml"), Path::new("/"));
        assert_eq!(read.last(), Some(&base.join("safe")));
        assert!(read.iter().all(|d| base.join("safe").starts_with(d)), "{read:?}");
    }
}
