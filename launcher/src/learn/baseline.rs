//! The grants a learning run adds to its profile: enough for an unknown server to work while its
//! accesses are recorded, and never a secret or a persistence location ([`super::sensitive`]).
//!
//! - read: the home's dot-directories and dot-files (configuration, caches, tool installs), one
//!   grant per entry, descending into `.config`, `.cache` and `.local/{share,state}` so that each
//!   application's directory is its own grant; never a sensitive entry, nor one holding a `.env`
//!   file (found by a bounded scan). Documents and projects (the home's plain directories) are not
//!   in the baseline: the server gets them as arguments;
//! - write: the server's arguments that are existing paths under the home (not the home itself) or
//!   under `/srv`, `/mnt`, `/media`, `/tmp`, `/var/tmp`: a directory, or the directory of a file;
//! - inside those write grants, each git repository's hooks and config are granted read-only,
//!   which the filesystem view binds read-only (they run code later).
//!
//! The network is opened by the plan itself ([`crate::plan::NetPlan`] in learning mode): any TCP
//! or UDP destination outside the `deny` ranges, through the broker, which records each one.

use std::path::{Path, PathBuf};

use crate::profile::{Filesystem, Profile, Sourced};

use super::sensitive::{self, GIT_PERSISTENCE};

/// Where the home is descended one more level: each child is its own grant.
const DESCEND: &[&str] = &[".config", ".cache", ".local", ".local/share", ".local/state"];

/// Outside the home, argument paths under these may be written.
const WRITABLE_ROOTS: &[&str] = &["/srv", "/mnt", "/media", "/tmp", "/var/tmp"];

/// Name resolution's files: a learning run may reach any destination, by name too.
const RESOLVER_FILES: &[&str] = &["/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols"];

/// How many directory entries the `.env` scan of one grant reads at most.
const SCAN_BUDGET: usize = 20_000;

/// The learning baseline as a profile layer, and what it left out (for the run's warnings).
#[derive(Debug)]
pub struct Baseline {
    pub layer: Profile,
    pub notes: Vec<String>,
}

/// `home`: the server user's home; `arguments`: the server's command-line arguments.
pub fn baseline(home: &Path, arguments: &[PathBuf]) -> Baseline {
    let mut notes = Vec::new();
    let mut read: Vec<PathBuf> = RESOLVER_FILES.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    for entry in home_entries(home, Path::new("")) {
        if holds_env_file(&entry) {
            notes.push(format!("{} holds a .env file: left out of the learning baseline", entry.display()));
        } else {
            read.push(entry);
        }
    }
    let write: Vec<PathBuf> = argument_paths(arguments).into_iter().filter_map(|p| writable(&p, home)).collect();
    let protect: Vec<PathBuf> = write.iter().flat_map(|w| git_persistence(w)).collect();
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

/// Where an argument path may be written: itself (a directory) or its directory (a file), when
/// it is under the home or a writable root, and is neither sensitive nor the home or above it.
fn writable(path: &Path, home: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent()?.to_path_buf() };
    let in_home = dir.starts_with(home) && dir != home;
    let in_root = WRITABLE_ROOTS.iter().any(|r| dir.starts_with(r) && dir != Path::new(r));
    let sensitive = sensitive::classify(&dir, home).is_some();
    // Never the home or a directory above it (whose writes could reach a shell's rc file).
    let holds_home = home.starts_with(&dir);
    ((in_home || in_root) && !sensitive && !holds_home).then_some(dir)
}

/// The home's entries the baseline reads: dot-entries, descended where [`DESCEND`] says, never a
/// sensitive one.
fn home_entries(home: &Path, rel: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(home.join(rel)) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let child = rel.join(&name);
        if rel.as_os_str().is_empty() && !name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = home.join(&child);
        if sensitive::classify(&path, home).is_some() {
            continue;
        }
        if DESCEND.iter().any(|d| Path::new(d) == child) {
            out.extend(home_entries(home, &child));
        } else {
            out.push(path);
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

/// The git hooks and configs of the repositories at or up to three levels beneath `dir`.
fn git_persistence(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for d in &level {
            out.extend(GIT_PERSISTENCE.iter().map(|g| d.join(g)).filter(|p| p.exists()));
            let Ok(entries) = std::fs::read_dir(d) else { continue };
            for e in entries.flatten() {
                let skip = e.file_name() == ".git" || e.file_name() == "node_modules";
                if !skip && e.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_reads_dot_entries_but_no_secret_and_writes_only_arguments() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        for d in [".ssh", ".config/app", ".config/gh", ".cache/x", "notes/.git/hooks", ".npm", "work/proj"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::write(home.join(".bashrc"), "").unwrap();
        std::fs::write(home.join(".npm/.env"), "TOKEN=1").unwrap();
        std::fs::write(home.join("notes/.git/config"), "").unwrap();
        let b = baseline(&home, &[home.join("notes"), "--verbose".into(), home.clone()]);
        let read: Vec<_> = b.layer.filesystem.read.iter().map(|s| s.value.clone()).collect();
        let write: Vec<_> = b.layer.filesystem.write.iter().map(|s| s.value.clone()).collect();
        assert!(read.contains(&home.join(".config/app")) && read.contains(&home.join(".cache/x")), "{read:?}");
        for closed in [".ssh", ".config/gh", ".bashrc", ".config", "work", ".npm"] {
            assert!(!read.contains(&home.join(closed)), "{closed} must not be read: {read:?}");
        }
        assert_eq!(b.notes.len(), 1, "the .env holder is named: {:?}", b.notes);
        assert_eq!(write, [home.join("notes")], "the home itself is never written");
        assert!(read.contains(&home.join("notes/.git/hooks")) && read.contains(&home.join("notes/.git/config")));
    }
}
