//! `cargo xtask setup`: everything the tests need on a fresh machine (test user, pinned real MCP
//! servers and the official Python SDK client in a world-readable directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{apt_install, have, is_root, output, run, step, test_env};

/// Versions of the real servers and SDK the tests run against (bump deliberately).
const PY_PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "mcp-server-time==2026.10.19",
    "mcp-server-git==2026.10.19",
    "mcp-server-fetch==2026.10.24",
    "uv==0.13.9",
    // tests/tests/export.rs: the exported Pod and NetworkPolicy against each Kubernetes version.
    "kubernetes-validate==1.37.0",
];
/// mcp-server-sqlite 2025.4.25 is written against the 1.x SDK: a venv of its own.
const PY_SQLITE_PACKAGES: &[&str] = &["mcp-server-sqlite==2025.4.25", "mcp==1.26.0"];
const NPM_PACKAGES: &[&str] = &[
    "@modelcontextprotocol/server-everything@2026.8.31",
    "@modelcontextprotocol/server-filesystem@2026.8.31",
    "@modelcontextprotocol/server-memory@2026.8.31",
    "@modelcontextprotocol/server-sequential-thinking@2026.8.31",
    "@modelcontextprotocol/server-github@2025.4.8",
];
/// The official TypeScript SDK client (v2: the 2025 `initialize` era and the 2026-07-28
/// `server/discover` era), installed into `env/clients` so that `clients/ts_steps.mjs` resolves it.
const NPM_CLIENT_PACKAGES: &[&str] = &["@modelcontextprotocol/client@2.4.0"];
/// What the npx/uvx tests run from the launchers' caches (installed there once, as a user would).
const NPX_PACKAGE: &str = "@modelcontextprotocol/server-sequential-thinking@2026.8.31";
const UVX_PACKAGE: &str = "mcp-server-time==2026.10.19";
const TEST_USER: &str = "mcpw-test";

pub fn setup() -> Result<()> {
    let env = test_env();
    step(&format!("test environment in {}", env.display()));
    std::fs::create_dir_all(&env)?;
    run(Command::new("chmod").arg("755").arg(&env))?;
    test_user()?;
    ebpf_toolchain()?;
    debian_packages()?;

    // Debian's Python (not a per-user build under /root, which other users cannot read), so the
    // unprivileged test user can run the servers and the client.
    for (dir, packages) in [("venv", PY_PACKAGES), ("venv-sqlite", PY_SQLITE_PACKAGES)] {
        python_venv(&env.join(dir), packages)?;
    }
    npm_install(&env.join("node"), NPM_PACKAGES, "mcp-warden-test-servers", "npm servers")?;
    let clients = env.join("clients");
    npm_install(&clients, NPM_CLIENT_PACKAGES, "mcp-warden-test-clients", "npm client SDK")?;
    readabilipy_helper(&env)?;
    launcher_caches(&env)?;
    crate::proof::install(&env)?;

    std::fs::create_dir_all(&clients)?;
    for entry in std::fs::read_dir("tests/clients")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py" || e == "mjs") {
            std::fs::copy(&path, clients.join(path.file_name().context("file name")?))?;
        }
    }
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&env))?;
    step("set-up done");
    Ok(())
}

/// As root: the unprivileged test user, created when missing.
fn test_user() -> Result<()> {
    if !is_root() {
        step("not root: tests run as the current user only (CI runs as root and covers both)");
        return Ok(());
    }
    if Command::new("id").arg(TEST_USER).output()?.status.success() {
        step(&format!("unprivileged test user `{TEST_USER}` exists"));
        return Ok(());
    }
    step(&format!("creating the unprivileged test user `{TEST_USER}` (no home, no login shell)"));
    run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        TEST_USER,
    ]))
}

/// The Debian packages the tests use, installed when missing.
fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/python3").exists()
        || Command::new("/usr/bin/python3")
            .args(["-c", "import ensurepip, venv"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    {
        missing.extend(["python3", "python3-venv"]);
    }
    if !have("node") || !have("npm") {
        missing.extend(["nodejs", "npm"]);
    }
    if !Path::new("/usr/sbin/runuser").exists() {
        missing.push("util-linux");
    }
    // The soak test counts the host's BPF programs and links before and after.
    if !have("bpftool") {
        missing.push("bpftool");
    }
    // The service tests: `systemd-analyze verify` and `systemd-socket-activate`; packaging.
    if !have("systemd-analyze") || !have("systemd-socket-activate") {
        missing.push("systemd");
    }
    if !have("dpkg-deb") {
        missing.push("dpkg");
    }
    // tests/tests/containers.rs: mcp-warden in real containers (tests/containers/ctr.py).
    if !Path::new("/usr/sbin/runc").exists() && is_root() {
        missing.push("runc");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    Ok(())
}

/// `packages` installed with npm into `dir` (its own package.json and node_modules),
/// reinstalled only when the list changes (a stamp next to `dir`).
fn npm_install(dir: &Path, packages: &[&str], name: &str, what: &str) -> Result<()> {
    let stamp = dir.with_extension("stamp");
    let want = packages.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        step(&format!("{what} up to date ({want})"));
        return Ok(());
    }
    step(&format!("{what}: {want}"));
    std::fs::create_dir_all(dir)?;
    if !dir.join("package.json").exists() {
        std::fs::write(dir.join("package.json"), format!("{{\"name\":\"{name}\",\"private\":true}}\n"))?;
    }
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(dir)
        .args(packages))?;
    std::fs::write(&stamp, &want)?;
    Ok(())
}

/// mcp-server-fetch extracts pages with readabilipy, which installs its Node.js helper with npm
/// on first use: do that here, as the install phase, since the hardened run cannot.
fn readabilipy_helper(env: &Path) -> Result<()> {
    let readability = glob_one(&env.join("venv/lib"), "site-packages/readabilipy/javascript")?;
    if readability.join("node_modules").is_dir() {
        step("readabilipy's Node.js helper is installed");
        return Ok(());
    }
    step("readabilipy's Node.js helper: npm install (mcp-server-fetch's page extraction)");
    run(Command::new("npm").args(["install", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&readability))
}

/// The install phase of `npx -y` and `uvx`: fetch once into caches of the test environment
/// (readable by the test user); the hardened runs in tests/servers.rs use these copies.
fn launcher_caches(env: &Path) -> Result<()> {
    step(&format!("npx cache: {NPX_PACKAGE}"));
    run(Command::new("npx")
        .args(["-y", NPX_PACKAGE])
        .env("npm_config_cache", env.join("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null()))?;
    step(&format!("uvx cache: {UVX_PACKAGE}"));
    run(Command::new(env.join("venv/bin/uvx"))
        .args([UVX_PACKAGE, "--help"])
        .env("UV_CACHE_DIR", env.join("uv-cache"))
        .env("UV_PYTHON", "/usr/bin/python3")
        .stdout(std::process::Stdio::null()))
}

/// The one `lib/pythonX.Y/<rest>` under a virtualenv's `lib`.
fn glob_one(lib: &Path, rest: &str) -> Result<PathBuf> {
    for entry in std::fs::read_dir(lib)? {
        let candidate = entry?.path().join(rest);
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!("no {rest} under {}", lib.display())
}

/// What building the eBPF probes needs (docs/design notes section 4): the `rust-src` component
/// (for `-Z build-std=core`) and `bpf-linker` built against Debian's LLVM 22.
pub fn ebpf_toolchain() -> Result<()> {
    let components = output(Command::new("rustup").args(["component", "list", "--installed"])).unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        step("eBPF toolchain: rust-src is installed");
    } else {
        step("eBPF toolchain: installing the rust-src component (the probes are built with -Z build-std=core)");
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    if have("bpf-linker") {
        step("eBPF toolchain: bpf-linker is installed");
        return Ok(());
    }
    step("eBPF toolchain: installing LLVM 22 development packages for bpf-linker");
    apt_install(&["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"])?;
    step("eBPF toolchain: building bpf-linker 0.13.0 against LLVM 22 (about 3 minutes)");
    let path = format!("/usr/lib/llvm-22/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", "0.13.0", "--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("PATH", path))
}

/// A venv from /usr/bin/python3 with `packages`, reinstalled only when the list changes.
fn python_venv(venv: &Path, packages: &[&str]) -> Result<()> {
    let stamp = venv.with_extension("stamp");
    let want = packages.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        step(&format!("Python venv {} up to date ({want})", venv.display()));
        return Ok(());
    }
    step(&format!("Python venv {} from /usr/bin/python3 with {want}", venv.display()));
    if !venv.join("bin/python").exists() {
        run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "--disable-pip-version-check"]).args(packages))?;
    std::fs::write(&stamp, &want)?;
    Ok(())
}
