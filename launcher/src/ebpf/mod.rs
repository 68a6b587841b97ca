//! The eBPF layer: the probes shared by every monitored server of the host (`shared`), this
//! server's entries in their maps and its ring buffer, the cgroup socket programs that enforce
//! its network allow-list, and the reader that turns ring-buffer events into the JSON-lines audit
//! log (with a final summary record).
//!
//! Lifecycle: `Monitor::load` (supervisor, before the fork: fallible work, fails closed) ->
//! `Monitor::start` (after the fork: a reader thread) -> `Monitor::release` (after the server
//! ended and the summary is written: entries removed, hold on the shared probes dropped).

mod btf;
mod event;
pub mod lsm_probe;
mod refused;
mod shared;

pub use shared::unload_unused;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::audit::AuditLog;

use aya::Ebpf;
use aya::maps::{Map, MapData, PerCpuValues, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, CgroupSockAddrAttachType,
    CgroupSockAttachType,
};
use mcp_warden_ebpf_common::{Counters, DNS_SLOTS, MAX_RULES, NetRule, OpenKey, RuleKey, Server, counter, level};

pub use event::{EventDecoder, ProcessTable, rfc3339};
use shared::Shared;

/// The probe object, built by `build.rs` for the BPF target.
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mcp-warden-probes"));

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
    /// `full`: also every open, failed exec, syscall counts and file refusals, at the price of
    /// the per-syscall tracepoints (every process of the host pays while a `full` server runs).
    pub full: bool,
    /// The ports of mcp-warden's resolver on the loopback, one per slot, or all 0: the socket
    /// programs send the server's DNS there.
    pub dns_ports: [u16; DNS_SLOTS],
    /// The mark the server's packets to those ports carry, or 0.
    pub dns_mark: u32,
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
    #[error("pin {program}: {reason}")]
    Pin { program: &'static str, reason: String },
    /// This boot's kernel refused them before (see `lsm_probe`).
    #[error("{0} (remembered for this boot; `mcp-warden doctor` makes the next run try again)")]
    Remembered(String),
}

impl crate::error::Diagnose for LsmError {
    fn hint(&self) -> Option<String> {
        match self {
            LsmError::NoBtf(_) | LsmError::Load { .. } | LsmError::Remembered(_) => Some(
                "optional layer: it needs `bpf` in the kernel's active LSM list (the lsm= boot parameter); \
                 `mcp-warden doctor` reports whether LSM programs load"
                    .into(),
            ),
            LsmError::NotAttempted | LsmError::MissingProgram { .. } | LsmError::Pin { .. } => None,
        }
    }
}

/// This server's part of the eBPF layer: its entries in the shared maps, its ring buffer and its
/// cgroup programs (attached while the programs live; dropped after exit).
pub struct Monitor {
    shared: Shared,
    /// A new ring buffer until it is in `RINGS` (`insert_ring`): inserting waits for an RCU grace
    /// period, which the launcher overlaps with stage 2's work where it can.
    pending_ring: Option<(u32, MapData)>,
    ring: Option<RingBuf<MapData>>,
    cgroup_id: u64,
    /// `--monitor-level full`.
    full: bool,
    /// The server's cgroup v2 directory.
    cgroup_dir: PathBuf,
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

fn map_error(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> MonitorError {
    move |source| MonitorError::Map { map, source }
}

impl Monitor {
    /// Takes a hold on the host's shared probes (loading them if this is the first launcher),
    /// writes this server's settings, rules and ring buffer under its cgroup id, and attaches the
    /// socket programs to its cgroup. Nothing runs for the server yet: it joins the cgroup later,
    /// in stage 2.
    pub fn load(cfg: &MonitorConfig) -> Result<Monitor, MonitorError> {
        use std::os::unix::fs::MetadataExt;
        if cfg.rules.len() > MAX_RULES as usize {
            return Err(MonitorError::TooManyRules(cfg.rules.len()));
        }
        // The cgroup id bpf_get_current_cgroup_id() returns is the cgroup directory's inode.
        let cgroup_id =
            std::fs::metadata(&cfg.cgroup_dir).map_err(io(format!("stat {}", cfg.cgroup_dir.display())))?.ino();
        let server_level = if cfg.full { level::FULL } else { level::TREE };
        let mut shared = Shared::acquire(PROBES, server_level)?;
        let lsm = match shared.lsm_loaded_now.take() {
            _ if shared.lsm_attached() => Ok(()),
            Some(Err(e)) => Err(e),
            _ => Err(lsm_probe::known_refusal().map_or(LsmError::NotAttempted, LsmError::Remembered)),
        };
        let mut monitor = Monitor {
            shared,
            pending_ring: None,
            ring: None,
            cgroup_id,
            full: cfg.full,
            cgroup_dir: cfg.cgroup_dir.clone(),
            lsm,
        };
        // On failure from here the entries written so far are removed by `release`.
        if let Err(e) = monitor.register(cfg, server_level) {
            // Nothing runs in the cgroup yet.
            monitor.shared.release(cgroup_id, true);
            return Err(e);
        }
        Ok(monitor)
    }

    /// Writes the server's entries (under the setup lock), then attaches its cgroup programs (which
    /// deny without them).
    fn register(&mut self, cfg: &MonitorConfig, server_level: u32) -> Result<(), MonitorError> {
        let id = self.cgroup_id;
        let cpus =
            aya::util::nr_cpus().map_err(|(_, e)| MonitorError::Io { action: "count CPUs".into(), source: e })?;
        let zero = PerCpuValues::try_from(vec![Counters::default(); cpus]).map_err(io("size the counters"))?;
        self.shared.counters.insert(id, zero, 0).map_err(map_error("COUNTERS"))?;
        for (index, rule) in cfg.rules.iter().enumerate() {
            let key = RuleKey { cgroup_id: id, index: index as u32, _pad: 0 };
            self.shared.rules.insert(key, rule, 0).map_err(map_error("RULES"))?;
        }
        let me = std::process::id();
        self.shared.brokers.insert(me, id, 0).map_err(map_error("BROKERS"))?;
        let server = Server {
            audit: u32::from(cfg.audit_mode),
            rule_count: cfg.rules.len() as u32,
            allow_raw: u32::from(cfg.allow_raw_sockets),
            level: server_level,
            owner_pid: me,
            slot: 0,
            owner_start: shared::process_start(me).unwrap_or(0),
            dns_ports: cfg.dns_ports,
            dns_mark: cfg.dns_mark,
            _pad: 0,
        };
        match self.shared.register(id, server, cfg.ring_bytes)? {
            shared::Ring::Reused(map) => {
                self.ring = Some(RingBuf::try_from(Map::RingBuf(map)).map_err(map_error("EVENTS"))?);
            }
            shared::Ring::New { slot, map } => self.pending_ring = Some((slot, map)),
        }
        self.shared.unlock();
        self.attach_cgroup_programs(&cfg.cgroup_dir)
    }

    /// Attaches the pinned socket programs to the server's cgroup, and pins the links: the
    /// enforcement must outlive a launcher killed with SIGKILL until its server's tree is gone.
    fn attach_cgroup_programs(&mut self, dir: &Path) -> Result<(), MonitorError> {
        let cgroup = std::fs::File::open(dir).map_err(io(format!("open {}", dir.display())))?;
        let mut links = Vec::new();
        for name in shared::CGROUP_PROGRAMS {
            links.push((name, attach_pinned(&self.shared.program_pin(name), name, &cgroup)?));
        }
        self.shared.pin_server_links(self.cgroup_id, dir, links)
    }

    /// Puts the server's ring buffer in `RINGS`; until then the probes record nothing for it. Must
    /// happen before the server is executed: after the fork while stage 2 waits for the
    /// supervisor to take its listener (`start` does it), or before the fork when there is no
    /// such handshake.
    pub fn insert_ring(&mut self) -> Result<(), MonitorError> {
        if let Some((slot, ring)) = self.pending_ring.take() {
            self.shared.insert_ring(slot, &ring)?;
            self.ring = Some(RingBuf::try_from(Map::RingBuf(ring)).map_err(map_error("EVENTS"))?);
        }
        Ok(())
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
        self.insert_ring()?;
        let mut ring = self.ring.take().ok_or(MonitorError::MissingMap("EVENTS"))?;
        let cgroup_id = self.cgroup_id;
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
                        // A reused ring may still get a late record of the server it was
                        // lent to before.
                        if event::cgroup_of(&item).is_some_and(|c| c != cgroup_id) {
                            continue;
                        }
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

    /// Removes this server's entries and drops the hold on the shared probes (the last launcher
    /// removes their pins; the kernel frees them in the background). The cgroup programs are
    /// detached as their links close.
    pub fn release(self) {
        // Removed by the teardown once its tree is dead; still there, the tree may still run.
        let tree_gone = !self.cgroup_dir.exists();
        if !tree_gone {
            tracing::warn!(
                "the server's cgroup {} is still there: its eBPF entries and socket programs are kept until the next launcher kills what is left",
                self.cgroup_dir.display()
            );
        }
        self.shared.release(self.cgroup_id, tree_gone);
    }

    /// Reads the in-kernel counters: drops, folded opens, per-process syscall counts, repeats.
    pub fn counters(&self) -> KernelCounters {
        let mut out = KernelCounters { full: self.full, ..KernelCounters::default() };
        if let Ok(per_cpu) = self.shared.counters.get(&self.cgroup_id, 0) {
            let sum = |i: u32| per_cpu.iter().map(|c| c.values[i as usize]).sum::<u64>();
            out.dropped = sum(counter::DROPPED);
            out.opens_folded = sum(counter::OPENS_FOLDED);
            out.lsm_file_opens = sum(counter::LSM_FILE_OPENS);
        }
        for (key, values) in self.shared.syscalls.iter().flatten() {
            if key.cgroup_id == self.cgroup_id {
                out.syscalls.push((key.tgid, key.nr, values.iter().sum()));
            }
        }
        for (key, count) in self.shared.opens_seen.iter().flatten() {
            if count > 1 && key.cgroup_id == self.cgroup_id {
                out.repeated_opens.push((key, count));
            }
        }
        out
    }
}

/// The attach type of each `cgroup_sock_addr` program (`None`: the `sock_create` program).
/// Attaches the pinned cgroup program `name` to `cgroup`; its link.
fn attach_pinned(pin: &Path, name: &'static str, cgroup: &std::fs::File) -> Result<FdLink, MonitorError> {
    let fail = |action| move |source| MonitorError::Program { action, program: name, source };
    let single = CgroupAttachMode::Single;
    match (sock_addr_type(name), name) {
        (Some(kind), _) => {
            let mut p = CgroupSockAddr::from_pin(pin, kind).map_err(fail("open the pinned"))?;
            let id = p.attach(cgroup, single).map_err(fail("attach"))?;
            fd_link(p.take_link(id).map_err(fail("take the link of"))?, name)
        }
        (None, "egress") => {
            let egress = CgroupSkbAttachType::Egress;
            let mut p = CgroupSkb::from_pin(pin, egress).map_err(fail("open the pinned"))?;
            let id = p.attach(cgroup, egress, single).map_err(fail("attach"))?;
            fd_link(p.take_link(id).map_err(fail("take the link of"))?, name)
        }
        (None, _) => {
            let mut p = CgroupSock::from_pin(pin, CgroupSockAttachType::SockCreate).map_err(fail("open the pinned"))?;
            let id = p.attach(cgroup, single).map_err(fail("attach"))?;
            fd_link(p.take_link(id).map_err(fail("take the link of"))?, name)
        }
    }
}

/// A program's link as the descriptor link that is pinned.
fn fd_link<L>(link: L, name: &'static str) -> Result<FdLink, MonitorError>
where
    FdLink: TryFrom<L, Error = aya::programs::links::LinkError>,
{
    FdLink::try_from(link).map_err(|e| shared::link_error(name, e))
}

fn sock_addr_type(name: &str) -> Option<CgroupSockAddrAttachType> {
    Some(match name {
        "connect4" => CgroupSockAddrAttachType::Connect4,
        "connect6" => CgroupSockAddrAttachType::Connect6,
        "sendmsg4" => CgroupSockAddrAttachType::UDPSendMsg4,
        "sendmsg6" => CgroupSockAddrAttachType::UDPSendMsg6,
        "recvmsg4" => CgroupSockAddrAttachType::UDPRecvMsg4,
        "recvmsg6" => CgroupSockAddrAttachType::UDPRecvMsg6,
        "getpeername4" => CgroupSockAddrAttachType::GetPeerName4,
        "getpeername6" => CgroupSockAddrAttachType::GetPeerName6,
        "bind4" => CgroupSockAddrAttachType::Bind4,
        "bind6" => CgroupSockAddrAttachType::Bind6,
        _ => return None,
    })
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

/// Loads the optional BPF LSM hooks, once per host when the shared probes are loaded (parsing the
/// kernel's BTF for them costs tens of milliseconds), and pins them in `progs` when the kernel
/// accepts all of them; they are attached with the other tracepoints while servers run. A
/// refusal is remembered for this boot (`lsm_probe`).
fn load_lsm_pinned(ebpf: &mut Ebpf, progs: &Path) -> Result<(), LsmError> {
    if let Some(why) = lsm_probe::known_refusal() {
        return Err(LsmError::Remembered(why));
    }
    let loaded = load_lsm(ebpf).and_then(|()| {
        for (program, _) in LSM_HOOKS {
            let p: &mut aya::programs::Lsm =
                program_named(ebpf, program).map_err(|_| LsmError::MissingProgram { program })?;
            p.pin(progs.join(program)).map_err(|e| LsmError::Pin { program, reason: e.to_string() })?;
        }
        Ok(())
    });
    if let Err(e) = &loaded {
        if matches!(e, LsmError::Load { .. }) {
            lsm_probe::remember_refusal(&e.to_string());
        }
        for (program, _) in LSM_HOOKS {
            let _ = std::fs::remove_file(progs.join(program));
        }
        tracing::debug!("BPF LSM hooks not loaded: {e}");
    }
    loaded
}

fn load_lsm(ebpf: &mut Ebpf) -> Result<(), LsmError> {
    let btf = aya::Btf::from_sys_fs().map_err(LsmError::NoBtf)?;
    for (program, hook) in LSM_HOOKS {
        let p: &mut aya::programs::Lsm = match ebpf.program_mut(program).map(TryInto::try_into) {
            Some(Ok(p)) => p,
            _ => return Err(LsmError::MissingProgram { program }),
        };
        p.load(hook, &btf).map_err(|source| LsmError::Load { hook, source })?;
    }
    Ok(())
}

/// Counters read from the kernel maps at the end.
#[derive(Debug, Default)]
pub struct KernelCounters {
    /// `--monitor-level full`.
    pub full: bool,
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

fn program_named<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, MonitorError>
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
