//! Soak: many sandboxed servers started and stopped concurrently, round after round (with the
//! eBPF layer when root; half of them through the MCP layer; one launcher per round killed with
//! SIGKILL mid-run), and afterwards nothing of ours remains but the shared eBPF probes (one set
//! per build, loaded once per host): no process or zombie, cgroup, BPF link, per-server map
//! (ring buffer) or map entry, other BPF program or pinned object, or temporary directory; and
//! the launchers' peak memory does not grow from round to round.
//!
//! CI runs a small count; `cargo xtask soak` runs 50 servers x 20 rounds through this same test
//! (MCPW_SOAK_SERVERS / MCPW_SOAK_ROUNDS) and puts its report in docs/reliability.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_warden_tests::*;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `bpftool ARGS -j`, parsed (null when it printed nothing usable).
fn bpftool(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let o = Command::new("bpftool").args(args).arg("-j").output().expect("bpftool (cargo xtask setup installs it)");
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

/// `bpftool KIND show`: the ids present on the host.
fn bpf_ids(kind: &str) -> BTreeSet<u64> {
    let v = bpftool(&[kind.as_ref(), "show".as_ref()]);
    v.as_array().into_iter().flatten().filter_map(|p| p["id"].as_u64()).collect()
}

/// The pin directories of the shared probes, one per build.
fn builds() -> Vec<std::path::PathBuf> {
    std::fs::read_dir(SHARED).into_iter().flatten().flatten().map(|e| e.path()).collect()
}

/// The ids of the BPF objects of `kind` pinned under `dir` (the shared probes' programs or maps).
fn pinned_ids(kind: &str, dir: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for build in builds() {
        for pin in std::fs::read_dir(build.join(dir)).into_iter().flatten().flatten() {
            ids.extend(
                bpftool(&[kind.as_ref(), "show".as_ref(), "pinned".as_ref(), pin.path().as_os_str()])["id"].as_u64(),
            );
        }
    }
    ids
}

/// The ring buffers kept in the shared `RINGS` map for later servers: their map ids.
fn kept_rings() -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for build in builds() {
        let v = dump_pinned(&build.join("maps/RINGS"));
        for entry in v.as_array().into_iter().flatten() {
            // The value is the inner map's id, four little-endian bytes in hex.
            let bytes: Vec<u8> = entry["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
                .collect();
            if let Ok(id) = <[u8; 4]>::try_from(bytes.as_slice()) {
                ids.insert(u64::from(u32::from_le_bytes(id)));
            }
        }
    }
    ids
}

/// Per-syscall and per-server link pins (must be gone: the tree level's stay while the probes are
/// loaded) and registered servers (must be none) of the shared probes.
fn shared_attachments() -> (Vec<String>, usize) {
    let mut links = Vec::new();
    let mut servers = 0;
    for build in builds() {
        for link in std::fs::read_dir(build.join("links")).into_iter().flatten().flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            if name.starts_with("sys_") || name.starts_with("srv-") {
                links.push(link.path().display().to_string());
            }
        }
        servers += dump_pinned(&build.join("maps/SERVERS")).as_array().map_or(0, Vec::len);
    }
    (links, servers)
}

const SHARED: &str = "/sys/fs/bpf/mcp-warden";

/// `bpftool map dump pinned PATH`.
fn dump_pinned(path: &std::path::Path) -> serde_json::Value {
    bpftool(&["map".as_ref(), "dump".as_ref(), "pinned".as_ref(), path.as_os_str()])
}

/// Every `mcp-warden.<pid>` cgroup directory under /sys/fs/cgroup (three levels deep).
fn warden_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("mcp-warden.") {
                out.push(e.path().display().to_string());
            } else if depth < 3 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    out
}

fn private_tmp_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mcp-warden-tmp."))
        .collect()
}

/// Processes whose parent is this test and that are zombies.
fn our_zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        if fields.first() == Some(&"Z") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            out.push(pid);
        }
    }
    out
}

fn children_max_rss_kib() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).map(|u| u.max_rss()).unwrap_or(0)
}

#[test]
fn many_servers_started_and_stopped_leave_nothing_behind() {
    let servers = env_count("MCPW_SOAK_SERVERS", 8);
    let rounds = env_count("MCPW_SOAK_ROUNDS", 3);
    let who = Who::current();
    let s = Scratch::new(who);
    let marker = format!("mcpw-soak-{}", std::process::id());
    let (progs, links, maps) = (bpf_ids("prog"), bpf_ids("link"), bpf_ids("map"));
    let pinned_before: BTreeSet<String> = std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let tmp_before = private_tmp_dirs();

    let started = Instant::now();
    let mut launchers = BTreeSet::new();
    let mut peak_after_round = Vec::new();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut children = Vec::new();
        for i in 0..servers {
            let log = s.join(&format!("audit-{round}-{i}.jsonl"));
            let mut c = Command::new(warden());
            c.args(["run", "--profile", "strict", "--audit-log"]).arg(&log);
            if i % 2 == 1 {
                c.arg("--mcp");
            }
            // `sleep` with a marker argument, so that leftovers can be found by command line.
            c.args(["--", "/bin/sh", "-c", "sleep 0.3", &marker]);
            c.env("XDG_STATE_HOME", s.path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
            let child = c.spawn().unwrap();
            launchers.insert(child.id());
            children.push(child);
        }
        // One launcher per round dies mid-run, as a crash or an OOM kill would end it.
        std::thread::sleep(Duration::from_millis(100));
        let killed = children[0].id();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed as i32), nix::sys::signal::Signal::SIGKILL);
        for child in children {
            let id = child.id();
            let o = child.wait_with_output().unwrap();
            if !o.status.success() && id != killed {
                failures.push(format!("round {round}: {} {}", o.status, String::from_utf8_lossy(&o.stderr)));
            }
        }
        peak_after_round.push(children_max_rss_kib());
    }
    let elapsed = started.elapsed();
    assert!(failures.is_empty(), "{} of {} runs failed:\n{}", failures.len(), servers * rounds, failures.join("\n"));
    // What a killed launcher left (its entries, the attachments it held, its cgroup) is removed by
    // the next launcher: run one, as the next use of the host would.
    let next = Command::new(warden())
        .args(["run", "--profile", "strict", "--audit-log"])
        .arg(s.join("audit-next.jsonl"))
        .args(["--", "/bin/true"])
        .env("XDG_STATE_HOME", s.path())
        .output()
        .unwrap();
    assert!(next.status.success(), "the next run: {}", String::from_utf8_lossy(&next.stderr));

    // Let the kernel finish freeing what the last launchers released (RCU for BPF objects).
    let deadline = Instant::now() + Duration::from_secs(10);
    let leftovers = loop {
        let procs = processes_with(&marker);
        let alive: Vec<u32> =
            launchers.iter().copied().filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()).collect();
        let cgroups: Vec<String> = warden_cgroups()
            .into_iter()
            .filter(|d| {
                d.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| launchers.contains(&p))
            })
            .collect();
        // The shared probes' programs, maps and links may be new (the first monitored run loads
        // and attaches them), and so may the ring buffers kept for later servers (two at most).
        let shared_progs = pinned_ids("prog", "progs");
        let mut shared_maps = pinned_ids("map", "maps");
        let rings = kept_rings();
        shared_maps.extend(&rings);
        let shared_links = pinned_ids("link", "links");
        let new_progs: Vec<u64> =
            bpf_ids("prog").difference(&progs).filter(|id| !shared_progs.contains(id)).copied().collect();
        let new_links: Vec<u64> =
            bpf_ids("link").difference(&links).filter(|id| !shared_links.contains(id)).copied().collect();
        let new_maps: Vec<u64> =
            bpf_ids("map").difference(&maps).filter(|id| !shared_maps.contains(id)).copied().collect();
        let attachments = shared_attachments();
        let zombies = our_zombies();
        let clean = procs.is_empty()
            && alive.is_empty()
            && cgroups.is_empty()
            && new_progs.is_empty()
            && new_links.is_empty()
            && new_maps.is_empty()
            && attachments.0.is_empty()
            && attachments.1 == 0
            && rings.len() <= 2
            && zombies.is_empty();
        if clean || Instant::now() > deadline {
            break (procs, alive, cgroups, new_progs, new_links, zombies, new_maps, attachments);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (procs, alive, cgroups, new_progs, new_links, zombies, new_maps, (link_pins, registered)) = leftovers;
    assert!(procs.is_empty(), "server processes left: {procs:?}");
    assert!(alive.is_empty(), "launchers left: {alive:?}");
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(new_progs.is_empty() && new_links.is_empty(), "BPF programs {new_progs:?} / links {new_links:?} left");
    assert!(new_maps.is_empty(), "BPF maps (per-server ring buffers) left: {new_maps:?}");
    assert!(link_pins.is_empty(), "shared probes still attached: {link_pins:?}");
    assert_eq!(registered, 0, "servers still registered in the shared maps");
    assert!(kept_rings().len() <= 2, "ring buffers kept for later servers: {:?}", kept_rings());
    let pinned_after: BTreeSet<String> = std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mcp-warden" || pinned_before.contains(n))
        .collect();
    assert_eq!(pinned_after, pinned_before, "pinned BPF objects (besides the shared probes)");
    assert_eq!(private_tmp_dirs(), tmp_before, "private temporary directories");
    // Only the audit logs we asked for are in the scratch directory.
    let stray: Vec<String> = std::fs::read_dir(s.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("audit-") || n == "mcp-warden"))
        .collect();
    assert!(stray.is_empty(), "stray files: {stray:?}");
    // Peak memory: the largest launcher of the first round vs of all rounds.
    let (first, last) = (peak_after_round[0], *peak_after_round.last().unwrap());
    assert!(last <= first + first / 4, "launcher peak RSS grew from {first} KiB (round 1) to {last} KiB");
    eprintln!(
        "SOAK-REPORT: servers={servers} rounds={rounds} runs={} as={} elapsed_s={:.1} peak_rss_kib_round1={first} peak_rss_kib_all={last} leftovers=none",
        servers * rounds,
        if is_root() { "root_(eBPF_layer_on)" } else { "unprivileged" },
        elapsed.as_secs_f64()
    );
}
