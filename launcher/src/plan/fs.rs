//! The filesystem allow-list: every granted path canonicalized with its rights and the first place
//! it was granted, the optional paths absent on this host, the runtime's own installation, the
//! private `TMPDIR`, and the check that the program itself may be executed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::layers::landlock::FsAccess;
use crate::profile::vars::Vars;
use crate::profile::{Filesystem, Origin, Runtime, Sourced};

use super::command::shebang_interpreter;
use super::error::PlanError;

#[derive(Debug, Clone, Default)]
pub struct FsPlan {
    /// Canonical path -> rights, with the first place each was granted.
    pub paths: BTreeMap<PathBuf, (FsAccess, Origin)>,
    /// A private `TMPDIR`, created by the supervisor at start and removed at exit.
    pub private_tmp: bool,
    /// Optional (`?`) paths absent on this host.
    pub skipped: Vec<Sourced<PathBuf>>,
    /// The symlinks on the way to each grant as written, and to the program and working
    /// directory: location -> target as written (recreated in the hidden root).
    pub links: BTreeMap<PathBuf, PathBuf>,
    /// Each grant of the profile and the command line as written (absolute, variables expanded)
    /// and as resolved, with its key and origin: [`FsPlan::check_not_redirected`].
    pub written: Vec<Written>,
    /// The runtime's installations inside a write grant, granted read only (nothing the server
    /// may write runs), for the warning.
    runtime_in_write: Vec<(PathBuf, PathBuf)>,
}

/// A grant as written and as resolved.
#[derive(Debug, Clone)]
pub struct Written {
    pub key: &'static str,
    pub origin: Origin,
    pub path: PathBuf,
    pub resolved: PathBuf,
}

/// A section's grant lists, with their keys and rights.
fn lists(section: &Filesystem) -> [(&'static str, &[Sourced<PathBuf>], FsAccess); 3] {
    [
        ("filesystem.read", &section.read, FsAccess::READ),
        ("filesystem.write", &section.write, FsAccess::WRITE),
        ("filesystem.exec", &section.exec, FsAccess::EXEC),
    ]
}

impl FsPlan {
    /// The section's grants. The profile's come first, then the command line's, so that a path
    /// granted by both names the profile as its origin.
    pub fn resolve(section: &Filesystem, vars: &Vars, cwd: &Path) -> Result<FsPlan, PlanError> {
        let mut plan = FsPlan { private_tmp: section.private_tmp.unwrap_or(false), ..Default::default() };
        for command_line in [false, true] {
            for (key, list, access) in lists(section) {
                for entry in list.iter().filter(|e| e.origin.flag().is_some() == command_line) {
                    plan.add_entry(key, entry, access, vars, cwd)?;
                }
            }
        }
        plan.check_not_redirected()?;
        Ok(plan)
    }

    /// Exec grants strictly inside a write grant, with that write grant: the view keeps them
    /// read-only for the run, but the directory above them is the server's, so it can replace
    /// them (rename them away, make new ones) for the next start.
    pub fn exec_inside_write(&self) -> Vec<(&Path, &Path)> {
        let writes = self.paths.iter().filter(|(_, (a, _))| a.write);
        let execs = || self.paths.iter().filter(|(_, (a, _))| a.exec && !a.write);
        writes
            .flat_map(|(w, _)| {
                execs().filter(move |(e, _)| e.starts_with(w)).map(move |(e, _)| (e.as_path(), w.as_path()))
            })
            .collect()
    }

    /// What the grants leave to the server that the user should know, one line each: the
    /// runtime's installation inside a write grant (granted read only), paths both writable and
    /// executable, exec grants inside a write grant.
    pub fn warnings(&self) -> Vec<String> {
        let runtime = self.runtime_in_write.iter().map(|(dir, w)| format!(
            "the server's installation {} is inside the write grant {}: granted read only, so nothing in it runs as a program or native library (move it out of the write grant if it needs to)",
            dir.display(),
            w.display()
        ));
        let rwx = self.writable_and_executable().into_iter().map(|p| format!(
            "{} is granted both write and exec: a program the server writes there runs (grant exec and write on different directories to keep them apart)",
            p.display()
        ));
        let nested = self.exec_inside_write().into_iter().map(|(e, w)| format!(
            "the exec grant {} is inside the write grant {}: the server cannot change it during a run, but it can replace it for the next start (rename it away and put its own in its place)",
            e.display(),
            w.display()
        ));
        runtime.chain(rwx).chain(nested).collect()
    }

    /// Paths both writable and executable (granted both ways): what the server writes there runs.
    pub fn writable_and_executable(&self) -> Vec<&Path> {
        self.paths.iter().filter(|(_, (a, _))| a.write && a.exec).map(|(p, _)| p.as_path()).collect()
    }

    /// A grant written inside a write grant must resolve inside it. What lies there is the
    /// server's: in one run it can rename a directory or plant a symlink where a nested (or
    /// optional) grant is written, and the next start would resolve that grant to wherever it
    /// points (`~/.ssh`). Checked at every start, before anything runs.
    pub fn check_not_redirected(&self) -> Result<(), PlanError> {
        let writes: Vec<&Written> =
            self.written.iter().filter(|w| self.paths.get(&w.resolved).is_some_and(|(a, _)| a.write)).collect();
        for grant in &self.written {
            for w in &writes {
                if passes_through(&grant.path, &w.resolved) && !grant.resolved.starts_with(&w.resolved) {
                    return Err(PlanError::Redirected {
                        key: grant.key.into(),
                        written: grant.path.clone(),
                        origin: grant.origin.to_string(),
                        resolved: grant.resolved.clone(),
                        write_grant: w.path.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A learning run's baseline ([`crate::learn::baseline`]), over the profile's grants.
    pub fn add_learned(&mut self, section: &Filesystem, vars: &Vars, cwd: &Path) -> Result<(), PlanError> {
        for (key, list, access) in lists(section) {
            for entry in list {
                self.add_entry(key, entry, access, vars, cwd)?;
            }
        }
        self.check_not_redirected()
    }

    /// Notes the symlinks on the way to `written` (see [`super::links`]).
    pub fn note_links(&mut self, written: &Path) {
        self.links.extend(super::links::symlinks_on(written));
    }

    /// Notes the symlinks on the way to the program, a script's interpreter and the working
    /// directory: the server names them as written.
    pub fn note_command_links(&mut self, cmd: &super::CommandPlan) {
        self.note_links(&cmd.program);
        if let Some(interpreter) = shebang_interpreter(&cmd.program) {
            self.note_links(&interpreter);
        }
        self.note_links(&cmd.cwd);
    }

    fn note_written(&mut self, key: &'static str, origin: &Origin, path: PathBuf, resolved: &Path) {
        self.written.push(Written { key, origin: origin.clone(), path, resolved: resolved.to_path_buf() });
    }

    fn grant(&mut self, path: PathBuf, access: FsAccess, origin: &Origin) {
        let slot = self.paths.entry(path).or_insert_with(|| (access, origin.clone()));
        slot.0 = slot.0.union(access);
    }

    /// A command-line path is taken as written, relative to the working directory. A profile's
    /// has its variables expanded (a list, for `${args:dirs}`) and may end in `?` (optional).
    fn add_entry(
        &mut self,
        key: &'static str,
        entry: &Sourced<PathBuf>,
        access: FsAccess,
        vars: &Vars,
        cwd: &Path,
    ) -> Result<(), PlanError> {
        if let Some(flag) = entry.origin.flag() {
            let written = cwd.join(&entry.value);
            let canonical = written.canonicalize().map_err(|source| PlanError::Path {
                key: flag.into(),
                path: entry.value.display().to_string(),
                origin: "command line".into(),
                expanded: None,
                source,
            })?;
            self.note_links(&written);
            self.note_written(key, &entry.origin, written, &canonical);
            self.grant(canonical, access, &entry.origin);
            return Ok(());
        }
        let written = entry.value.to_string_lossy();
        let (raw, optional) = match written.strip_suffix('?') {
            Some(r) => (r, true),
            None => (written.as_ref(), false),
        };
        let expanded = match vars.expand_many(raw) {
            Ok(list) => list,
            // A server-derived variable with no value (a flag not given) in an optional entry.
            Err(_) if optional => {
                self.skipped.push(entry.clone());
                return Ok(());
            }
            Err(source) => {
                let origin = entry.origin.to_string();
                return Err(PlanError::Variable { key: key.into(), path: written.into(), origin, source });
            }
        };
        for one in expanded {
            match Path::new(&one).canonicalize() {
                Ok(p) => {
                    self.note_links(Path::new(&one));
                    self.note_written(key, &entry.origin, cwd.join(&one), &p);
                    self.grant(p, access, &entry.origin);
                }
                Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => self.skipped.push(entry.clone()),
                Err(source) => {
                    return Err(PlanError::Path {
                        key: key.into(),
                        path: written.clone().into(),
                        origin: entry.origin.to_string(),
                        // name the expanded path when variables made it differ from what was written
                        expanded: (one != raw).then_some(one),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Read and execute on the runtime's own installation (see [`installation`]).
    /// `home`: the server user's home, which a script's directory may never widen into.
    /// An installation inside a write grant (a script next to the database it writes) is granted
    /// read only: the write grant's `noexec` stays, and nothing the server may write runs (the
    /// interpreter still reads the script).
    pub fn grant_runtime(&mut self, runtime: Runtime, program: &Path, args: &[OsString], cwd: &Path, home: &Path) {
        for dir in installation(runtime, program, args, cwd, home) {
            let writable = self.paths.iter().find(|(p, (a, _))| a.write && dir.starts_with(p)).map(|(p, _)| p.clone());
            let access = match writable {
                Some(w) => {
                    self.runtime_in_write.push((dir.clone(), w));
                    FsAccess::READ
                }
                None => FsAccess::EXEC,
            };
            self.grant(dir, access, &Origin::Runtime(runtime));
        }
    }

    /// What the server must read to start and no grant lets it: the script an interpreter (`node`,
    /// `python`) would run, the virtualenv a Python program or console script runs from, the
    /// prefix of its interpreter. The server would start and fail at once. Returns what it is
    /// (for the warning), the path, and the directory to grant.
    pub fn unreadable_installation(
        &self,
        program: &Path,
        args: &[OsString],
        cwd: &Path,
    ) -> Option<(&'static str, PathBuf, PathBuf)> {
        let readable = |p: &Path| self.paths.iter().any(|(dir, (a, _))| a.read && p.starts_with(dir));
        let name = program.file_name()?.to_string_lossy();
        let interpreter = shebang_interpreter(program);
        let python =
            name.starts_with("python") || interpreter.as_ref().is_some_and(|i| i.to_string_lossy().contains("python"));
        if (name.starts_with("node") || name.starts_with("python"))
            && let Some(script) = script_argument(args, cwd).filter(|s| !readable(s))
        {
            let dir = script.parent().unwrap_or(&script).to_path_buf();
            return Some(("script", script, dir));
        }
        if !python {
            return None;
        }
        for candidate in std::iter::once(program.to_path_buf()).chain(interpreter.clone()) {
            if let Some(venv) = candidate.parent().and_then(Path::parent).filter(|v| v.join("pyvenv.cfg").is_file())
                && let Ok(venv) = venv.canonicalize()
                && !readable(&venv)
            {
                return Some(("virtualenv", venv.clone(), venv));
            }
        }
        let real = interpreter.unwrap_or_else(|| program.to_path_buf()).canonicalize().ok()?;
        let prefix = real.parent()?.parent()?.to_path_buf();
        (!readable(&prefix)).then(|| ("interpreter's installation", prefix.clone(), prefix))
    }

    /// The program, and a script's interpreter, must be under an exec grant or Landlock will
    /// refuse the `execve` with a bare EACCES; saying so before the fork gives a useful message.
    pub fn check_exec_allowed(&self, program: &Path) -> Result<(), PlanError> {
        let allowed = |p: &Path| self.paths.iter().any(|(dir, (a, _))| a.exec && p.starts_with(dir));
        let mut to_check = vec![program.canonicalize().unwrap_or_else(|_| program.to_path_buf())];
        if let Some(interp) = shebang_interpreter(program) {
            to_check.push(interp.canonicalize().unwrap_or(interp));
        }
        for p in to_check {
            if !allowed(&p) {
                let dir = p.parent().map_or_else(|| p.clone(), Path::to_path_buf);
                return Err(PlanError::ExecNotAllowed { path: p, dir });
            }
        }
        Ok(())
    }
}

/// Does the path `written` go through the directory `dir` (canonical) on its way: is one of its
/// ancestors, resolved, `dir` or below it? Resolved one by one, so that neither a symlink above
/// `dir` (`alias/app/config` with `alias -> w`) nor a `..` (`x/../w/app/config`) hides it.
fn passes_through(written: &Path, dir: &Path) -> bool {
    written.ancestors().skip(1).any(|a| a.canonicalize().is_ok_and(|c| c.starts_with(dir)))
}

/// The script an interpreter runs: its first argument that is not an option and names a file
/// (canonical), before a `-m` (python's module mode, which runs no script).
fn script_argument(args: &[OsString], cwd: &Path) -> Option<PathBuf> {
    args.iter()
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "-m")
        .filter(|a| !a.starts_with('-'))
        .map(|a| cwd.join(a.as_ref()))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// `dir`, the directory a script's installation was found in, unless it is the user's home or
/// above it (a script kept in `~` would open `~/.ssh`, a `package.json` in `~` all of it), or `/`:
/// then only the script itself.
fn bounded(dir: Option<&Path>, script: &Path, home: &Path) -> PathBuf {
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    match dir {
        Some(d) if !home.starts_with(d) && d != Path::new("/") => d.to_path_buf(),
        _ => script.to_path_buf(),
    }
}

/// The directories a server's own installation lives in, for `runtime = ...` profiles:
/// - python: the interpreter's prefix (`<prefix>/bin/python3`), the virtualenv the program (or a
///   console script) belongs to (`pyvenv.cfg` next to its `bin/`) and the project holding it (a
///   `pyproject.toml` beside the `.venv`), and for `python SCRIPT` the
///   script's project (nearest `pyproject.toml` or `setup.py`) or else its directory;
/// - node: the outermost `node_modules` containing the script (the program, or its first
///   argument that is a file), or else the script's package root (`package.json`).
fn installation(runtime: Runtime, program: &Path, args: &[OsString], cwd: &Path, home: &Path) -> Vec<PathBuf> {
    let real = |p: &Path| p.canonicalize().ok();
    let mut out = Vec::new();
    match runtime {
        Runtime::Python => {
            let interpreter = shebang_interpreter(program).unwrap_or_else(|| program.to_path_buf());
            for candidate in [program, interpreter.as_path()] {
                // a virtualenv: <venv>/bin/<program> with <venv>/pyvenv.cfg
                if let Some(venv) = candidate.parent().and_then(Path::parent)
                    && venv.join("pyvenv.cfg").is_file()
                {
                    out.extend(real(venv));
                    // a project's own `.venv` (`uv run`, `uv sync`): the project's sources too
                    // (an editable install points there)
                    if let Some(venv) = real(venv)
                        && let Some(project) = venv.parent()
                        && project.join("pyproject.toml").is_file()
                    {
                        out.push(bounded(Some(project), &venv, home));
                    }
                }
            }
            // the interpreter's own prefix, e.g. /root/.pyenv/versions/3.11.7 (nothing new under /usr)
            if let Some(prefix) = real(&interpreter).as_deref().and_then(Path::parent).and_then(Path::parent) {
                out.push(prefix.to_path_buf());
            }
            // `python SCRIPT`: the script's project (the nearest pyproject.toml or setup.py), or
            // else its own directory. Not with `-m` (the module is in the installation above).
            if let Some(script) = script_argument(args, cwd) {
                let project = script
                    .ancestors()
                    .skip(1)
                    .find(|a| a.join("pyproject.toml").is_file() || a.join("setup.py").is_file());
                out.push(bounded(project.or_else(|| script.parent()), &script, home));
            }
        }
        Runtime::Node => {
            // The program itself when it is a script (`#!/usr/bin/env node`), else `node SCRIPT`.
            let script = match shebang_interpreter(program) {
                Some(_) => real(program),
                None => script_argument(args, cwd),
            };
            if let Some(script) = script {
                let modules = script.ancestors().filter(|a| a.file_name().is_some_and(|n| n == "node_modules")).last();
                match modules {
                    Some(m) => out.push(bounded(Some(m), &script, home)),
                    None => {
                        let package = script.ancestors().skip(1).find(|a| a.join("package.json").is_file());
                        out.push(bounded(package, &script, home));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtualenv_outside_every_read_grant_is_what_the_server_cannot_start_from() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().canonicalize().unwrap().join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), "").unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python")).unwrap();
        let program = venv.join("bin/python");
        let args: Vec<OsString> = vec!["-m".into(), "weather".into()];
        let mut plan = FsPlan::default();
        plan.grant("/usr".into(), FsAccess::EXEC, &Origin::Flag("--allow-exec"));
        let missing = plan.unreadable_installation(&program, &args, Path::new("/"));
        assert_eq!(missing, Some(("virtualenv", venv.clone(), venv.clone())));
        plan.grant(venv.clone(), FsAccess::EXEC, &Origin::Flag("--allow-exec"));
        assert_eq!(plan.unreadable_installation(&program, &args, Path::new("/")), None, "granted: it starts");
    }

    fn section(write: &[&Path], read: &[String]) -> Filesystem {
        let sourced = |p: PathBuf| Sourced { value: p, origin: Origin::File("test.toml:1:1".into()) };
        Filesystem {
            write: write.iter().map(|p| sourced(p.to_path_buf())).collect(),
            read: read.iter().map(|p| sourced(PathBuf::from(p))).collect(),
            ..Filesystem::default()
        }
    }

    #[test]
    fn a_grant_inside_a_write_grant_that_resolves_outside_it_refuses_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (w, secret) = (root.join("w"), root.join("secret"));
        std::fs::create_dir_all(w.join("app/config")).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        let vars = Vars::new("/nonexistent", "u", "/", &|_| None);
        let nested = format!("{}/app/config", w.display());
        assert!(FsPlan::resolve(&section(&[&w], std::slice::from_ref(&nested)), &vars, &root).is_ok(), "control");
        // what a server with the write grant can do in one run, for the next start
        std::fs::rename(w.join("app"), w.join("app.old")).unwrap();
        std::fs::create_dir(w.join("app")).unwrap();
        std::os::unix::fs::symlink(&secret, w.join("app/config")).unwrap();
        let err = FsPlan::resolve(&section(&[&w], &[nested]), &vars, &root).unwrap_err();
        assert!(matches!(&err, PlanError::Redirected { resolved, .. } if *resolved == secret), "{err}");
        // an optional grant, absent until the server plants it
        let optional = format!("{}/extra?", w.display());
        assert!(FsPlan::resolve(&section(&[&w], std::slice::from_ref(&optional)), &vars, &root).is_ok());
        std::os::unix::fs::symlink(&secret, w.join("extra")).unwrap();
        assert!(FsPlan::resolve(&section(&[&w], &[optional]), &vars, &root).is_err());
        // written through a symlink above the write grant, or through `..`: still inside it
        std::os::unix::fs::symlink(&w, root.join("alias")).unwrap();
        std::fs::create_dir(root.join("x")).unwrap();
        for written in [root.join("alias/app/config"), root.join("x/../w/app/config")] {
            let written = written.display().to_string();
            assert!(
                FsPlan::resolve(&section(&[&w], std::slice::from_ref(&written)), &vars, &root).is_err(),
                "{written}"
            );
        }
        // a symlink inside the write grant to elsewhere inside it stays inside: allowed
        std::os::unix::fs::symlink(w.join("app.old"), w.join("inner")).unwrap();
        let inner = format!("{}/inner/config", w.display());
        assert!(FsPlan::resolve(&section(&[&w], &[inner]), &vars, &root).is_ok());
    }

    #[test]
    fn an_installation_inside_a_write_grant_is_granted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (proj, other) = (root.join("proj"), root.join("other"));
        for d in [&proj, &other] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("server.py"), "").unwrap();
        }
        let mut plan = FsPlan::default();
        plan.grant(proj.clone(), FsAccess::WRITE, &Origin::Flag("--allow-write"));
        let python = Path::new("/nonexistent/bin/python3");
        for script in [proj.join("server.py"), other.join("server.py")] {
            plan.grant_runtime(Runtime::Python, python, &[script.into()], &root, Path::new("/nonexistent"));
        }
        assert_eq!(plan.paths[&proj].0, FsAccess::WRITE, "no exec added to the write grant");
        assert_eq!(plan.paths[&other].0, FsAccess::EXEC, "control: outside every write grant");
        assert_eq!(plan.runtime_in_write, [(proj.clone(), proj)]);
    }

    #[test]
    fn a_python_script_grants_its_project_but_never_the_home_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let home = root.join("home/me");
        std::fs::create_dir_all(home.join("proj/src")).unwrap();
        std::fs::write(home.join("proj/pyproject.toml"), "").unwrap();
        std::fs::write(home.join("proj/src/server.py"), "").unwrap();
        std::fs::write(home.join("loose.py"), "").unwrap();
        let python = Path::new("/usr/bin/python3");
        let grants = |script: &Path| installation(Runtime::Python, python, &[script.into()], &root, &home);
        assert!(grants(&home.join("proj/src/server.py")).contains(&home.join("proj")), "the project");
        let loose = grants(&home.join("loose.py"));
        assert!(loose.contains(&home.join("loose.py")) && !loose.contains(&home), "only the script: {loose:?}");
        let modules = installation(Runtime::Python, python, &["-m".into(), home.join("loose.py").into()], &root, &home);
        assert!(!modules.iter().any(|p| p.starts_with(&home)), "-m: no script: {modules:?}");
    }
}
