//! The server command as stage 2 executes it: the program found on `PATH`, its argv, the
//! environment (built from scratch in [`environment`](super::environment)), the working directory, and `npx`/`uvx` commands replaced by
//! the copy they installed (see [`package_runner`](super::package_runner)).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::profile::Environment;
use crate::profile::vars::Vars;

use super::Inputs;
use super::environment;
use super::error::{NotExecutable, PlanError};
use super::identity::Identity;
use super::package_runner::{self, Caches};

#[derive(Debug, Clone)]
pub struct CommandPlan {
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    /// `npx -y PACKAGE`, resolved to the installed copy: `(package@version, script)`.
    pub npx: Option<(String, PathBuf)>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

impl CommandPlan {
    pub fn resolve(
        section: &Environment,
        command: &[OsString],
        identity: &Identity,
        inputs: &Inputs<'_>,
        vars: &Vars,
    ) -> Result<CommandPlan, PlanError> {
        let env = environment::resolve(section, inputs, vars, identity)?;
        // `npx -y PACKAGE`: run the installed copy with node, without npm (see package_runner.rs).
        let installed = package_runner::resolve(command, &caches(inputs, identity))?;
        let rewritten: Vec<OsString> = match &installed {
            Some(r) => r.argv(),
            None => command.to_vec(),
        };
        let (arg0, _) = rewritten.split_first().ok_or(PlanError::NoCommand)?;
        let search_path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let program = resolve_program(arg0, search_path.as_deref(), &inputs.cwd)?;
        Ok(CommandPlan {
            program,
            argv: rewritten,
            npx: installed.map(|r| {
                let what =
                    if r.version.is_empty() { r.package.clone() } else { format!("{}@{}", r.package, r.version) };
                (what, r.entry().to_path_buf())
            }),
            env,
            cwd: inputs.cwd.clone(),
        })
    }
}

/// Where npm and uv keep what they installed, for the server's user.
fn caches(inputs: &Inputs<'_>, identity: &Identity) -> Caches {
    let cache_home = || inputs.var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| identity.home.join(".cache"));
    Caches {
        cwd: inputs.cwd.clone(),
        pipx: inputs.var("PIPX_VENV_CACHEDIR").map(PathBuf::from).unwrap_or_else(|| cache_home().join("pipx")),
        npm: inputs.var("npm_config_cache").map(PathBuf::from).unwrap_or_else(|| identity.home.join(".npm")),
        uv: inputs.var("UV_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            inputs.var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| identity.home.join(".cache")).join("uv")
        }),
    }
}

/// `arg0` itself when it contains a `/`, else the first executable file of that name on
/// `search_path` (the server's `PATH`, or a default).
fn resolve_program(arg0: &OsStr, search_path: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, PlanError> {
    if arg0.as_bytes().contains(&b'/') {
        let p = cwd.join(arg0);
        if !p.exists() {
            return Err(PlanError::NotFound {
                program: arg0.to_string_lossy().into(),
                path: "(not searched: a path was given)".into(),
            });
        }
        return check_executable(&p);
    }
    let default = OsStr::new("/usr/local/bin:/usr/bin:/bin");
    let search = search_path.unwrap_or(default);
    for dir in std::env::split_paths(search) {
        let candidate = cwd.join(dir).join(arg0);
        if candidate.is_file()
            && let Ok(p) = check_executable(&candidate)
        {
            return Ok(p);
        }
    }
    Err(PlanError::NotFound { program: arg0.to_string_lossy().into(), path: search.to_string_lossy().into() })
}

fn check_executable(p: &Path) -> Result<PathBuf, PlanError> {
    let not = |why| PlanError::NotExecutable { path: p.into(), why };
    let meta = p.metadata().map_err(|e| not(NotExecutable::Metadata(e)))?;
    if meta.is_dir() {
        return Err(not(NotExecutable::Directory));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(not(NotExecutable::NoPermission));
    }
    Ok(p.to_path_buf())
}

/// The interpreter a script's `#!` line names.
pub fn shebang_interpreter(program: &Path) -> Option<PathBuf> {
    let line = shebang_line(program)?;
    let interp = line.split(|b| *b == b' ' || *b == b'\t').find(|s| !s.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(interp)))
}

/// A script's `#!` line, without the `#!` (at most its first 256 bytes). A regular file only,
/// opened without blocking: a FIFO or device named as the program must not hang the launcher (or
/// `wrap`) before anything starts.
pub fn shebang_line(program: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::metadata(program).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut head = [0u8; 256];
    let mut open = std::fs::OpenOptions::new();
    open.read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let n = open.open(program).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    line.split(|b| *b == b'\n').next().map(<[u8]>::to_vec)
}
