//! Learning mode: run a server on a safe baseline while recording what it uses, then draft the
//! profile that grants exactly that.
//!
//! `mcp-warden run --learn NAME --profile BASE -- CMD` runs CMD on BASE plus the
//! [`baseline`] (the home's configuration and caches readable, the server's arguments writable,
//! any network destination outside the `deny` ranges), never a secret or a persistence location
//! ([`sensitive`]). The seccomp listener is handed every file call (open, exec, create, remove,
//! rename), records the path and lets the call go on, so Landlock and the view still decide it;
//! the network broker records every destination. Each observation is appended to a session file
//! ([`session`]). `mcp-warden learn show NAME` drafts a profile from every session ([`draft`]),
//! `learn accept NAME` writes it and points the client config's entry at it. The draft never
//! activates itself.
//!
//! What the record can miss: a server thread that rewrites a path in its memory between the
//! record and the kernel's own read makes the record name another path (the kernel decides on
//! what it reads; the record only feeds a draft the user reviews); environment reads happen in
//! the server's memory (the draft lists the variables the entry passes).

pub mod baseline;
pub mod draft;
pub mod sensitive;
pub mod session;

use std::path::{Path, PathBuf};

/// The flag that would allow `access` to `path`. A write needs its directory; when that is the
/// home itself (never to be granted writable as a whole: its shell start-up files are there), the
/// entry is created once beforehand and granted alone.
pub fn grant_hint(access: session::Access, path: &Path, home: &Path) -> String {
    use session::Access;
    match access {
        Access::Read => format!("--allow-read {}", path.display()),
        Access::Exec => format!("--allow-exec {}", path.display()),
        Access::Write => match path.parent() {
            Some(dir) if dir == home && !path.exists() => {
                format!("`mkdir -p {}` once, then --allow-write {}", path.display(), path.display())
            }
            Some(dir) => format!("--allow-write {}", dir.display()),
            None => format!("--allow-write {}", path.display()),
        },
    }
}

/// A learning run's name: what its sessions are kept under and its profile is called.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

/// `$XDG_STATE_HOME/mcp-warden/learn/NAME` of the invoking user.
pub fn sessions_dir(state_home: &Path, name: &str) -> PathBuf {
    state_home.join("mcp-warden/learn").join(name)
}

/// `$XDG_CONFIG_HOME/mcp-warden/profiles/NAME.toml`: where `learn accept` writes the profile.
pub fn profile_path(config_home: &Path, name: &str) -> PathBuf {
    config_home.join("mcp-warden/profiles").join(format!("{name}.toml"))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub fn config_home(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("XDG_CONFIG_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".config")))
}

/// A name for a client config's server entry (`learn` names are file names).
/// A name that is not one already (`.`, `/`, spaces, a name too long) gets a digest of the
/// original at its end, so that two entries never learn as one (`other.server` and `other-server`).
pub fn name_for_server(server: &str) -> String {
    use sha2::Digest;
    let name: String =
        server.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let name = name.trim_matches('-');
    if name == server && name.len() <= 64 {
        return name.to_string();
    }
    let digest: String = sha2::Sha256::digest(server.as_bytes())[..4].iter().map(|b| format!("{b:02x}")).collect();
    let stem: String = if name.is_empty() { "server".into() } else { name.chars().take(55).collect() };
    format!("{stem}-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_of_the_home_is_granted_alone() {
        use session::Access;
        let home = Path::new("/home/me");
        assert_eq!(
            grant_hint(Access::Write, &home.join(".code-index"), home),
            "`mkdir -p /home/me/.code-index` once, then --allow-write /home/me/.code-index"
        );
        assert_eq!(grant_hint(Access::Write, &home.join("notes/a.md"), home), "--allow-write /home/me/notes");
        assert_eq!(grant_hint(Access::Read, &home.join("docs/x"), home), "--allow-read /home/me/docs/x");
    }

    #[test]
    fn names_are_file_names() {
        assert!(valid_name("weather-api_2"));
        assert!(!valid_name("../x") && !valid_name(".hidden") && !valid_name("") && !valid_name("a/b"));
        assert_eq!(name_for_server("weather"), "weather", "a name that is one already is kept");
        let project = name_for_server("/home/me/app: db");
        assert!(project.starts_with("home-me-app--db-") && valid_name(&project), "{project}");
        // two entries never learn as one
        assert_ne!(name_for_server("other.server"), name_for_server("other-server"));
        let long = "x".repeat(70);
        assert_ne!(name_for_server(&long), name_for_server(&format!("{long}y")));
        assert!(valid_name(&name_for_server(&long)));
    }
}
