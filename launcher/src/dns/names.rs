//! The names a profile lets the server resolve, and the destinations each one's answers open.
//!
//! A `HOST:PORT` entry names one host (`api.github.com`) or, written `*.example.com`, every name
//! one or more labels below `example.com` (not `example.com` itself). `dns = true` answers every
//! name, and then a name's answers open nothing by themselves: the addresses it reaches are the
//! ones the profile's other entries allow.

use crate::layers::broker::Proto;

/// One `HOST:PORT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Pattern,
    proto: Proto,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `*.SUFFIX`: stored as `.SUFFIX`.
    Below(String),
}

impl Pattern {
    fn parse(host: &str) -> Pattern {
        let host = normalize(host);
        match host.strip_prefix("*.") {
            Some(suffix) => Pattern::Below(format!(".{suffix}")),
            None => Pattern::Exact(host),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(h) => h == name,
            Pattern::Below(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
        }
    }
}

/// Lower case, without the root's trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The names a server may resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    rules: Vec<Rule>,
    /// `dns = true`: every name is answered.
    any: bool,
}

/// The destinations an answer opens: the protocol and port of each entry that named it.
pub type Opens = Vec<(Proto, u16)>;

impl Names {
    /// `hosts`: the `HOST:PORT` entries; `any`: `dns = true`.
    pub fn new(hosts: &[(Proto, String, u16)], any: bool) -> Names {
        let rules =
            hosts.iter().map(|(proto, h, port)| Rule { pattern: Pattern::parse(h), proto: *proto, port: *port });
        Names { rules: rules.collect(), any }
    }

    /// What an answer for `name` opens, or `None` when the name is not the profile's.
    pub fn lookup(&self, name: &str) -> Option<Opens> {
        let name = normalize(name);
        let opens: Opens = self.rules.iter().filter(|r| r.pattern.matches(&name)).map(|r| (r.proto, r.port)).collect();
        (self.any || !opens.is_empty()).then_some(opens)
    }

    /// Every name is answered (`dns = true`).
    pub fn any(&self) -> bool {
        self.any
    }

    /// Whether any name resolves at all.
    pub fn is_empty(&self) -> bool {
        !self.any && self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new(
            &[
                (Proto::Tcp, "api.github.com".into(), 443),
                (Proto::Tcp, "*.example.com".into(), 443),
                (Proto::Udp, "*.example.com".into(), 3478),
            ],
            false,
        )
    }

    #[test]
    fn exact_names_match_themselves_only() {
        let n = names();
        assert_eq!(n.lookup("api.github.com"), Some(vec![(Proto::Tcp, 443)]));
        assert_eq!(n.lookup("API.GitHub.com."), Some(vec![(Proto::Tcp, 443)]), "case and the root's dot");
        assert_eq!(n.lookup("github.com"), None);
        assert_eq!(n.lookup("x.api.github.com"), None);
        assert_eq!(n.lookup("api.github.com.attacker.example"), None);
    }

    #[test]
    fn wildcards_match_one_or_more_labels_below() {
        let n = names();
        let both = Some(vec![(Proto::Tcp, 443), (Proto::Udp, 3478)]);
        assert_eq!(n.lookup("a.example.com"), both);
        assert_eq!(n.lookup("a.b.example.com"), both);
        assert_eq!(n.lookup("example.com"), None, "not the suffix itself");
        assert_eq!(n.lookup("badexample.com"), None, "a label boundary");
    }

    #[test]
    fn dns_true_answers_every_name_and_opens_nothing_more() {
        let n = Names::new(&[(Proto::Tcp, "api.github.com".into(), 443)], true);
        assert_eq!(n.lookup("anything.example"), Some(vec![]));
        assert_eq!(n.lookup("api.github.com"), Some(vec![(Proto::Tcp, 443)]));
        assert!(Names::default().is_empty());
    }
}
