//! `npx -y PACKAGE ARGS` and `uvx PACKAGE ARGS` without npm or uv in the sandbox.
//!
//! npx and uvx resolve the package against the registry and write their caches on every start:
//! under a hardened profile that would need the network and a writable cache, a place where a
//! hijacked server could leave code for the next start. So mcp-warden runs the copy they already
//! installed directly: npx's `~/.npm/_npx/<hash>/node_modules/PACKAGE` with `node`, uvx's
//! `~/.cache/uv/archive-v0/<id>` environment with its own `python`. Install once outside the
//! sandbox (the first `npx -y PACKAGE` / `uvx PACKAGE`), run hardened after that.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The installed server behind an npx or uvx command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub package: String,
    pub version: String,
    /// `node` for npx, the environment's `python` for uvx and `uv run`.
    pub interpreter: PathBuf,
    /// The package's entry script, run as `INTERPRETER SCRIPT ARGS` (none for `uv run python`).
    pub script: Option<PathBuf>,
    pub args: Vec<OsString>,
}

impl Resolved {
    /// The command line that runs it.
    pub fn argv(&self) -> Vec<OsString> {
        let head = std::iter::once(self.interpreter.clone().into_os_string());
        head.chain(self.script.clone().map(PathBuf::into_os_string)).chain(self.args.iter().cloned()).collect()
    }

    /// What `explain` shows as the installed copy.
    pub fn entry(&self) -> &Path {
        self.script.as_deref().unwrap_or(&self.interpreter)
    }
}

/// Why an npx or uvx command line cannot be run from the installed copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("{runner} without a package")]
    NoPackage { runner: &'static str },
    #[error("{runner} option `{option}` is not understood by mcp-warden's {runner} resolution")]
    UnknownOption { runner: &'static str, option: String },
    #[error("{runner} package name is not UTF-8")]
    NotUtf8 { runner: &'static str },
    #[error("`{spec}` is not installed in the {cache_name} cache {}", cache.display())]
    NotInstalled { spec: String, cache_name: &'static str, cache: PathBuf },
    #[error("`uv run` in {}: the project has no environment ({} is missing)", project.display(), project.join(".venv/pyvenv.cfg").display())]
    NoProjectEnv { project: PathBuf },
    #[error("`uv run {command}` in {}: no such script or command in the project or its environment", project.display())]
    NoProjectCommand { project: PathBuf, command: String },
}

impl crate::error::Diagnose for PackageError {
    fn hint(&self) -> Option<String> {
        match self {
            PackageError::NoProjectEnv { project } => Some(format!(
                "install it once, with the network, outside mcp-warden: `uv sync --directory {}`",
                project.display()
            )),
            PackageError::NotInstalled { .. } => {
                Some("run the same command once outside mcp-warden, with the network, to install it".into())
            }
            _ => None,
        }
    }
}

/// Where the launchers keep what they installed, and the directory `uv run` starts from.
#[derive(Debug)]
pub struct Caches {
    pub npm: PathBuf,
    pub uv: PathBuf,
    /// `pipx run`'s environments (`PIPX_VENV_CACHEDIR`, else `~/.cache/pipx`).
    pub pipx: PathBuf,
    pub cwd: PathBuf,
}

/// `Ok(None)` when `argv` is neither an npx nor a uvx command.
pub fn resolve(argv: &[OsString], caches: &Caches) -> Result<Option<Resolved>, PackageError> {
    match argv.first().map(Path::new).and_then(Path::file_name).and_then(OsStr::to_str) {
        Some("npx") => resolve_npx(argv, &caches.npm),
        Some("uvx") => resolve_uvx(argv, &caches.uv),
        Some("uv") => resolve_uv(argv, caches),
        Some("pipx") => resolve_pipx(argv, caches),
        _ => Ok(None),
    }
}

/// `pipx run [--spec SPEC] APP ARGS`: the environment pipx cached for it, in its own cache
/// (`~/.cache/pipx/<hash>/`, pip backend) or uv's (uv backend, where it is what
/// `uvx --from SPEC APP` would run). Other `pipx` commands are not rewritten.
fn resolve_pipx(argv: &[OsString], caches: &Caches) -> Result<Option<Resolved>, PackageError> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("run") {
        return Ok(None);
    }
    let mut rest = argv[2..].iter();
    let mut spec = None;
    let app = loop {
        let Some(arg) = rest.next() else { return Err(PackageError::NoPackage { runner: "pipx run" }) };
        match arg.to_str() {
            Some("--spec") => spec = rest.next().and_then(|a| a.to_str()).map(String::from),
            Some("-q" | "--quiet" | "--no-cache") => continue,
            Some(a) if a.starts_with('-') => {
                return Err(PackageError::UnknownOption { runner: "pipx", option: a.into() });
            }
            Some(a) => break a.to_string(),
            None => return Err(PackageError::NotUtf8 { runner: "pipx run" }),
        }
    };
    let args: Vec<OsString> = rest.cloned().collect();
    let cached = std::fs::read_dir(&caches.pipx)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|env| env.join("pyvenv.cfg").is_file() && env.join("bin").join(&app).is_file());
    if let Some(env) = cached {
        let script = Some(env.join("bin").join(&app));
        let package = spec.unwrap_or_else(|| app.clone());
        return Ok(Some(Resolved {
            package,
            version: String::new(),
            interpreter: env.join("bin/python"),
            script,
            args,
        }));
    }
    let from = spec.unwrap_or_else(|| app.clone());
    let uvx: Vec<OsString> =
        ["uvx", "--from", from.as_str(), app.as_str()].iter().map(OsString::from).chain(args).collect();
    resolve_uvx(&uvx, &caches.uv)
}

/// `uv tool run ARGS` (uvx), and `uv [--directory D] run [--directory D | --project P] CMD ARGS`:
/// the project's `.venv` runs CMD (a script, a console script of the environment, or `python`).
/// Other `uv` commands are not rewritten.
fn resolve_uv(argv: &[OsString], caches: &Caches) -> Result<Option<Resolved>, PackageError> {
    let words: Vec<Option<&str>> = argv[1..].iter().map(|a| a.to_str()).collect();
    if words.first() == Some(&Some("tool")) && words.get(1) == Some(&Some("run")) {
        let uvx: Vec<OsString> = std::iter::once("uvx".into()).chain(argv[3..].iter().cloned()).collect();
        return resolve_uvx(&uvx, &caches.uv);
    }
    let mut rest = argv[1..].iter();
    let (mut project, mut running) = (None, false);
    let command = loop {
        let Some(arg) = rest.next() else {
            return if running { Err(PackageError::NoPackage { runner: "uv run" }) } else { Ok(None) };
        };
        match arg.to_str() {
            Some("--directory" | "--project") => project = rest.next().map(PathBuf::from),
            Some(a) if a.starts_with("--directory=") || a.starts_with("--project=") => {
                project = a.split_once('=').map(|(_, d)| PathBuf::from(d));
            }
            Some("run") if !running => running = true,
            Some("-q" | "--quiet" | "--frozen" | "--locked" | "--no-sync" | "--offline" | "--no-dev") => continue,
            Some(a) if a.starts_with('-') => {
                return Err(PackageError::UnknownOption { runner: "uv", option: a.into() });
            }
            Some(_) if !running => return Ok(None),
            Some(a) => break a.to_string(),
            None => return Err(PackageError::NotUtf8 { runner: "uv run" }),
        }
    };
    let project = caches.cwd.join(project.unwrap_or_default());
    let env = project.join(".venv");
    if !env.join("pyvenv.cfg").is_file() {
        return Err(PackageError::NoProjectEnv { project });
    }
    let interpreter = env.join("bin/python");
    let script = if command.starts_with("python") && !command.contains('/') {
        None
    } else if command.ends_with(".py") && project.join(&command).is_file() {
        Some(project.join(&command))
    } else if env.join("bin").join(&command).is_file() {
        Some(env.join("bin").join(&command))
    } else {
        return Err(PackageError::NoProjectCommand { project, command });
    };
    let package = format!("project {}", project.display());
    Ok(Some(Resolved { package, version: String::new(), interpreter, script, args: rest.cloned().collect() }))
}

/// `uvx [--from SPEC] PACKAGE[==VERSION] ARGS`: the cached environment whose `bin/` has the
/// command and whose site-packages has the package (at VERSION when given).
fn resolve_uvx(argv: &[OsString], uv_cache: &Path) -> Result<Option<Resolved>, PackageError> {
    let mut rest = argv[1..].iter();
    let mut from = None;
    let command = loop {
        let Some(arg) = rest.next() else { return Err(PackageError::NoPackage { runner: "uvx" }) };
        match arg.to_str() {
            Some("--from") => from = rest.next().and_then(|a| a.to_str()).map(String::from),
            Some("-q" | "--quiet" | "--offline") => continue,
            Some(a) if a.starts_with('-') => {
                return Err(PackageError::UnknownOption { runner: "uvx", option: a.into() });
            }
            Some(a) => break a.to_string(),
            None => return Err(PackageError::NotUtf8 { runner: "uvx" }),
        }
    };
    let spec = from.unwrap_or_else(|| command.clone());
    let (package, wanted) = uv_spec(&spec);
    let command = uv_spec(&command).0;
    let dist = normalized(&package);
    let mut found: Vec<(std::time::SystemTime, PathBuf, String)> = Vec::new();
    for entry in std::fs::read_dir(uv_cache.join("archive-v0")).into_iter().flatten().flatten() {
        let env = entry.path();
        if !env.join("bin").join(&command).is_file() || !env.join("pyvenv.cfg").is_file() {
            continue;
        }
        let Some(version) = installed_version(&env, &dist) else { continue };
        if wanted.as_ref().is_some_and(|w| *w != version) {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
        found.push((modified, env, version));
    }
    found.sort();
    let Some((_, env, version)) = found.pop() else {
        return Err(PackageError::NotInstalled { spec, cache_name: "uv", cache: uv_cache.join("archive-v0") });
    };
    Ok(Some(Resolved {
        package,
        version,
        interpreter: env.join("bin/python"),
        // uv's entry scripts are shell-and-Python polyglots: `python SCRIPT` runs them.
        script: Some(env.join("bin").join(&command)),
        args: rest.cloned().collect(),
    }))
}

/// `PKG`, `PKG==1.2`, `PKG@1.2` and `PKG@latest` (the newest installed copy, as uvx would reuse
/// it offline): the package and the version wanted, if any.
fn uv_spec(spec: &str) -> (String, Option<String>) {
    let (package, version) = match spec.split_once("==").or_else(|| spec.split_once('@')) {
        Some((p, v)) => (p, Some(v)),
        None => (spec, None),
    };
    (package.to_string(), version.filter(|v| *v != "latest").map(String::from))
}

/// A distribution name as its `.dist-info` directory spells it: runs of `-`, `_` and `.` become
/// one `_`, lowercase (`mcp.server-x` -> `mcp_server_x`).
fn normalized(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The version of distribution `dist` (normalized name) in a virtualenv, from its dist-info.
fn installed_version(env: &Path, dist: &str) -> Option<String> {
    let lib = std::fs::read_dir(env.join("lib"))
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))?;
    std::fs::read_dir(lib.path().join("site-packages")).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().to_ascii_lowercase();
        let stem = name.strip_suffix(".dist-info")?;
        let (n, v) = stem.split_once('-')?;
        (normalized(n) == dist).then(|| v.to_string())
    })
}

/// `Err` when the package cannot be resolved to an installed copy.
fn resolve_npx(argv: &[OsString], npm_cache: &Path) -> Result<Option<Resolved>, PackageError> {
    let mut rest = argv[1..].iter();
    let spec = loop {
        let Some(arg) = rest.next() else { return Err(PackageError::NoPackage { runner: "npx" }) };
        match arg.to_str() {
            Some(
                "-y" | "--yes" | "--quiet" | "-q" | "--silent" | "-s" | "--no-install" | "--prefer-offline"
                | "--offline",
            ) => continue,
            // Where npm would fetch from: the hardened run fetches nothing.
            Some("--registry" | "--cache" | "--userconfig" | "--loglevel") => {
                rest.next();
            }
            Some(a) if ["--registry=", "--cache=", "--userconfig=", "--loglevel="].iter().any(|o| a.starts_with(o)) => {
            }
            Some(a) if a.starts_with('-') => {
                return Err(PackageError::UnknownOption { runner: "npx", option: a.into() });
            }
            Some(a) => break a.to_string(),
            None => return Err(PackageError::NotUtf8 { runner: "npx" }),
        }
    };
    let (name, wanted) = split_spec(&spec);
    let mut found: Vec<(std::time::SystemTime, PathBuf, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(npm_cache.join("_npx")) {
        for entry in entries.flatten() {
            let dir = entry.path().join("node_modules").join(name);
            let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else { continue };
            let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let version = manifest["version"].as_str().unwrap_or_default().to_string();
            if wanted.is_some_and(|w| w != version && w != "latest") {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            if let Some(script) = bin_script(&manifest, name) {
                found.push((modified, dir.join(script), version));
            }
        }
    }
    // The most recently installed copy, as npx itself would reuse.
    found.sort();
    let Some((_, script, version)) = found.pop() else {
        return Err(PackageError::NotInstalled { spec, cache_name: "npx", cache: npm_cache.join("_npx") });
    };
    Ok(Some(Resolved {
        package: name.to_string(),
        version,
        interpreter: "node".into(),
        script: Some(script),
        args: rest.cloned().collect(),
    }))
}

/// `@scope/name@1.2.3` -> (`@scope/name`, Some(`1.2.3`)).
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    let at = spec.char_indices().skip(1).find(|(_, c)| *c == '@').map(|(i, _)| i);
    match at {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    }
}

/// The script npx would run: `bin` as a string, the entry named like the package (without its
/// scope), or the only entry.
fn bin_script(manifest: &serde_json::Value, name: &str) -> Option<String> {
    match &manifest["bin"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) => {
            let short = name.rsplit('/').next().unwrap_or(name);
            map.get(short).or_else(|| (map.len() == 1).then(|| map.values().next()).flatten())?.as_str().map(Into::into)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uv_run_uses_the_projects_environment() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("weather");
        std::fs::create_dir_all(project.join(".venv/bin")).unwrap();
        std::fs::write(project.join(".venv/pyvenv.cfg"), "").unwrap();
        std::fs::write(project.join(".venv/bin/weather-mcp"), "").unwrap();
        std::fs::write(project.join("server.py"), "").unwrap();
        let caches = Caches { npm: "/n".into(), uv: "/u".into(), pipx: "/p".into(), cwd: dir.path().into() };
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let python = project.join(".venv/bin/python");
        let r = resolve(&argv(&["uv", "--directory", "weather", "run", "server.py", "--x"]), &caches).unwrap().unwrap();
        assert_eq!(r.argv(), argv(&[python.to_str().unwrap(), project.join("server.py").to_str().unwrap(), "--x"]));
        let r = resolve(&argv(&["uv", "run", "--directory", "weather", "weather-mcp"]), &caches).unwrap().unwrap();
        assert_eq!(r.script, Some(project.join(".venv/bin/weather-mcp")));
        let r =
            resolve(&argv(&["uv", "run", "--project=weather", "python", "-m", "weather"]), &caches).unwrap().unwrap();
        assert_eq!(r.argv(), argv(&[python.to_str().unwrap(), "-m", "weather"]));
        let e = resolve(&argv(&["uv", "run", "--directory", "other", "x"]), &caches).unwrap_err();
        assert!(matches!(e, PackageError::NoProjectEnv { .. }), "{e}");
        assert_eq!(resolve(&argv(&["uv", "pip", "list"]), &caches).unwrap(), None, "not a run");
    }

    #[test]
    fn specs_split_at_the_version_not_the_scope() {
        assert_eq!(
            split_spec("@modelcontextprotocol/server-memory@2026.8.31"),
            ("@modelcontextprotocol/server-memory", Some("2026.8.31"))
        );
        assert_eq!(split_spec("@modelcontextprotocol/server-memory"), ("@modelcontextprotocol/server-memory", None));
        assert_eq!(split_spec("cowsay@1"), ("cowsay", Some("1")));
    }

    #[test]
    fn resolves_the_installed_bin_and_keeps_the_arguments() {
        let cache = std::env::temp_dir().join(format!("mcpw-npx-test-{}", std::process::id()));
        let pkg = cache.join("_npx/abc/node_modules/@scope/srv");
        std::fs::create_dir_all(pkg.join("dist")).unwrap();
        std::fs::write(pkg.join("package.json"), r#"{"version":"1.2.3","bin":{"srv":"dist/index.js"}}"#).unwrap();
        let argv: Vec<OsString> =
            ["npx", "-y", "--silent", "--registry=https://registry.npmjs.org/", "@scope/srv@1.2.3", "/data", "--flag"]
                .iter()
                .map(Into::into)
                .collect();
        let caches = Caches { npm: cache.clone(), uv: cache.join("uv"), pipx: cache.join("pipx"), cwd: "/".into() };
        let r = resolve(&argv, &caches).unwrap().unwrap();
        assert_eq!(r.script, Some(pkg.join("dist/index.js")));
        assert_eq!(r.args, vec![OsString::from("/data"), OsString::from("--flag")]);
        let other: Vec<OsString> = ["npx", "-y", "@scope/srv@9"].iter().map(Into::into).collect();
        assert!(resolve(&other, &caches).unwrap_err().to_string().contains("not installed"));
        let not_npx: Vec<OsString> = ["node", "x.js"].iter().map(Into::into).collect();
        assert_eq!(resolve(&not_npx, &caches).unwrap(), None);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn uvx_resolves_the_cached_environment() {
        let cache = std::env::temp_dir().join(format!("mcpw-uvx-test-{}", std::process::id()));
        let env = cache.join("archive-v0/Xy12");
        std::fs::create_dir_all(env.join("bin")).unwrap();
        std::fs::create_dir_all(env.join("lib/python3.11/site-packages/mcp_server_time-2026.10.19.dist-info")).unwrap();
        std::fs::write(env.join("pyvenv.cfg"), "").unwrap();
        std::fs::write(env.join("bin/mcp-server-time"), "").unwrap();
        let caches = Caches { npm: cache.join("npm"), uv: cache.clone(), pipx: cache.join("pipx"), cwd: "/".into() };
        let argv: Vec<OsString> =
            ["uvx", "mcp-server-time==2026.10.19", "--local-timezone", "UTC"].iter().map(Into::into).collect();
        let r = resolve(&argv, &caches).unwrap().unwrap();
        assert_eq!((r.interpreter, r.script), (env.join("bin/python"), Some(env.join("bin/mcp-server-time"))));
        assert_eq!(r.args.len(), 2);
        let specs: [&[&str]; 3] = [
            &["mcp-server-time@latest"],
            &["mcp-server-time@2026.10.19"],
            &["--from", "MCP_Server.Time", "mcp-server-time"], // a name's dots and case, normalized
        ];
        let pipx: Vec<OsString> = ["pipx", "run", "--spec", "mcp-server-time==2026.10.19", "mcp-server-time"]
            .iter()
            .map(Into::into)
            .collect();
        assert!(resolve(&pipx, &caches).unwrap().is_some(), "pipx run with the uv backend: uv's cache");
        for spec in specs {
            let argv: Vec<OsString> = std::iter::once("uvx").chain(spec.iter().copied()).map(Into::into).collect();
            assert!(resolve(&argv, &caches).is_ok_and(|r| r.is_some()), "{spec:?}");
        }
        let old: Vec<OsString> = ["uvx", "mcp-server-time==2025.1.1"].iter().map(Into::into).collect();
        assert!(resolve(&old, &caches).unwrap_err().to_string().contains("not installed"));
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
