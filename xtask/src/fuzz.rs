//! `cargo xtask fuzz`: the parsers and the MCP message handling under libFuzzer, for a bounded
//! time each.

use std::process::Command;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::setup::ebpf_toolchain;
use crate::util::{have, run, step};

/// The fuzz targets (fuzz/fuzz_targets/), in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Profile,
    Grants,
    Wrap,
    Mcp,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Profile => "profile",
            Target::Grants => "grants",
            Target::Wrap => "wrap",
            Target::Mcp => "mcp",
        }
    }
}

#[derive(Debug, Args)]
pub struct Options {
    /// The targets to fuzz (default: every one)
    #[arg(value_enum, value_name = "TARGET")]
    pub targets: Vec<Target>,
    /// How long to fuzz each target
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub seconds: u64,
}

impl Options {
    /// The targets to run, in their fixed order, each once.
    pub fn selected(&self) -> Vec<&'static str> {
        Target::value_variants()
            .iter()
            .filter(|t| self.targets.is_empty() || self.targets.contains(t))
            .map(|t| t.name())
            .collect()
    }
}

/// Fuzzes the parsers for a bounded time each (libFuzzer through cargo-fuzz, installed when
/// missing), starting from the corpus in fuzz/corpus/. Not part of CI: `cargo xtask fuzz` is run
/// by hand; a crash leaves its input in fuzz/artifacts/ and becomes a regression test.
pub fn fuzz(opts: &Options) -> Result<()> {
    let seconds = opts.seconds;
    ebpf_toolchain()?; // the fuzz targets link the launcher, whose build compiles the probes
    if !have("cargo-fuzz") {
        step("installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in opts.selected() {
        step(&format!("fuzzing `{target}` for {seconds} s (corpus fuzz/corpus/{target})"));
        // libFuzzer needs -Z sanitizer flags: allowed on the stable toolchain for this build only.
        run(Command::new("cargo")
            .args([
                "fuzz",
                "run",
                target,
                &format!("fuzz/corpus/{target}"),
                "--",
                &format!("-max_total_time={seconds}"),
                "-max_len=4096",
            ])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}
