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
    /// `node` for npx, the environment's `python` for uvx.
    pub interpreter: PathBuf,
    /// The package's entry script, run as `INTERPRETER SCRIPT ARGS`.
    pub script: PathBuf,
    pub args: Vec<OsString>,
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
}

impl crate::error::Diagnose for PackageError {}

/// Where the launchers keep what they installed.
#[derive(Debug)]
pub struct Caches {
    pub npm: PathBuf,
    pub uv: PathBuf,
}

/// `Ok(None)` when `argv` is neither an npx nor a uvx command.
pub fn resolve(argv: &[OsString], caches: &Caches) -> Result<Option<Resolved>, PackageError> {
    match argv.first().map(Path::new).and_then(Path::file_name).and_then(OsStr::to_str) {
        Some("npx") => resolve_npx(argv, &caches.npm),
        Some("uvx") => resolve_uvx(argv, &caches.uv),
        _ => Ok(None),
    }
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
    let (package, wanted) = match spec.split_once("==") {
        Some((p, v)) => (p.to_string(), Some(v.to_string())),
        None => (spec.clone(), None),
    };
    let command = command.split_once("==").map_or(command.as_str(), |(c, _)| c).to_string();
    let dist = package.replace('-', "_").to_ascii_lowercase();
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
        script: env.join("bin").join(&command),
        args: rest.cloned().collect(),
    }))
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
        (n == dist).then(|| v.to_string())
    })
}

/// `Err` when the package cannot be resolved to an installed copy.
fn resolve_npx(argv: &[OsString], npm_cache: &Path) -> Result<Option<Resolved>, PackageError> {
    let mut rest = argv[1..].iter();
    let spec = loop {
        let Some(arg) = rest.next() else { return Err(PackageError::NoPackage { runner: "npx" }) };
        match arg.to_str() {
            Some("-y" | "--yes" | "--quiet" | "-q" | "--no-install" | "--prefer-offline" | "--offline") => continue,
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
        script,
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
        let argv: Vec<OsString> = ["npx", "-y", "@scope/srv@1.2.3", "/data", "--flag"].iter().map(Into::into).collect();
        let caches = Caches { npm: cache.clone(), uv: cache.join("uv") };
        let r = resolve(&argv, &caches).unwrap().unwrap();
        assert_eq!(r.script, pkg.join("dist/index.js"));
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
        let caches = Caches { npm: cache.join("npm"), uv: cache.clone() };
        let argv: Vec<OsString> =
            ["uvx", "mcp-server-time==2026.10.19", "--local-timezone", "UTC"].iter().map(Into::into).collect();
        let r = resolve(&argv, &caches).unwrap().unwrap();
        assert_eq!((r.interpreter, r.script), (env.join("bin/python"), env.join("bin/mcp-server-time")));
        assert_eq!(r.args.len(), 2);
        let old: Vec<OsString> = ["uvx", "mcp-server-time==2025.1.1"].iter().map(Into::into).collect();
        assert!(resolve(&old, &caches).unwrap_err().to_string().contains("not installed"));
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
