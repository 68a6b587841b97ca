//! A learning run's observer: the file calls the seccomp listener hands over (the path each one
//! names, what it does with it), the destinations the broker reaches (with the host name looked
//! up), and the peaks of the server's tree, written to the session file as they are seen.
//!
//! Each traced call is let through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) once recorded: the
//! kernel then decides it with Landlock and the view, on what it reads itself. The tracer only
//! predicts that decision from the grants, to tell the server's refusals apart (one line on
//! stderr each, naming the flag that would allow it) and to keep them out of the draft.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::listener::{absolute, own_proc};
use super::refusals::{Refusal, Refusals};
use crate::audit::record::DenyLayer;
use crate::layers::broker::{Observer, Proto};
use crate::layers::landlock::FsAccess;
use crate::learn::sensitive::{self, Sensitive};
use crate::learn::session::{Access, Record, Writer};
use crate::mcp::InFlight;
use crate::plan::LearnPlan;
use crate::sys::notify::Notification;

/// What the tracer is built from, prepared before the fork.
#[derive(Debug)]
pub struct TracerInputs {
    /// A learning run (else refusals are only explained).
    pub learn: Option<LearnPlan>,
    /// The server user's home (secrets and persistence locations are told as such).
    pub home: PathBuf,
    /// The run's grants, canonical (the private TMPDIR among them).
    pub grants: Vec<(PathBuf, FsAccess)>,
    /// The private TMPDIR: what happens there is the run's own scratch, never a grant.
    pub scratch: Option<PathBuf>,
    /// The server's root holds only the grants (`fs-hide`).
    pub hidden: bool,
}

/// A learning run's observer (shared by the listener thread and the broker's workers).
#[derive(Debug)]
pub struct Tracer {
    /// A learning run's session file.
    session: Option<Writer>,
    /// The home's secrets and persistence locations, resolved once.
    closed: sensitive::Closed,
    grants: Vec<(PathBuf, FsAccess)>,
    scratch: Option<PathBuf>,
    hidden: bool,
    refusals: Arc<Refusals>,
    names: Names,
    /// The MCP layer's calls in flight (empty without the layer).
    in_flight: Arc<InFlight>,
}

impl Tracer {
    pub fn new(inputs: TracerInputs, refusals: Arc<Refusals>, in_flight: Arc<InFlight>) -> std::io::Result<Tracer> {
        let session = match &inputs.learn {
            Some(learn) => {
                let session = Writer::create(&learn.dir, &learn.header)?;
                tracing::info!("learn: recording session {}", session.path.display());
                Some(session)
            }
            None => None,
        };
        Ok(Tracer {
            session,
            closed: sensitive::Closed::new(&inputs.home),
            grants: inputs.grants,
            scratch: inputs.scratch,
            hidden: inputs.hidden,
            refusals,
            names: Names::default(),
            in_flight,
        })
    }

    /// Records one traced call (the caller lets it continue).
    pub fn file_call(&self, n: &Notification, still_pending: impl Fn() -> bool) {
        let paths: Vec<(Access, PathBuf)> =
            named_paths(n).into_iter().filter_map(|(access, at)| Some((access, resolve(n, at)?))).collect();
        if !still_pending() {
            return; // the pid may have been recycled while its memory was read
        }
        for (access, path) in paths {
            self.file(n, access, &canonical(&path));
        }
    }

    fn file(&self, n: &Notification, access: Access, path: &Path) {
        if self.scratch.as_ref().is_some_and(|s| path.starts_with(s)) {
            return;
        }
        let exists = path.symlink_metadata().is_ok();
        // Learning runs close these whatever the grants; an ordinary run judges them by its grants.
        let sensitive = self
            .session
            .as_ref()
            .and_then(|_| self.closed.classify(path))
            .filter(|what| sensitive::closes(*what, access == Access::Write));
        if let Some(what) = sensitive {
            self.record(Record::Sensitive { what, access, path: path.into() });
            if self.allowed(access, path) {
                // A grant of this run (a flag or the base profile) reaches it: said, not hidden.
                tracing::warn!(
                    "learn: {access:?} of {}, a {what:?} location, is allowed by this run's grants; it is never drafted",
                    path.display()
                );
            } else if exists || access != Access::Read {
                self.tell(n, access, path, Some(what));
            }
            return;
        }
        let refused = (exists || access != Access::Read) && !self.allowed(access, path);
        if refused {
            self.tell(n, access, path, None);
        }
        // A read of a path that does not exist needs no grant: not worth a record.
        if exists || access != Access::Read {
            let tool = self.in_flight.only();
            self.record(Record::File { access, path: path.into(), exists, refused, tool });
        }
    }

    fn record(&self, record: Record) {
        if let Some(session) = &self.session {
            session.record(record);
        }
    }

    /// Would the run's grants allow `access` to `path` (a write: in its directory)?
    fn allowed(&self, access: Access, path: &Path) -> bool {
        self.grants.iter().any(|(dir, a)| {
            path.starts_with(dir)
                && match access {
                    Access::Read => a.read,
                    Access::Write => a.write,
                    Access::Exec => a.exec,
                }
        })
    }

    /// One line on stderr and a `deny` record, through the run's refusals.
    fn tell(&self, n: &Notification, access: Access, path: &Path, sensitive: Option<Sensitive>) {
        let whose = if self.session.is_some() { "the learning run's grants" } else { "the grants" };
        let (reason, grant) = match sensitive {
            Some(Sensitive::Secret) => ("a secret: closed to learning runs".to_string(), "never granted".to_string()),
            Some(Sensitive::Persistence) => {
                ("a persistence location: closed to learning runs".to_string(), "never granted".to_string())
            }
            None if crate::learn::draft::own_proc_entry(path) => (
                format!("{access:?} outside {whose}"),
                "no grant by path (a process's own /proc entries change with its pid)".to_string(),
            ),
            None => (format!("{access:?} outside {whose}"), crate::learn::grant_hint(access, path, self.closed.home())),
        };
        // In the hidden root a path beneath no grant is not there at all.
        let hidden = self.hidden && !self.grants.iter().any(|(dir, _)| path.starts_with(dir));
        let (layer, errno) =
            if hidden { (DenyLayer::FsHide, libc::ENOENT) } else { (DenyLayer::Landlock, libc::EACCES) };
        let syscall =
            syscalls::Sysno::new(n.nr as usize).map_or_else(|| format!("syscall_{}", n.nr), |s| s.name().into());
        let refusal = Refusal {
            layer,
            tid: n.pid,
            nr: n.nr,
            syscall,
            args: BTreeMap::new(),
            path: Some(path.display().to_string()),
            reason,
            grant,
            errno,
        };
        self.refusals.record(refusal, true);
    }

    /// Records the peaks of the server's tree, when they grew.
    pub fn peaks(&self, processes: u64, open_files: u64, memory: u64) {
        self.record(Record::Limits { processes, open_files, memory });
    }
}

impl Observer for Tracer {
    fn reached(&self, proto: Proto, dest: SocketAddr, payload: &[u8]) {
        let question = (dest.port() == 53).then(|| dns_question(payload)).flatten();
        if let Some(name) = &question {
            self.names.looked_up(name);
        }
        // A query is recorded with the name it asks (the draft answers those names only).
        let host = question.or_else(|| self.names.name_of(dest.ip()));
        let record = Record::Connect { proto: proto.to_string(), addr: dest.ip().to_string(), port: dest.port(), host };
        self.record(record);
    }
}

/// The host names the server looked up, with the addresses the supervisor resolves them to, and
/// `/etc/hosts`: an address the server reaches is named by the name that gave it.
#[derive(Debug, Default)]
struct Names(Mutex<HashMap<String, Vec<IpAddr>>>);

impl Names {
    fn looked_up(&self, name: &str) {
        if self.0.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            return;
        }
        let addrs: Vec<IpAddr> = (name, 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), addrs);
    }

    fn name_of(&self, ip: IpAddr) -> Option<String> {
        let names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<&String> = names.iter().filter(|(_, a)| a.contains(&ip)).map(|(n, _)| n).collect();
        found.sort();
        found.first().map(|n| n.to_string()).or_else(|| hosts_file_name(ip))
    }
}

/// The first name `/etc/hosts` gives `ip`.
fn hosts_file_name(ip: IpAddr) -> Option<String> {
    crate::dns::hosts_file().into_iter().find(|(a, _)| *a == ip).map(|(_, name)| name)
}

/// The name a DNS query asks for (its first question), when `payload` is one.
pub fn dns_question(payload: &[u8]) -> Option<String> {
    let questions = u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]);
    if questions == 0 || payload.get(2)? & 0x80 != 0 {
        return None; // no question, or a response
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *payload.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 || labels.len() > 127 {
            return None;
        }
        let label = payload.get(at + 1..at + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    let name = labels.join(".");
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))).then_some(name)
}

/// Where a traced call names a path: the string's argument, and the directory fd's argument for
/// `*at` calls.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    dirfd: Option<usize>,
    path: usize,
}

/// The paths a file call names and what it does with each: the traced calls of a learning run,
/// and the other calls the annotations guard takes that name a path (an fd-only call names none).
pub(super) fn named_paths(n: &Notification) -> Vec<(Access, At)> {
    use syscalls::Sysno;
    let plain = |path| At { dirfd: None, path };
    let at = |dirfd, path| At { dirfd: Some(dirfd), path };
    let open = |flags: u64| {
        let writes = flags & libc::O_ACCMODE as u64 != libc::O_RDONLY as u64
            || flags & (libc::O_CREAT | libc::O_TRUNC) as u64 != 0;
        if writes { Access::Write } else { Access::Read }
    };
    let Some(sys) = Sysno::new(n.nr as usize) else { return Vec::new() };
    let a = n.args;
    match sys.name() {
        "open" => vec![(open(a[1]), plain(0))],
        "openat" => vec![(open(a[2]), at(0, 1))],
        "creat" | "truncate" | "mkdir" | "unlink" | "rmdir" => vec![(Access::Write, plain(0))],
        "execve" => vec![(Access::Exec, plain(0))],
        "execveat" => vec![(Access::Exec, at(0, 1))],
        "mkdirat" | "unlinkat" => vec![(Access::Write, at(0, 1))],
        "rename" | "link" => vec![(Access::Write, plain(0)), (Access::Write, plain(1))],
        "renameat" | "renameat2" | "linkat" => vec![(Access::Write, at(0, 1)), (Access::Write, at(2, 3))],
        "symlink" => vec![(Access::Write, plain(1))],
        "symlinkat" => vec![(Access::Write, at(1, 2))],
        "chmod" | "chown" | "lchown" | "utime" | "utimes" | "mknod" | "setxattr" | "lsetxattr" | "removexattr"
        | "lremovexattr" => vec![(Access::Write, plain(0))],
        "fchmodat" | "fchmodat2" | "fchownat" | "futimesat" | "utimensat" | "mknodat" | "setxattrat"
        | "removexattrat" => vec![(Access::Write, at(0, 1))],
        _ => Vec::new(),
    }
}

/// The absolute path a call names, read from its memory: relative ones joined to the directory
/// fd or the working directory, `/proc/self` written with the caller's pid.
pub(super) fn resolve(n: &Notification, at: At) -> Option<PathBuf> {
    let path = absolute(n, at.dirfd, at.path)?;
    // Empty: AT_EMPTY_PATH, the fd itself, already open; relative: its directory is gone.
    path.starts_with('/').then(|| PathBuf::from(own_proc(&path, n.pid)))
}

/// The path with its symlinks and `..` resolved (as the supervisor sees the host: the server's
/// view names the same paths); a path that does not exist yet, through its directory.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent().and_then(|d| d.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Samples the server's tree (processes, open files, resident memory) until it is gone, and
/// records each new peak.
pub fn sample_peaks(tracer: Arc<Tracer>, root: u32) {
    let mut peak = (0u64, 0u64, 0u64);
    while let Some((processes, files, memory)) = tree_usage(root) {
        let next = (peak.0.max(processes), peak.1.max(files), peak.2.max(memory));
        // A new record only when a peak grew by a quarter: the draft doubles them anyway.
        if next.0 > peak.0 || next.1 > peak.1 + peak.1 / 4 || next.2 > peak.2 + peak.2 / 4 {
            tracer.peaks(next.0, next.1, next.2);
        }
        peak = next;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Processes in `root`'s tree, the most files one of them holds open, and their resident memory
/// together; `None` once `root` is gone.
fn tree_usage(root: u32) -> Option<(u64, u64, u64)> {
    std::fs::metadata(format!("/proc/{root}")).ok()?;
    let (mut processes, mut files, mut memory) = (0u64, 0u64, 0u64);
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        processes += 1;
        files = files.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
        memory += rss.and_then(|kb| kb.parse::<u64>().ok()).unwrap_or(0) * 1024;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    Some((processes, files, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_query_names_its_host() {
        // id, flags (RD), 1 question, then api.github.com A IN
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["api", "github", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(dns_question(&q).as_deref(), Some("api.github.com"));
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(dns_question(&response), None);
        assert_eq!(dns_question(&q[..14]), None, "cut short");
    }

    #[test]
    fn this_process_tree_is_sampled() {
        let (processes, files, memory) = tree_usage(std::process::id()).expect("we exist");
        assert!(processes >= 1 && files >= 3 && memory > 0);
    }
}
