//! The grants a learning run adds to its profile: enough for an unknown server to work while its
//! accesses are recorded, and never a secret or a persistence location ([`super::sensitive`]).
//!
//! - read: the home's dot-directories and dot-files (configuration, caches, tool installs), one
//!   grant per entry, descending into `.config`, `.cache` and `.local/{share,state}` so that each
//!   application's directory is its own grant. A directory that holds a sensitive location (or is
//!   where a listed one's symlink points) is never granted whole: its entries are, one by one,
//!   around it; an entry holding a `.env` file (a bounded scan) is left out. Documents and projects
//!   (the home's plain directories) are not in the baseline: the server gets them as arguments;
//! - write: the server's arguments that are existing paths under the home or under `/srv`,
//!   `/mnt`, `/media`, `/tmp`, `/var/tmp`: a directory, or a file's directory when that directory
//!   reaches nothing sensitive (else the file alone). A directory holding `.env` files is granted
//!   entry by entry around them;
//! - inside those write grants, each existing git repository's `.git` is granted read-only, which
//!   the filesystem view binds read-only (hooks, config and `commondir` run code later).
//!
//! The network is opened by the plan itself ([`crate::plan::NetPlan`] in learning mode): any TCP
//! or UDP destination outside the `deny` ranges, through the broker, which records each one.

use std::path::{Path, PathBuf};

use crate::profile::{Filesystem, Profile, Sourced};

use super::sensitive;

/// Where the home is descended one more level: each child is its own grant.
const DESCEND: &[&str] = &[".config", ".cache", ".local", ".local/share", ".local/state"];

/// Outside the home, argument paths under these may be written.
const WRITABLE_ROOTS: &[&str] = &["/srv", "/mnt", "/media", "/tmp", "/var/tmp"];

/// Name resolution's files: a learning run may reach any destination, by name too.
const RESOLVER_FILES: &[&str] = &["/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols"];

/// How deep a grant is split around what it must not reach.
const SPLIT_DEPTH: usize = 4;

/// The learning baseline as a profile layer, and what it left out (for the run's warnings).
#[derive(Debug)]
pub struct Baseline {
    pub layer: Profile,
    pub notes: Vec<String>,
}

/// `home`: the server user's home; `arguments`: the server's command-line arguments.
pub fn baseline(home: &Path, arguments: &[PathBuf]) -> Baseline {
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let closed = sensitive::Closed::new(&home);
    let mut notes = Vec::new();
    let mut read: Vec<PathBuf> = RESOLVER_FILES.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    for entry in home_entries(&home, Path::new("")) {
        read.extend(around(&entry, &Around { closed: &closed, write: false }, SPLIT_DEPTH, &mut notes));
    }
    let mut write = Vec::new();
    let mut protect = Vec::new();
    for arg in argument_paths(arguments) {
        let Some(target) = writable(&arg, &home, &closed) else {
            notes.push(format!(
                "the argument {} is not written while learning (it reaches the home or a closed location)",
                sensitive::shown(&arg)
            ));
            continue;
        };
        let Some(repos) = git_persistence(&target).map(|found| inside(found, &target)) else {
            notes.push(format!(
                "{} is too large to search for git repositories: read-only while learning",
                sensitive::shown(&target)
            ));
            read.push(target);
            continue;
        };
        protect.extend(repos);
        write.extend(around(&target, &Around { closed: &closed, write: true }, SPLIT_DEPTH, &mut notes));
    }
    let sourced = |list: Vec<PathBuf>| list.into_iter().map(|p| Sourced::flag("--learn", p)).collect();
    let layer = Profile {
        filesystem: Filesystem {
            read: sourced(read.into_iter().chain(protect).collect()),
            write: sourced(write),
            ..Default::default()
        },
        ..Default::default()
    };
    Baseline { layer, notes }
}

/// The server's arguments that name existing paths (`--flag=PATH` too), canonical.
pub fn argument_paths(arguments: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for arg in arguments {
        let text = arg.to_string_lossy();
        let candidate = match text.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => PathBuf::from(value),
            _ => arg.clone(),
        };
        if !candidate.is_absolute() && !text.starts_with('.') {
            continue;
        }
        if let Ok(p) = candidate.canonicalize()
            && p != Path::new("/")
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// Where an argument path may be written: itself (a directory); for a file, its directory when
/// that is a plain directory (not inside a home dot-directory, where tools keep what runs later:
/// `~/.local/lib`, `~/.cargo/bin`, editors' start-up files) reaching nothing closed, else the file
/// alone. Only under the home or a writable root, never the home or above it.
fn writable(path: &Path, home: &Path, closed: &sensitive::Closed) -> Option<PathBuf> {
    let allowed_place = |p: &Path| {
        let in_home = p.starts_with(home) && p != home;
        let in_root = WRITABLE_ROOTS.iter().any(|r| p.starts_with(r) && p != Path::new(r));
        (in_home || in_root) && closed.classify(p).is_none() && !closed.reaches(p, true)
    };
    if path.is_dir() {
        return allowed_place(path).then(|| path.to_path_buf());
    }
    let dir = path.parent()?;
    let in_dot_dir = dir
        .strip_prefix(home)
        .ok()
        .and_then(|rel| rel.components().next())
        .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    if allowed_place(dir) && !in_dot_dir {
        return Some(dir.to_path_buf());
    }
    allowed_place(path).then(|| path.to_path_buf())
}

/// What [`around`] keeps a grant away from.
struct Around<'a> {
    closed: &'a sensitive::Closed,
    /// A write grant (persistence locations closed too), else a read grant (secrets only).
    write: bool,
}

/// Grants one split may make at most; past them the directory is left out.
const SPLIT_MAX: usize = 512;

/// `dir` as grants that reach nothing closed: itself when nothing closed and no `.env` file lies
/// beneath it, else its entries one by one (down to `depth` levels), leaving out the closed ones
/// and the `.env` files. A tree too large to scan, too deep or too wide to split is left out;
/// what is left out is noted.
fn around(dir: &Path, a: &Around<'_>, depth: usize, notes: &mut Vec<String>) -> Vec<PathBuf> {
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let closed_here = [&real, &dir.to_path_buf()]
        .iter()
        .filter_map(|p| a.closed.classify(p))
        .any(|what| sensitive::closes(what, a.write));
    if closed_here || sensitive::is_env_file(&name) {
        return Vec::new();
    }
    let scan = if real.is_dir() { sensitive::scan(&real) } else { sensitive::Scan { env_file: false, complete: true } };
    if !scan.complete {
        notes.push(format!("{} is too large to search for .env files: left out while learning", sensitive::shown(dir)));
        return Vec::new();
    }
    if !a.closed.reaches(&real, a.write) && !scan.env_file {
        return vec![real];
    }
    let Ok(entries) = std::fs::read_dir(&real) else { return Vec::new() };
    let entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    if depth == 0 || entries.len() > SPLIT_MAX {
        notes.push(format!(
            "{} holds a closed location too deep or among too many entries to grant around: left out",
            sensitive::shown(dir)
        ));
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = entries.iter().flat_map(|e| around(e, a, depth - 1, notes)).collect();
    out.sort();
    out
}

/// The home's entries the baseline reads: dot-entries, descended where [`DESCEND`] says.
fn home_entries(home: &Path, rel: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(home.join(rel)) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let child = rel.join(&name);
        if rel.as_os_str().is_empty() && !name.to_string_lossy().starts_with('.') {
            continue;
        }
        if DESCEND.iter().any(|d| Path::new(d) == child) {
            out.extend(home_entries(home, &child));
        } else {
            out.push(home.join(&child));
        }
    }
    out.sort();
    out
}

/// What in the git repositories at or beneath `dir` runs code later, to be bound read-only: each
/// `.git` directory, the directory a `.git` file points to (worktrees, `--separate-git-dir`),
/// bare repositories, and the `core.hooksPath` a repository's config names (husky's `.husky`).
/// `None` when the tree is too large to search ([`sensitive::SCAN_BUDGET`] entries).
pub(super) fn git_persistence(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut budget = sensitive::SCAN_BUDGET;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if is_bare_repository(&d) {
            out.push(d.clone());
            out.extend(hooks_path(&d, &d));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            budget = budget.checked_sub(1)?;
            let path = e.path();
            if e.file_name() == ".git" {
                let gitdir = git_file_target(&path).unwrap_or_else(|| path.clone());
                out.extend(hooks_path(&gitdir, &d));
                if gitdir != path {
                    out.push(gitdir);
                }
                out.push(path);
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Some(out)
}

/// The paths of `found` that really are beneath `target` (symlinks and `..` resolved): only what
/// lies inside a write grant needs to be made read-only there, and nothing a repository names
/// (`gitdir: ../..`, a `.git` symlink to the home) may become a grant of its own.
pub(super) fn inside(found: Vec<PathBuf>, target: &Path) -> Vec<PathBuf> {
    let target = target.canonicalize().unwrap_or_else(|_| target.to_path_buf());
    let mut out: Vec<PathBuf> = found
        .into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .filter(|p| p.starts_with(&target) && *p != target)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A bare repository: `HEAD`, `objects/` and `refs/` in the directory itself.
fn is_bare_repository(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
}

/// The directory a `.git` file names (`gitdir: PATH`, relative to the file's directory).
fn git_file_target(dot_git: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dot_git).ok()?;
    let target = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
    Some(dot_git.parent()?.join(target)).filter(|p| p.exists())
}

/// The `core.hooksPath` of the repository whose git directory is `gitdir` (relative paths are
/// relative to the working tree `worktree`), when it exists.
fn hooks_path(gitdir: &Path, worktree: &Path) -> Option<PathBuf> {
    let config = std::fs::read_to_string(gitdir.join("config")).ok()?;
    let value = config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        key.trim().eq_ignore_ascii_case("hookspath").then(|| value.trim().trim_matches('"').to_string())
    })?;
    Some(worktree.join(value)).filter(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(b: &Baseline) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let list = |l: &[Sourced<PathBuf>]| l.iter().map(|s| s.value.clone()).collect();
        (list(&b.layer.filesystem.read), list(&b.layer.filesystem.write))
    }

    #[test]
    fn the_baseline_reads_dot_entries_but_no_secret_and_writes_only_arguments() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        for d in [".ssh", ".config/app", ".config/gh", ".cache/x", "notes/.git/hooks", ".npm/_cacache", "work/proj"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::write(home.join(".bashrc"), "").unwrap();
        std::fs::write(home.join(".npm/.env"), "TOKEN=1").unwrap();
        std::fs::write(home.join("notes/.git/config"), "").unwrap();
        let b = baseline(&home, &[home.join("notes"), "--verbose".into(), home.clone()]);
        let (read, write) = grants(&b);
        assert!(read.contains(&home.join(".config/app")) && read.contains(&home.join(".cache/x")), "{read:?}");
        assert!(read.contains(&home.join(".npm/_cacache")), "granted around the .env: {read:?}");
        assert!(read.contains(&home.join(".bashrc")), "a persistence location may be read, not written");
        for closed in [".ssh", ".config/gh", ".config", "work", ".npm", ".npm/.env"] {
            assert!(!read.contains(&home.join(closed)), "{closed} must not be read: {read:?}");
        }
        assert_eq!(write, [home.join("notes")], "the home itself is never written");
        assert!(b.notes.iter().any(|n| n.contains("is not written")), "{:?}", b.notes);
        assert!(read.contains(&home.join("notes/.git")), "the repository's .git is read-only: {read:?}");
    }

    #[test]
    fn grants_go_around_nested_and_linked_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        for d in [".cargo/registry", ".config/Code/User/globalStorage", ".ssh", ".dotfiles/gnupg", ".dotfiles/vim"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::write(home.join(".cargo/credentials.toml"), "token").unwrap();
        std::os::unix::fs::symlink(home.join(".ssh"), home.join(".mykeys")).unwrap();
        std::os::unix::fs::symlink(home.join(".dotfiles/gnupg"), home.join(".gnupg")).unwrap();
        let (read, _) = grants(&baseline(&home, &[]));
        assert!(read.contains(&home.join(".cargo/registry")), "{read:?}");
        assert!(read.contains(&home.join(".dotfiles/vim")), "{read:?}");
        for closed in [".cargo", ".cargo/credentials.toml", ".config/Code", ".ssh", ".dotfiles", ".dotfiles/gnupg"] {
            assert!(!read.contains(&home.join(closed)), "{closed} must not be read: {read:?}");
        }
    }

    #[test]
    fn hooks_wherever_git_finds_them_are_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        let notes = home.join("notes");
        for d in ["proj/.git", "proj/.husky", "backup.git/objects", "backup.git/refs", "store/hooks", "wt"] {
            std::fs::create_dir_all(notes.join(d)).unwrap();
        }
        std::fs::write(notes.join("proj/.git/config"), "[core]\n\thooksPath = .husky\n").unwrap();
        std::fs::write(notes.join("backup.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(notes.join("wt/.git"), "gitdir: ../store\n").unwrap();
        let (read, write) = grants(&baseline(&home, std::slice::from_ref(&notes)));
        assert_eq!(write, std::slice::from_ref(&notes));
        for protected in ["proj/.git", "proj/.husky", "backup.git", "wt/.git"] {
            assert!(read.contains(&notes.join(protected)), "{protected} read-only: {read:?}");
        }
        assert!(read.iter().any(|p| p.ends_with("store")), "the separate git dir: {read:?}");
    }

    #[test]
    fn a_git_file_or_link_pointing_out_of_the_argument_grants_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join("n2")).unwrap();
        std::fs::create_dir_all(home.join("n5")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join("n2/.git"), "gitdir: ..\n").unwrap();
        std::os::unix::fs::symlink(&home, home.join("n5/.git")).unwrap();
        let (read, _) = grants(&baseline(&home, &[home.join("n2"), home.join("n5")]));
        assert!(!read.iter().any(|p| home.starts_with(p)), "the home, or above it, granted: {read:?}");
    }

    #[test]
    fn a_file_argument_never_opens_its_sensitive_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".config/autostart")).unwrap();
        std::fs::create_dir_all(home.join(".local/lib")).unwrap();
        std::fs::create_dir_all(home.join("proj/src")).unwrap();
        std::fs::write(home.join(".config/app.json"), "{}").unwrap();
        std::fs::write(home.join(".local/lib/app.db"), "").unwrap();
        std::fs::write(home.join("proj/.env"), "K=V").unwrap();
        std::fs::write(home.join("proj/README"), "").unwrap();
        let b = baseline(
            &home,
            &[format!("--config={}", home.join(".config/app.json").display()).into(), home.join("proj")],
        );
        let (_, write) = grants(&b);
        assert!(write.contains(&home.join(".config/app.json")), "the file alone: {write:?}");
        assert!(!write.contains(&home.join(".config")) && !write.contains(&home.join("proj")), "{write:?}");
        assert!(write.contains(&home.join("proj/src")) && write.contains(&home.join("proj/README")), "{write:?}");
        assert!(!write.contains(&home.join("proj/.env")));
    }
}
