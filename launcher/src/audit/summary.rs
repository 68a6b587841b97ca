//! The end of the eBPF layer's log: the `summary` record and the one line stderr gets.

use std::collections::BTreeMap;

use super::record::{AuditLine, AuditRecord, Const, LsmStatus, Mode, MonitorLevel, RepeatedOpen, RunSummary};
use super::writer::AuditLog;
use crate::ebpf::{EventDecoder, KernelCounters, LsmError};

/// What the run ended with, for the summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub profile: String,
    pub program: String,
    /// `enforce` or `audit`.
    pub mode: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// Writes the final `"kind": "summary"` record and returns the one-line human summary.
pub fn write_summary(
    log: &mut AuditLog,
    decoder: &EventDecoder,
    kernel: &KernelCounters,
    lsm: &Result<(), LsmError>,
    s: &Summary,
) -> String {
    // Every earlier line is written (or counted as lost) before the summary counts them.
    log.flush();
    let record = run_summary(decoder, kernel, lsm, s, log.lost);
    log.write(&AuditLine::now(AuditRecord::Summary(record)));
    log.flush();
    human_summary(decoder, kernel, log)
}

/// The summary record of a run.
pub fn run_summary(
    decoder: &EventDecoder,
    kernel: &KernelCounters,
    lsm: &Result<(), LsmError>,
    s: &Summary,
    log_lines_lost: u64,
) -> RunSummary {
    let mut syscalls: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (pid, nr, calls) in &kernel.syscalls {
        let name = syscalls::Sysno::new(*nr as usize).map_or_else(|| format!("syscall_{nr}"), |n| n.name().to_string());
        *syscalls.entry(pid.to_string()).or_default().entry(name).or_default() += calls;
    }
    let repeated_opens = kernel
        .repeated_opens
        .iter()
        .map(|(key, count)| RepeatedOpen {
            pid: key.tgid,
            path: decoder.open_paths.get(&key.path_hash).cloned(),
            count: *count,
        })
        .collect();
    RunSummary {
        profile: s.profile.clone(),
        program: s.program.clone(),
        mode: if s.mode == "audit" { Mode::Audit } else { Mode::Enforce },
        level: if kernel.full { MonitorLevel::Full } else { MonitorLevel::Tree },
        exit_code: s.exit_code,
        signal: s.signal,
        events: decoder.counts.clone(),
        denials: decoder.denials.values().sum(),
        denials_by_kind: decoder.denials.clone(),
        dropped: kernel.dropped,
        opens_folded: kernel.opens_folded,
        repeated_opens,
        undecodable: decoder.undecodable,
        log_lines_lost,
        syscalls,
        lsm: match lsm {
            Ok(()) => LsmStatus::Loaded { loaded: Const, file_opens: kernel.lsm_file_opens },
            Err(why) => LsmStatus::NotLoaded { loaded: Const, reason: why.to_string() },
        },
    }
}

/// `audit: 124 events, 3 denied (2 connect, 1 syscall), 0 dropped; log: PATH`.
fn human_summary(decoder: &EventDecoder, kernel: &KernelCounters, log: &AuditLog) -> String {
    let denials: u64 = decoder.denials.values().sum();
    let by_kind: Vec<String> = decoder.denials.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut line = format!(
        "audit: {} events, {denials} denied{}, {} dropped",
        decoder.counts.values().sum::<u64>(),
        if by_kind.is_empty() { String::new() } else { format!(" ({})", by_kind.join(", ")) },
        kernel.dropped,
    );
    if log.lost > 0 {
        line.push_str(&format!(", {} log lines LOST", log.lost));
    }
    line.push_str(&format!("; log: {}", log.destination.describe()));
    line
}
