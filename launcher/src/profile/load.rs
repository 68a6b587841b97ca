//! Loading profiles: reading a file or an embedded name, parsing with precise locations,
//! validating what serde cannot (syscall names, variables, env names), and merging `extends`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Diagnose;

use syscalls::Sysno;
use toml::Spanned;

use super::model::{Endpoint, IpNet, Level, Mcp, Process, Profile, Require, Runtime, Violation};
use super::{embedded, vars};

/// Where a value came from, for error messages: `file:line:column` or a command-line flag.
pub type Origin = String;

/// A value with the place it was written.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// A profile with its `extends` chain merged in (bases first, then the profile itself).
#[derive(Debug, Clone, Default)]
pub struct LoadedProfile {
    /// The name or path the user gave.
    pub name: String,
    pub description: Option<String>,
    pub runtime: Option<Runtime>,
    /// Every file merged, bases first.
    pub chain: Vec<String>,
    pub read: Vec<Sourced<String>>,
    pub write: Vec<Sourced<String>>,
    pub exec: Vec<Sourced<String>>,
    pub private_tmp: bool,
    pub connect: Vec<Sourced<Endpoint>>,
    pub bind: Vec<u16>,
    pub udp: bool,
    pub unix: bool,
    pub deny: Vec<Sourced<IpNet>>,
    pub dns: bool,
    pub process: Process,
    pub env_pass: Vec<Sourced<String>>,
    pub env_set: BTreeMap<String, Sourced<String>>,
    pub syscalls_allow: Vec<Sourced<Sysno>>,
    pub syscalls_deny: Vec<Sourced<Sysno>>,
    pub on_violation: Option<Violation>,
    /// The `[mcp]` sections of the chain merged (lists add up, later values win).
    pub mcp: Option<Mcp>,
    pub require: Require,
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
    let source = Source { id: label.to_string(), label: label.to_string(), dir: None, text: text.to_string() };
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
            text: text.to_string(),
        });
    }
    let path = match relative_to {
        Some(dir) if Path::new(name_or_path).is_relative() => dir.join(name_or_path),
        _ => PathBuf::from(name_or_path),
    };
    let read_err = |source| ProfileError::Read { path: path.clone(), source };
    let text = std::fs::read_to_string(&path).map_err(read_err)?;
    let canonical = path.canonicalize().map_err(read_err)?;
    Ok(Source {
        id: canonical.display().to_string(),
        label: path.display().to_string(),
        dir: canonical.parent().map(Path::to_path_buf),
        text,
    })
}

fn merge_into(into: &mut LoadedProfile, src: &Source, stack: &mut Vec<String>) -> Result<(), ProfileError> {
    if let Some(pos) = stack.iter().position(|id| *id == src.id) {
        let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
        cycle.push(&src.id);
        return Err(ProfileError::Cycle { cycle: cycle.join(" -> ") });
    }
    let profile = parse(src)?;
    stack.push(src.id.clone());
    for base in &profile.extends {
        let base_src = locate(base.get_ref(), src.dir.as_deref()).map_err(|e| match e {
            ProfileError::UnknownName { .. } | ProfileError::Read { .. } => ProfileError::Invalid {
                location: location(src, base.span()),
                message: format!("cannot extend `{}`: {e}", base.get_ref()),
                hint: e.hint(),
            },
            other => other,
        })?;
        merge_into(into, &base_src, stack)?;
    }
    stack.pop();
    apply(into, src, profile)
}

/// Lays `p` (parsed from `src`) over what its bases already put in `into`: lists add up, single
/// values override.
fn apply(into: &mut LoadedProfile, src: &Source, p: Profile) -> Result<(), ProfileError> {
    let sourced = |list: Vec<Spanned<String>>| -> Vec<Sourced<String>> {
        list.into_iter().map(|s| Sourced { origin: location(src, s.span()), value: s.into_inner() }).collect()
    };
    into.chain.push(src.label.clone());
    into.description = p.description.or(into.description.take());
    into.runtime = p.runtime.or(into.runtime);
    into.read.extend(sourced(p.filesystem.read));
    into.write.extend(sourced(p.filesystem.write));
    into.exec.extend(sourced(p.filesystem.exec));
    into.private_tmp = p.filesystem.private_tmp.unwrap_or(into.private_tmp);
    if let Some(m) = p.mcp {
        let to = into.mcp.get_or_insert_with(Mcp::default);
        to.allow_tools.extend(m.allow_tools);
        to.deny_tools.extend(m.deny_tools);
        to.rate_limits.extend(m.rate_limits);
        to.redact = m.redact.or(to.redact);
        to.redact_patterns.extend(m.redact_patterns);
        to.redact_keys.extend(m.redact_keys);
        to.hide_errors = m.hide_errors.or(to.hide_errors);
        to.pin_tools = m.pin_tools.or(to.pin_tools);
        to.log_arguments = m.log_arguments.or(to.log_arguments);
        to.constraints.extend(m.constraints);
    }
    into.connect.extend(
        p.network.connect.into_iter().map(|e| Sourced { origin: location(src, e.span()), value: e.into_inner() }),
    );
    into.bind.extend(p.network.bind);
    into.udp = p.network.udp.unwrap_or(into.udp);
    into.unix = p.network.unix.unwrap_or(into.unix);
    into.deny.extend(p.network.deny.into_iter().map(|n| Sourced { origin: location(src, None), value: n }));
    into.dns = p.network.dns.unwrap_or(into.dns);
    let (base, over) = (&mut into.process, p.process);
    base.user = over.user.or(base.user.take());
    base.group = over.group.or(base.group.take());
    base.max_processes = over.max_processes.or(base.max_processes);
    base.max_open_files = over.max_open_files.or(base.max_open_files);
    base.max_memory = over.max_memory.or(base.max_memory);
    base.max_file_size = over.max_file_size.or(base.max_file_size);
    base.max_cpu_time = over.max_cpu_time.or(base.max_cpu_time);
    base.pid_namespace = over.pid_namespace.or(base.pid_namespace);
    into.env_pass.extend(sourced(p.environment.pass));
    for (k, v) in p.environment.set {
        into.env_set.insert(k, Sourced { value: v, origin: src.label.clone() });
    }
    into.syscalls_allow.extend(syscall_names(src, p.syscalls.allow)?);
    into.syscalls_deny.extend(syscall_names(src, p.syscalls.deny)?);
    into.on_violation = p.syscalls.on_violation.or(into.on_violation);
    let r: Require = p.require;
    let over = |a: Option<Level>, b: &mut Option<Level>| *b = a.or(*b);
    over(r.landlock, &mut into.require.landlock);
    over(r.seccomp, &mut into.require.seccomp);
    over(r.limits, &mut into.require.limits);
    over(r.network, &mut into.require.network);
    over(r.pid_namespace, &mut into.require.pid_namespace);
    over(r.monitor, &mut into.require.monitor);
    over(r.audit_log, &mut into.require.audit_log);
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
            vars::check(p.get_ref())
                .map_err(|m| invalid(Some(p.span()), format!("filesystem.{key}: {m}"), Some(vars::HINT.into())))?;
            let raw = p.get_ref().trim_end_matches('?');
            if !(raw.starts_with('/') || raw.starts_with("${")) {
                return Err(invalid(
                    Some(p.span()),
                    format!("filesystem.{key}: `{raw}` is not an absolute path"),
                    Some("write absolute paths, or start with a variable such as ${HOME}".into()),
                ));
            }
        }
    }
    for name in &profile.environment.pass {
        if !valid_env_pattern(name.get_ref()) {
            return Err(invalid(
                Some(name.span()),
                format!("environment.pass: `{}` is not a variable name", name.get_ref()),
                Some("use NAME or a PREFIX_* glob".into()),
            ));
        }
    }
    for (name, value) in &profile.environment.set {
        if !valid_env_pattern(name) || name.ends_with('*') {
            return Err(invalid(None, format!("environment.set: `{name}` is not a variable name"), None));
        }
        vars::check(value)
            .map_err(|m| invalid(None, format!("environment.set.{name}: {m}"), Some(vars::HINT.into())))?;
    }
    Ok(profile)
}

fn syscall_names(src: &Source, list: Vec<Spanned<String>>) -> Result<Vec<Sourced<Sysno>>, ProfileError> {
    list.into_iter()
        .map(|name| {
            let origin = location(src, name.span());
            match name.get_ref().parse::<Sysno>() {
                Ok(value) => Ok(Sourced { value, origin }),
                Err(()) => Err(ProfileError::Invalid {
                    location: origin,
                    message: format!("`{}` is not a system call on this architecture", name.get_ref()),
                    hint: closest(name.get_ref(), Sysno::iter().map(|s| s.name()))
                        .map(|s| format!("did you mean `{s}`?")),
                }),
            }
        })
        .collect()
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
        assert!(p.read.iter().any(|r| r.value == "/srv"));
        assert!(p.exec.iter().any(|r| r.value == "/usr"), "strict's exec list is inherited");
        assert_eq!(p.process.max_processes, Some(7));
        assert_eq!(p.require.seccomp, Some(Level::BestEffort));
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
}
