//! What a tool call may do: which tools exist for the model, how often they may be called, and
//! what their arguments may be.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde_json::Value;

/// Why the profile's tool policy cannot be compiled, or why a tool call breaks it. The messages
/// are what the model reads in a refused call's error and what `check`/`run` print.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An `allow-tools` / `deny-tools` entry that is not a glob.
    #[error("tool pattern `{pattern}`: {source}")]
    ToolPattern { pattern: String, source: globset::Error },
    /// The tool patterns, each valid, cannot be combined into one matcher.
    #[error("{0}")]
    ToolSet(globset::Error),
    /// A `rate-limits` key that is not a glob.
    #[error("rate-limit pattern `{pattern}`: {source}")]
    RatePattern { pattern: String, source: globset::Error },
    /// A rate that is not `N/PERIOD`.
    #[error("`{rate}` is not a rate such as `30/min` (periods: s, min, h)")]
    Rate { rate: String },
    /// The tool matches `deny-tools`.
    #[error("tool `{tool}` is denied by the profile")]
    ToolDenied { tool: String },
    /// `allow-tools` is set and the tool matches none of it.
    #[error("tool `{tool}` is not in the profile's allowed tools")]
    ToolNotAllowed { tool: String },
    /// A constrained argument that is not a string.
    #[error("argument `{argument}` must be a string")]
    NotAString { argument: String },
    #[error("argument `{argument}` is longer than {max} characters")]
    TooLong { argument: String, max: usize },
    #[error("argument `{argument}` does not match the pattern `{pattern}`")]
    PatternMismatch { argument: String, pattern: String },
    #[error("argument `{argument}` must be one of {values:?}")]
    NotOneOf { argument: String, values: Vec<String> },
    /// A path argument outside the constraint's `under` directories (`value`: as the call gave it).
    #[error("argument `{argument}` (`{value}`) is outside the allowed directories {}", display_dirs(dirs))]
    OutsideDirectories { argument: String, value: String, dirs: Vec<PathBuf> },
    /// The arguments do not match the tool's `inputSchema` (`argument`: the dotted path of the
    /// offending value, `None` for the arguments as a whole).
    #[error(
        "{}: {source}",
        argument.as_ref().map_or_else(|| "the arguments".to_string(), |a| format!("argument `{a}`"))
    )]
    Schema { argument: Option<String>, source: Box<jsonschema::ValidationError<'static>> },
}

impl crate::error::Diagnose for PolicyError {
    fn hint(&self) -> Option<String> {
        match self {
            PolicyError::ToolPattern { .. } | PolicyError::RatePattern { .. } => {
                Some("tool patterns are globs: `*`, `?`, `[abc]`, `{a,b}`".into())
            }
            _ => None,
        }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn globs(patterns: &[String]) -> Result<GlobSet, PolicyError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|source| PolicyError::ToolPattern { pattern: p.clone(), source })?);
    }
    b.build().map_err(PolicyError::ToolSet)
}

/// `allow-tools` / `deny-tools`.
#[derive(Debug, Clone)]
pub struct ToolFilter {
    allow: Option<GlobSet>,
    deny: GlobSet,
    /// The patterns as written, for `explain`.
    written: (Vec<String>, Vec<String>),
}

impl ToolFilter {
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, PolicyError> {
        Ok(ToolFilter {
            allow: (!allow.is_empty()).then(|| globs(allow)).transpose()?,
            deny: globs(deny)?,
            written: (allow.to_vec(), deny.to_vec()),
        })
    }

    pub fn describe(&self) -> String {
        let (allow, deny) = &self.written;
        let allow = if allow.is_empty() { "all".to_string() } else { allow.join(", ") };
        if deny.is_empty() {
            format!("allowed: {allow}")
        } else {
            format!("allowed: {allow}; denied: {}", deny.join(", "))
        }
    }

    /// The allow and deny patterns as written (for the score).
    pub fn lists(&self) -> (&[String], &[String]) {
        (&self.written.0, &self.written.1)
    }

    /// `Err(why)` when the tool is hidden from the model.
    pub fn permits(&self, tool: &str) -> Result<(), PolicyError> {
        if self.deny.is_match(tool) {
            return Err(PolicyError::ToolDenied { tool: tool.to_string() });
        }
        if self.allow.as_ref().is_some_and(|a| !a.is_match(tool)) {
            return Err(PolicyError::ToolNotAllowed { tool: tool.to_string() });
        }
        Ok(())
    }
}

/// `N/PERIOD`: N calls per period, with a burst of N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub calls: u32,
    pub period: Duration,
}

impl std::str::FromStr for Rate {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::Rate { rate: s.to_string() };
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let calls: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        Ok(Rate { calls, period: Duration::from_secs(secs) })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

/// Token buckets: one per limited tool pattern, and `*` shared by all calls.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Vec<(String, globset::GlobMatcher, Rate)>,
    /// (pattern, tool) -> (tokens, last refill). `*` is one bucket for every tool.
    buckets: HashMap<(String, String), (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(limits: &[(String, Rate)]) -> Result<Self, PolicyError> {
        let limits = limits
            .iter()
            .map(|(p, r)| {
                let g = Glob::new(p).map_err(|source| PolicyError::RatePattern { pattern: p.clone(), source })?;
                Ok((p.clone(), g.compile_matcher(), *r))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(RateLimiter { limits, buckets: HashMap::new() })
    }

    /// Takes a token from every bucket that applies, or says how long to wait (taking none).
    pub fn take(&mut self, tool: &str, now: Instant) -> Result<(), (Duration, String)> {
        let applicable: Vec<(String, Rate)> =
            self.limits.iter().filter(|(_, m, _)| m.is_match(tool)).map(|(p, _, r)| (p.clone(), *r)).collect();
        let mut keys = Vec::new();
        for (pattern, rate) in &applicable {
            let key = (pattern.clone(), if pattern == "*" { String::new() } else { tool.to_string() });
            let per_token = rate.period.as_secs_f64() / f64::from(rate.calls);
            let (tokens, last) = self.buckets.entry(key.clone()).or_insert((f64::from(rate.calls), now));
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() / per_token).min(f64::from(rate.calls));
            *last = now;
            if *tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - *tokens) * per_token);
                return Err((wait, format!("{pattern}={rate}")));
            }
            keys.push(key);
        }
        for key in keys {
            if let Some((tokens, _)) = self.buckets.get_mut(&key) {
                *tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// A profile constraint on one argument.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub tool: globset::GlobMatcher,
    pub argument: String,
    pub max_length: Option<usize>,
    pub pattern: Option<Regex>,
    pub one_of: Option<Vec<String>>,
    /// Canonical directories a path argument must stay under.
    pub under: Vec<PathBuf>,
}

impl Constraint {
    /// `Err(why)` naming the argument when the call's arguments break the constraint.
    pub fn check(&self, tool: &str, args: &Value) -> Result<(), PolicyError> {
        if !self.tool.is_match(tool) {
            return Ok(());
        }
        let name = &self.argument;
        let Some(value) = args.get(name) else { return Ok(()) };
        let Some(s) = value.as_str() else {
            return Err(PolicyError::NotAString { argument: name.clone() });
        };
        if let Some(max) = self.max_length
            && s.chars().count() > max
        {
            return Err(PolicyError::TooLong { argument: name.clone(), max });
        }
        if let Some(p) = &self.pattern
            && !p.is_match(s)
        {
            return Err(PolicyError::PatternMismatch { argument: name.clone(), pattern: p.as_str().to_string() });
        }
        if let Some(values) = &self.one_of
            && !values.iter().any(|v| v == s)
        {
            return Err(PolicyError::NotOneOf { argument: name.clone(), values: values.clone() });
        }
        if !self.under.is_empty() {
            let resolved = resolve_lexically(Path::new(s));
            let inside = |p: &Path| self.under.iter().any(|d| p.starts_with(d));
            // Both the path as written (`..` resolved) and its real target must be inside: a
            // symlink inside that points outside is refused.
            let real = std::fs::canonicalize(&resolved).ok().or_else(|| {
                let parent = resolved.parent()?;
                Some(std::fs::canonicalize(parent).ok()?.join(resolved.file_name()?))
            });
            if !resolved.is_absolute() || !inside(&resolved) || real.as_deref().is_some_and(|r| !inside(r)) {
                return Err(PolicyError::OutsideDirectories {
                    argument: name.clone(),
                    value: s.to_string(),
                    dirs: self.under.clone(),
                });
            }
        }
        Ok(())
    }
}

/// `a/b/../c` -> `a/c` without touching the filesystem.
fn resolve_lexically(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Validates `args` against a tool's advertised `inputSchema`: the first error, naming the
/// argument, or Ok.
pub fn validate(validator: &jsonschema::Validator, args: &Value) -> Result<(), PolicyError> {
    match validator.iter_errors(args).next() {
        None => Ok(()),
        Some(e) => {
            let path = e.instance_path().to_string();
            let argument = (!path.is_empty()).then(|| path.trim_start_matches('/').replace('/', "."));
            Err(PolicyError::Schema { argument, source: Box::new(e.to_owned()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_rates_and_constraints() {
        let f = ToolFilter::new(&["read_*".into(), "list_*".into()], &["read_secret".into()]).unwrap();
        assert!(f.permits("read_file").is_ok());
        assert!(f.permits("read_secret").is_err());
        assert!(f.permits("write_file").is_err());

        let r: Rate = "2/min".parse().unwrap();
        assert_eq!(r.to_string(), "2/min");
        assert!("0/min".parse::<Rate>().is_err() && "3/week".parse::<Rate>().is_err());
        let mut l = RateLimiter::new(&[("read_*".into(), r)]).unwrap();
        let t0 = Instant::now();
        assert!(l.take("read_file", t0).is_ok() && l.take("read_file", t0).is_ok());
        let (wait, _) = l.take("read_file", t0).unwrap_err();
        assert!(wait > Duration::from_secs(29) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(l.take("read_other", t0).is_ok(), "per tool");
        assert!(l.take("write_file", t0).is_ok(), "unlimited");
        assert!(l.take("read_file", t0 + Duration::from_secs(31)).is_ok(), "refilled");

        let c = Constraint {
            tool: Glob::new("read_*").unwrap().compile_matcher(),
            argument: "path".into(),
            max_length: Some(100),
            pattern: None,
            one_of: None,
            under: vec![PathBuf::from("/srv/notes")],
        };
        assert!(c.check("read_file", &serde_json::json!({"path": "/srv/notes/a.md"})).is_ok());
        assert!(c.check("read_file", &serde_json::json!({"path": "/srv/notes/../secrets"})).is_err());
        assert!(c.check("read_file", &serde_json::json!({"path": "notes/a.md"})).is_err());
        assert!(c.check("read_file", &serde_json::json!({"path": "x".repeat(101)})).is_err());
        assert!(c.check("write_file", &serde_json::json!({"path": "/etc"})).is_ok(), "other tools");
    }

    #[test]
    fn errors_name_the_tool_pattern_or_argument() {
        let msg = |r: Result<(), PolicyError>| r.unwrap_err().to_string();
        let f = ToolFilter::new(&["read_*".into()], &["read_secret".into()]).unwrap();
        assert_eq!(msg(f.permits("read_secret")), "tool `read_secret` is denied by the profile");
        assert_eq!(msg(f.permits("write")), "tool `write` is not in the profile's allowed tools");
        let e = ToolFilter::new(&[], &["a[".into()]).unwrap_err();
        assert!(matches!(&e, PolicyError::ToolPattern { pattern, .. } if pattern == "a["), "{e:?}");
        assert!(e.to_string().starts_with("tool pattern `a[`: "), "{e}");
        let e = RateLimiter::new(&[("{x".into(), Rate { calls: 1, period: Duration::from_secs(1) })]).unwrap_err();
        assert!(e.to_string().starts_with("rate-limit pattern `{x`: "), "{e}");
        assert_eq!(
            "3/week".parse::<Rate>().unwrap_err().to_string(),
            "`3/week` is not a rate such as `30/min` (periods: s, min, h)"
        );

        let c = Constraint {
            tool: Glob::new("*").unwrap().compile_matcher(),
            argument: "path".into(),
            max_length: Some(8),
            pattern: Some(Regex::new("^/srv.*$").unwrap()),
            one_of: Some(vec!["/srv/a".into(), "/srv/b".into()]),
            under: vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")],
        };
        let check = |v: Value| msg(c.check("t", &serde_json::json!({ "path": v })));
        assert_eq!(check(5.into()), "argument `path` must be a string");
        assert_eq!(check("/srv/abcdef".into()), "argument `path` is longer than 8 characters");
        assert_eq!(check("/etc".into()), "argument `path` does not match the pattern `^/srv.*$`");
        assert_eq!(check("/srv/c".into()), r#"argument `path` must be one of ["/srv/a", "/srv/b"]"#);
        let c = Constraint { max_length: None, pattern: None, one_of: None, ..c };
        assert_eq!(
            msg(c.check("t", &serde_json::json!({"path": "/srv/a/../c"}))),
            "argument `path` (`/srv/a/../c`) is outside the allowed directories /srv/a, /srv/b"
        );
    }

    #[test]
    fn schema_errors_name_the_argument() {
        let schema = serde_json::json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]});
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(validate(&v, &serde_json::json!({"message": "hi"})).is_ok());
        let e = validate(&v, &serde_json::json!({"message": 5})).unwrap_err();
        assert!(matches!(&e, PolicyError::Schema { argument: Some(a), .. } if a == "message"), "{e:?}");
        assert!(e.to_string().starts_with("argument `message`: "), "{e}");
        let e = validate(&v, &serde_json::json!({})).unwrap_err();
        assert!(matches!(&e, PolicyError::Schema { argument: None, .. }), "{e:?}");
        assert!(e.to_string().starts_with("the arguments: ") && e.to_string().contains("message"), "{e}");
    }
}
