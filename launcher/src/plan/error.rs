//! Why a profile cannot be resolved into a plan on this host, with the hint and exit status each
//! failure gets.

use std::io;
use std::path::PathBuf;

use crate::profile::vars::VarError;

use super::package_runner::PackageError;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A granted path that cannot be resolved (`expanded`: what variables made of it).
    #[error(
        "{key} path `{path}` ({origin}): {}{source}",
        expanded.as_ref().map(|e| format!("{e}: ")).unwrap_or_default()
    )]
    Path { key: String, path: String, origin: String, expanded: Option<String>, source: io::Error },
    /// A granted path whose variables have no value.
    #[error("{key} path `{path}` ({origin}): {source}")]
    Variable { key: String, path: String, origin: String, source: VarError },
    #[error("command not found: `{program}` (searched PATH={path})")]
    NotFound { program: String, path: String },
    #[error("`{}` is not executable: {why}", path.display())]
    NotExecutable { path: PathBuf, why: NotExecutable },
    #[error("`{}` is outside the profile's exec allow-list", path.display())]
    ExecNotAllowed { path: PathBuf, dir: PathBuf },
    /// A grant named inside a write grant resolves outside it: the server can plant the symlink
    /// (or rename the directory) there in one run to widen its grants at the next start.
    #[error(
        "{key} path `{}` ({origin}) is inside the write grant `{}` but resolves to `{}`, outside it",
        written.display(), write_grant.display(), resolved.display()
    )]
    Redirected { key: String, written: PathBuf, origin: String, resolved: PathBuf, write_grant: PathBuf },
    #[error("no command given")]
    NoCommand,
    #[error("unknown {kind} `{name}`")]
    UnknownId { kind: &'static str, name: String },
    #[error("cannot run the server as `{user}`: switching user needs root (mcp-warden runs as uid {uid})")]
    SwitchNeedsRoot { user: String, uid: u32 },
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    #[error("invalid {what}: {source}")]
    BadVariable { what: String, source: VarError },
    #[error("cannot run the npx/uvx command hardened: {0}")]
    Npx(#[from] PackageError),
    #[error("{layer} is required but cannot be enforced on this host: {why}")]
    Unenforceable { layer: &'static str, why: String },
    /// A root server would own a directory the host's users share.
    #[error(
        "the write grant {grant} is a directory every user shares (mode {mode:04o}), and the server runs as root: it could change the directory's own mode and owner (drop /tmp's sticky bit) for the whole host"
    )]
    SharedDirForRoot { grant: PathBuf, mode: u32 },
    /// The server could erase, forge or redirect a record of what it did.
    #[error("the {what} {path} is inside the write grant {grant}: the server could erase, forge or redirect it")]
    RecordInGrant { what: &'static str, path: PathBuf, grant: PathBuf },
    /// A file of the run with another name somewhere, which a write grant could hold.
    #[error("the {what} {path} has {links} hard links: through one inside a write grant the server could rewrite it")]
    OtherLinks { what: &'static str, path: PathBuf, links: u64 },
}

/// Why a program that exists cannot be executed.
#[derive(Debug, thiserror::Error)]
pub enum NotExecutable {
    #[error("{0}")]
    Metadata(io::Error),
    #[error("is a directory")]
    Directory,
    #[error("no execute permission")]
    NoPermission,
}

impl crate::error::Diagnose for PlanError {
    /// 127 not found, 126 not executable, 125 every other launcher failure.
    fn exit_code(&self) -> i32 {
        match self {
            PlanError::NotFound { .. } => crate::error::EXIT_NOT_FOUND,
            PlanError::NotExecutable { .. } => crate::error::EXIT_NOT_EXECUTABLE,
            _ => crate::error::EXIT_LAUNCHER,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            PlanError::Path { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                "create it, fix the path, or mark a path that may be absent with a trailing `?`".into()
            }
            PlanError::Path { .. } | PlanError::Invalid { .. } => return None,
            PlanError::Variable { source, .. } | PlanError::BadVariable { source, .. } => {
                return crate::error::Diagnose::hint(source);
            }
            PlanError::Npx(_) => {
                "install the package once outside the sandbox (`npx -y PACKAGE --help` or `uvx PACKAGE --help`, which fetch it into their cache), then run it under mcp-warden: the hardened run never fetches".into()
            }
            PlanError::NotFound { .. } => {
                "give the full path of the server program, or pass PATH with --pass-env PATH".into()
            }
            PlanError::NotExecutable { .. } => "check the file's mode and the filesystem's noexec option".into(),
            PlanError::ExecNotAllowed { dir, .. } => format!("grant it with `--allow-exec {}`", dir.display()),
            PlanError::Redirected { written, .. } => format!(
                "what lies inside a write grant is the server's to change, symlinks included: check what `{}` points to (the server may have planted it), remove it, or grant the place it points to directly",
                written.display()
            ),
            PlanError::NoCommand => {
                "put the server command after `--`: mcp-warden run --profile strict -- CMD ARGS".into()
            }
            PlanError::UnknownId { .. } => "use a user (or group) that exists in /etc/passwd (/etc/group)".into(),
            PlanError::SwitchNeedsRoot { .. } => "drop `user` from the profile, or start mcp-warden as root".into(),
            PlanError::SharedDirForRoot { .. } => {
                "run the server as a user (`--user NAME` or [process] user), or give it a directory of its own (`[filesystem] private-tmp = true` for temporary files)".into()
            }
            PlanError::RecordInGrant { what, .. } => {
                format!("keep the {what} outside every --allow-write grant (choose another path, or narrow the grant)")
            }
            PlanError::OtherLinks { what, .. } => {
                format!("keep the {what} as a file of its own: copy it (`cp`) instead of linking it")
            }
            PlanError::Unenforceable { layer, .. } => format!(
                "`mcp-warden doctor` shows what this host supports; to run anyway with less protection, set `{layer} = \"best-effort\"` under [require] or pass `--require {layer}=best-effort`"
            ),
        })
    }
}
