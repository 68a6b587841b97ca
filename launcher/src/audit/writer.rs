//! The audit log writer: typed records as JSON lines to a file or stderr, and to the journal,
//! counting every record once as written or as lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::destination::Destination;
use super::journal::Journal;
use super::record::{AuditLine, AuditRecord, Start};

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
        /// Records in `buf`.
        pending: u64,
        /// Of those, records the journal did not take: lost whatever becomes of the file write.
        pending_lost: u64,
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
    /// Records every destination took.
    pub written: u64,
    /// Records some destination could not take (disk full, no journal...), each counted once.
    pub lost: u64,
}

impl AuditLog {
    /// Opens (appending) the destination, creating its directory (mode 0700) if needed.
    pub fn open(destination: Destination) -> std::io::Result<AuditLog> {
        let journal = if destination.has_journal() { Some(Journal::from_env()?) } else { None };
        AuditLog::with_journal(destination, journal)
    }

    fn with_journal(destination: Destination, journal: Option<Journal>) -> std::io::Result<AuditLog> {
        let sink = match (&destination, destination.file()) {
            (Destination::Stderr, _) => Sink::Stderr,
            (_, None) => Sink::None,
            (_, Some(path)) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)?;
                }
                let file = open_log_file(path)?;
                Sink::File { file, buf: Vec::with_capacity(FLUSH_AT), pending: 0, pending_lost: 0 }
            }
        };
        Ok(AuditLog { sink, journal, destination, written: 0, lost: 0 })
    }

    /// Writes the start record at once, and says whether every destination took it: the check,
    /// at start, that the log can be written at all (a full disk, `/dev/full`, a file that went
    /// read-only, no journal).
    pub fn start(&mut self, record: &Start) -> std::io::Result<()> {
        self.flush();
        let line = AuditLine::now(AuditRecord::Start(record.clone()));
        let result = self.write_now(&line);
        self.count(result.is_ok());
        result
    }

    fn write_now(&mut self, line: &AuditLine) -> std::io::Result<()> {
        let json = serde_json::to_string(line)?;
        let journal = match &self.journal {
            Some(j) => j.send(line, &json).map_err(|e| std::io::Error::new(e.kind(), format!("the journal: {e}"))),
            None => Ok(()),
        };
        let sink = match &mut self.sink {
            Sink::None => Ok(()),
            Sink::Stderr => std::io::stderr().lock().write_all(format!("{json}\n").as_bytes()),
            Sink::File { file, .. } => file.write_all(format!("{json}\n").as_bytes()),
        };
        sink.and(journal)
    }

    /// Writes `line`: to the journal at once, to a file through the buffer (serialized in place:
    /// the MCP layer writes two records per call).
    pub fn write(&mut self, line: &AuditLine) {
        if let Sink::File { buf, pending, pending_lost, .. } = &mut self.sink {
            let start = buf.len();
            if serde_json::to_writer(&mut *buf, line).is_err() {
                buf.truncate(start);
                self.lost += 1;
                return;
            }
            let json = std::str::from_utf8(&buf[start..]).unwrap_or_default();
            let journal_took = self.journal.as_ref().is_none_or(|j| j.send(line, json).is_ok());
            buf.push(b'\n');
            *pending += 1;
            *pending_lost += u64::from(!journal_took);
            if buf.len() >= FLUSH_AT {
                self.flush();
            }
            return;
        }
        let Ok(json) = serde_json::to_string(line) else {
            self.lost += 1;
            return;
        };
        let journal_took = self.journal.as_ref().is_none_or(|j| j.send(line, &json).is_ok());
        let ok = match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(format!("{json}\n").as_bytes()).is_ok(),
            _ => true,
        };
        self.count(ok && journal_took);
    }

    /// Writes the buffered lines; each counts as written or, when the write or the journal
    /// failed, as lost.
    pub fn flush(&mut self) {
        if let Sink::File { file, buf, pending, pending_lost } = &mut self.sink {
            if buf.is_empty() {
                return;
            }
            if file.write_all(buf).is_ok() {
                self.written += *pending - *pending_lost;
                self.lost += *pending_lost;
            } else {
                self.lost += *pending;
            }
            buf.clear();
            *pending = 0;
            *pending_lost = 0;
        }
    }

    fn count(&mut self, took: bool) {
        if took {
            self.written += 1;
        } else {
            self.lost += 1;
        }
    }
}

/// Opens (appending, creating mode 0600) the log without following a symlink in its last
/// component and without blocking on a FIFO, and refuses anything but a regular file or a
/// character device (`/dev/null`, a terminal): a FIFO's reader could stall the supervisor.
fn open_log_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::FileTypeExt;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !(kind.is_file() || kind.is_char_device()) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    // Blocking again: a terminal must not turn a full buffer into lost records.
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND))?;
    Ok(file)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Mcp, McpMalformed, McpMessage, Side, Writer};

    fn malformed() -> AuditLine {
        AuditLine::now(AuditRecord::Mcp(Mcp {
            from: Side::Client,
            message: McpMessage::Malformed(McpMalformed { bytes: 3 }),
        }))
    }

    #[test]
    fn lines_are_buffered_and_counted_when_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let mut log = AuditLog::open(Destination::File(path.clone())).unwrap();
        log.start(&Start::new(Writer::Mcp, "strict", "/bin/true")).unwrap();
        log.write(&malformed());
        assert_eq!((log.written, log.lost), (1, 0), "the second line is still buffered");
        log.flush();
        assert_eq!((log.written, log.lost), (2, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("{\"ts\":\"") && lines[0].contains("\"kind\":\"start\""), "{text}");
        assert!(
            lines[1].ends_with("\"kind\":\"mcp\",\"from\":\"client\",\"message\":\"malformed\",\"bytes\":3}"),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_unwritable_log_fails_at_start_and_counts_each_record_once() {
        let mut log = AuditLog::open(Destination::File("/dev/full".into())).unwrap();
        let e = log.start(&Start::new(Writer::Ebpf, "strict", "/bin/true")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        for _ in 0..3 {
            log.write(&malformed());
        }
        log.flush();
        assert_eq!((log.written, log.lost), (0, 4));
    }

    /// A journal that is not there and a file that takes every line: each record is lost once.
    #[test]
    fn a_record_the_journal_refuses_is_lost_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("also.jsonl");
        let journal = Journal::socket(dir.path().join("absent.sock")).unwrap();
        let mut log = AuditLog::with_journal(Destination::Journal(Some(file.clone())), Some(journal)).unwrap();
        let e = log.start(&Start::new(Writer::Mcp, "strict", "/bin/true")).unwrap_err();
        assert!(e.to_string().contains("the journal:") && e.to_string().contains("absent.sock"), "{e}");
        log.write(&malformed());
        log.write(&malformed());
        log.flush();
        assert_eq!((log.written, log.lost), (0, 3));
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3, "the file has every line");
    }
}
