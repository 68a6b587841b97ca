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
    ".config/git/credentials",
    ".yarnrc.yml",
    ".config/glab-cli",
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
    ".config/google-chrome-beta",
    ".config/google-chrome-unstable",
    ".config/chromium",
    ".config/vivaldi",
    ".config/opera",
    "snap/firefox",
    "snap/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    ".config/Code/User/globalStorage",
    ".config/Code - Insiders/User/globalStorage",
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
    ".cache/huggingface",
    ".gemini",
    ".pgpass",
    ".my.cnf",
    ".local/share/fish",
    ".local/share/atuin",
    ".config/VSCodium/User/globalStorage",
    ".config/Code - OSS/User/globalStorage",
    ".config/JetBrains",
    ".local/share/JetBrains",
    ".continue",
    ".config/goose",
    ".config/opencode",
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
    ".vim",
    "bin",
    ".bash_aliases",
    ".inputrc",
    ".local/lib",
    ".cargo/bin",
    ".cargo/config.toml",
    ".cargo/config",
    ".config/emacs",
    ".local/share/nvim",
    ".config/pip",
    ".pip",
    ".npm-global",
    ".config/npm",
    ".pyenv",
    ".rbenv",
    ".nvm",
    ".deno/bin",
    ".bun/bin",
    ".go/bin",
    "go/bin",
    ".ssh/rc",
    ".config/plasma-workspace",
    ".config/kded5rc",
    ".config/lxsession",
    ".xsessionrc",
    ".Xresources",
    ".config/nvim",
    ".emacs",
    ".emacs.d",
];

/// File names that are secrets wherever they are (`.env`, `.env.local`, direnv's `.envrc`).
pub fn is_env_file(name: &str) -> bool {
    name == ".env" || name.starts_with(".env.") || name == ".envrc"
}

/// A path for a line a user reads (stderr, `learn show`), escaped ([`crate::logging::printable`]).
pub fn shown(path: &Path) -> String {
    crate::logging::printable(&path.display().to_string())
}

/// What a bounded scan of a tree found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// A `.env` file lies at or beneath it.
    pub env_file: bool,
    /// Every entry was read (else the budget ran out first).
    pub complete: bool,
}

/// Entries one scan reads at most.
pub const SCAN_BUDGET: usize = 100_000;

/// Directories a scan does not enter: installed packages and build output, not the user's own
/// secrets (their test fixtures hold `.env` files) and large.
const NOT_SCANNED: &[&str] =
    &["node_modules", "site-packages", "dist-packages", ".git", "target", "__pycache__", ".venv", "venv", ".tox"];

/// Looks for `.env` files at or beneath `path`, depth first, within [`SCAN_BUDGET`] entries.
pub fn scan(path: &Path) -> Scan {
    let mut budget = SCAN_BUDGET;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            budget = match budget.checked_sub(1) {
                Some(b) => b,
                None => return Scan { env_file: false, complete: false },
            };
            let name = entry.file_name();
            if is_env_file(&name.to_string_lossy()) {
                return Scan { env_file: true, complete: true };
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !NOT_SCANNED.iter().any(|n| name == *n) {
                stack.push(entry.path());
            }
        }
    }
    Scan { env_file: false, complete: true }
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

/// Is `what`, found at a path, closed to this kind of access? A persistence location may be
/// read, never written.
pub fn closes(what: Sensitive, write: bool) -> bool {
    write || what == Sensitive::Secret
}

/// A home's closed locations, resolved once: each listed entry, and where it really is when it is
/// a symlink (`~/.gnupg -> ~/.dotfiles/gnupg` closes `~/.dotfiles/gnupg` too).
#[derive(Debug, Clone)]
pub struct Closed {
    home: PathBuf,
    locations: Vec<(PathBuf, Sensitive)>,
}

impl Closed {
    pub fn new(home: &Path) -> Closed {
        let mut locations = Vec::new();
        for (list, what) in [(SECRETS, Sensitive::Secret), (PERSISTENCE, Sensitive::Persistence)] {
            for rel in list {
                let path = home.join(rel);
                if let Ok(real) = path.canonicalize()
                    && real != path
                {
                    locations.push((real, what));
                }
                locations.push((path, what));
            }
        }
        Closed { home: home.to_path_buf(), locations }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Is `path` (absolute, canonical) closed to a learning run, and as what?
    pub fn classify(&self, path: &Path) -> Option<Sensitive> {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if is_env_file(&name) {
            return Some(Sensitive::Secret);
        }
        if git_persistence(path) {
            return Some(Sensitive::Persistence);
        }
        let under = |what: Sensitive| self.locations.iter().any(|(l, w)| *w == what && path.starts_with(l));
        [Sensitive::Secret, Sensitive::Persistence].into_iter().find(|what| under(*what))
    }

    /// Would a grant of `dir` reach a closed location (one lies at or beneath it), or is it the
    /// home or above it? Reads are closed to secrets; writes to secrets and persistence locations.
    pub fn reaches(&self, dir: &Path, write: bool) -> bool {
        self.home.starts_with(dir) || self.locations.iter().any(|(l, what)| closes(*what, write) && l.starts_with(dir))
    }

    /// A directory a draft may grant whole: it reaches nothing closed and holds no `.env` file (a
    /// tree too large to scan is not).
    pub fn grantable(&self, dir: &Path, write: bool) -> bool {
        !self.reaches(dir, write) && (!dir.is_dir() || scan(dir) == Scan { env_file: false, complete: true })
    }
}

#[cfg(test)]
mod tests {
    /// Every secret of a home that `score` knows (data/score/sensitive-paths.toml) is closed to a
    /// learning run too: one list may not grow without the other.
    #[test]
    fn every_secret_the_score_knows_is_closed_to_learning() {
        let data: toml::Value =
            toml::from_str(include_str!("../../data/score/sensitive-paths.toml")).unwrap_or_else(|e| panic!("{e}"));
        let classes = data["secret"].as_array().cloned().unwrap_or_default();
        let paths = (classes.iter())
            .filter(|c| c.get("root-only").is_none())
            .flat_map(|c| c.get("paths").and_then(|p| p.as_array()).cloned().unwrap_or_default())
            .filter_map(|p| p.as_str().and_then(|p| p.strip_prefix("~/")).map(str::to_string));
        let open: Vec<String> =
            paths.filter(|p| !SECRETS.iter().any(|s| p == s || Path::new(p).starts_with(s))).collect();
        assert!(open.is_empty(), "secrets the score knows that a learning run may open: {open:?}");
    }

    use super::*;

    #[test]
    fn secrets_and_persistence_are_recognised_and_the_rest_is_not() {
        let home = Path::new("/home/me");
        let closed = Closed::new(home);
        let c = |p: &str| closed.classify(Path::new(p));
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
        let l = Closed::new(&home);
        assert!(l.reaches(&home.join(".cargo"), false), ".cargo holds credentials.toml");
        assert!(l.reaches(&home.join(".config"), false) && l.reaches(&home, false));
        assert!(l.reaches(&home.join(".dotfiles"), false), "the real place of a linked secret");
        assert!(!l.reaches(&home.join(".config/app"), true));
        assert!(
            !l.reaches(&home.join(".local/lib"), false) && l.reaches(&home.join(".local/lib"), true),
            "persistence: read, not written"
        );
        assert_eq!(l.classify(&home.join(".dotfiles/gnupg/secring")), Some(Sensitive::Secret));
    }
}
