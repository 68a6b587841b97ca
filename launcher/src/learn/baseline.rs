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

/// How many directory entries one scan (`.env` files, git repositories) reads at most.
const SCAN_BUDGET: usize = 20_000;

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
    let closed = sensitive::locations(&home);
    let mut notes = Vec::new();
    let mut read: Vec<PathBuf> = RESOLVER_FILES.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    for entry in home_entries(&home, Path::new("")) {
        read.extend(around(&entry, &home, &closed, SPLIT_DEPTH, &mut notes));
    }
    let mut write = Vec::new();
    for arg in argument_paths(arguments) {
        match writable(&arg, &home, &closed) {
            Some(dir) if dir.is_dir() => write.extend(around(&dir, &home, &closed, SPLIT_DEPTH, &mut notes)),
            Some(file) => write.push(file),
            None => notes.push(format!(
                "the argument {} is not written while learning (it reaches the home or a secret)",
                arg.display()
            )),
        }
    }
    let protect: Vec<PathBuf> = write.iter().flat_map(|w| git_dirs(w)).collect();
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

/// Where an argument path may be written: itself (a directory), or its directory (a file) when
/// that reaches nothing sensitive, else the file alone; only under the home or a writable root,
/// never the home or above it, never a sensitive path or one holding one.
fn writable(path: &Path, home: &Path, closed: &[PathBuf]) -> Option<PathBuf> {
    let allowed_place = |p: &Path| {
        let in_home = p.starts_with(home) && p != home;
        let in_root = WRITABLE_ROOTS.iter().any(|r| p.starts_with(r) && p != Path::new(r));
        (in_home || in_root) && sensitive::classify(p, home).is_none() && !sensitive::reaches(p, home, closed)
    };
    if path.is_dir() {
        return allowed_place(path).then(|| path.to_path_buf());
    }
    let dir = path.parent()?;
    let descended = DESCEND.iter().any(|d| home.join(d) == dir);
    if allowed_place(dir) && !descended {
        return Some(dir.to_path_buf());
    }
    allowed_place(path).then(|| path.to_path_buf())
}

/// `dir` as grants that reach nothing closed: itself when nothing sensitive and no `.env` file
/// lies beneath it, else its entries one by one (down to `depth` levels), leaving out the
/// sensitive ones and the `.env` files. What is left out is noted.
fn around(dir: &Path, home: &Path, closed: &[PathBuf], depth: usize, notes: &mut Vec<String>) -> Vec<PathBuf> {
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if sensitive::classify(&real, home).is_some()
        || sensitive::classify(dir, home).is_some()
        || sensitive::is_env_file(&name)
    {
        return Vec::new();
    }
    let splits = sensitive::reaches(&real, home, closed) || holds_env_file(&real);
    if !splits {
        return vec![real];
    }
    if depth == 0 || !real.is_dir() {
        notes.push(format!("{} holds a secret or a .env file too deep to grant around: left out", dir.display()));
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&real) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        out.extend(around(&entry.path(), home, closed, depth - 1, notes));
    }
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

/// Does a `.env` file lie at or beneath `path` (depth-first, at most [`SCAN_BUDGET`] entries read,
/// a tree too large to scan counted as holding one)? Installed packages (`node_modules`,
/// `site-packages`) are not searched.
fn holds_env_file(path: &Path) -> bool {
    let mut budget = SCAN_BUDGET;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            budget = match budget.checked_sub(1) {
                Some(b) => b,
                None => return true,
            };
            if sensitive::is_env_file(&entry.file_name().to_string_lossy()) {
                return true;
            }
            // Installed packages are not the user's secrets (their test fixtures hold `.env`s).
            let packages =
                ["node_modules", "site-packages", "dist-packages", ".git"].iter().any(|p| entry.file_name() == *p);
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !packages {
                stack.push(entry.path());
            }
        }
    }
    false
}

/// The `.git` directories and files (worktrees) of the repositories at or beneath `dir` (at most
/// [`SCAN_BUDGET`] entries read, `node_modules` skipped).
fn git_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut budget = SCAN_BUDGET;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            budget = match budget.checked_sub(1) {
                Some(b) => b,
                None => return out,
            };
            if e.file_name() == ".git" {
                out.push(e.path());
            } else if e.file_name() != "node_modules" && e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
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
        for closed in [".ssh", ".config/gh", ".bashrc", ".config", "work", ".npm", ".npm/.env"] {
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
    fn a_file_argument_never_opens_its_sensitive_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".config/autostart")).unwrap();
        std::fs::create_dir_all(home.join("proj/src")).unwrap();
        std::fs::write(home.join(".config/app.json"), "{}").unwrap();
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
