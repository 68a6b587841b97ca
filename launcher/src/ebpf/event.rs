//! Ring-buffer records to audit events: decoding the `#[repr(C)]` structs, and the enrichment
//! the kernel side leaves to user space (parent pid, a stable exec id, names for numbers, and the
//! file-access verdict of the Landlock allow-list).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use mcp_warden_ebpf_common::{
    ExecEvent, ExitEvent, ForkEvent, Header, LsmEvent, NetEvent, OpenEvent, SocketEvent, SyscallEvent, hook, kind, op,
    verdict,
};
use serde_json::{Map, Value};

use crate::layers::landlock::FsAccess;

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

/// Turns raw records into JSON objects and keeps the counts the summary reports.
#[derive(Debug)]
pub struct EventDecoder {
    processes: ProcessTable,
    /// Realtime minus monotonic, to turn `bpf_ktime_get_ns` into wall-clock time.
    clock_offset_ns: i128,
    audit_mode: bool,
    /// The Landlock allow-list, to give each open a verdict.
    fs: Vec<(PathBuf, FsAccess)>,
    pub counts: BTreeMap<&'static str, u64>,
    pub denials: BTreeMap<&'static str, u64>,
    /// path hash -> (pid, path) of the first event of each folded open key.
    pub open_paths: HashMap<u64, String>,
    pub undecodable: u64,
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
            counts: BTreeMap::new(),
            denials: BTreeMap::new(),
            open_paths: HashMap::new(),
            undecodable: 0,
        }
    }

    pub fn timestamp(&self, ktime_ns: u64) -> String {
        rfc3339(self.clock_offset_ns + ktime_ns as i128)
    }

    /// Decodes one ring-buffer record; `None` for a record too short for its kind (counted).
    pub fn decode(&mut self, bytes: &[u8]) -> Option<Value> {
        let hdr: Header = read(bytes)?;
        let (name, mut detail) = match hdr.kind {
            kind::EXEC => {
                let e: ExecEvent = read(bytes)?;
                let argv: Vec<String> =
                    e.argv.iter().take((e.argc as usize).min(e.argv.len())).map(|a| cstr(a)).collect();
                let mut d = Map::new();
                d.insert("path".into(), cstr(&e.path).into());
                d.insert("argv".into(), argv.into());
                result(&mut d, e.ret);
                if e.ret == 0 {
                    let id = self.processes.exec(hdr.pid);
                    d.insert("new_exec_id".into(), id.into());
                }
                ("exec", d)
            }
            kind::FORK => {
                let e: ForkEvent = read(bytes)?;
                self.processes.fork(hdr.pid, e.child_pid);
                ("fork", Map::from_iter([("child".to_string(), Value::from(e.child_pid))]))
            }
            kind::EXIT => {
                let e: ExitEvent = read(bytes)?;
                let code = if e.code >= 0 { Value::from(e.code) } else { Value::Null };
                let signal = if e.signal > 0 { Value::from(e.signal) } else { Value::Null };
                ("exit", Map::from_iter([("code".to_string(), code), ("signal".to_string(), signal)]))
            }
            kind::OPEN => {
                let e: OpenEvent = read(bytes)?;
                let path = cstr(&e.path);
                self.open_paths.entry(e.path_hash).or_insert_with(|| path.clone());
                let mut d = Map::new();
                let verdict = self.open_verdict(&path, e.flags, e.ret);
                d.insert("path".into(), path.into());
                d.insert("flags".into(), open_flags(e.flags).into());
                result(&mut d, e.ret);
                if let Some(allowed) = verdict {
                    d.insert("verdict".into(), if allowed { "allow" } else { "deny" }.into());
                    if !allowed {
                        d.insert("enforced".into(), (!self.audit_mode).into());
                        self.deny("open");
                    }
                }
                ("open", d)
            }
            kind::NET => {
                let e: NetEvent = read(bytes)?;
                let name = match e.op {
                    op::CONNECT => "connect",
                    op::BIND => "bind",
                    _ => "send",
                };
                let addr = if e.family == libc::AF_INET as u32 {
                    Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]).to_string()
                } else {
                    Ipv6Addr::from(e.addr).to_string()
                };
                let mut d = Map::new();
                d.insert("addr".into(), addr.into());
                d.insert("port".into(), e.port.into());
                d.insert("proto".into(), proto(e.sock_type, e.protocol).into());
                d.insert("family".into(), if e.family == libc::AF_INET as u32 { "inet" } else { "inet6" }.into());
                result(&mut d, e.ret);
                self.verdict(&mut d, e.verdict, name);
                (name, d)
            }
            kind::SYSCALL => {
                let e: SyscallEvent = read(bytes)?;
                let mut d = Map::new();
                let name = syscalls::Sysno::new(e.nr as usize)
                    .map_or_else(|| format!("syscall_{}", e.nr), |s| s.name().into());
                d.insert("name".into(), name.into());
                d.insert("nr".into(), e.nr.into());
                result(&mut d, e.ret);
                self.verdict(&mut d, e.verdict, "syscall");
                ("syscall", d)
            }
            kind::SOCKET => {
                let e: SocketEvent = read(bytes)?;
                let mut d = Map::new();
                d.insert("family".into(), e.family.into());
                d.insert("type".into(), e.sock_type.into());
                d.insert("protocol".into(), e.protocol.into());
                self.verdict(&mut d, e.verdict, "socket");
                ("socket", d)
            }
            kind::LSM => {
                let e: LsmEvent = read(bytes)?;
                let name = match e.hook {
                    hook::PTRACE_ACCESS_CHECK => "ptrace_access_check",
                    hook::TASK_KILL => "task_kill",
                    hook::SOCKET_CONNECT => "socket_connect",
                    _ => "bprm_check_security",
                };
                let mut d = Map::new();
                d.insert("hook".into(), name.into());
                self.verdict(&mut d, e.verdict, "lsm");
                ("lsm", d)
            }
            _ => {
                self.undecodable += 1;
                return None;
            }
        };
        *self.counts.entry(name).or_default() += 1;
        let mut record = Map::new();
        record.insert("ts".into(), self.timestamp(hdr.ktime_ns).into());
        record.insert("kind".into(), name.into());
        record.insert("pid".into(), hdr.pid.into());
        record.insert("ppid".into(), self.processes.ppid.get(&hdr.pid).copied().map_or(Value::Null, Value::from));
        record.insert("tid".into(), hdr.tid.into());
        record.insert("comm".into(), cstr(&hdr.comm).into());
        record.insert("uid".into(), hdr.uid.into());
        record.insert("cgroup_id".into(), hdr.cgroup_id.into());
        let exec_id = match name {
            "exec" => detail.remove("new_exec_id").unwrap_or_else(|| self.exec_id(hdr.pid)),
            _ => self.exec_id(hdr.pid),
        };
        record.insert("exec_id".into(), exec_id);
        record.append(&mut detail);
        Some(Value::Object(record))
    }

    fn exec_id(&self, pid: u32) -> Value {
        self.processes.exec_id.get(&pid).copied().map_or(Value::Null, Value::from)
    }

    fn deny(&mut self, what: &'static str) {
        *self.denials.entry(what).or_default() += 1;
    }

    fn verdict(&mut self, d: &mut Map<String, Value>, v: u32, what: &'static str) {
        let deny = v == verdict::DENY;
        d.insert("verdict".into(), if deny { "deny" } else { "allow" }.into());
        if deny {
            d.insert("enforced".into(), (!self.audit_mode).into());
            self.deny(what);
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
        if ret == -(libc::ENOENT as i64) && !self.audit_mode {
            // Landlock checks rights on what exists: a missing file is not a Landlock denial.
            return Some(true);
        }
        let resolved = resolve(p);
        let wants = open_access(flags);
        Some(self.fs.iter().any(|(dir, access)| resolved.starts_with(dir) && access.covers(wants)))
    }
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

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn result(d: &mut Map<String, Value>, ret: i64) {
    if ret < 0 {
        let errno = nix::errno::Errno::from_raw(-ret as i32);
        d.insert("result".into(), "error".into());
        d.insert("errno".into(), format!("{errno:?}").into());
    } else {
        d.insert("result".into(), ret.into());
    }
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

/// RFC 3339 UTC timestamp with nanoseconds, from nanoseconds since the epoch.
pub fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_732_440_000_123_456_789), "2024-11-24T09:20:00.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn open_flags_and_access_are_decoded() {
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC) as u32;
        assert_eq!(open_flags(f), vec!["O_WRONLY", "O_CREAT", "O_CLOEXEC"]);
        assert_eq!(open_access(f), FsAccess { read: false, write: true, exec: false });
        assert_eq!(open_access(libc::O_RDONLY as u32), FsAccess::READ);
    }
}
