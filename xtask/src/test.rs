//! `cargo xtask test`: setup, build every binary, run the whole test suite (the README's test
//! command).

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::setup::setup;
use crate::util::{run, step, test_env};

#[derive(Debug, Args)]
pub struct Options {
    /// Passed to `cargo test --workspace --locked`, e.g. `-- --nocapture`
    #[arg(allow_hyphen_values = true, num_args = 0.., value_name = "CARGO_TEST_ARGS")]
    extra: Vec<String>,
    /// What follows a leading `--` (clap takes that `--` for itself; it is put back).
    #[arg(last = true, hide = true)]
    after_escape: Vec<String>,
}

impl Options {
    /// The arguments as they were given after `test`.
    pub fn cargo_test_args(&self) -> Vec<String> {
        let mut args = self.extra.clone();
        if !self.after_escape.is_empty() {
            args.push("--".to_string());
            args.extend(self.after_escape.iter().cloned());
        }
        args
    }
}

pub fn test(opts: &Options) -> Result<()> {
    setup()?;
    step("building every binary (launcher, attack probe)");
    run(Command::new("cargo").args(["build", "--workspace", "--bins", "--locked"]))?;
    step("running the test suite");
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--locked"])
        .args(opts.cargo_test_args())
        .env("MCP_WARDEN_TEST_ENV", test_env())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("failed to start cargo test")?;
    // Pass the output through and add up libtest's per-binary results for one closing line.
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += libtest_count(rest, "passed");
            failed += libtest_count(rest, "failed");
        }
    }
    let status = child.wait()?;
    println!("{passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

/// `ok. 17 passed; 0 failed; ...` -> the number before `word`.
fn libtest_count(result: &str, word: &str) -> u64 {
    result
        .split(';')
        .filter_map(|part| {
            part.split_whitespace().collect::<Vec<_>>().windows(2).find(|w| w[1] == word).map(|w| w[0].to_string())
        })
        .find_map(|n| n.parse().ok())
        .unwrap_or(0)
}
