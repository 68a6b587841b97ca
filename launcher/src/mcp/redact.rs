//! Secrets out of what goes back to the model: values under sensitive keys, and secrets
//! recognised in text.

use regex::Regex;
use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// Why the redactor cannot be built from the profile's `redact-patterns` and `redact-keys`.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// A built-in or `redact-patterns` entry that is not a regular expression.
    #[error("redaction pattern `{pattern}`: {source}")]
    Pattern { pattern: String, source: regex::Error },
    /// The `key = value` matcher built from the sensitive key names (`redact-keys` included).
    #[error("{0}")]
    Keys(regex::Error),
    /// The card-number matcher, or all the patterns compiled into one set (too large, say).
    #[error("{0}")]
    Compile(regex::Error),
}

impl crate::error::Diagnose for RedactError {
    fn hint(&self) -> Option<String> {
        match self {
            RedactError::Pattern { .. } => {
                Some("redact-patterns use Rust `regex` syntax: no look-around, no backreferences".into())
            }
            RedactError::Keys(_) | RedactError::Compile(_) => None,
        }
    }
}

/// Key names (case-insensitive substrings) whose values are secrets.
const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "ssn",
    "credit_card",
    "card_number",
    "private_key",
    "private-key",
    "privatekey",
    "access-key",
    "accesskey",
    "authorization",
];

/// HTTP authentication schemes: in `Authorization: Bearer <token>` the secret is the word after
/// the scheme, which stays (the reader sees what kind of credential was there).
const SCHEMES: &str = "(?:bearer|basic|digest|token|negotiate|ntlm|aws4-hmac-sha256)";

/// Secrets recognisable on their own.
const PATTERNS: &[&str] = &[
    // PEM private keys (RSA, EC, OPENSSH, PKCS#8, encrypted)
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
    // AWS access key ids
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
    // AWS secret access keys: 40 characters of base64 after the key's usual names
    r#"(?i)aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}"#,
    // GitHub tokens (classic and fine-grained)
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    // GitLab personal access tokens
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",
    // Slack tokens
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    // JSON Web Tokens
    r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
];

#[derive(Debug, Clone)]
pub struct Redactor {
    keys: Vec<String>,
    /// Every pattern below at once: most text matches none, and one pass says so.
    any: regex::RegexSet,
    patterns: Vec<Regex>,
    /// `"key": "value"` / `key=value` pairs in text whose key is sensitive.
    pairs: Regex,
    cards: Regex,
}

impl Redactor {
    pub fn new(extra_patterns: &[String], extra_keys: &[String]) -> Result<Self, RedactError> {
        let mut patterns = Vec::new();
        for p in PATTERNS.iter().map(|p| p.to_string()).chain(extra_patterns.iter().cloned()) {
            patterns.push(Regex::new(&p).map_err(|source| RedactError::Pattern { pattern: p, source })?);
        }
        let keys: Vec<String> =
            SENSITIVE_KEYS.iter().map(|k| k.to_string()).chain(extra_keys.iter().map(|k| k.to_lowercase())).collect();
        let alternation = keys.iter().map(|k| regex::escape(k)).collect::<Vec<_>>().join("|");
        let pairs = Regex::new(&format!(
            r#"(?i)(["']?[A-Za-z0-9_.-]*(?:{alternation})[A-Za-z0-9_.-]*["']?\s*[:=]\s*(?:{SCHEMES}[ \t]+)?)(\[REDACTED\]|"[^"]*"|'[^']*'|[^\s,;}}\]]+)"#
        ))
        .map_err(RedactError::Keys)?;
        let cards = Regex::new(r"\b(?:\d[ -]?){12,18}\d\b").map_err(RedactError::Compile)?;
        let any = regex::RegexSet::new(patterns.iter().chain([&pairs, &cards]).map(Regex::as_str))
            .map_err(RedactError::Compile)?;
        Ok(Redactor { keys, any, patterns, pairs, cards })
    }

    fn sensitive_key(&self, key: &str) -> bool {
        let k = key.to_lowercase();
        self.keys.iter().any(|s| k.contains(s.as_str()))
    }

    /// Redacts in place; returns how many secrets were replaced.
    pub fn value(&self, v: &mut Value) -> usize {
        match v {
            Value::String(s) => {
                let Some((text, n)) = self.text(s) else { return 0 };
                *s = text;
                n
            }
            Value::Array(items) => items.iter_mut().map(|i| self.value(i)).sum(),
            Value::Object(map) => map
                .iter_mut()
                .map(|(k, val)| {
                    if self.sensitive_key(k) && !val.is_null() && !val.is_object() && !val.is_array() {
                        *val = Value::String(REDACTED.into());
                        1
                    } else {
                        self.value(val)
                    }
                })
                .sum(),
            _ => 0,
        }
    }

    /// Redacts secrets in text: the new text and the count, `None` when there is nothing to redact.
    pub fn text(&self, s: &str) -> Option<(String, usize)> {
        if !self.any.is_match(s) {
            return None;
        }
        let mut out = s.to_string();
        let mut count = 0;
        for p in &self.patterns {
            let n = p.find_iter(&out).count();
            if n > 0 {
                count += n;
                out = p.replace_all(&out, REDACTED).into_owned();
            }
        }
        let mut n = 0;
        out = self
            .pairs
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let value = &c[2];
                if value.trim_matches(|ch| ch == '"' || ch == '\'') == REDACTED {
                    return c[0].to_string();
                }
                n += 1;
                let quote = if value.starts_with('"') {
                    "\""
                } else if value.starts_with('\'') {
                    "'"
                } else {
                    ""
                };
                format!("{}{quote}{REDACTED}{quote}", &c[1])
            })
            .into_owned();
        count += n;
        let mut n = 0;
        out = self
            .cards
            .replace_all(&out, |c: &regex::Captures<'_>| {
                if luhn(&c[0]) {
                    n += 1;
                    REDACTED.to_string()
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
        (count + n > 0).then_some((out, count + n))
    }
}

/// The Luhn checksum of the digits in `s` (13 to 19 of them).
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { *d })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_secrets_are_redacted_and_counted() {
        let r = Redactor::new(&[], &[]).unwrap();
        let text = "key AKIAIOSFODNN7EXAMPLE and ghp_abcdefghijklmnopqrstuvwxyz0123456789 \
            glpat-abcdefghij0123456789 xoxb-1234567890-abcdefghij \
            eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U \
            card 4111 1111 1111 1111 but not 1234 5678 9012 3456; password=hunter2, \"api_key\": \"sk-live-1\"";
        let (out, n) = r.text(text).unwrap();
        for secret in
            ["AKIAIOSFODNN7EXAMPLE", "ghp_", "glpat-", "xoxb-", "eyJhbGci", "4111 1111", "hunter2", "sk-live-1"]
        {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.contains("1234 5678 9012 3456"), "a number failing Luhn stays: {out}");
        assert_eq!(n, 8, "{out}");
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(r.text(pem), Some((format!("{REDACTED}\n"), 1)));
        assert_eq!(r.text("nothing to see, 1234 5678 9012 3456"), None);
    }

    #[test]
    fn the_credential_after_an_authorization_scheme_is_redacted() {
        let r = Redactor::new(&[], &[]).unwrap();
        for (text, kept) in [
            ("Authorization: Bearer sk-live-abcdef123456", "Authorization: Bearer [REDACTED]"),
            ("authorization: Basic dXNlcjpodW50ZXIy\nnext", "authorization: Basic [REDACTED]\nnext"),
            ("Proxy-Authorization: Digest abc123", "Proxy-Authorization: Digest [REDACTED]"),
            ("Private-Key: MIIEvQIBADANBg", "Private-Key: [REDACTED]"),
            ("Authorization: hunter2", "Authorization: [REDACTED]"),
            (r#""Authorization": "Bearer sk-live-1""#, r#""Authorization": "[REDACTED]""#),
        ] {
            assert_eq!(r.text(text), Some((kept.to_string(), 1)), "{text}");
        }
        assert_eq!(r.text("a basic bearer of news"), None, "control: scheme words alone are not secrets");
        let mut v = serde_json::json!({"Private-Key": "k", "headers": {"X-Access-Key": "a"}, "name": "ann"});
        assert_eq!(r.value(&mut v), 2);
        assert_eq!(v["name"], "ann");
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let e = Redactor::new(&["internal-(".into()], &[]).unwrap_err();
        assert!(matches!(&e, RedactError::Pattern { pattern, .. } if pattern == "internal-("), "{e:?}");
        assert!(e.to_string().starts_with("redaction pattern `internal-(`: "), "{e}");
    }

    #[test]
    fn values_under_sensitive_keys_are_redacted_in_structures() {
        let r = Redactor::new(&["internal-[0-9]+".into()], &["pin".into()]).unwrap();
        let mut v = serde_json::json!({"user": "ann", "Password": "x", "nested": {"db_token": 5, "pin": "1234"},
            "note": "see internal-42", "list": [{"client_secret": "s"}]});
        assert_eq!(r.value(&mut v), 5);
        assert_eq!(v["user"], "ann");
        assert_eq!(v["Password"], REDACTED);
        assert_eq!(v["nested"]["db_token"], REDACTED);
        assert_eq!(v["note"], format!("see {REDACTED}"));
    }
}
