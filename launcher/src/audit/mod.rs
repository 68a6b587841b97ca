//! The audit log: one JSON object per line, to a file or stderr, and the final summary record.
//! A line that cannot be written is counted and reported, never dropped silently.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::ebpf::EventDecoder;
use crate::ebpf::KernelCounters;

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    File(PathBuf),
    /// The systemd journal, as structured fields; and a file too when given.
    Journal(Option<PathBuf>),
}

impl Destination {
    /// `-` is stderr, `journal` the systemd journal (`journal,PATH`: and the file PATH);
    /// anything else a file path.
    pub fn parse(s: &str) -> Destination {
        match s {
            "-" => Destination::Stderr,
            "journal" => Destination::Journal(None),
            _ => match s.strip_prefix("journal,") {
                Some(path) => Destination::Journal(Some(PathBuf::from(path))),
                None => Destination::File(PathBuf::from(s)),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Stderr => "stderr".into(),
            Destination::File(p) => p.display().to_string(),
            Destination::Journal(None) => "the systemd journal".into(),
            Destination::Journal(Some(p)) => format!("the systemd journal and {}", p.display()),
        }
    }
}

/// The journal's native protocol: one datagram per record on its socket, `FIELD=value` lines
/// (a value with a newline in the length-prefixed binary form). `MCP_WARDEN_JOURNAL_SOCKET`
/// overrides the socket's path (for tests without journald).
#[derive(Debug)]
struct Journal {
    socket: std::os::unix::net::UnixDatagram,
}

impl Journal {
    fn open() -> std::io::Result<Journal> {
        let path = std::env::var_os("MCP_WARDEN_JOURNAL_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/systemd/journal/socket"));
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.connect(&path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Journal { socket })
    }

    fn send(&self, record: &Value) -> std::io::Result<()> {
        let mut msg = Vec::new();
        let mut field = |name: &str, value: &str| {
            if value.contains('\n') {
                msg.extend_from_slice(name.as_bytes());
                msg.push(b'\n');
                msg.extend_from_slice(&(value.len() as u64).to_le_bytes());
                msg.extend_from_slice(value.as_bytes());
                msg.push(b'\n');
            } else {
                msg.extend_from_slice(format!("{name}={value}\n").as_bytes());
            }
        };
        field("MESSAGE", &record.to_string());
        field("SYSLOG_IDENTIFIER", "mcp-warden");
        let denied =
            record.get("verdict").is_some_and(|v| v == "deny") || record.get("outcome").is_some_and(|v| v == "refused");
        field("PRIORITY", if denied { "4" } else { "6" });
        if let Some(map) = record.as_object() {
            for (k, v) in map {
                let name: String =
                    k.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                field(&format!("MCP_WARDEN_{name}"), &value);
            }
        }
        self.socket.send(&msg).map(|_| ())
    }
}

/// A file sink buffers whole lines only and writes them with one `write` on an `O_APPEND` file:
/// the eBPF reader and the MCP layer append to the same log, and neither may split the other's
/// lines.
#[derive(Debug)]
enum Sink {
    /// Nothing besides the journal.
    None,
    Stderr,
    File {
        file: File,
        buf: Vec<u8>,
        pending: u64,
    },
}

/// Bytes of whole lines buffered before a write.
const FLUSH_AT: usize = 64 * 1024;

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    sink: Sink,
    journal: Option<Journal>,
    pub destination: Destination,
    pub written: u64,
    /// Lines that could not be written (disk full, ...).
    pub lost: u64,
}

impl AuditLog {
    /// Opens (appending) the destination, creating its directory (mode 0700) if needed.
    pub fn open(destination: Destination) -> std::io::Result<AuditLog> {
        let journal = match &destination {
            Destination::Journal(_) => Some(Journal::open()?),
            _ => None,
        };
        let sink = match &destination {
            Destination::Stderr => Sink::Stderr,
            Destination::Journal(None) => Sink::None,
            Destination::File(path) | Destination::Journal(Some(path)) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)?;
                }
                let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
                Sink::File { file, buf: Vec::with_capacity(FLUSH_AT), pending: 0 }
            }
        };
        Ok(AuditLog { sink, journal, destination, written: 0, lost: 0 })
    }

    /// Writes `record` at once, and says whether it could: the check, at start, that the log
    /// can be written at all (a full disk, `/dev/full`, a file that went read-only).
    pub fn start(&mut self, record: &Value) -> std::io::Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        let journal = self.journal.as_ref().map_or(Ok(()), |j| j.send(record));
        match &mut self.sink {
            Sink::None => Ok(()),
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File { file, .. } => file.write_all(line.as_bytes()),
        }
        .and(journal.map_err(|e| std::io::Error::new(e.kind(), format!("the journal: {e}"))))
        .inspect(|()| self.written += 1)
        .inspect_err(|_| self.lost += 1)
    }

    pub fn write(&mut self, record: &Value) {
        if let Some(j) = &self.journal
            && j.send(record).is_err()
        {
            self.lost += 1;
        }
        let mut line = record.to_string();
        line.push('\n');
        match &mut self.sink {
            Sink::None => {
                if self.journal.is_some() {
                    self.written += 1;
                }
            }
            Sink::Stderr => match std::io::stderr().lock().write_all(line.as_bytes()) {
                Ok(()) => self.written += 1,
                Err(_) => self.lost += 1,
            },
            Sink::File { buf, pending, .. } => {
                buf.extend_from_slice(line.as_bytes());
                *pending += 1;
                if buf.len() >= FLUSH_AT {
                    self.flush();
                }
            }
        }
    }

    /// Writes the buffered lines; they count as written or, when the write fails, as lost.
    pub fn flush(&mut self) {
        if let Sink::File { file, buf, pending } = &mut self.sink {
            let ok = file.write_all(buf).is_ok();
            if ok {
                self.written += *pending;
            } else {
                self.lost += *pending;
            }
            buf.clear();
            *pending = 0;
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// What the run ended with, for the summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub profile: String,
    pub program: String,
    pub mode: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// Writes the final `"kind": "summary"` record and returns the one-line human summary.
pub fn write_summary(
    log: &mut AuditLog,
    decoder: &EventDecoder,
    kernel: &KernelCounters,
    lsm: &Result<(), String>,
    s: &Summary,
) -> String {
    let mut syscalls: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (pid, nr, calls) in &kernel.syscalls {
        let name = syscalls::Sysno::new(*nr as usize).map_or_else(|| format!("syscall_{nr}"), |n| n.name().to_string());
        *syscalls.entry(pid.to_string()).or_default().entry(name).or_default() += calls;
    }
    let repeated: Vec<Value> = kernel
        .repeated_opens
        .iter()
        .map(|(key, count)| {
            let mut m = Map::new();
            m.insert("pid".into(), key.tgid.into());
            m.insert("path".into(), decoder.open_paths.get(&key.path_hash).cloned().map_or(Value::Null, Value::from));
            m.insert("count".into(), (*count).into());
            Value::Object(m)
        })
        .collect();
    let denials: u64 = decoder.denials.values().sum();
    let mut m = Map::new();
    m.insert("ts".into(), crate::ebpf::rfc3339(now_ns()).into());
    m.insert("kind".into(), "summary".into());
    m.insert("profile".into(), s.profile.clone().into());
    m.insert("program".into(), s.program.clone().into());
    m.insert("mode".into(), s.mode.into());
    m.insert("exit_code".into(), s.exit_code.map_or(Value::Null, Value::from));
    m.insert("signal".into(), s.signal.map_or(Value::Null, Value::from));
    m.insert("events".into(), serde_json::to_value(&decoder.counts).unwrap_or_default());
    m.insert("denials".into(), denials.into());
    m.insert("denials_by_kind".into(), serde_json::to_value(&decoder.denials).unwrap_or_default());
    m.insert("dropped".into(), kernel.dropped.into());
    m.insert("opens_folded".into(), kernel.opens_folded.into());
    m.insert("repeated_opens".into(), repeated.into());
    m.insert("undecodable".into(), decoder.undecodable.into());
    m.insert("log_lines_lost".into(), log.lost.into());
    m.insert("syscalls".into(), serde_json::to_value(&syscalls).unwrap_or_default());
    let mut l = Map::new();
    l.insert("loaded".into(), lsm.is_ok().into());
    match lsm {
        Ok(()) => {
            l.insert("file_opens".into(), kernel.lsm_file_opens.into());
        }
        Err(why) => {
            l.insert("reason".into(), why.clone().into());
        }
    }
    m.insert("lsm".into(), Value::Object(l));
    log.write(&Value::Object(m));
    log.flush();

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

/// The current time as the audit log writes it.
pub fn now_rfc3339() -> String {
    crate::ebpf::rfc3339(now_ns())
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}
