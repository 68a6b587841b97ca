//! The one teardown, run once the server was forked, whatever the outcome: stop the services,
//! drain the monitor into the audit log (with the summary when the server ran), detach the
//! probes, remove the cgroups (killing what is left of the server's tree) and the private TMPDIR.
//!
//! An explicit call rather than a guard with `Drop`: the teardown needs the outcome (the exit
//! status goes into the summary; the proxy is drained only when a server ran), which `Drop` cannot
//! be given. `run` takes `Held` by value, so it cannot run twice, and `supervisor::run` calls it at
//! its one site, after the function that holds every fallible step after the fork. Before the
//! fork, and on a panic, the resources still clean up after themselves (`ServerCgroups`,
//! `PrivateTmp` and `Monitor` each remove or detach what they own when dropped).

use std::time::{Duration, Instant};

use super::error::SupervisorError;
use super::services::Services;
use crate::audit::{Summary, write_summary};
use crate::ebpf::Monitor;
use crate::layers::cgroup::ServerCgroups;
use crate::layers::private_tmp::PrivateTmp;
use crate::plan::Plan;

/// What the supervisor holds while the server runs, for the teardown to stop and remove.
pub struct Held {
    pub cgroups: ServerCgroups,
    pub monitor: Option<Monitor>,
    pub private_tmp: Option<PrivateTmp>,
    /// Empty until the services start after the fork.
    pub services: Services,
}

/// Tears down after the server (or after stage 2 or a service failed): `outcome` is what
/// `supervisor::run` returns.
pub fn run(plan: &Plan, held: Held, outcome: &Result<i32, SupervisorError>) {
    let Held { cgroups, monitor, private_tmp, services } = held;
    let status = outcome.as_ref().ok().copied();
    if let (Some(proxy), Some(_)) = (&services.proxy, status) {
        // Deliver what the server wrote before it exited (its stdout closes with the last
        // process holding it).
        let deadline = Instant::now() + Duration::from_secs(2);
        while !proxy.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if status.is_some() {
        // What the server wrote to a relayed stdout or stderr reaches the client before our lines.
        let deadline = Instant::now() + Duration::from_secs(2);
        while services.relays.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if status.is_some() && monitor.is_some() {
        // Draining the ring buffer and writing the summary take a moment: let the client see the
        // server's stdout close now rather than after the teardown.
        release_stdio();
    }
    summarize(plan, services, monitor.as_ref(), status);
    // Removing the cgroups kills what is left of the server's tree: remove them before the
    // private TMPDIR, which that tree could still be writing to, and before the server's eBPF
    // entries, which its socket programs need to let anything through.
    drop(cgroups);
    if let Some(m) = monitor {
        m.release();
    }
    drop(private_tmp);
}

/// Drains the monitor into the log and writes the summary when the server ran, counting the
/// supervisor's refusals with the probes' denials; without the monitor, one line for the refusals.
fn summarize(plan: &Plan, services: Services, monitor: Option<&Monitor>, status: Option<i32>) {
    let refusals = services.refusals.as_ref().map(|r| r.counts()).unwrap_or_default();
    if let Some(r) = &services.refusals {
        r.flush();
        // Repeated at exit: the lines told during a long session scroll away in a client's log.
        for line in r.recap() {
            eprintln!("mcp-warden: refused during the run: {line}");
        }
        if r.unwritten() > 0 {
            eprintln!(
                "mcp-warden: {} further refusals were counted but not written: the log keeps the first {} of a run",
                r.unwritten(),
                super::refusals::RECORDS_MAX
            );
        }
        if r.answers_unwritten() > 0 {
            eprintln!(
                "mcp-warden: {} further answered DNS queries were counted but not written: the log keeps the first {} of a run",
                r.answers_unwritten(),
                super::refusals::RECORDS_MAX
            );
        }
    }
    let Some(reader) = services.reader else {
        if !refusals.is_empty() {
            let by_layer: Vec<String> = refusals.iter().map(|(layer, n)| format!("{n} {layer}")).collect();
            let total: u64 = refusals.values().sum();
            eprintln!(
                "mcp-warden: refused {total} calls ({}); log: {}",
                by_layer.join(", "),
                plan.audit_log().describe()
            );
        }
        return;
    };
    // Stopping the reader drains what is left in the ring buffer into the log.
    let (mut decoder, mut log) = reader.stop();
    for (layer, n) in &refusals {
        *decoder.denials.entry(layer).or_default() += n;
    }
    if let (Some(status), Some(m)) = (status, monitor) {
        let summary = Summary {
            profile: plan.profile().to_string(),
            program: plan.program().display().to_string(),
            mode: if plan.audit_mode() { "audit" } else { "enforce" },
            exit_code: (status <= 128).then_some(status),
            signal: (status > 128).then_some(status - 128),
        };
        let line = write_summary(&mut log, &decoder, &m.counters(), m.lsm(), &summary);
        eprintln!("mcp-warden: {line}");
    }
}

/// Points stdin and stdout at /dev/null, dropping the supervisor's references to the client's
/// pipes (stderr stays: the summary goes there).
fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}
