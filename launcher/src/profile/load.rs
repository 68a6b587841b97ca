//! Loading profiles: reading a file or an embedded name, parsing with precise locations,
//! validating what serde cannot (syscall names, variables, env names), and merging `extends`
//! (with [`Merge`], the rule the command-line grants follow too).

use std::path::{Path, PathBuf};

use crate::error::Diagnose;

use syscalls::Sysno;

use super::merge::Merge;
use super::model::Profile;
use super::origin::{Locate, Sourced};
use super::{embedded, vars};

/// A profile with its `extends` chain merged in (bases first, then the profile itself).
#[derive(Debug, Clone, Default)]
pub struct LoadedProfile {
    /// The name or path the user gave.
    pub name: String,
    /// Every file merged, bases first.
    pub chain: Vec<String>,
    /// Every profile file read, as it was named (embedded profiles have none): what the next
    /// start reads, which the server must not be able to write or redirect.
    pub files: Vec<PathBuf>,
    /// The chain's layers merged (and, once [`LoadedProfile::overlay`] ran, the command line's).
    pub layer: Profile,
}

impl LoadedProfile {
    /// Lays `over` (the command line's grants) over the profile, by the rule `extends` follows.
    pub fn overlay(mut self, over: Profile) -> Self {
        self.layer = std::mem::take(&mut self.layer).merge(over);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("failed to read profile {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no embedded profile named `{name}`")]
    UnknownName { name: String, suggestion: Option<String> },
    #[error("invalid profile {location}: {message}")]
    Invalid { location: String, message: String, hint: Option<String> },
    #[error("profile `extends` cycle: {cycle}")]
    Cycle { cycle: String },
}

impl crate::error::Diagnose for ProfileError {
    fn hint(&self) -> Option<String> {
        match self {
            ProfileError::Read { .. } => {
                Some("give an embedded profile name (`mcp-warden profiles list`) or a path to a .toml file".into())
            }
            ProfileError::UnknownName { suggestion: Some(s), .. } => Some(format!("did you mean `{s}`?")),
            ProfileError::UnknownName { .. } => {
                Some("`mcp-warden profiles list` shows the embedded profiles; a path must contain a `/`".into())
            }
            ProfileError::Invalid { hint, .. } => hint.clone(),
            ProfileError::Cycle { .. } => Some("remove one of the `extends` entries in the cycle".into()),
        }
    }
}

/// Loads a profile by embedded name or path (a path contains `/` or ends in `.toml`).
pub fn load(name_or_path: &str) -> Result<LoadedProfile, ProfileError> {
    let mut merged = LoadedProfile { name: name_or_path.to_string(), ..Default::default() };
    let mut stack = Vec::new();
    merge_into(&mut merged, &locate(name_or_path, None)?, &mut stack)?;
    Ok(merged)
}

/// Parses and validates one profile from text (for `check` and tests), merging its `extends`.
pub fn load_source(label: &str, text: &str) -> Result<LoadedProfile, ProfileError> {
    let source =
        Source { id: label.to_string(), label: label.to_string(), dir: None, file: None, text: text.to_string() };
    let mut merged = LoadedProfile { name: label.to_string(), ..Default::default() };
    merge_into(&mut merged, &source, &mut Vec::new())?;
    Ok(merged)
}

struct Source {
    /// Identity for cycle detection: `embedded:NAME` or the canonical path.
    id: String,
    /// What error messages call it.
    label: String,
    /// Directory relative `extends` paths are resolved from.
    dir: Option<PathBuf>,
    /// The file, as named (a relative `extends` joined to `dir`); `None` when embedded.
    file: Option<PathBuf>,
    text: String,
}

fn is_path(s: &str) -> bool {
    s.contains('/') || s.ends_with(".toml")
}

fn locate(name_or_path: &str, relative_to: Option<&Path>) -> Result<Source, ProfileError> {
    if !is_path(name_or_path) {
        let text = embedded(name_or_path).ok_or_else(|| ProfileError::UnknownName {
            name: name_or_path.to_string(),
            suggestion: closest(name_or_path, super::EMBEDDED.iter().map(|(n, _)| *n)),
        })?;
        return Ok(Source {
            id: format!("embedded:{name_or_path}"),
            label: format!("{name_or_path} (embedded)"),
            dir: None,
            file: None,
            text: text.to_string(),
        });
    }
    let path = match relative_to {
        Some(dir) if Path::new(name_or_path).is_relative() => dir.join(name_or_path),
        _ => PathBuf::from(name_or_path),
    };
    let read_err = |source| ProfileError::Read { path: path.clone(), source };
    let text = std::fs::read_to_string(&path).map_err(read_err)?;
    // A pipe (`--profile <(...)`) reads, but its /dev/fd link leads to no path: it is its own name.
    let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
    Ok(Source {
        id: canonical.display().to_string(),
        label: path.display().to_string(),
        dir: canonical.parent().map(Path::to_path_buf),
        file: Some(path),
        text,
    })
}

fn merge_into(into: &mut LoadedProfile, src: &Source, stack: &mut Vec<String>) -> Result<(), ProfileError> {
    if let Some(pos) = stack.iter().position(|id| *id == src.id) {
        let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
        cycle.push(&src.id);
        return Err(ProfileError::Cycle { cycle: cycle.join(" -> ") });
    }
    let mut profile = parse(src)?;
    stack.push(src.id.clone());
    for base in std::mem::take(&mut profile.extends) {
        let base_src = locate(&base.value, src.dir.as_deref()).map_err(|e| match e {
            ProfileError::UnknownName { .. } | ProfileError::Read { .. } => ProfileError::Invalid {
                location: location(src, base.span()),
                message: format!("cannot extend `{}`: {e}", base.value),
                hint: e.hint(),
            },
            other => other,
        })?;
        merge_into(into, &base_src, stack)?;
    }
    stack.pop();
    // Lay this file over what its bases already put in `into`.
    profile.locate(&|span| location(src, span.clone()));
    into.chain.push(src.label.clone());
    into.files.extend(src.file.clone());
    into.layer = std::mem::take(&mut into.layer).merge(profile);
    Ok(())
}

/// Parses one file and checks what the types alone cannot.
fn parse(src: &Source) -> Result<Profile, ProfileError> {
    let profile: Profile = toml::from_str(&src.text).map_err(|e| {
        let (message, hint) = explain_toml_error(e.message());
        ProfileError::Invalid {
            location: e.span().map_or_else(|| src.label.clone(), |s| location(src, Some(s))),
            message,
            hint,
        }
    })?;
    let invalid = |span: Option<std::ops::Range<usize>>, message: String, hint: Option<String>| ProfileError::Invalid {
        location: location(src, span),
        message,
        hint,
    };
    let fs = &profile.filesystem;
    for (key, list) in [("read", &fs.read), ("write", &fs.write), ("exec", &fs.exec)] {
        for p in list {
            let text = p.value.to_string_lossy();
            vars::check(&text)
                .map_err(|m| invalid(p.span(), format!("filesystem.{key}: {m}"), Some(vars::HINT.into())))?;
            let raw = text.trim_end_matches('?');
            if !(raw.starts_with('/') || raw.starts_with("${")) {
                return Err(invalid(
                    p.span(),
                    format!("filesystem.{key}: `{raw}` is not an absolute path"),
                    Some("write absolute paths, or start with a variable such as ${HOME}".into()),
                ));
            }
        }
    }
    for name in &profile.environment.pass {
        if !valid_env_pattern(&name.value) {
            return Err(invalid(
                name.span(),
                format!("environment.pass: `{}` is not a variable name", name.value),
                Some("use NAME or a PREFIX_* glob".into()),
            ));
        }
    }
    for (name, value) in &profile.environment.set {
        if !valid_env_pattern(name) || name.ends_with('*') {
            return Err(invalid(None, format!("environment.set: `{name}` is not a variable name"), None));
        }
        vars::check(&value.value)
            .map_err(|m| invalid(None, format!("environment.set.{name}: {m}"), Some(vars::HINT.into())))?;
    }
    check_syscall_names(src, &profile.syscalls.allow)?;
    check_syscall_names(src, &profile.syscalls.deny)?;
    Ok(profile)
}

/// Every entry names a system call of this architecture.
fn check_syscall_names(src: &Source, list: &[Sourced<String>]) -> Result<(), ProfileError> {
    for name in list {
        if name.value.parse::<Sysno>().is_err() {
            return Err(ProfileError::Invalid {
                location: location(src, name.span()),
                message: format!("`{}` is not a system call on this architecture", name.value),
                hint: closest(&name.value, Sysno::iter().map(|s| s.name())).map(|s| format!("did you mean `{s}`?")),
            });
        }
    }
    Ok(())
}

pub(crate) fn valid_env_pattern(name: &str) -> bool {
    let body = name.strip_suffix('*').unwrap_or(name);
    let mut chars = body.chars();
    match chars.next() {
        None => false,
        Some(c) if c.is_ascii_alphabetic() || c == '_' => chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
        Some(_) => false,
    }
}

/// `file:line:column` of a byte span in a source.
fn location(src: &Source, span: impl Into<Option<std::ops::Range<usize>>>) -> String {
    let Some(span) = span.into() else { return src.label.clone() };
    let before = &src.text[..span.start.min(src.text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    format!("{}:{line}:{column}", src.label)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a message and a suggestion.
fn explain_toml_error(message: &str) -> (String, Option<String>) {
    let message = message.trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = match closest(field, candidates.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? (keys are kebab-case; see docs/profiles.md)"),
            None => format!("valid keys here: {}", candidates.join(", ")),
        };
        return (format!("unknown key `{field}`"), Some(hint));
    }
    (message, Some("see docs/profiles.md for every key and its type".into()))
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Level;

    fn err(text: &str) -> (String, Option<String>) {
        match load_source("t.toml", text) {
            Err(e) => (e.to_string(), e.hint()),
            Ok(_) => panic!("profile should have been rejected:\n{text}"),
        }
    }

    #[test]
    fn unknown_key_names_file_line_column_and_suggests() {
        let (msg, hint) = err("[filesystem]\nread = []\nredd = [\"/x\"]\n");
        assert_eq!(msg, "invalid profile t.toml:3:1: unknown key `redd`");
        assert!(hint.unwrap().contains("did you mean `read`?"));
    }

    #[test]
    fn unknown_section_is_rejected() {
        let (msg, _) = err("[filesytem]\n");
        assert!(msg.contains("t.toml:1:"), "{msg}");
        assert!(msg.contains("unknown key `filesytem`"), "{msg}");
    }

    #[test]
    fn bad_values_are_located() {
        let (msg, _) = err("[process]\nmax-memory = \"12Q\"\n");
        assert!(msg.starts_with("invalid profile t.toml:2:14:"), "{msg}");
        assert!(msg.contains("unknown size suffix"), "{msg}");
        let (msg, _) = err("[network]\nconnect = [\"10.0.0.300:80\"]\n");
        assert!(msg.contains("t.toml:2:12") && msg.contains("not an IP address"), "{msg}");
        let (msg, _) = err("[network]\nconnect = [\"-bad-:80\"]\n");
        assert!(msg.contains("t.toml:2:12") && msg.contains("nor a host name"), "{msg}");
        let (msg, _) = err("[require]\nlandlock = \"maybe\"\n");
        assert!(msg.contains("t.toml:2:12"), "{msg}");
    }

    #[test]
    fn unknown_syscall_suggests_the_real_one() {
        let (msg, hint) = err("[syscalls]\ndeny = [\"ptrac\"]\n");
        assert_eq!(msg, "invalid profile t.toml:2:9: `ptrac` is not a system call on this architecture");
        assert_eq!(hint.as_deref(), Some("did you mean `ptrace`?"));
    }

    #[test]
    fn relative_paths_and_unknown_variables_are_rejected() {
        let (msg, _) = err("[filesystem]\nread = [\"etc/passwd\"]\n");
        assert!(msg.contains("not an absolute path"), "{msg}");
        let (msg, _) = err("[filesystem]\nread = [\"${HOEM}/x\"]\n");
        assert!(msg.contains("unknown variable `HOEM`"), "{msg}");
    }

    #[test]
    fn extends_merges_lists_and_overrides_scalars() {
        let p = load_source(
            "t.toml",
            "extends = [\"strict\"]\n[filesystem]\nread = [\"/srv\"]\n[process]\nmax-processes = 7\n[require]\nseccomp = \"best-effort\"\n",
        )
        .unwrap();
        let l = &p.layer;
        assert!(l.filesystem.read.iter().any(|r| r.value == Path::new("/srv")));
        assert!(l.filesystem.exec.iter().any(|r| r.value == Path::new("/usr")), "strict's exec list is inherited");
        assert_eq!(l.process.max_processes, Some(7));
        assert_eq!(l.require.seccomp, Some(Level::BestEffort));
        let read = l.filesystem.read.iter().find(|r| r.value == Path::new("/srv")).unwrap();
        assert_eq!(read.origin.to_string(), "t.toml:3:9", "origins are located in their file");
        assert_eq!(p.chain, vec!["strict (embedded)".to_string(), "t.toml".to_string()]);
    }

    #[test]
    fn extends_cycles_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "extends = [\"b.toml\"]\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "extends = [\"a.toml\"]\n").unwrap();
        let e = load(dir.path().join("a.toml").to_str().unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("profile `extends` cycle: "), "{msg}");
        assert!(msg.contains("a.toml -> ") && msg.contains("b.toml -> ") && msg.ends_with("a.toml"), "{msg}");
    }

    #[test]
    fn unknown_embedded_name_suggests() {
        let e = load("strcit").unwrap_err();
        assert_eq!(e.to_string(), "no embedded profile named `strcit`");
        assert_eq!(e.hint().as_deref(), Some("did you mean `strict`?"));
    }

    #[test]
    fn every_embedded_profile_loads() {
        for (name, _) in super::super::EMBEDDED {
            load(name).unwrap_or_else(|e| panic!("embedded profile {name}: {e}"));
        }
    }

    #[test]
    fn a_profile_from_a_pipe_loads() {
        use std::io::Write;
        let (read, write) = std::io::pipe().unwrap_or_else(|e| panic!("{e}"));
        let mut write = write;
        write.write_all(b"extends = [\"strict\"]\n").unwrap_or_else(|e| panic!("{e}"));
        drop(write);
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&read));
        let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.chain, vec!["strict (embedded)".to_string(), path]);
    }
}
