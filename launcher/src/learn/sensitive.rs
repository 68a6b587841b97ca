//! What a learning run never opens, whatever the server does: secrets (keys, credentials, browser
//! profiles, keyrings, `.env` files) and persistence locations (where a write runs code later:
//! shell start-up files, autostart, systemd user units, git hooks). The baseline leaves them out
//! of its grants ([`super::baseline`]); a draft never grants them ([`super::draft`]); a session
//! that touches one reports it.

use std::path::Path;

/// Why a path is closed to a learning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sensitive {
    Secret,
    Persistence,
}

/// Secrets, relative to the home directory: a path equal to or beneath one is a secret.
pub const SECRETS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".vault-token",
    ".password-store",
    ".pki",
    ".mozilla",
    ".thunderbird",
    ".terraform.d",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".gem/credentials",
    ".config/gh",
    ".config/hub",
    ".config/gcloud",
    ".config/doctl",
    ".config/op",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    ".config/Code/User/globalStorage",
    ".config/Claude",
    ".claude.json",
    ".claude",
    ".codex",
    ".cursor",
    ".config/Code/User/mcp.json",
    ".config/zed",
    ".local/share/keyrings",
    ".local/share/kwalletd",
    ".local/share/mcp-warden",
    ".config/mcp-warden",
    ".local/state/mcp-warden",
];

/// Persistence locations, relative to the home directory.
pub const PERSISTENCE: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".config/fish",
    ".xprofile",
    ".xinitrc",
    ".xsession",
    ".pam_environment",
    ".gitconfig",
    ".config/git",
    ".config/autostart",
    ".config/systemd",
    ".config/environment.d",
    ".local/share/systemd",
    ".local/share/applications",
    ".local/bin",
    ".bin",
    ".vimrc",
    ".config/nvim",
    ".emacs",
    ".emacs.d",
];

/// File names that are secrets wherever they are (`.env`, `.env.local`, ...).
pub fn is_env_file(name: &str) -> bool {
    name == ".env" || name.starts_with(".env.")
}

/// Names inside any git repository that run code later: hooks, and the config that can point
/// `core.hooksPath` elsewhere.
pub const GIT_PERSISTENCE: &[&str] = &[".git/hooks", ".git/config"];

/// Is `path` (absolute, canonical) closed to a learning run? `home` is the server user's home.
pub fn classify(path: &Path, home: &Path) -> Option<Sensitive> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if is_env_file(&name) {
        return Some(Sensitive::Secret);
    }
    let text = path.to_string_lossy();
    if GIT_PERSISTENCE.iter().any(|g| text.contains(&format!("/{g}/")) || text.ends_with(&format!("/{g}"))) {
        return Some(Sensitive::Persistence);
    }
    let rel = path.strip_prefix(home).ok()?;
    let under = |list: &[&str]| list.iter().any(|s| rel.starts_with(s));
    if under(SECRETS) {
        Some(Sensitive::Secret)
    } else if under(PERSISTENCE) {
        Some(Sensitive::Persistence)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_persistence_are_recognised_and_the_rest_is_not() {
        let home = Path::new("/home/me");
        let c = |p: &str| classify(Path::new(p), home);
        assert_eq!(c("/home/me/.ssh/id_ed25519"), Some(Sensitive::Secret));
        assert_eq!(c("/home/me/.config/gcloud/credentials.db"), Some(Sensitive::Secret));
        assert_eq!(c("/home/me/src/app/.env"), Some(Sensitive::Secret));
        assert_eq!(c("/srv/app/.env.production"), Some(Sensitive::Secret));
        assert_eq!(c("/home/me/.bashrc"), Some(Sensitive::Persistence));
        assert_eq!(c("/home/me/.config/systemd/user/x.service"), Some(Sensitive::Persistence));
        assert_eq!(c("/home/me/src/app/.git/hooks/pre-commit"), Some(Sensitive::Persistence));
        assert_eq!(c("/home/me/.sshd-notes"), None, "a prefix of a name is not the name");
        assert_eq!(c("/home/me/notes/todo.md"), None);
        assert_eq!(c("/home/me/.config/myserver/config.json"), None);
        assert_eq!(c("/home/me/src/app/.environment.md"), None);
    }
}
