//! The shipped profiles (`profiles/*.toml`), compiled into the binary so `--profile NAME` works
//! with no files installed.

/// `(name, TOML text)` of every embedded profile.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("strict", include_str!("../../../profiles/strict.toml")),
    ("node", include_str!("../../../profiles/node.toml")),
    ("python", include_str!("../../../profiles/python.toml")),
    ("filesystem", include_str!("../../../profiles/filesystem.toml")),
    ("everything", include_str!("../../../profiles/everything.toml")),
    ("sequential-thinking", include_str!("../../../profiles/sequential-thinking.toml")),
    ("memory", include_str!("../../../profiles/memory.toml")),
    ("time", include_str!("../../../profiles/time.toml")),
    ("fetch", include_str!("../../../profiles/fetch.toml")),
    ("github", include_str!("../../../profiles/github.toml")),
    ("git", include_str!("../../../profiles/git.toml")),
    ("sqlite", include_str!("../../../profiles/sqlite.toml")),
];

/// The text of the embedded profile `name`.
pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}
