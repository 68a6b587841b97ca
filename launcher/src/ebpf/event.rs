//! Ring-buffer records to audit events: decoding the `#[repr(C)]` structs, and the enrichment
//! the kernel side leaves to user space (parent pid, a stable exec id, names for numbers, and the
//! file-access verdict of the Landlock allow-list).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use mcp_warden_ebpf_common::{
    ExecEvent, ExitEvent, ForkEvent, Header, LsmEvent, NO_RESULT, NetEvent, OpenEvent, RefusedEvent, SocketEvent, hook,
    kind, op, verdict,
};

use crate::audit::record::{
    AuditRecord, CallResult, Caller, Deny, Exec, Exit, Family, Fork, Lsm, LsmHook, Net, Open, Socket, Task, Verdict,
};
use crate::audit::{AuditLine, Timestamp};
use crate::layers::landlock::FsAccess;

/// Kept here for `crate::ebpf::rfc3339`: the audit log's timestamps.
pub use crate::audit::rfc3339;

/// Parent and exec id of every process seen.
#[derive(Debug, Default)]
pub struct ProcessTable {
    ppid: HashMap<u32, u32>,
    exec_id: HashMap<u32, u64>,
    next_exec_id: u64,
}

impl ProcessTable {
    /// `root` is the first process of the server (stage 2), whose parent is the supervisor.
    pub fn new(root: u32, supervisor: u32) -> Self {
        let mut t = ProcessTable { next_exec_id: 1, ..Default::default() };
        t.ppid.insert(root, supervisor);
        t.exec_id.insert(root, 0);
        t
    }

    fn fork(&mut self, parent: u32, child: u32) {
        self.ppid.insert(child, parent);
        let inherited = self.exec_id.get(&parent).copied().unwrap_or(0);
        self.exec_id.insert(child, inherited);
    }

    fn exec(&mut self, pid: u32) -> u64 {
        let id = self.next_exec_id;
        self.next_exec_id += 1;
        self.exec_id.insert(pid, id);
        id
    }
}

/// Turns raw records into audit records and keeps the counts the summary reports.
#[derive(Debug)]
pub struct EventDecoder {
    processes: ProcessTable,
    /// Realtime minus monotonic, to turn `bpf_ktime_get_ns` into wall-clock time.
    clock_offset_ns: i128,
    audit_mode: bool,
    /// The Landlock allow-list, to give each open a verdict.
    fs: Vec<(PathBuf, FsAccess)>,
    /// The network broker answers the server's connects: their refusals are its records.
    broker: bool,
    /// The server's root is the hidden root: a path outside every grant is absent (ENOENT).
    hidden: bool,
    pub counts: BTreeMap<&'static str, u64>,
    pub denials: BTreeMap<&'static str, u64>,
    /// path hash -> (pid, path) of the first event of each folded open key.
    pub open_paths: HashMap<u64, String>,
    pub undecodable: u64,
}

/// The cgroup id in a ring-buffer record's header.
pub fn cgroup_of(bytes: &[u8]) -> Option<u64> {
    read::<Header>(bytes).map(|h| h.cgroup_id)
}

impl EventDecoder {
    pub fn new(processes: ProcessTable, audit_mode: bool, fs: Vec<(PathBuf, FsAccess)>) -> Self {
        let now_real = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).ok();
        let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok();
        let ns = |t: nix::sys::time::TimeSpec| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128;
        let clock_offset_ns = match (now_real, now_mono) {
            (Some(r), Some(m)) => ns(r) - ns(m),
            _ => 0,
        };
        EventDecoder {
            processes,
            clock_offset_ns,
            audit_mode,
            fs,
            broker: false,
            hidden: false,
            counts: BTreeMap::new(),
            denials: BTreeMap::new(),
            open_paths: HashMap::new(),
            undecodable: 0,
        }
    }

    /// The network broker runs: a refused `connect` was answered by it (and recorded by it), not
    /// refused by Landlock.
    pub fn with_broker(mut self, broker: bool) -> Self {
        self.broker = broker;
        self
    }

    /// The server runs in the hidden root (fs-hide): `ENOENT` outside every grant is a refusal.
    pub fn with_hidden_root(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    pub fn timestamp(&self, ktime_ns: u64) -> Timestamp {
        Timestamp::from_unix_nanos(self.clock_offset_ns + ktime_ns as i128)
    }

    /// Decodes one ring-buffer record; `None` for a record too short for its kind or of a kind
    /// this launcher does not know (counted).
    pub fn decode(&mut self, bytes: &[u8]) -> Option<AuditLine> {
        if let Some(hdr) = read::<Header>(bytes).filter(|h| h.kind == kind::REFUSED)
            && let Some(e) = read::<RefusedEvent>(bytes)
        {
            // A call its file's own permissions refused is not a sandbox refusal: no record.
            let record = self.refused(&hdr, &e)?;
            *self.counts.entry(record.kind()).or_default() += 1;
            return Some(AuditLine { ts: self.timestamp(hdr.ktime_ns), record });
        }
        let record = read::<Header>(bytes).and_then(|hdr| Some((hdr, self.record(&hdr, bytes)?)));
        let Some((hdr, record)) = record else {
            self.undecodable += 1;
            return None;
        };
        *self.counts.entry(record.kind()).or_default() += 1;
        Some(AuditLine { ts: self.timestamp(hdr.ktime_ns), record })
    }

    /// The record of each kind. The process table is updated first (a fork's child, an exec's new
    /// image), so that the task fields describe the process as it is after the event.
    fn record(&mut self, hdr: &Header, bytes: &[u8]) -> Option<AuditRecord> {
        Some(match hdr.kind {
            kind::EXEC => {
                let e: ExecEvent = read(bytes)?;
                if e.ret == 0 {
                    self.processes.exec(hdr.pid);
                }
                // A cut argument ends with an ellipsis.
                let argv = e
                    .argv
                    .iter()
                    .take((e.argc as usize).min(e.argv.len()))
                    .enumerate()
                    .map(|(i, a)| if e.truncated & (1 << i) != 0 { format!("{}…", cstr(a)) } else { cstr(a) })
                    .collect();
                AuditRecord::Exec(Exec {
                    task: self.task(hdr),
                    path: cstr(&e.path),
                    argv,
                    result: CallResult::from_ret(e.ret),
                })
            }
            kind::FORK => {
                let e: ForkEvent = read(bytes)?;
                self.processes.fork(hdr.pid, e.child_pid);
                AuditRecord::Fork(Fork { task: self.task(hdr), child: e.child_pid })
            }
            kind::EXIT => {
                let e: ExitEvent = read(bytes)?;
                let (code, signal) = ((e.code >= 0).then_some(e.code), (e.signal > 0).then_some(e.signal));
                AuditRecord::Exit(Exit { task: self.task(hdr), code, signal })
            }
            kind::OPEN => self.open(hdr, &read(bytes)?),
            kind::NET => self.net(hdr, &read(bytes)?),
            kind::SOCKET => {
                let e: SocketEvent = read(bytes)?;
                let verdict = self.verdict(e.verdict, "socket");
                AuditRecord::Socket(Socket {
                    task: self.task(hdr),
                    family: e.family,
                    sock_type: e.sock_type,
                    protocol: e.protocol,
                    verdict,
                })
            }
            kind::LSM => {
                let e: LsmEvent = read(bytes)?;
                let hook = match e.hook {
                    hook::PTRACE_ACCESS_CHECK => LsmHook::PtraceAccessCheck,
                    hook::TASK_KILL => LsmHook::TaskKill,
                    hook::SOCKET_CONNECT => LsmHook::SocketConnect,
                    _ => LsmHook::BprmCheckSecurity,
                };
                let verdict = self.verdict(e.verdict, "lsm");
                AuditRecord::Lsm(Lsm { task: self.task(hdr), hook, verdict })
            }
            _ => return None,
        })
    }

    /// A refused file, port or signal call, attributed to the layer that refused it.
    fn refused(&mut self, hdr: &Header, e: &RefusedEvent) -> Option<AuditRecord> {
        if self.broker && i64::from(e.nr) == libc::SYS_connect {
            return None;
        }
        let base = relative_base(hdr.pid, e);
        let judge = super::refused::Judge { grants: &self.fs, hidden: self.hidden, base: base.as_deref() };
        let a = super::refused::attribute(e, &judge)?;
        self.deny(a.layer.name());
        let task = self.task(hdr);
        let caller =
            Caller { pid: Some(task.pid), ppid: task.ppid, tid: task.tid, comm: task.comm, uid: Some(task.uid) };
        let errno = nix::errno::Errno::from_raw(-e.ret as i32);
        Some(AuditRecord::Deny(Deny {
            caller,
            layer: a.layer,
            syscall: a.syscall,
            nr: e.nr,
            args: a.args,
            path: a.path,
            reason: a.reason,
            errno: Some(format!("{errno:?}")),
            verdict: Verdict::Deny { enforced: true },
        }))
    }

    fn open(&mut self, hdr: &Header, e: &OpenEvent) -> AuditRecord {
        let path = cstr(&e.path);
        self.open_paths.entry(e.path_hash).or_insert_with(|| path.clone());
        let verdict = self.open_verdict(&path, e.flags, e.ret).map(|allowed| {
            if allowed {
                Verdict::Allow
            } else {
                self.deny("open");
                Verdict::Deny { enforced: !self.audit_mode }
            }
        });
        AuditRecord::Open(Open {
            task: self.task(hdr),
            path,
            flags: open_flags(e.flags),
            result: CallResult::from_ret(e.ret),
            verdict,
        })
    }

    fn net(&mut self, hdr: &Header, e: &NetEvent) -> AuditRecord {
        let inet = e.family == libc::AF_INET as u32;
        let addr = if inet {
            Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]).to_string()
        } else {
            Ipv6Addr::from(e.addr).to_string()
        };
        let (name, wrap): (&'static str, fn(Net) -> AuditRecord) = match e.op {
            op::CONNECT => ("connect", AuditRecord::Connect),
            op::BIND => ("bind", AuditRecord::Bind),
            _ => ("send", AuditRecord::Send),
        };
        let verdict = self.verdict(e.verdict, name);
        wrap(Net {
            task: self.task(hdr),
            addr,
            port: e.port,
            proto: proto(e.sock_type, e.protocol),
            family: if inet { Family::Inet } else { Family::Inet6 },
            result: (e.ret != NO_RESULT).then(|| CallResult::from_ret(e.ret)),
            verdict,
        })
    }

    /// The fields every event carries: who made the call.
    fn task(&self, hdr: &Header) -> Task {
        Task {
            pid: hdr.pid,
            ppid: self.processes.ppid.get(&hdr.pid).copied(),
            tid: hdr.tid,
            comm: cstr(&hdr.comm),
            uid: hdr.uid,
            cgroup_id: hdr.cgroup_id,
            exec_id: self.processes.exec_id.get(&hdr.pid).copied(),
        }
    }

    fn deny(&mut self, what: &'static str) {
        *self.denials.entry(what).or_default() += 1;
    }

    /// A kernel verdict; a denial is counted under `what`.
    fn verdict(&mut self, v: u32, what: &'static str) -> Verdict {
        if v == verdict::DENY {
            self.deny(what);
            Verdict::Deny { enforced: !self.audit_mode }
        } else {
            Verdict::Allow
        }
    }

    /// The Landlock verdict of an open: `Some(true)` allowed, `Some(false)` denied, `None` when it
    /// cannot be judged (a path relative to a directory fd). With Landlock enforcing, a successful
    /// open was allowed by definition; otherwise the path is resolved (the grants are canonical
    /// paths) and matched against the allow-list.
    fn open_verdict(&self, path: &str, flags: u32, ret: i64) -> Option<bool> {
        if ret >= 0 && !self.audit_mode {
            return Some(true);
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return None;
        }
        if ret == -(libc::ENOENT as i64) && !self.audit_mode && !self.hidden {
            // Landlock checks rights on what exists: a missing file is not a Landlock denial.
            // (Under the hidden root, a path outside the grants is missing because it is hidden.)
            return Some(true);
        }
        let resolved = resolve(p);
        let wants = open_access(flags);
        Some(self.fs.iter().any(|(dir, access)| resolved.starts_with(dir) && access.covers(wants)))
    }
}

/// Where a refused call's relative path starts: its `*at` directory, or the caller's working
/// directory, as /proc shows them now (the process may have moved on or gone: then unknown).
fn relative_base(pid: u32, e: &RefusedEvent) -> Option<PathBuf> {
    let path = e.path.split(|b| *b == 0).next().unwrap_or_default();
    if path.is_empty() || path.first() == Some(&b'/') {
        return None;
    }
    let link = match e.fd {
        fd if fd >= 0 => format!("/proc/{pid}/fd/{fd}"),
        _ => format!("/proc/{pid}/cwd"),
    };
    std::fs::read_link(link).ok()
}

fn read<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    crate::sys::read_pod(bytes)
}

/// The canonical form of `p`, or of its deepest existing ancestor joined with the rest.
fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) if parent != p => resolve(parent).join(name),
        _ => p.to_path_buf(),
    }
}

pub(super) fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn proto(sock_type: u32, protocol: u32) -> String {
    match (sock_type, protocol) {
        (1, _) => "tcp".into(),
        (2, _) => "udp".into(),
        (3, p) => format!("raw/{p}"),
        (t, p) => format!("type{t}/{p}"),
    }
}

fn open_access(flags: u32) -> FsAccess {
    let acc = flags as i32 & libc::O_ACCMODE;
    let write = acc == libc::O_WRONLY || acc == libc::O_RDWR || flags as i32 & (libc::O_CREAT | libc::O_TRUNC) != 0;
    FsAccess { read: acc != libc::O_WRONLY, write, exec: false }
}

fn open_flags(flags: u32) -> Vec<&'static str> {
    let f = flags as i32;
    let mut out = vec![match f & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    }];
    for (bit, name) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_PATH, "O_PATH"),
        (libc::O_TMPFILE & !libc::O_DIRECTORY, "O_TMPFILE"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
    ] {
        if f & bit == bit {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_and_access_are_decoded() {
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC) as u32;
        assert_eq!(open_flags(f), vec!["O_WRONLY", "O_CREAT", "O_CLOEXEC"]);
        assert_eq!(open_access(f), FsAccess { read: false, write: true, exec: false });
        assert_eq!(open_access(libc::O_RDONLY as u32), FsAccess::READ);
    }
}
