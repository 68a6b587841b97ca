//! What a tool call may do: which tools exist for the model, how often they may be called, and
//! what their arguments may be.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde_json::Value;

fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| format!("tool pattern `{p}`: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
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
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
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
    pub fn permits(&self, tool: &str) -> Result<(), String> {
        if self.deny.is_match(tool) {
            return Err(format!("tool `{tool}` is denied by the profile"));
        }
        if self.allow.as_ref().is_some_and(|a| !a.is_match(tool)) {
            return Err(format!("tool `{tool}` is not in the profile's allowed tools"));
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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate such as `30/min` (periods: s, min, h)");
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
    pub fn new(limits: &[(String, Rate)]) -> Result<Self, String> {
        let limits = limits
            .iter()
            .map(|(p, r)| {
                let g = Glob::new(p).map_err(|e| format!("rate-limit pattern `{p}`: {e}"))?;
                Ok((p.clone(), g.compile_matcher(), *r))
            })
            .collect::<Result<_, String>>()?;
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
    pub fn check(&self, tool: &str, args: &Value) -> Result<(), String> {
        if !self.tool.is_match(tool) {
            return Ok(());
        }
        let name = &self.argument;
        let Some(value) = args.get(name) else { return Ok(()) };
        let Some(s) = value.as_str() else {
            return Err(format!("argument `{name}` must be a string"));
        };
        if let Some(max) = self.max_length
            && s.chars().count() > max
        {
            return Err(format!("argument `{name}` is longer than {max} characters"));
        }
        if let Some(p) = &self.pattern
            && !p.is_match(s)
        {
            return Err(format!("argument `{name}` does not match the pattern `{}`", p.as_str()));
        }
        if let Some(values) = &self.one_of
            && !values.iter().any(|v| v == s)
        {
            return Err(format!("argument `{name}` must be one of {values:?}"));
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
                let dirs: Vec<String> = self.under.iter().map(|d| d.display().to_string()).collect();
                return Err(format!(
                    "argument `{name}` (`{s}`) is outside the allowed directories {}",
                    dirs.join(", ")
                ));
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
pub fn validate(validator: &jsonschema::Validator, args: &Value) -> Result<(), String> {
    match validator.iter_errors(args).next() {
        None => Ok(()),
        Some(e) => {
            let path = e.instance_path().to_string();
            let what = if path.is_empty() {
                "the arguments".to_string()
            } else {
                format!("argument `{}`", path.trim_start_matches('/').replace('/', "."))
            };
            Err(format!("{what}: {e}"))
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
    fn schema_errors_name_the_argument() {
        let schema = serde_json::json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]});
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(validate(&v, &serde_json::json!({"message": "hi"})).is_ok());
        let e = validate(&v, &serde_json::json!({"message": 5})).unwrap_err();
        assert!(e.starts_with("argument `message`"), "{e}");
        assert!(validate(&v, &serde_json::json!({})).unwrap_err().contains("message"));
    }
}
