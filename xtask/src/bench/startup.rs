//! `cargo xtask bench startup`: start-up cost against bare exec, bubblewrap and firejail.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{BWRAP, FIREJAIL, Variant, machine_facts, ms, owned, peers, replace_section, rotating_runs};
use crate::util::{is_root, run, step, target_dir};

const DEFAULT_ROUNDS: usize = 200;

#[derive(Debug, Args)]
pub struct Options {
    /// Rounds of every variant, after 20 warm-up rounds
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS)]
    rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { rounds: DEFAULT_ROUNDS }
    }
}

/// Start-up benchmark: each variant run once per round, in rotating order, after a warm-up.
pub fn startup(opts: &Options) -> Result<()> {
    let rounds = opts.rounds;
    peers()?;
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = target_dir().join("release/mcp-warden");
    let w = warden.to_str().unwrap_or_default().to_string();
    let bwrap_args: Vec<&str> = BWRAP.iter().copied().chain(["--", "/bin/true"]).collect();
    let mut variants = variants(&w, &bwrap_args);
    // firejail in a block of its own, like the eBPF variant: its teardown (mounts, its helper
    // processes) slows the cgroup migration of the run that follows it by about 10 ms.
    let firejail: Vec<Variant> =
        vec![("firejail, closest policy (own block)", owned(&[FIREJAIL, &["/bin/true"]].concat()))];
    // With the eBPF layer (root): the shared probes are loaded by the warm-up; a start writes the
    // server's entries and attaches its socket programs, and an exit waits for nothing.
    if is_root() {
        let mut v = warden_run(&w, &[]);
        v.retain(|a| a != "monitor=off" && a != "--require");
        v.splice(4..4, ["--audit-log".to_string(), "/dev/null".to_string()]);
        variants.insert(2, ("mcp-warden strict, eBPF monitor on (tree)", v));
    }
    let bwrap_index = variants.iter().position(|(n, _)| n.starts_with("bubblewrap")).unwrap_or(0);
    for (name, argv) in &variants {
        let status = Command::new(&argv[0]).args(&argv[1..]).stderr(std::process::Stdio::null()).status()?;
        if !status.success() {
            bail!("variant `{name}` does not run here: {argv:?} -> {status}");
        }
    }
    step(&format!("start-up: {} variants x {rounds} rounds (rotating order, 20 warm-up rounds)", variants.len()));
    let mut stats = rotating_runs(&variants, rounds, 20)?;
    step(&format!("start-up of firejail: {} runs in a block of its own (5 warm-up)", rounds.min(50)));
    stats.extend(rotating_runs(&firejail, rounds.min(50), 5)?);
    variants.extend(firejail);
    let table = table(&variants, &stats, bwrap_index)?;
    let paced = paced(&variants, bwrap_index, rounds.min(30))?;
    let section = section(rounds, &table, &paced, &bwrap_args)?;
    println!("{table}\n{paced}");
    replace_section(Path::new("docs/benchmarks.md"), "startup", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// `mcp-warden run --profile strict` of `/bin/true`, with the monitor off and `extra` flags.
fn warden_run(w: &str, extra: &[&str]) -> Vec<String> {
    // The eBPF monitor (on by default as root) has its own benchmark: `bench monitor`.
    let mut v = vec![w.to_string(), "run".to_string(), "--profile".to_string(), "strict".to_string()];
    v.extend(["--require".to_string(), "monitor=off".to_string()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(["--".to_string(), "/bin/true".to_string()]);
    v
}

/// The variants measured together, in rotating order: bare, mcp-warden with fewer and fewer
/// layers, bubblewrap.
fn variants(w: &str, bwrap_args: &[&str]) -> Vec<Variant<'static>> {
    vec![
        ("bare /bin/true", vec!["/bin/true".into()]),
        ("mcp-warden strict (monitor off)", warden_run(w, &[])),
        ("strict, no PID namespace", warden_run(w, &["--require", "pid-namespace=off"])),
        ("strict, no hidden root (fs-hide off)", warden_run(w, &["--require", "fs-hide=off"])),
        ("strict, no filesystem view", warden_run(w, &["--require", "fs-view=off"])),
        ("strict, no cgroups (rlimits only)", warden_run(w, &["--require", "limits=off"])),
        (
            "mcp-warden, every layer off",
            warden_run(
                w,
                &[
                    "--require",
                    "landlock=off",
                    "--require",
                    "seccomp=off",
                    "--require",
                    "network=off",
                    "--require",
                    "limits=off",
                    "--require",
                    "pid-namespace=off",
                    "--require",
                    "fs-view=off",
                ],
            ),
        ),
        ("bubblewrap, empty root", owned(bwrap_args)),
    ]
}

/// The results table, with CPU time and peak RSS measured here (15 runs of each variant).
fn table(variants: &[Variant], stats: &[(Duration, Duration, Duration)], bwrap_index: usize) -> Result<String> {
    let bwrap_median = stats[bwrap_index].0.as_secs_f64();
    let bare_median = stats[0].0.as_secs_f64();
    step("CPU time and peak RSS: 15 runs of each variant under GNU time");
    let mut table = String::from(
        "| variant | median | min | max | vs bare | vs bubblewrap | CPU (user+sys) | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((name, argv), (med, min, max)) in variants.iter().zip(stats) {
        let (cpu, rss) = cpu_and_rss(argv, 15)?;
        table.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x | {:.2}x | {cpu:.1} ms | {rss} KiB |\n",
            ms(*med),
            ms(*min),
            ms(*max),
            med.as_secs_f64() / bare_median,
            med.as_secs_f64() / bwrap_median
        ));
    }
    Ok(table)
}

/// Starts that no other start closely preceded (300 ms apart, as a client starts its servers):
/// mcp-warden strict with and without the eBPF layer, against bubblewrap. Moving a process into a
/// cgroup waits for an RCU grace period unless another move happened just before, which
/// back-to-back rounds hide.
fn paced(variants: &[Variant], bwrap_index: usize, rounds: usize) -> Result<String> {
    let chosen: Vec<&Variant> = variants
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| {
            *i == bwrap_index || *name == "mcp-warden strict (monitor off)" || name.contains("eBPF")
        })
        .map(|(_, v)| v)
        .collect();
    step(&format!("paced start-up: {} variants x {rounds} rounds, 300 ms apart", chosen.len()));
    let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); chosen.len()];
    for _ in 0..rounds {
        for (i, (_, argv)) in chosen.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(300));
            runs[i].push(super::timed_run(argv)?);
        }
    }
    let bwrap = chosen.iter().position(|(n, _)| n.starts_with("bubblewrap")).unwrap_or(0);
    let medians: Vec<(Duration, Duration, Duration)> = runs.iter_mut().map(|r| super::median_min_max(r)).collect();
    let mut table =
        String::from("| variant (paced) | median | min | max | vs bubblewrap |\n|---|---:|---:|---:|---:|\n");
    for ((name, _), (m, lo, hi)) in chosen.iter().zip(&medians) {
        table.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x |\n",
            ms(*m),
            ms(*lo),
            ms(*hi),
            m.as_secs_f64() / medians[bwrap].0.as_secs_f64()
        ));
    }
    Ok(table)
}

/// The docs/benchmarks.md section.
fn section(rounds: usize, table: &str, paced: &str, bwrap_args: &[&str]) -> Result<String> {
    let machine = machine_facts()?;
    let command = format!("cargo xtask bench startup --rounds {rounds}");
    Ok(format!(
        "<!-- startup:begin (generated by `{command}`) -->\n\
         Command: `{command}` (as root; release build).\n\n\
         Machine: {machine}\n\n\
         Each round runs every variant once, in rotating order; {rounds} rounds after 20 warm-up rounds. \
         Wall time from spawn to exit, measured by the harness. firejail runs in a block of its own (at most 50 runs \
         after 5 warm-up runs): its teardown slows the cgroup migration of whatever runs next, which would charge the \
         others for it. The eBPF variant starts with the shared probes loaded (the warm-up loaded them). CPU time \
         (user+sys of the whole run, from the rusage of waited-for \
         children) and peak RSS (GNU `time`: the largest process of the run, the launcher or the server) are medians of \
         15 runs.\n\n{table}\n\
         Paced: the same starts 300 ms apart, as a client starts its servers. Back-to-back rounds hide a cost that \
         paced starts show: moving a process into a cgroup (`cgroup.procs`) waits for an RCU grace period unless \
         another move happened just before. mcp-warden creates stage 2 in its cgroup v2 directory \
         (`CLONE_INTO_CGROUP`), but the limits on this machine are cgroup v1 (`pids`, `memory`), which stage 2 still \
         joins by writing `cgroup.procs`.\n\n{paced}\n\
         bubblewrap command: `{}`\n\n\
         firejail command: `{} /bin/true`. firejail cannot express the same policy: it has no Landlock-style allow-list \
         of the whole filesystem (its closest, `--private` and whitelists, work on home and temporary directories), and \
         its seccomp list, capability drop and `--net=none` are its own; this is its strictest generic set.\n\
         <!-- startup:end -->",
        bwrap_args.join(" "),
        FIREJAIL.join(" ")
    ))
}

/// Median CPU time (user+sys, ms, from the rusage of waited-for children, microsecond
/// resolution) and peak RSS (KiB, from GNU time) of `runs` runs of `argv`.
fn cpu_and_rss(argv: &[String], runs: usize) -> Result<(f64, u64)> {
    use nix::sys::resource::{UsageWho, getrusage};
    let children_cpu = || -> f64 {
        getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1000.0 + tv.tv_usec() as f64 / 1000.0;
            t(u.user_time()) + t(u.system_time())
        })
    };
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let before = children_cpu();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "MCPW-TIME %M %U %S"])
            .args(argv)
            .stdout(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.starts_with("MCPW-TIME ")).context("no GNU time line")?;
        let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        if let Some(kib) = f.first() {
            rss.push(*kib as u64);
            cpu.push(children_cpu() - before);
        }
    }
    cpu.sort_by(f64::total_cmp);
    rss.sort();
    Ok((cpu.get(cpu.len() / 2).copied().unwrap_or(0.0), rss.get(rss.len() / 2).copied().unwrap_or(0)))
}
