//! What a learning run never opens, whatever the server does: secrets (keys, credentials, browser
//! profiles, keyrings, `.env` files) and persistence locations (where a write runs code later:
//! shell start-up files, autostart, systemd user units, git hooks). The baseline leaves them out
//! of its grants ([`super::baseline`]); a draft never grants them ([`super::draft`]); a session
//! that touches one reports it.

use std::path::{Path, PathBuf};

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
    ".var",
    ".bash_history",
    ".zsh_history",
    ".zhistory",
    ".history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".lesshst",
    ".viminfo",
    ".config/rclone",
    ".config/containers",
    ".local/share/containers",
    ".config/github-copilot",
    ".config/Slack",
    ".config/discord",
    ".config/Signal",
    ".config/keybase",
    ".config/1Password",
    ".config/Bitwarden",
    ".config/sops",
    ".config/age",
    ".config/gopass",
    ".config/pulumi",
    ".pulumi",
    ".config/configstore",
    ".config/heroku",
    ".config/netlify",
    ".config/vercel",
    ".config/stripe",
    ".config/twilio",
    ".config/Cursor",
    ".aider",
    ".config/openai",
    ".config/anthropic",
    ".config/huggingface",
    ".cache/huggingface/token",
    ".huggingface",
    ".kaggle",
    ".databrickscfg",
    ".boto",
    ".s3cfg",
    ".oci",
    ".ibmcloud",
    ".config/linode-cli",
    ".config/hcloud",
    ".terraformrc",
    ".vagrant.d",
    ".minikube",
    ".config/helm",
    ".local/share/kwalletd",
    ".config/kwalletrc",
    ".local/share/Trash",
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

/// What inside a git repository's `.git` runs code later: hooks, the config (which can point
/// `core.hooksPath` elsewhere), `commondir` (which moves both elsewhere), and the same in
/// submodules (`.git/modules/*/`).
const GIT_PERSISTENCE: &[&str] = &["hooks", "config", "commondir"];

/// Is `path` inside a `.git` directory, at one of [`GIT_PERSISTENCE`] (of the repository or of a
/// submodule)?
fn git_persistence(path: &Path) -> bool {
    let parts: Vec<String> = path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts
        .iter()
        .enumerate()
        .any(|(i, p)| p == ".git" && parts[i + 1..].iter().any(|q| GIT_PERSISTENCE.contains(&q.as_str())))
}

/// The sensitive locations of `home` as paths: each listed entry, and where it really is when it
/// is a symlink (`~/.gnupg -> ~/.dotfiles/gnupg` closes `~/.dotfiles/gnupg` too).
pub fn locations(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for rel in SECRETS.iter().chain(PERSISTENCE) {
        let path = home.join(rel);
        if let Ok(real) = path.canonicalize()
            && real != path
        {
            out.push(real);
        }
        out.push(path);
    }
    out
}

/// Would a grant of `dir` reach a sensitive location (one lies at or beneath it), or is it the
/// home or above it? Such a directory is never granted whole.
pub fn reaches(dir: &Path, home: &Path, locations: &[PathBuf]) -> bool {
    home.starts_with(dir) || locations.iter().any(|l| l.starts_with(dir))
}

/// Is `path` (absolute, canonical) closed to a learning run? `home` is the server user's home.
pub fn classify(path: &Path, home: &Path) -> Option<Sensitive> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if is_env_file(&name) {
        return Some(Sensitive::Secret);
    }
    if git_persistence(path) {
        return Some(Sensitive::Persistence);
    }
    let under = |list: &[&str]| {
        list.iter().any(|s| {
            let listed = home.join(s);
            path.starts_with(&listed) || listed.canonicalize().is_ok_and(|real| path.starts_with(real))
        })
    };
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
        assert_eq!(c("/home/me/src/app/.git/commondir"), Some(Sensitive::Persistence));
        assert_eq!(c("/home/me/src/app/.git/modules/lib/hooks/post-checkout"), Some(Sensitive::Persistence));
        assert_eq!(c("/home/me/src/app/.git/objects/ab/cdef"), None, "a repository's objects are not");
        assert_eq!(c("/home/me/.sshd-notes"), None, "a prefix of a name is not the name");
        assert_eq!(c("/home/me/notes/todo.md"), None);
        assert_eq!(c("/home/me/.config/myserver/config.json"), None);
        assert_eq!(c("/home/me/src/app/.environment.md"), None);
        assert_eq!(c("/home/me/.var/app/org.mozilla.firefox/.mozilla/x/logins.json"), Some(Sensitive::Secret));
    }

    #[test]
    fn a_directory_that_holds_a_secret_is_never_granted_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".dotfiles/gnupg")).unwrap();
        std::os::unix::fs::symlink(home.join(".dotfiles/gnupg"), home.join(".gnupg")).unwrap();
        let l = locations(&home);
        assert!(reaches(&home.join(".cargo"), &home, &l), ".cargo holds credentials.toml");
        assert!(reaches(&home.join(".config"), &home, &l) && reaches(&home, &home, &l));
        assert!(reaches(&home.join(".dotfiles"), &home, &l), "the real place of a linked secret");
        assert!(!reaches(&home.join(".config/app"), &home, &l));
        assert_eq!(classify(&home.join(".dotfiles/gnupg/secring"), &home), Some(Sensitive::Secret));
    }
}
