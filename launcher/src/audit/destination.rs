//! Where the audit log goes: a file, stderr or the systemd journal (`--audit-log`).

use std::path::{Path, PathBuf};

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    File(PathBuf),
    /// The systemd journal, as structured fields; and a file too when given.
    Journal(Option<PathBuf>),
}

impl Destination {
    /// `-` is stderr, `journal` the systemd journal (`journal,PATH`: and the file PATH);
    /// anything else a file path.
    pub fn parse(s: &str) -> Destination {
        match s {
            "-" => Destination::Stderr,
            "journal" => Destination::Journal(None),
            _ => match s.strip_prefix("journal,") {
                Some(path) => Destination::Journal(Some(PathBuf::from(path))),
                None => Destination::File(PathBuf::from(s)),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Stderr => "stderr".into(),
            Destination::File(p) => p.display().to_string(),
            Destination::Journal(None) => "the systemd journal".into(),
            Destination::Journal(Some(p)) => format!("the systemd journal and {}", p.display()),
        }
    }

    /// The file the log is appended to, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Destination::File(p) | Destination::Journal(Some(p)) => Some(p),
            Destination::Stderr | Destination::Journal(None) => None,
        }
    }

    pub fn has_journal(&self) -> bool {
        matches!(self, Destination::Journal(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(Destination::parse("-"), Destination::Stderr);
        assert_eq!(Destination::parse("journal"), Destination::Journal(None));
        assert_eq!(Destination::parse("journal,/a/b"), Destination::Journal(Some("/a/b".into())));
        assert_eq!(Destination::parse("/a/b"), Destination::File("/a/b".into()));
        assert_eq!(Destination::parse("journal,/a/b").file(), Some(Path::new("/a/b")));
        assert_eq!(Destination::parse("journal").describe(), "the systemd journal");
    }
}
