//! The systemd journal as an audit destination: one entry per record, with the record's JSON as
//! `MESSAGE`, each top-level field as `MCP_WARDEN_<FIELD>`, `SYSLOG_IDENTIFIER=mcp-warden`, and
//! `PRIORITY` 4 (warning) for a denial, 6 (info) otherwise.
//!
//! journald is reached through `libsystemd` (`logging::journal_send`), which speaks the native
//! protocol: one datagram per entry, or, when the entry is too large for a datagram (`EMSGSIZE`),
//! a sealed memfd passed as `SCM_RIGHTS`. `MCP_WARDEN_JOURNAL_SOCKET` names another socket (the
//! tests' stand-in for journald, which they cannot start): libsystemd always sends to
//! `/run/systemd/journal/socket`, so that override alone goes through the small writer in
//! [`native`], which encodes and sends entries the same way.

use std::path::PathBuf;

use libsystemd::logging::Priority;

use super::record::AuditLine;

/// Where journal entries go.
#[derive(Debug)]
pub(super) enum Journal {
    /// journald, through libsystemd.
    Journald,
    /// The socket `MCP_WARDEN_JOURNAL_SOCKET` names.
    Socket { path: PathBuf, socket: std::os::unix::net::UnixDatagram },
}

impl Journal {
    /// The journal, or the socket `MCP_WARDEN_JOURNAL_SOCKET` names.
    pub(super) fn from_env() -> std::io::Result<Journal> {
        match std::env::var_os("MCP_WARDEN_JOURNAL_SOCKET") {
            Some(path) => Journal::socket(PathBuf::from(path)),
            None => Ok(Journal::Journald),
        }
    }

    /// The socket at `path`. Nothing is sent yet (here or to journald): a journal that cannot
    /// be reached shows with the first entry, the start record.
    pub(super) fn socket(path: PathBuf) -> std::io::Result<Journal> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        Ok(Journal::Socket { path, socket })
    }

    /// Sends `line`, whose JSON text is `json`, as one entry.
    pub(super) fn send(&self, line: &AuditLine, json: &str) -> std::io::Result<()> {
        let priority = if line.record.is_denial() { Priority::Warning } else { Priority::Info };
        let fields = fields(line)?;
        match self {
            Journal::Journald => libsystemd::logging::journal_send(priority, json, fields.into_iter())
                .map_err(|e| std::io::Error::other(e.to_string())),
            Journal::Socket { path, socket } => {
                let entry = native::entry(u8::from(priority), json, &fields);
                native::send(socket, path, &entry)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            }
        }
    }
}

/// `SYSLOG_IDENTIFIER` and a `MCP_WARDEN_<FIELD>` per top-level field of the record: strings
/// as they are, anything else as JSON.
fn fields(line: &AuditLine) -> std::io::Result<Vec<(String, String)>> {
    let serde_json::Value::Object(map) = serde_json::to_value(line)? else {
        return Err(std::io::Error::other("an audit record is not a JSON object"));
    };
    let mut fields = vec![("SYSLOG_IDENTIFIER".to_string(), "mcp-warden".to_string())];
    for (key, value) in map {
        let name: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        let value = match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        fields.push((format!("MCP_WARDEN_{name}"), value));
    }
    Ok(fields)
}

/// The native protocol for a socket of our choosing (see the module's comment for why libsystemd
/// cannot serve it): `FIELD=value\n`, or for a value with a newline `FIELD\n`, its length as a
/// little-endian u64, the value and `\n`; a sealed memfd when the entry exceeds a datagram.
pub(super) mod native {
    use std::io::{IoSlice, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::path::Path;

    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};

    /// `PRIORITY`, `MESSAGE`, then `fields`, in libsystemd's order.
    pub fn entry(priority: u8, message: &str, fields: &[(String, String)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() * 2 + 64);
        append(&mut out, "PRIORITY", &priority.to_string());
        append(&mut out, "MESSAGE", message);
        for (name, value) in fields {
            append(&mut out, name, value);
        }
        out
    }

    fn append(out: &mut Vec<u8>, name: &str, value: &str) {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }

    /// One datagram; a memfd when the kernel says the entry is too large for one.
    pub fn send(socket: &UnixDatagram, path: &Path, entry: &[u8]) -> std::io::Result<()> {
        match socket.send_to(entry, path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => send_memfd(socket, path, entry),
            Err(e) => Err(e),
        }
    }

    /// journald reads an entry from a memfd passed with an empty datagram; the seals promise
    /// it that the contents no longer change.
    fn send_memfd(socket: &UnixDatagram, path: &Path, entry: &[u8]) -> std::io::Result<()> {
        let fd = memfd_create(c"mcp-warden-journal", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(entry)?;
        fcntl(&file, FcntlArg::F_ADD_SEALS(SealFlag::all()))?;
        let addr = UnixAddr::new(path)?;
        let fds = [file.as_raw_fd()];
        let no_data: [IoSlice<'_>; 0] = [];
        sendmsg(socket.as_raw_fd(), &no_data, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), Some(&addr))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditRecord, Start, Writer};

    fn start() -> AuditLine {
        AuditLine::now(AuditRecord::Start(Start::new(Writer::Mcp, "strict", "/bin/true")))
    }

    #[test]
    fn entries_carry_the_json_and_one_field_per_key() {
        let line = start();
        let json = serde_json::to_string(&line).unwrap();
        let entry = native::entry(6, &json, &fields(&line).unwrap());
        let text = String::from_utf8(entry).unwrap();
        assert!(text.starts_with(&format!("PRIORITY=6\nMESSAGE={json}\nSYSLOG_IDENTIFIER=mcp-warden\n")), "{text}");
        for field in ["MCP_WARDEN_KIND=start\n", "MCP_WARDEN_WRITER=mcp\n", "MCP_WARDEN_PROFILE=strict\n"] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert!(text.contains(&format!("MCP_WARDEN_LAUNCHER_PID={}\n", std::process::id())));
    }

    #[test]
    fn a_value_with_a_newline_is_length_prefixed() {
        let entry = native::entry(4, "{}", &[("MCP_WARDEN_REASON".into(), "a\nb".into())]);
        let mut expected = b"PRIORITY=4\nMESSAGE={}\nMCP_WARDEN_REASON\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\n");
        assert_eq!(entry, expected);
    }

    /// An entry larger than a datagram arrives as a sealed memfd, whole.
    #[test]
    fn a_large_entry_goes_through_a_memfd() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::AsRawFd;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let entry = native::entry(6, &"x".repeat(4 << 20), &[]);
        native::send(&client, &path, &entry).unwrap();

        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut buf = [0u8; 16];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(server.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
        assert_eq!(msg.bytes, 0, "the datagram itself is empty");
        let fd = match msg.cmsgs().unwrap().next() {
            Some(ControlMessageOwned::ScmRights(fds)) => fds[0],
            other => panic!("expected SCM_RIGHTS, got {other:?}"),
        };
        // Reopened through /proc: the same memfd, without taking ownership of a raw fd.
        let memfd = std::fs::File::open(format!("/proc/self/fd/{fd}")).unwrap();
        let got = std::fs::read(format!("/proc/self/fd/{fd}")).unwrap();
        let _ = nix::unistd::close(fd);
        assert!(got == entry, "the memfd holds the entry ({} of {} bytes)", got.len(), entry.len());
        let seals = nix::fcntl::fcntl(&memfd, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0, "sealed against writes");
    }
}
