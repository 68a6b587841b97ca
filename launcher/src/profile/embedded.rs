//! The shipped profiles (`profiles/*.toml`), compiled into the binary so `--profile NAME` works
//! with no files installed.

/// `(name, TOML text)` of every embedded profile.
pub const EMBEDDED: &[(&str, &str)] = &[("strict", include_str!("../../../profiles/strict.toml"))];

/// The text of the embedded profile `name`.
pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}
