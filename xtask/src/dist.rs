//! `cargo xtask dist [--out DIR]`: the Debian package (binary, profiles, systemd units, man page,
//! completions), built with dpkg-deb.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util::{output, run, step, target_dir, workspace_root};

#[derive(Debug, Args)]
pub struct Options {
    /// Where the .deb is written
    #[arg(long, value_name = "DIR", default_value_os_t = workspace_root().join("target/dist"))]
    out: PathBuf,
}

/// Builds `mcp-warden_<version>_<arch>.deb` into `--out` (default target/dist) with dpkg-deb:
/// the release binary, the shipped profiles, the systemd template, the man page and the bash,
/// zsh and fish completions; its postinst creates the `mcp-warden` system user the generated
/// units run servers as.
pub fn dist(opts: &Options) -> Result<()> {
    let out = &opts.out;
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "--locked", "-p", "mcp-warden"]))?;
    let root = workspace_root();
    let binary = target_dir().join("release/mcp-warden");
    let version =
        output(Command::new(&binary).arg("--version"))?.split_whitespace().nth(1).context("version")?.to_string();
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_string();
    let stage = Stage(std::env::temp_dir().join(format!("mcp-warden-deb.{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&stage.0);
    step(&format!("staging mcp-warden {version} ({arch})"));
    stage_files(&stage, &root, &binary)?;
    std::fs::create_dir_all(stage.0.join("etc/mcp-warden"))?;
    stage_control(&stage, &version, &arch)?;
    std::fs::create_dir_all(out)?;
    let deb = out.join(format!("mcp-warden_{version}_{arch}.deb"));
    step(&format!("dpkg-deb --build -> {}", deb.display()));
    run(Command::new("dpkg-deb").args(["--build", "--root-owner-group", "-Zxz"]).arg(&stage.0).arg(&deb))?;
    let _ = std::fs::remove_dir_all(&stage.0);
    println!("{}", deb.display());
    Ok(())
}

/// The package's root while it is put together.
struct Stage(PathBuf);

impl Stage {
    /// Writes `rel` under the stage with `mode`, creating its directories.
    fn put(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }
}

/// The binary, the profiles, the systemd template, the man page, the completions and the docs.
fn stage_files(stage: &Stage, root: &Path, binary: &Path) -> Result<()> {
    stage.put("usr/bin/mcp-warden", &std::fs::read(binary)?, 0o755)?;
    for entry in std::fs::read_dir(root.join("profiles"))? {
        let p = entry?.path();
        let name = p.file_name().context("name")?.to_string_lossy().into_owned();
        stage.put(&format!("usr/share/mcp-warden/profiles/{name}"), &std::fs::read(&p)?, 0o644)?;
    }
    stage.put(
        "lib/systemd/system/mcp-warden@.service",
        &std::fs::read(root.join("dist/systemd/mcp-warden@.service"))?,
        0o644,
    )?;
    let man = generated(binary, "man")?;
    stage.put("usr/share/man/man1/mcp-warden.1.gz", &gzip(&man)?, 0o644)?;
    stage.put("usr/share/bash-completion/completions/mcp-warden", &generated(binary, "bash")?, 0o644)?;
    stage.put("usr/share/zsh/vendor-completions/_mcp-warden", &generated(binary, "zsh")?, 0o644)?;
    stage.put("usr/share/fish/vendor_completions.d/mcp-warden.fish", &generated(binary, "fish")?, 0o644)?;
    for doc in ["README.md", "docs/deploy.md", "docs/profiles.md", "docs/mcp.md", "docs/threat-model.md"] {
        let name = Path::new(doc).file_name().context("name")?.to_string_lossy().into_owned();
        stage.put(&format!("usr/share/doc/mcp-warden/{name}"), &std::fs::read(root.join(doc))?, 0o644)?;
    }
    Ok(())
}

/// `mcp-warden generate WHAT` (the man page or a shell's completions).
fn generated(binary: &Path, what: &str) -> Result<Vec<u8>> {
    let o = Command::new(binary).args(["generate", what]).output()?;
    if !o.status.success() {
        bail!("mcp-warden generate {what} failed");
    }
    Ok(o.stdout)
}

/// `bytes` through `gzip -9n`.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = Command::new("gzip")
        .args(["-9n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        gz.stdin.take().context("gzip stdin")?.write_all(bytes)?;
    }
    Ok(gz.wait_with_output()?.stdout)
}

/// DEBIAN/control (its Installed-Size from what is staged so far) and DEBIAN/postinst.
fn stage_control(stage: &Stage, version: &str, arch: &str) -> Result<()> {
    let size_kib = dir_size(&stage.0)? / 1024;
    stage.put(
        "DEBIAN/control",
        format!(
            "Package: mcp-warden\nVersion: {version}\nArchitecture: {arch}\nMaintainer: mcp-warden developers <mcp-warden@localhost>\n\
             Installed-Size: {size_kib}\nDepends: libc6\nSection: admin\nPriority: optional\n\
             Description: run MCP servers under least privilege\n \
             A launcher put in front of any MCP server command: Landlock, seccomp, no capabilities,\n \
             resource limits, a clean environment, eBPF audit, and an MCP-aware proxy layer.\n"
        )
        .as_bytes(),
        0o644,
    )?;
    stage.put(
        "DEBIAN/postinst",
        b"#!/bin/sh\nset -e\nif [ \"$1\" = configure ] && ! getent passwd mcp-warden >/dev/null; then\n    adduser --system --group --no-create-home --home /nonexistent --quiet mcp-warden\nfi\n",
        0o755,
    )
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let e = entry?;
        let m = e.metadata()?;
        total += if m.is_dir() { dir_size(&e.path())? } else { m.len() };
    }
    Ok(total)
}
