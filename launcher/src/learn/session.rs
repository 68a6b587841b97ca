//! One learning session on disk: JSON lines in
//! `$XDG_STATE_HOME/mcp-warden/learn/NAME/<start>-<pid>.jsonl`, written as the server runs (each
//! distinct observation once, appended at once: a launcher killed mid-session loses nothing it
//! saw). The first line is the [`Header`]; [`super::draft`] reads every session of a name.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::sensitive::Sensitive;

/// What the server did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    /// Written, truncated, or a directory entry created, removed or renamed (the path is the
    /// entry; its directory is what a grant needs).
    Write,
    Exec,
}

/// A grant the session ran with, kept so that the draft leaves out what the base already gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub path: PathBuf,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// The first line of a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    /// The profile the session ran on (the draft extends it).
    pub profile: String,
    pub argv: Vec<String>,
    /// The program as resolved (argv's first may be relative or a name in PATH), and the working
    /// directory: two servers with one command line are still two servers.
    #[serde(default)]
    pub program: PathBuf,
    #[serde(default)]
    pub cwd: PathBuf,
    pub home: PathBuf,
    /// The base profile's grants (without the learning baseline's).
    pub base: Vec<Grant>,
    /// The server's arguments that are existing paths (the draft's second generalisation).
    pub argument_paths: Vec<PathBuf>,
    /// Environment variables passed to the server, by name.
    pub env: Vec<String>,
    /// Unix seconds.
    pub started: u64,
}

/// One line of a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    Session(Box<Header>),
    /// A file the server opened, ran, created or removed. `exists`: the path existed when seen
    /// (a read of a path that does not exist needs no grant). `refused`: outside the session's
    /// grants, so Landlock or the view refused it. `tool`: the `tools/call` in flight, when the
    /// MCP layer is on and exactly one was.
    File {
        access: Access,
        path: PathBuf,
        exists: bool,
        refused: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        tool: Option<String>,
    },
    /// A secret or persistence location the server tried (always refused).
    Sensitive {
        what: Sensitive,
        access: Access,
        path: PathBuf,
    },
    /// A destination the broker connected or sent to, with the name it was looked up by when the
    /// session saw the lookup.
    Connect {
        proto: String,
        addr: String,
        port: u16,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        host: Option<String>,
    },
    /// Peaks seen while the server ran (written when it exits).
    Limits {
        processes: u64,
        open_files: u64,
        memory: u64,
    },
    /// The session reached its cap: what the server did after is not recorded.
    CutShort {
        records: usize,
    },
}

/// Distinct records one session keeps, and bytes it writes; past either the session says it was
/// cut short and records nothing more (a server making endless distinct paths must not fill the
/// disk or the supervisor).
pub const RECORDS_MAX: usize = 20_000;
const BYTES_MAX: usize = 8 << 20;

/// The session being written.
#[derive(Debug)]
pub struct Writer {
    file: Mutex<File>,
    seen: Mutex<HashSet<Record>>,
    /// Bytes written, and whether the cap was reached.
    written: Mutex<(usize, bool)>,
    pub path: PathBuf,
}

impl Writer {
    /// Creates the session file under `dir` (made private to the user) and writes the header.
    pub fn create(dir: &Path, header: &Header) -> std::io::Result<Writer> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let path = dir.join(format!("{}-{}.jsonl", header.started, std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        // Held while the run lasts (the kernel drops it when the launcher dies, however): a
        // session still being written is one `learn accept` must not draft from ([`ended`]).
        if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            // `learn accept` then refuses this session as one it cannot tell has ended
            tracing::warn!("learn: the session file cannot be locked ({e}): `learn accept` will refuse it");
        }
        let writer = Writer { file: Mutex::new(file), seen: Mutex::default(), written: Mutex::default(), path };
        writer.record(Record::Session(Box::new(header.clone())));
        Ok(writer)
    }

    /// Appends `record` unless the session already has it or reached its cap.
    pub fn record(&self, record: Record) {
        let Ok(mut line) = serde_json::to_vec(&record) else { return };
        line.push(b'\n');
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.1 {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&record) {
            return;
        }
        if seen.len() + 1 >= RECORDS_MAX || written.0 + line.len() >= BYTES_MAX {
            written.1 = true;
            tracing::warn!(
                "learn: the session reached its cap ({RECORDS_MAX} records, {} MiB): the rest of it is not recorded",
                BYTES_MAX >> 20
            );
            let Ok(mut cut) = serde_json::to_vec(&Record::CutShort { records: seen.len() }) else { return };
            cut.push(b'\n');
            line = cut;
        } else {
            seen.insert(record);
        }
        written.0 += line.len();
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!("learn: failed to append to the session file: {e}");
        }
    }
}

/// The sessions of a name, each opened and held under a shared lock for as long as the returned
/// files live: a session that starts meanwhile is a file of its own, not among them. `Err` with
/// the sessions still being written (their launcher holds an exclusive lock), or that cannot be
/// locked (then whether they run cannot be told).
pub fn ended(dir: &Path) -> Result<Vec<(PathBuf, File)>, Vec<PathBuf>> {
    let (mut held, mut running) = (Vec::new(), Vec::new());
    for path in session_files(dir).unwrap_or_default() {
        match File::open(&path) {
            Ok(f) if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok() => {
                held.push((path, f));
            }
            _ => running.push(path),
        }
    }
    if running.is_empty() { Ok(held) } else { Err(running) }
}

/// The session files of a name, oldest first (their names start with the start time).
fn session_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// The header and records of each of `files` (opened by [`ended`]).
pub fn read_files(files: &[(PathBuf, File)]) -> Vec<(Header, Vec<Record>)> {
    files.iter().filter_map(|(path, file)| read_one(path, file)).collect()
}

fn read_one(path: &Path, file: &File) -> Option<(Header, Vec<Record>)> {
    let mut header = None;
    let mut records = Vec::new();
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        match serde_json::from_str::<Record>(&line) {
            Ok(Record::Session(h)) => header = Some(*h),
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!("learn: {}: skipped a line: {e}", path.display()),
        }
    }
    header.map(|h| (h, records))
}

/// Every session of a name: its header and its records. Unreadable lines are skipped with a
/// warning (a session cut short by a crash ends mid-line).
pub fn read_all(dir: &Path) -> std::io::Result<Vec<(Header, Vec<Record>)>> {
    let mut sessions = Vec::new();
    for path in session_files(dir)? {
        sessions.extend(read_one(&path, &File::open(&path)?));
    }
    Ok(sessions)
}
