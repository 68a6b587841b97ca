//! `cargo xtask bench dns`: what answering the server's DNS costs. A stand-in authoritative
//! server on loopback answers one name; a probe times, per round, an A query (a fresh UDP socket,
//! as glibc sends), the query plus a TCP connect to the answer (a first connection to a name), and
//! a connect to the known address (steady state): bare, asking the stand-in itself, and under
//! `mcp-warden run --profile strict` naming the host, where the query goes to an address nothing
//! listens on and mcp-warden's resolver answers it after asking the stand-in.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{machine_facts, replace_section, rotating};
use crate::util::{is_root, output, run, step, target_dir};

#[derive(Debug, Args)]
pub struct Options {
    /// Runs of every variant, in rotating order
    #[arg(long, value_name = "N", default_value_t = 9)]
    rounds: usize,
    /// Queries (and connects) per run
    #[arg(long, value_name = "N", default_value_t = 300)]
    queries: usize,
}

const NAME: &str = "bench.warden.example";
/// Where the sandboxed probe sends its queries: no nameserver there, mcp-warden answers.
const NOWHERE: &str = "192.0.2.53:53";

/// One run's percentiles, in microseconds, by the probe's key.
type Figures = Vec<(String, f64)>;

pub fn dns(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the DNS benchmark runs the sandbox as root and as the test user: run it as root");
    }
    step("building mcp-warden and the probe (release)");
    run(Command::new("cargo").args(["build", "--release", "--locked", "-p", "mcp-warden", "-p", "mcp-warden-tests"]))?;
    let release = target_dir().join("release");
    let (warden, probe) = (release.join("mcp-warden"), release.join("warden-probe"));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    step("starting the stand-in authoritative server");
    let mut standin =
        Command::new(&probe).args(["dns-serve", &format!("{NAME}=127.0.0.1")]).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(standin.stdout.take().context("the stand-in's stdout")?).read_line(&mut line)?;
    let upstream = line.trim().to_string();
    let scratch = std::env::temp_dir().join(format!("mcp-warden-bench-dns.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let profile = scratch.join("dns.toml");
    std::fs::write(
        &profile,
        format!(
            "extends = [\"strict\"]\n[network]\nconnect = [\"{NAME}:{port}\"]\ndns-upstream = [\"{upstream}\"]\nprivate-answers = [\"127.0.0.0/8\"]\n"
        ),
    )?;
    // The unprivileged user's audit log goes to its state directory, here.
    let state = scratch.join("state");
    std::fs::create_dir_all(&state)?;
    for (p, mode) in [(&scratch, 0o755), (&profile, 0o644), (&state, 0o1777)] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    let state_env = format!("XDG_STATE_HOME={}", state.display());
    let (q, port_s) = (opts.queries.to_string(), port.to_string());
    let bench = |server: &str| {
        vec![probe.display().to_string(), "dns-bench".into(), server.into(), NAME.into(), port_s.clone(), q.clone()]
    };
    let sandboxed = |user: bool| {
        let mut v: Vec<String> = match user {
            true => ["runuser", "-u", "mcpw-test", "--", "env", &state_env].map(String::from).to_vec(),
            false => vec![],
        };
        v.extend([warden.display().to_string(), "run".into(), "--profile".into(), profile.display().to_string()]);
        v.extend(["--allow-exec".into(), release.display().to_string(), "--".into()]);
        v.extend(bench(NOWHERE));
        v
    };
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("bare, asking the stand-in", bench(&upstream)),
        ("mcp-warden strict, as root (eBPF layer on)", sandboxed(false)),
        ("mcp-warden strict, unprivileged user", sandboxed(true)),
    ];
    step(&format!("{} rounds of {} queries per variant", opts.rounds, opts.queries));
    let samples = rotating(variants.len(), opts.rounds, 1, |i| figures(&variants[i].1))?;
    let _ = standin.kill();
    let _ = standin.wait();
    let _ = std::fs::remove_dir_all(&scratch);
    let section = render(opts, &variants, &samples)?;
    replace_section(std::path::Path::new("docs/benchmarks.md"), "dns", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// One run of the probe: its figures.
fn figures(argv: &[String]) -> Result<Figures> {
    let out = output(Command::new(&argv[0]).args(&argv[1..]).stderr(Stdio::null()))?;
    let line = out.lines().last().unwrap_or_default();
    let Some(rest) = line.strip_prefix("OK ") else { bail!("{argv:?}: {line}") };
    Ok(rest
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect())
}

/// The median over runs of one figure.
fn median(runs: &[Figures], key: &str) -> f64 {
    let mut v: Vec<f64> = runs.iter().filter_map(|f| f.iter().find(|(k, _)| k == key).map(|(_, v)| *v)).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn render(opts: &Options, variants: &[(&str, Vec<String>)], samples: &[Vec<Figures>]) -> Result<String> {
    let mut s = format!(
        "<!-- dns:begin (generated by `cargo xtask bench dns --rounds {0} --queries {1}`) -->\nCommand: `cargo xtask bench dns --rounds {0} --queries {1}` (as root; release build). Machine: {2}\n\n",
        opts.rounds,
        opts.queries,
        machine_facts()?
    );
    s.push_str(&format!(
        "Each run makes {} rounds of: an A query for one name (a fresh connected UDP socket, as glibc does), a TCP connect to the address answered (query + connect: a first connection to a name), and a connect to the known address (steady state). Figures are each run's p50 and p99, then the median over {} runs per variant in rotating order (after one warm-up round). The stand-in authoritative server runs on loopback; under mcp-warden the probe sends to {NOWHERE}, where nothing listens, and mcp-warden's resolver answers after asking the stand-in.\n\n",
        opts.queries, opts.rounds
    ));
    s.push_str("| variant | query p50 | query p99 | first connection p50 | p99 | steady connect p50 | p99 | added per query (p50) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let base = median(&samples[0], "query_p50");
    for ((name, _), runs) in variants.iter().zip(samples) {
        let us = |k: &str| format!("{:.0} µs", median(runs, k));
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:+.0} µs |\n",
            us("query_p50"),
            us("query_p99"),
            us("first_p50"),
            us("first_p99"),
            us("steady_p50"),
            us("steady_p99"),
            median(runs, "query_p50") - base
        ));
    }
    s.push_str("<!-- dns:end -->");
    Ok(s)
}
