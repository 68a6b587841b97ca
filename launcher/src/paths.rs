//! A path as the kernel would resolve it, whether or not it exists yet: the longest existing
//! prefix canonicalized (symlinks and `..` followed), the rest appended with `.` and `..` applied.
//! Used wherever a decision depends on where a path leads (a record outside the write grants, a
//! refused call judged against the grants), so that `..`, a planted symlink or a directory still
//! to be created cannot make a path look elsewhere.

use std::path::{Component, Path, PathBuf};

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
}
