//! The refusals the supervisor sees: calls the seccomp filter hands it (user notification) and
//! calls the network broker refuses. Each one is a `deny` record in the audit log and a count for
//! the summary; stderr (which clients keep in their MCP logs) gets one line per distinct refusal,
//! naming what, which layer, and what would allow it. The DNS resolver's records go the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::audit::AuditLog;
use crate::audit::record::{
    AnnotationViolation, AuditLine, AuditRecord, Caller, Deny, DenyLayer, Dns, DnsOutcome, Verdict,
};
use crate::logging::printable;
use crate::mcp::InFlight;

/// One refused call, as the layer that refused it describes it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub layer: DenyLayer,
    /// The calling thread, in the supervisor's PID namespace (the host's).
    pub tid: u32,
    pub nr: i64,
    pub syscall: String,
    pub args: BTreeMap<String, String>,
    pub path: Option<String>,
    pub reason: String,
    /// The profile key or flag that would allow it.
    pub grant: String,
    /// What the caller gets when the refusal is enforced.
    pub errno: i32,
}

/// Refusal records written per run; past them refusals are counted, not written: a server looping
/// on a refused call must not fill the host's disk through the root supervisor's log.
pub const RECORDS_MAX: u64 = 10_000;

/// Distinct refusals told on stderr; past them, stderr says once that the rest are in the log only
/// (a server making endless distinct refusals must not grow the supervisor or flood the client).
const TOLD_MAX: usize = 256;

/// Where the refusals of one run go. Shared by the listener thread and the broker's workers.
#[derive(Debug)]
pub struct Refusals {
    log: Mutex<Option<AuditLog>>,
    /// Refusals by layer, for the summary.
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Records written, and refusals past [`RECORDS_MAX`] that were only counted.
    written: Mutex<(u64, u64)>,
    /// The same for the resolver's answered queries, which have a budget of their own: a server
    /// looking names up without end must not use up the refusals' room in the log.
    answers_written: Mutex<(u64, u64)>,
    /// The refusals already told on stderr (a repeat is only counted), at most [`TOLD_MAX`].
    told: Mutex<std::collections::BTreeSet<String>>,
    /// The MCP layer's calls in flight: a refusal during one is noted for its result.
    calls: Option<Arc<InFlight>>,
    /// The first distinct refusals, one line each, for the exit summary to repeat.
    recap: Mutex<Vec<String>>,
}

/// Distinct refusals the exit summary repeats.
const RECAP_MAX: usize = 20;

impl Refusals {
    /// `log`: the supervisor's audit writer (`None`: stderr and counts only).
    pub fn new(log: Option<AuditLog>) -> Refusals {
        Refusals {
            log: Mutex::new(log),
            counts: Mutex::default(),
            written: Mutex::default(),
            answers_written: Mutex::default(),
            told: Mutex::default(),
            calls: None,
            recap: Mutex::default(),
        }
    }

    /// Notes each refusal for the MCP tool call in flight when it happens.
    pub fn noting_calls(mut self, calls: Arc<InFlight>) -> Refusals {
        self.calls = Some(calls);
        self
    }

    /// Records `r`; `enforced` is false in audit mode, where the call went ahead.
    pub fn record(&self, r: Refusal, enforced: bool) {
        let caller = caller(r.tid);
        if let Some(calls) = &self.calls {
            calls.note(&printable(&format!("{}: {} {}; to allow: {}", r.layer.name(), what(&r), r.reason, r.grant)));
        }
        self.tell(&r, &caller, enforced);
        *lock(&self.counts).entry(r.layer.name()).or_default() += 1;
        let errno = enforced.then(|| format!("{:?}", nix::errno::Errno::from_raw(r.errno)));
        let record = Deny {
            caller,
            layer: r.layer,
            syscall: r.syscall,
            nr: r.nr as u32,
            args: r.args,
            path: r.path,
            reason: r.reason,
            errno,
            verdict: Verdict::Deny { enforced },
        };
        self.write(AuditRecord::Deny(record));
    }

    /// A tool in flight tried what its annotations say it does not do (`annotation`:
    /// `readOnlyHint` or `openWorldHint`); it got `errno`. Told on stderr once per tool, call and
    /// target; noted for the call's result; counted under `annotations`.
    pub fn annotation_violation(
        &self,
        tid: u32,
        tool: &str,
        annotation: &str,
        syscall: &str,
        target: Option<String>,
        errno: i32,
    ) {
        let caller = caller(tid);
        let on = target.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        let line = printable(&format!(
            "annotations: tool `{tool}` is declared {} but tried {syscall}{on} during its call; refused",
            if annotation == "readOnlyHint" { "read-only" } else { "closed-world" }
        ));
        if let Some(calls) = &self.calls {
            calls.note(&line);
        }
        if self.first_time(format!("annotations {tool} {syscall}{on}")) {
            self.remember(line.clone());
            eprintln!("mcp-warden: {line}");
        }
        *lock(&self.counts).entry("annotations").or_default() += 1;
        let errno = Some(format!("{:?}", nix::errno::Errno::from_raw(errno)));
        let record = AnnotationViolation {
            caller,
            tool: tool.into(),
            annotation: annotation.into(),
            syscall: syscall.into(),
            target,
            errno,
        };
        self.write(AuditRecord::AnnotationViolation(record));
    }

    /// Refusals so far, by layer (`seccomp`, `network`).
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counts).clone()
    }

    /// The first distinct refusals, as the exit summary repeats them.
    pub fn recap(&self) -> Vec<String> {
        lock(&self.recap).clone()
    }

    /// Refusals counted but not written, past the per-run cap.
    pub fn unwritten(&self) -> u64 {
        lock(&self.written).1
    }

    /// Answered DNS queries counted but not written, past their own per-run cap.
    pub fn answers_unwritten(&self) -> u64 {
        lock(&self.answers_written).1
    }

    /// Writes out what is buffered; the log's lost-line count, for the exit summary.
    pub fn flush(&self) -> Option<u64> {
        lock(&self.log).as_mut().map(|log| {
            log.flush();
            log.lost
        })
    }

    /// The line on stderr, once per distinct refusal (same layer, call, arguments and path).
    fn tell(&self, r: &Refusal, caller: &Caller, enforced: bool) {
        let what = what(r);
        if !self.first_time(format!("{:?} {what}", r.layer)) {
            return;
        }
        self.remember(printable(&format!("{}: {what}: {}; to allow: {}", r.layer.name(), r.reason, r.grant)));
        let verb = if enforced { "refused" } else { "would refuse" };
        let who = match caller.pid {
            Some(pid) => format!("pid {pid} ({})", printable(&caller.comm)),
            None => format!("thread {}", caller.tid),
        };
        let (reason, grant) = (printable(&r.reason), printable(&r.grant));
        eprintln!("mcp-warden: {}: {verb} {what} by {who}: {reason}; to allow: {grant}", r.layer.name());
    }

    /// Whether `key` is a refusal not told yet (past [`TOLD_MAX`] none is, and stderr says so once).
    fn first_time(&self, key: String) -> bool {
        let mut told = lock(&self.told);
        if told.len() >= TOLD_MAX {
            if told.len() == TOLD_MAX {
                told.insert(String::new());
                eprintln!("mcp-warden: {TOLD_MAX} distinct refusals told; further ones are in the audit log only");
            }
            return false;
        }
        told.insert(key)
    }

    /// Keeps a told refusal for the exit summary's recap.
    fn remember(&self, line: String) {
        let mut recap = lock(&self.recap);
        if recap.len() < RECAP_MAX {
            recap.push(line);
        }
    }

    /// Writes `record` unless the per-run cap of its budget is reached.
    fn write(&self, record: AuditRecord) {
        let denial = record.is_denial();
        {
            let mut written = lock(if denial { &self.written } else { &self.answers_written });
            if written.0 >= RECORDS_MAX {
                written.1 += 1;
                return;
            }
            written.0 += 1;
        }
        if let Some(log) = lock(&self.log).as_mut() {
            log.write(&AuditLine::now(record));
        }
    }
}

/// The resolver's records: each query in the audit log; a refused name or a dropped answer told
/// on stderr once, counted under `dns`, and noted for the tool call in flight.
impl crate::dns::Journal for Refusals {
    fn dns(&self, record: Dns) {
        if let Verdict::Deny { enforced } = record.verdict {
            let verb = if enforced { "refused" } else { "would refuse" };
            let reason = record.reason.clone().unwrap_or_default();
            let grant = match record.outcome {
                DnsOutcome::Refused => format!("; to allow: [network] connect = [\"{}:PORT\"]", record.name),
                _ => String::new(),
            };
            let line = printable(&format!("dns: {verb} {} ({}): {reason}{grant}", record.name, record.qtype));
            *lock(&self.counts).entry("dns").or_default() += 1;
            if let Some(calls) = &self.calls {
                calls.note(&line);
            }
            if self.first_time(format!("dns {} {:?}", record.name, record.outcome)) {
                self.remember(line.clone());
                eprintln!("mcp-warden: {line}");
            }
        }
        self.write(AuditRecord::Dns(record));
    }
}

/// The call and what it named: `openat() on /home/me/.ssh/id_rsa`, printable.
fn what(r: &Refusal) -> String {
    let args: Vec<String> = r.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = r.path.as_deref().map(|p| format!(" on {p}")).unwrap_or_default();
    printable(&format!("{}({}){path}", r.syscall, args.join(", ")))
}

/// The thread's process and command name, from /proc (absent fields if it is already gone).
fn caller(tid: u32) -> Caller {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
    };
    let number = |name: &str| field(name).and_then(|v| v.split_whitespace().next()?.parse().ok());
    Caller {
        pid: number("Tgid"),
        ppid: number("PPid"),
        tid,
        comm: field("Name").unwrap_or_default(),
        uid: number("Uid"),
    }
}

/// A poisoned lock only means another thread panicked while recording; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Journal;

    fn dns(name: &str, outcome: DnsOutcome, verdict: Verdict) -> Dns {
        Dns {
            name: name.into(),
            qtype: "A".into(),
            transport: "udp".into(),
            outcome,
            addresses: vec![],
            ttl: None,
            opens: vec![],
            reason: Some("not one of the profile's names".into()),
            verdict,
        }
    }

    #[test]
    fn answered_lookups_do_not_use_up_the_refusals_room_in_the_log() {
        let r = Refusals::new(None);
        for _ in 0..=RECORDS_MAX {
            r.dns(dns("ok.example.com", DnsOutcome::Answered, Verdict::Allow));
        }
        r.dns(dns("evidence.attacker.example", DnsOutcome::Refused, Verdict::Deny { enforced: true }));
        assert_eq!((r.answers_unwritten(), r.unwritten()), (1, 0), "the refusal is written");
        assert_eq!(r.counts().get("dns"), Some(&1));
    }

    #[test]
    fn the_caller_is_found_in_proc() {
        let me = caller(std::process::id());
        assert_eq!(me.pid, Some(std::process::id()));
        assert_eq!(me.uid, Some(nix::unistd::getuid().as_raw()));
        assert!(me.ppid.is_some());
        assert!(!me.comm.is_empty());
        assert_eq!(caller(u32::MAX).pid, None);
    }

    #[test]
    fn control_characters_are_escaped_on_stderr() {
        assert_eq!(printable("a\nmcp-warden: forged\u{1b}[2K"), "a\\nmcp-warden: forged\\u{1b}[2K");
    }

    #[test]
    fn refusals_are_counted_by_layer() {
        let r = Refusals::new(None);
        let refusal = Refusal {
            layer: DenyLayer::Seccomp,
            tid: std::process::id(),
            nr: libc::SYS_socket,
            syscall: "socket".into(),
            args: BTreeMap::new(),
            path: None,
            reason: "test".into(),
            grant: "test".into(),
            errno: libc::EPERM,
        };
        r.record(refusal.clone(), true);
        r.record(refusal, true);
        assert_eq!(r.counts().get("seccomp"), Some(&2));
    }
}
