//! `cargo xtask bench startup|monitor|mcp|session|dns`: start-up cost against bare exec and
//! bubblewrap, the eBPF layer's costs, the MCP layer's added latency, a real MCP session under
//! each sandbox, the cost of answering the server's DNS; written to docs/benchmarks.md.
//!
//! This module holds the harness the benchmarks share: the peers compared against, the
//! rotating-order runner, timed runs, medians, the machine's facts and the doc section writer.

mod dns;
mod mcp;
mod mcp_peer;
mod monitor;
mod session;
mod startup;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::util::{apt_install, have, output, step};

#[derive(Debug, Args)]
pub struct Options {
    #[command(subcommand)]
    which: Option<Bench>,
}

/// The benchmarks; `cargo xtask bench` alone runs `startup` with its defaults.
#[derive(Debug, Subcommand)]
enum Bench {
    /// Start-up cost against bare exec, bubblewrap and firejail (the default)
    Startup(startup::Options),
    /// The eBPF layer's costs: a syscall-heavy workload, events per second, start-up (as root)
    Monitor(monitor::Options),
    /// The MCP layer's added latency per tools/call round trip, and pipelined throughput
    Mcp(mcp::Options),
    /// A real MCP session (the filesystem server), bare and under each sandbox
    Session(session::Options),
    /// DNS answered by mcp-warden: query latency, a first connection to a name, steady state
    Dns(dns::Options),
}

pub fn bench(opts: Options) -> Result<()> {
    match opts.which.unwrap_or_default() {
        Bench::Startup(opts) => startup::startup(&opts),
        Bench::Monitor(opts) => monitor::monitor(&opts),
        Bench::Mcp(opts) => mcp::mcp(&opts),
        Bench::Session(opts) => session::session(&opts),
        Bench::Dns(opts) => dns::dns(&opts),
    }
}

impl Default for Bench {
    fn default() -> Self {
        Bench::Startup(startup::Options::default())
    }
}

/// A benchmark variant: its name in the table and its command line.
type Variant<'a> = (&'a str, Vec<String>);

/// bubblewrap's closest equivalent of `strict`: every namespace, no capability, an empty root with
/// /usr read-only, /proc and /dev; the command follows (after any binds of the benchmark).
const BWRAP: &[&str] = &[
    "bwrap",
    "--unshare-all",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    "--tmpfs",
    "/",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--symlink",
    "usr/bin",
    "/bin",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
];

/// firejail's closest equivalent of `strict`: no profile file, no network, every capability
/// dropped, no_new_privs, its default seccomp filter, a private /tmp, no new root.
const FIREJAIL: &[&str] = &[
    "firejail",
    "--quiet",
    "--noprofile",
    "--net=none",
    "--caps.drop=all",
    "--nonewprivs",
    "--seccomp",
    "--private-tmp",
];

/// The peers the benchmarks compare against, and GNU time, from Debian.
fn peers() -> Result<()> {
    let mut missing = Vec::new();
    if !have("bwrap") {
        missing.push("bubblewrap");
    }
    if !have("firejail") {
        missing.push("firejail");
    }
    if !Path::new("/usr/bin/time").exists() {
        missing.push("time");
    }
    if !missing.is_empty() {
        step(&format!("installing the benchmark peers: {}", missing.join(", ")));
        apt_install(&missing)?;
    }
    Ok(())
}

/// Runs `run(i)` for each of `variants` once per round, in an order that rotates each round (so
/// no variant always follows the same one), after `warmup` rounds that are not counted; returns
/// the counted results per variant.
fn rotating<T>(
    variants: usize,
    rounds: usize,
    warmup: usize,
    mut run: impl FnMut(usize) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    let mut samples: Vec<Vec<T>> = (0..variants).map(|_| Vec::new()).collect();
    for round in 0..rounds + warmup {
        for k in 0..variants {
            let i = (round + k) % variants;
            let result = run(i)?;
            if round >= warmup {
                samples[i].push(result);
            }
        }
    }
    Ok(samples)
}

/// Wall time of every variant's command, output discarded: (median, min, max) per variant.
fn rotating_runs(variants: &[Variant], rounds: usize, warmup: usize) -> Result<Vec<(Duration, Duration, Duration)>> {
    let mut samples = rotating(variants.len(), rounds, warmup, |i| timed_run(&variants[i].1))?;
    Ok(samples.iter_mut().map(|s| median_min_max(s)).collect())
}

/// Wall time of one run of `argv` from spawn to exit, output discarded; a failure is an error.
fn timed_run(argv: &[String]) -> Result<Duration> {
    let t = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    let dt = t.elapsed();
    if !status.success() {
        bail!("{argv:?} failed: {status}");
    }
    Ok(dt)
}

fn median_min_max(s: &mut [Duration]) -> (Duration, Duration, Duration) {
    s.sort();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// Replaces `<!-- NAME:begin ... NAME:end -->` in a doc, or appends the section.
pub fn replace_section(path: &Path, name: &str, section: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) = (format!("<!-- {name}:begin"), format!("<!-- {name}:end -->"));
    let updated = match (doc.find(&begin), doc.find(&end)) {
        (Some(a), Some(b)) => format!("{}{section}{}", &doc[..a], &doc[b + end.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Owned copies of `args`.
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

pub fn machine_facts() -> Result<String> {
    let kernel = output(Command::new("uname").arg("-r"))?.trim().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let bwrap = output(Command::new("bwrap").arg("--version")).unwrap_or_default().trim().to_string();
    let firejail = output(Command::new("firejail").arg("--version"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let tools = [bwrap, firejail].into_iter().filter(|t| !t.is_empty()).map(|t| format!("; {t}")).collect::<String>();
    Ok(format!("Linux {kernel}, {cpu}, {cores} cores{tools}"))
}
