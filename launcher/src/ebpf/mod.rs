//! The eBPF layer: loads the probes before the server starts, filtered on the server's cgroup,
//! enforces the network allow-list with cgroup socket programs, and turns ring-buffer events into
//! the JSON-lines audit log (with a final summary record).
//!
//! Lifecycle: `Monitor::load` (supervisor, before the fork: fallible work, fails closed) ->
//! `Monitor::start` (after the fork: a reader thread) -> `Monitor::finish` (after the server
//! ended: drain, summary, detach by dropping).

mod event;
pub mod lsm_probe;
mod refused;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::audit::AuditLog;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use mcp_warden_ebpf_common::{MAX_RULES, NetRule, OpenKey, counter};

pub use event::{EventDecoder, ProcessTable, rfc3339};

/// The probe object, built by `build.rs` for the BPF target.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mcp-warden-probes"));

const TRACEFS: &str = "/sys/kernel/tracing";

/// What the monitor is told to do.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The server's cgroup v2 directory (its id filters every tracepoint program).
    pub cgroup_dir: PathBuf,
    pub audit_mode: bool,
    pub rules: Vec<NetRule>,
    pub allow_raw_sockets: bool,
    /// Bytes of the ring buffer (a power of two).
    pub ring_bytes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("failed to {action}: {source}")]
    Io { action: String, source: std::io::Error },
    #[error("failed to load the eBPF probes: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("failed to {action} eBPF program `{program}`: {}", verifier_tail(source))]
    Program { action: &'static str, program: &'static str, source: aya::programs::ProgramError },
    #[error("failed to set up eBPF map `{map}`: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
    #[error("eBPF map `{0}` is missing from the probe object")]
    MissingMap(&'static str),
    #[error("too many network rules: {0} (at most {MAX_RULES})")]
    TooManyRules(usize),
}

/// Why the optional BPF LSM hooks are not loaded. Not a failure of the run: the message is the
/// `reason` of the summary record's `"lsm": {"loaded": false, ...}`.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    /// The server has not run yet ([`Monitor::attach_lsm`] is called once it does).
    #[error("not attempted")]
    NotAttempted,
    /// LSM programs are loaded against the kernel's BTF, which `/sys/kernel/btf/vmlinux` lacks.
    #[error("no kernel BTF: {0}")]
    NoBtf(aya::BtfError),
    #[error("program {program} missing from the probe object")]
    MissingProgram { program: &'static str },
    /// The kernel refused the program (its verifier log's tail, or `EPERM` where BPF LSM is off).
    #[error("{hook}: {}", verifier_tail(source))]
    Load { hook: &'static str, source: aya::programs::ProgramError },
    #[error("{hook}: attach: {source}")]
    Attach { hook: &'static str, source: aya::programs::ProgramError },
    /// This boot's kernel refused them before (see `lsm_probe`).
    #[error("{0} (remembered for this boot; `mcp-warden doctor` makes the next run try again)")]
    Remembered(String),
}

impl crate::error::Diagnose for LsmError {
    fn hint(&self) -> Option<String> {
        match self {
            LsmError::NoBtf(_) | LsmError::Load { .. } | LsmError::Attach { .. } | LsmError::Remembered(_) => Some(
                "optional layer: it needs `bpf` in the kernel's active LSM list (the lsm= boot parameter); \
                 `mcp-warden doctor` reports whether LSM programs load"
                    .into(),
            ),
            LsmError::NotAttempted | LsmError::MissingProgram { .. } => None,
        }
    }
}

/// Loaded and attached probes. Dropping it detaches everything (links are owned by `ebpf`).
pub struct Monitor {
    ebpf: Ebpf,
    ring: Option<RingBuf<aya::maps::MapData>>,
    cgroup_id: u64,
    /// The optional BPF LSM layer: loaded, or why not.
    lsm: Result<(), LsmError>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("cgroup_id", &self.cgroup_id).finish_non_exhaustive()
    }
}

/// A load failure carries the whole verifier log; its last lines say what was rejected.
fn verifier_tail(e: &aya::programs::ProgramError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 8 {
        return text;
    }
    format!("{} [...] {}", lines[0], lines[lines.len() - 6..].join(" | "))
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> MonitorError {
    let action = action.into();
    move |source| MonitorError::Io { action, source }
}

impl Monitor {
    /// Loads every program with this server's constants and attaches them. Nothing runs for the
    /// server yet: it joins the cgroup later, in stage 2.
    pub fn load(cfg: &MonitorConfig) -> Result<Monitor, MonitorError> {
        use std::os::unix::fs::MetadataExt;
        if cfg.rules.len() > MAX_RULES as usize {
            return Err(MonitorError::TooManyRules(cfg.rules.len()));
        }
        // The cgroup id bpf_get_current_cgroup_id() returns is the cgroup directory's inode.
        let cgroup_id =
            std::fs::metadata(&cfg.cgroup_dir).map_err(io(format!("stat {}", cfg.cgroup_dir.display())))?.ino();
        ensure_tracefs()?;
        let fork_child_offset = tracepoint_field_offset("sched", "sched_process_fork", "child_pid")?;

        let audit = u32::from(cfg.audit_mode);
        let rule_count = cfg.rules.len() as u32;
        let allow_raw = u32::from(cfg.allow_raw_sockets);
        // The probes use fixed tracepoint layouts, no CO-RE relocations: skip parsing the kernel's
        // BTF (megabytes) on every start.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global("CGROUP_ID", &cgroup_id, true)
            .override_global("AUDIT", &audit, true)
            .override_global("RULE_COUNT", &rule_count, true)
            .override_global("ALLOW_RAW", &allow_raw, true)
            .override_global("FORK_CHILD_OFFSET", &fork_child_offset, true)
            .map_max_entries("EVENTS", cfg.ring_bytes)
            .load(PROBES)?;

        {
            let map = ebpf.map_mut("RULES").ok_or(MonitorError::MissingMap("RULES"))?;
            let mut rules: Array<&mut MapData, NetRule> =
                Array::try_from(map).map_err(|source| MonitorError::Map { map: "RULES", source })?;
            for (i, r) in cfg.rules.iter().enumerate() {
                rules.set(i as u32, r, 0).map_err(|source| MonitorError::Map { map: "RULES", source })?;
            }
        }
        for name in ["sys_enter", "sys_exit", "signal_generate"] {
            let p: &mut RawTracePoint = program(&mut ebpf, name)?;
            p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
            p.attach(name).map_err(|source| MonitorError::Program { action: "attach", program: name, source })?;
        }
        for name in ["sched_process_fork", "sched_process_exit"] {
            let p: &mut TracePoint = program(&mut ebpf, name)?;
            p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
            p.attach("sched", name).map_err(|source| MonitorError::Program {
                action: "attach",
                program: name,
                source,
            })?;
        }
        let cgroup = std::fs::File::open(&cfg.cgroup_dir).map_err(io(format!("open {}", cfg.cgroup_dir.display())))?;
        for name in ["connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6"] {
            let p: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
            p.attach(&cgroup, CgroupAttachMode::Single).map_err(|source| MonitorError::Program {
                action: "attach",
                program: name,
                source,
            })?;
        }
        let p: &mut CgroupSock = program(&mut ebpf, "sock_create")?;
        p.load().map_err(|source| MonitorError::Program { action: "load", program: "sock_create", source })?;
        p.attach(&cgroup, CgroupAttachMode::Single).map_err(|source| MonitorError::Program {
            action: "attach",
            program: "sock_create",
            source,
        })?;

        let ring = ebpf.take_map("EVENTS").ok_or(MonitorError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(ring).map_err(|source| MonitorError::Map { map: "EVENTS", source })?;
        Ok(Monitor { ebpf, ring: Some(ring), cgroup_id, lsm: Err(LsmError::NotAttempted) })
    }

    /// Tries the optional BPF LSM hooks. Called once the server runs: parsing the kernel's BTF
    /// for them costs tens of milliseconds, which the server's start should not wait for, and
    /// nothing depends on them (they add to seccomp, Landlock and the socket programs).
    pub fn attach_lsm(&mut self) {
        self.lsm = attach_lsm(&mut self.ebpf);
        if let Err(why) = &self.lsm {
            tracing::debug!("BPF LSM hooks not loaded: {why}");
        }
    }

    /// Whether the optional BPF LSM hooks are loaded, or why not.
    pub fn lsm(&self) -> &Result<(), LsmError> {
        &self.lsm
    }

    pub fn cgroup_id(&self) -> u64 {
        self.cgroup_id
    }

    /// Starts reading events into `log` on a thread of its own (call after the fork).
    pub fn start(&mut self, mut decoder: EventDecoder, mut log: AuditLog) -> Result<Reader, MonitorError> {
        let mut ring = self.ring.take().ok_or(MonitorError::MissingMap("EVENTS"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        // Writing to `wake` makes the reader's poll return at once when it is told to stop.
        let (wake_read, wake) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| MonitorError::Io { action: "create the reader's wake-up pipe".into(), source: e.into() })?;
        let handle = std::thread::Builder::new()
            .name("mcp-warden-audit".into())
            .spawn(move || {
                loop {
                    let stopping = stop_flag.load(Ordering::Acquire);
                    while let Some(item) = ring.next() {
                        if let Some(record) = decoder.decode(&item) {
                            log.write(&record);
                        }
                    }
                    if stopping {
                        break;
                    }
                    wait_readable(ring.as_fd(), wake_read.as_fd());
                }
                (decoder, log)
            })
            .map_err(io("spawn the audit reader thread"))?;
        Ok(Reader { stop, wake, handle })
    }

    /// Detaches everything once this process is gone, in a child that holds the last references
    /// (`sys::close_after_exit`): detaching tracepoint programs waits for RCU grace periods (about
    /// 200 ms here), which the launcher's exit status need not wait for. If the child cannot be
    /// forked, detaches here.
    pub fn detach_after_exit(self) {
        match crate::sys::close_after_exit() {
            Ok(()) => std::mem::forget(self),
            Err(e) => {
                tracing::debug!("detaching in the foreground: cannot fork the detaching child: {e}");
                drop(self);
            }
        }
    }

    /// Reads the in-kernel counters: drops, folded opens, per-process syscall counts, repeats.
    pub fn counters(&self) -> KernelCounters {
        let mut out = KernelCounters::default();
        if let Some(map) = self.ebpf.map("COUNTERS")
            && let Ok(counters) = PerCpuArray::<&MapData, u64>::try_from(map)
        {
            let sum = |i: u32| counters.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
            out.dropped = sum(counter::DROPPED);
            out.opens_folded = sum(counter::OPENS_FOLDED);
            out.lsm_file_opens = sum(counter::LSM_FILE_OPENS);
        }
        if let Some(map) = self.ebpf.map("SYSCALLS")
            && let Ok(calls) = PerCpuHashMap::<&MapData, u64, u64>::try_from(map)
        {
            for (key, values) in calls.iter().flatten() {
                let total: u64 = values.iter().sum();
                out.syscalls.push(((key >> 32) as u32, key as u32, total));
            }
        }
        if let Some(map) = self.ebpf.map("OPENS_SEEN")
            && let Ok(seen) = BpfHashMap::<&MapData, OpenKey, u64>::try_from(map)
        {
            for (key, count) in seen.iter().flatten() {
                if count > 1 {
                    out.repeated_opens.push((key, count));
                }
            }
        }
        out
    }
}

/// The BPF LSM hooks, loaded only where the kernel lets BPF LSM programs load (it refuses them on
/// kernels without `bpf` in the active LSM list, and on some hosts even with it). All or nothing:
/// a partial set is unloaded again and reported.
const LSM_HOOKS: [(&str, &str); 5] = [
    ("lsm_ptrace_access_check", "ptrace_access_check"),
    ("lsm_task_kill", "task_kill"),
    ("lsm_socket_connect", "socket_connect"),
    ("lsm_bprm_check_security", "bprm_check_security"),
    ("lsm_file_open", "file_open"),
];

fn attach_lsm(ebpf: &mut Ebpf) -> Result<(), LsmError> {
    if let Some(why) = lsm_probe::known_refusal() {
        return Err(LsmError::Remembered(why));
    }
    let result = try_attach_lsm(ebpf);
    if let Err(e @ LsmError::Load { .. }) = &result {
        lsm_probe::remember_refusal(&e.to_string());
    }
    result
}

fn try_attach_lsm(ebpf: &mut Ebpf) -> Result<(), LsmError> {
    let btf = aya::Btf::from_sys_fs().map_err(LsmError::NoBtf)?;
    let mut attached = Vec::new();
    let result = (|| {
        for (program, hook) in LSM_HOOKS {
            let p: &mut aya::programs::Lsm = match ebpf.program_mut(program).map(TryInto::try_into) {
                Some(Ok(p)) => p,
                _ => return Err(LsmError::MissingProgram { program }),
            };
            p.load(hook, &btf).map_err(|source| LsmError::Load { hook, source })?;
            let link = p.attach().map_err(|source| LsmError::Attach { hook, source })?;
            attached.push((program, link));
        }
        Ok(())
    })();
    if result.is_err() {
        for (program, link) in attached {
            if let Some(Ok(p)) = ebpf.program_mut(program).map(TryInto::<&mut aya::programs::Lsm>::try_into) {
                let _ = p.detach(link);
            }
        }
    }
    result
}

/// Counters read from the kernel maps at the end.
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub dropped: u64,
    pub opens_folded: u64,
    pub lsm_file_opens: u64,
    /// (tgid, syscall nr, calls)
    pub syscalls: Vec<(u32, u32, u64)>,
    /// Open keys seen more than once, with their count.
    pub repeated_opens: Vec<(OpenKey, u64)>,
}

/// The running reader thread.
#[derive(Debug)]
pub struct Reader {
    stop: Arc<AtomicBool>,
    wake: std::os::fd::OwnedFd,
    handle: JoinHandle<(EventDecoder, AuditLog)>,
}

impl Reader {
    /// Drains what is left and returns the decoder and log for the summary.
    pub fn stop(self) -> (EventDecoder, AuditLog) {
        self.stop.store(true, Ordering::Release);
        let _ = nix::unistd::write(&self.wake, b"x");
        self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// Waits until the ring buffer has data or the supervisor asks the reader to stop.
fn wait_readable(ring: std::os::fd::BorrowedFd<'_>, wake: std::os::fd::BorrowedFd<'_>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(ring, PollFlags::POLLIN), PollFd::new(wake, PollFlags::POLLIN)];
    let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, MonitorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(MonitorError::Program {
        action: "find",
        program: name,
        source: aya::programs::ProgramError::UnexpectedProgramType,
    })?;
    p.try_into().map_err(|source| MonitorError::Program { action: "convert", program: name, source })
}

/// Classic tracepoints are attached through tracefs: mount it where the kernel documents it if
/// nobody has.
fn ensure_tracefs() -> Result<(), MonitorError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    nix::mount::mount(Some("tracefs"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| MonitorError::Io { action: format!("mount tracefs on {TRACEFS}"), source: e.into() })
}

/// Offset of `field` in a tracepoint record, from its format file (it differs between kernels).
fn tracepoint_field_offset(category: &str, name: &str, field: &str) -> Result<u32, MonitorError> {
    let path = format!("{TRACEFS}/events/{category}/{name}/format");
    let text = std::fs::read_to_string(&path).map_err(io(format!("read {path}")))?;
    text.lines()
        .find(|l| l.contains(&format!(" {field};")))
        .and_then(|l| l.split("offset:").nth(1))
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| MonitorError::Io {
            action: format!("find {field} in {path}"),
            source: std::io::Error::other("field not in the tracepoint format"),
        })
}
