//! The probes every monitored server of the host shares: loaded and verified once per host,
//! pinned in bpffs, attached while servers run, reference-counted with file locks.
//!
//! Layout, for one build of the probes (`VERSION`, a hash of the object):
//! - `/sys/fs/bpf/mcp-warden/VERSION/{maps,progs}` hold the maps and the verified programs. They
//!   stay loaded between runs (a few hundred KiB of kernel memory, no cost per event: nothing is
//!   attached), so that a start pays neither the load nor the verifier; a launcher of another
//!   build removes them when no launcher of their build runs. `rm -r /sys/fs/bpf/mcp-warden`
//!   unloads them by hand.
//! - `/sys/fs/bpf/mcp-warden/VERSION/links` holds the attachments: the tracepoints every server
//!   uses (`task_newtask`, `sched_process_exec`, `sched_process_exit`, and the BPF LSM hooks where
//!   the kernel accepts them) while any server runs, `sys_enter`/`sys_exit` while a `full` server
//!   runs.
//! - `/run/mcp-warden/ebpf/VERSION.{setup,host,full}.lock`: `setup` serialises attaching and
//!   releasing; every launcher holds `host` shared while it runs, and `full` shared while it runs a
//!   `full` server.
//!
//! The launcher that finds nobody else holding `host` (or `full`) when it leaves removes the link
//! pins: the kernel detaches them in the background, so no exit waits for an RCU grace period. A
//! launcher killed with SIGKILL drops its locks with its file descriptors; the links it kept stay
//! until the next launcher leaves (one set per build: nothing grows), and its server's entries in
//! the maps are removed by the next launcher that starts.

use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, HashOfMaps, Map, MapData, PerCpuHashMap};
use aya::programs::links::FdLink;
use aya::programs::{Lsm, Program, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use mcp_warden_ebpf_common::{CallKey, Counters, MAX_RULES, NetRule, OpenKey, RuleKey, Server, level};
use nix::fcntl::{Flock, FlockArg};

use super::btf::KernelBtf;
use super::{MonitorError, io};

const PIN_ROOT: &str = "/sys/fs/bpf/mcp-warden";
const LOCK_ROOT: &str = "/run/mcp-warden/ebpf";
const BPFFS: &str = "/sys/fs/bpf";
const TRACEFS: &str = "/sys/kernel/tracing";

/// The tracepoints every server uses: (program, category, event).
const TREE_LINKS: [(&str, Hook); 3] = [
    ("task_newtask", Hook::TracePoint("task", "task_newtask")),
    ("sched_process_exec", Hook::TracePoint("sched", "sched_process_exec")),
    ("sched_process_exit", Hook::TracePoint("sched", "sched_process_exit")),
];
/// The per-syscall tracepoints of the `full` level.
const FULL_LINKS: [(&str, Hook); 2] = [("sys_enter", Hook::Raw("sys_enter")), ("sys_exit", Hook::Raw("sys_exit"))];
/// The cgroup programs each server attaches to its own cgroup.
pub const CGROUP_PROGRAMS: [&str; 7] =
    ["connect4", "connect6", "sendmsg4", "sendmsg6", "bind4", "bind6", "sock_create"];
const MAPS: [&str; 7] = ["SERVERS", "RINGS", "COUNTERS", "SYSCALLS", "RULES", "OPENS_SEEN", "BROKERS"];

/// Free rings kept for later servers (4 MiB each at the default size): a launcher that finds one
/// of its size need not insert one, which waits for an RCU grace period.
const FREE_RINGS_KEPT: usize = 2;

/// A server's ring buffer: one left free by an earlier server, or a new one still to be put in
/// `RINGS` (`Shared::insert_ring`) before the server runs.
#[derive(Debug)]
pub enum Ring {
    Reused(MapData),
    New { slot: u32, map: MapData },
}

/// This launcher's hold on the host's shared probes.
pub struct Shared {
    dir: PathBuf,
    version: String,
    /// `setup.lock`, held from `acquire` until the server is registered (`unlock`).
    setup: Option<Flock<File>>,
    /// Held shared while this launcher runs.
    host: Option<Flock<File>>,
    /// Held shared while this launcher runs a `full` server.
    full: Option<Flock<File>>,
    pub servers: BpfHashMap<MapData, u64, Server>,
    pub rings: HashOfMaps<MapData, u32>,
    /// `RINGS` again, as a plain descriptor for the delete a child makes.
    rings_fd: MapData,
    pub counters: PerCpuHashMap<MapData, u64, Counters>,
    pub syscalls: PerCpuHashMap<MapData, CallKey, u64>,
    pub rules: BpfHashMap<MapData, RuleKey, NetRule>,
    pub opens_seen: BpfHashMap<MapData, OpenKey, u64>,
    /// launcher pid -> its server's cgroup id.
    pub brokers: BpfHashMap<MapData, u32, u64>,
    /// What this launcher's load answered for the BPF LSM hooks, when it loaded the set.
    pub lsm_loaded_now: Option<Result<(), super::LsmError>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("dir", &self.dir).field("full", &self.full.is_some()).finish_non_exhaustive()
    }
}

impl Shared {
    /// Takes a hold on the shared probes, loading and pinning them if this is the first launcher
    /// of this build; with `level::FULL`, also on the per-syscall tracepoints.
    pub fn acquire(probes: &[u8], server_level: u32) -> Result<Shared, MonitorError> {
        let version = version(probes);
        std::fs::create_dir_all(LOCK_ROOT).map_err(io(format!("create {LOCK_ROOT}")))?;
        ensure_bpffs()?;
        let setup = lock(&version, "setup", FlockArg::LockExclusive)?;
        remove_unused(&version)?;
        let dir = Path::new(PIN_ROOT).join(&version);
        let lsm = if dir.join("maps/BROKERS").exists() { None } else { Some(load_and_pin(probes, &dir)?) };
        let mut shared = Shared::open(&dir, version.clone())?;
        shared.setup = Some(setup);
        shared.lsm_loaded_now = lsm;
        shared.remove_dead_servers();
        attach(&dir, &tree_links(&dir))?;
        if server_level == level::FULL {
            shared.full = Some(lock(&version, "full", FlockArg::LockShared)?);
            attach(&dir, &FULL_LINKS)?;
        }
        shared.host = Some(lock(&version, "host", FlockArg::LockShared)?);
        Ok(shared)
    }

    fn open(dir: &Path, version: String) -> Result<Shared, MonitorError> {
        let map = |name: &'static str| {
            MapData::from_pin(dir.join("maps").join(name)).map_err(|source| MonitorError::Map { map: name, source })
        };
        let typed = |name: &'static str, source| MonitorError::Map { map: name, source };
        Ok(Shared {
            dir: dir.to_path_buf(),
            version,
            setup: None,
            host: None,
            full: None,
            servers: BpfHashMap::try_from(Map::HashMap(map("SERVERS")?)).map_err(|e| typed("SERVERS", e))?,
            rings: HashOfMaps::try_from(Map::HashOfMaps(map("RINGS")?)).map_err(|e| typed("RINGS", e))?,
            rings_fd: map("RINGS")?,
            counters: PerCpuHashMap::try_from(Map::PerCpuHashMap(map("COUNTERS")?))
                .map_err(|e| typed("COUNTERS", e))?,
            syscalls: PerCpuHashMap::try_from(Map::PerCpuHashMap(map("SYSCALLS")?))
                .map_err(|e| typed("SYSCALLS", e))?,
            rules: BpfHashMap::try_from(Map::HashMap(map("RULES")?)).map_err(|e| typed("RULES", e))?,
            opens_seen: BpfHashMap::try_from(Map::LruHashMap(map("OPENS_SEEN")?))
                .map_err(|e| typed("OPENS_SEEN", e))?,
            brokers: BpfHashMap::try_from(Map::HashMap(map("BROKERS")?)).map_err(|e| typed("BROKERS", e))?,
            lsm_loaded_now: None,
        })
    }

    /// The pinned program `name`, to attach to a server's cgroup.
    pub fn program_pin(&self, name: &str) -> PathBuf {
        self.dir.join("progs").join(name)
    }

    /// Whether the optional BPF LSM hooks are attached on this host.
    pub fn lsm_attached(&self) -> bool {
        self.dir.join("links").join(super::LSM_HOOKS[0].0).exists()
    }

    /// Registers a server (under the setup lock `acquire` took): claims a ring slot, reusing a
    /// free ring of `ring_bytes` when there is one, and writes its entry with that slot.
    pub fn register(&mut self, cgroup_id: u64, mut server: Server, ring_bytes: u32) -> Result<Ring, MonitorError> {
        let used = self.used_slots();
        let slots: Vec<u32> = self.rings.keys().flatten().collect();
        let free = slots.iter().copied().filter(|s| !used.contains(s));
        let reusable = free
            .filter_map(|slot| Some((slot, self.rings.get(&slot, 0).ok()?)))
            .find(|(_, map)| map.info().is_ok_and(|i| i.max_entries() == ring_bytes));
        let ring = match reusable {
            Some((slot, map)) => {
                server.slot = slot;
                Ring::Reused(map)
            }
            None => {
                let slot = (0..).find(|s| !slots.contains(s) && !used.contains(s)).unwrap_or(0);
                let params = aya_obj::Map::new_from_params(aya::maps::MapType::RingBuf as u32, 0, 0, ring_bytes, 0);
                let map = MapData::create(params, "mcpw_events", None)
                    .map_err(|source| MonitorError::Map { map: "EVENTS", source })?;
                server.slot = slot;
                Ring::New { slot, map }
            }
        };
        self.servers.insert(cgroup_id, server, 0).map_err(|source| MonitorError::Map { map: "SERVERS", source })?;
        Ok(ring)
    }

    /// Lets other launchers set up (after `register`).
    pub fn unlock(&mut self) {
        self.setup = None;
    }

    /// Puts a new ring in `RINGS`: waits for an RCU grace period (the launcher overlaps it with
    /// stage 2's work where it can).
    pub fn insert_ring(&mut self, slot: u32, map: &MapData) -> Result<(), MonitorError> {
        self.rings.insert(slot, map, 0).map_err(|source| MonitorError::Map { map: "RINGS", source })
    }

    fn used_slots(&self) -> Vec<u32> {
        self.servers.iter().flatten().map(|(_, s)| s.slot).collect()
    }

    /// Pins the server's cgroup program links, so that they hold when the launcher dies: they are
    /// removed with the server's entries, once its tree is gone. Records where its cgroup is, for
    /// the launcher that finds it orphaned.
    pub fn pin_server_links(
        &self,
        cgroup_id: u64,
        cgroup_dir: &Path,
        links: Vec<(&'static str, FdLink)>,
    ) -> Result<(), MonitorError> {
        let record = self.server_record(cgroup_id);
        std::fs::write(&record, cgroup_dir.as_os_str().as_encoded_bytes())
            .map_err(io(format!("write {}", record.display())))?;
        for (name, link) in links {
            link.pin(self.server_link(cgroup_id, name)).map_err(|e| pin_error(name, e))?;
        }
        Ok(())
    }

    fn server_link(&self, cgroup_id: u64, program: &str) -> PathBuf {
        self.dir.join("links").join(format!("srv-{cgroup_id}-{program}"))
    }

    fn server_record(&self, cgroup_id: u64) -> PathBuf {
        Path::new(LOCK_ROOT).join(format!("{}.srv-{cgroup_id}", self.version))
    }

    /// Kills what is left of an orphaned server's tree (its launcher was killed): its cgroup
    /// programs keep enforcing until then. `false` when the tree may still run.
    fn end_orphan(&self, cgroup_id: u64) -> bool {
        let Ok(dir) = std::fs::read(self.server_record(cgroup_id)) else { return true };
        let dir = PathBuf::from(std::ffi::OsString::from_vec(dir));
        match crate::layers::cgroup::kill_and_remove(&dir, true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "an orphaned server's cgroup {} is still there ({e}): its eBPF entries are kept",
                    dir.display()
                );
                false
            }
        }
    }

    /// Removes one server's entries and link pins from the shared maps; its ring stays for a later
    /// server unless enough are free already.
    fn remove_server(&mut self, cgroup_id: u64) {
        for name in CGROUP_PROGRAMS {
            let _ = std::fs::remove_file(self.server_link(cgroup_id, name));
        }
        let _ = std::fs::remove_file(self.server_record(cgroup_id));
        let slot = self.servers.get(&cgroup_id, 0).ok().map(|s| s.slot);
        let _ = self.servers.remove(&cgroup_id);
        let brokers: Vec<u32> =
            self.brokers.iter().flatten().filter(|(_, c)| *c == cgroup_id).map(|(p, _)| p).collect();
        for pid in brokers {
            let _ = self.brokers.remove(&pid);
        }
        let _ = self.counters.remove(&cgroup_id);
        for index in 0..MAX_RULES {
            if self.rules.remove(&RuleKey { cgroup_id, index, _pad: 0 }).is_err() {
                break;
            }
        }
        let calls: Vec<CallKey> = self.syscalls.keys().flatten().filter(|k| k.cgroup_id == cgroup_id).collect();
        for key in calls {
            let _ = self.syscalls.remove(&key);
        }
        let opens: Vec<OpenKey> = self.opens_seen.keys().flatten().filter(|k| k.cgroup_id == cgroup_id).collect();
        for key in opens {
            let _ = self.opens_seen.remove(&key);
        }
        if let Some(slot) = slot {
            self.trim_free_rings(slot);
        }
    }

    /// Deletes the ring in `slot` when more than `FREE_RINGS_KEPT` rings are free. A map-of-maps
    /// delete waits for an RCU grace period: a child process does it.
    fn trim_free_rings(&mut self, slot: u32) {
        use std::os::fd::AsFd;
        let used = self.used_slots();
        let free = self.rings.keys().flatten().filter(|s| !used.contains(s)).count();
        if free <= FREE_RINGS_KEPT {
            return;
        }
        if let Err(e) = crate::sys::bpf_delete_in_child(self.rings_fd.fd().as_fd(), &slot.to_ne_bytes()) {
            tracing::debug!("deleting the ring in the foreground: {e}");
            let _ = self.rings.remove(&slot);
        }
    }

    /// Removes the entries of servers whose launcher is gone (killed before it could).
    fn remove_dead_servers(&mut self) {
        let dead: Vec<u64> = self
            .servers
            .iter()
            .flatten()
            .filter(|(_, s)| !owner_alive(s.owner_pid, s.owner_start))
            .map(|(cgroup_id, _)| cgroup_id)
            .collect();
        for cgroup_id in dead {
            tracing::debug!("removing the eBPF entries of cgroup {cgroup_id}: its launcher is gone");
            if self.end_orphan(cgroup_id) {
                self.remove_server(cgroup_id);
            }
        }
    }

    /// Removes the server's entries and drops this launcher's hold. The last `full` holder
    /// detaches the per-syscall tracepoints (the kernel does it in the background).
    /// `tree_gone`: nothing can run in the server's cgroup any more; else its entries and links
    /// stay (they keep enforcing) for the next launcher, which kills the tree first.
    pub fn release(mut self, cgroup_id: u64, tree_gone: bool) {
        self.setup = None; // still held when registering failed
        let Ok(_setup) = lock(&self.version, "setup", FlockArg::LockExclusive) else { return };
        if tree_gone {
            self.remove_server(cgroup_id);
        }
        if self.full.take().is_some() && lock(&self.version, "full", FlockArg::LockExclusiveNonblock).is_ok() {
            detach(&self.dir, &FULL_LINKS);
        }
        self.host = None;
        // The tree level's tracepoints stay attached while the probes are loaded: attaching a
        // tracepoint waits for the kernel's tracepoint lock (tens of milliseconds here, behind
        // the last detach), and for a task outside every server they cost one hash lookup per
        // task creation, exec and exit.
        if lock(&self.version, "host", FlockArg::LockExclusiveNonblock).is_ok() {
            detach(&self.dir, &FULL_LINKS);
        }
    }
}

/// Unloads the shared probes of every build that no launcher uses, so that the next run loads and
/// verifies them again (and tries the BPF LSM hooks again). Returns (unloaded, in use).
pub fn unload_unused() -> (usize, usize) {
    let (mut unloaded, mut in_use) = (0, 0);
    let Ok(entries) = std::fs::read_dir(PIN_ROOT) else { return (0, 0) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("-building-") {
            continue;
        }
        let Ok(_setup) = lock(&name, "setup", FlockArg::LockExclusive) else { continue };
        if lock(&name, "host", FlockArg::LockExclusiveNonblock).is_ok() {
            remove_dir(&entry.path());
            unloaded += 1;
        } else {
            in_use += 1;
        }
    }
    (unloaded, in_use)
}

/// A build of the probes is named by a hash of its object: launchers of one build share.
fn version(probes: &[u8]) -> String {
    let hash = probes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

fn lock(version: &str, which: &str, arg: FlockArg) -> Result<Flock<File>, MonitorError> {
    let path = Path::new(LOCK_ROOT).join(format!("{version}.{which}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("open {}", path.display())))?;
    Flock::lock(file, arg)
        .map_err(|(_, e)| MonitorError::Io { action: format!("lock {}", path.display()), source: e.into() })
}

/// Removes the pins of other builds and of this build's `full` level when nobody holds them (a
/// launcher of that build was killed, or the host was upgraded).
fn remove_unused(version: &str) -> Result<(), MonitorError> {
    let Ok(entries) = std::fs::read_dir(PIN_ROOT) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == version {
            // Left attached by a `full` launcher that was killed.
            if lock(version, "full", FlockArg::LockExclusiveNonblock).is_ok() {
                detach(&entry.path(), &FULL_LINKS);
            }
        } else if let Some((_, builder)) = name.split_once("-building-") {
            // Left by a launcher killed while it loaded (another build's may be loading now).
            if builder.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                remove_dir(&entry.path());
            }
        } else if lock(&name, "host", FlockArg::LockExclusiveNonblock).is_ok() {
            remove_dir(&entry.path());
            for which in ["setup", "host", "full"] {
                let _ = std::fs::remove_file(Path::new(LOCK_ROOT).join(format!("{name}.{which}.lock")));
            }
        }
    }
    Ok(())
}

/// Loads every program and pins it with the maps under `dir` (built in a temporary directory and
/// renamed, so a half-built set is never used). Returns what the BPF LSM hooks answered.
fn load_and_pin(probes: &[u8], dir: &Path) -> Result<Result<(), super::LsmError>, MonitorError> {
    // bpffs refuses names with a dot.
    let building = dir.with_file_name(format!(
        "{}-building-{}",
        dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    remove_dir(&building);
    remove_dir(dir);
    let mut ebpf = load(probes)?;
    for sub in ["maps", "progs", "links"] {
        std::fs::create_dir_all(building.join(sub)).map_err(io(format!("create {}", building.display())))?;
    }
    for name in MAPS {
        let map = ebpf.map(name).ok_or(MonitorError::MissingMap(name))?;
        map.pin(building.join("maps").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for (name, _) in TREE_LINKS {
        let p: &mut TracePoint = super::program_named(&mut ebpf, name)?;
        p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for (name, _) in FULL_LINKS {
        let p: &mut RawTracePoint = super::program_named(&mut ebpf, name)?;
        p.load().map_err(|source| MonitorError::Program { action: "load", program: name, source })?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    for name in CGROUP_PROGRAMS {
        let p = ebpf.program_mut(name).ok_or(MonitorError::Program {
            action: "find",
            program: name,
            source: aya::programs::ProgramError::UnexpectedProgramType,
        })?;
        load_cgroup_program(p, name)?;
        p.pin(building.join("progs").join(name)).map_err(|e| pin_error(name, e))?;
    }
    let lsm = super::load_lsm_pinned(&mut ebpf, &building.join("progs"));
    std::fs::rename(&building, dir).map_err(io(format!("rename {} to {}", building.display(), dir.display())))?;
    Ok(lsm)
}

fn load_cgroup_program(p: &mut Program, name: &'static str) -> Result<(), MonitorError> {
    let result = match p {
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        _ => Err(aya::programs::ProgramError::UnexpectedProgramType),
    };
    result.map_err(|source| MonitorError::Program { action: "load", program: name, source })
}

/// Loads the object with the host's constants: tracepoint field offsets and kernel structure
/// offsets (from BTF, parsed here once per host rather than at every start).
fn load(probes: &[u8]) -> Result<Ebpf, MonitorError> {
    ensure_tracefs()?;
    let btf = KernelBtf::from_sys_fs()
        .map_err(|e| MonitorError::Io { action: "read the kernel's BTF".into(), source: std::io::Error::other(e) })?;
    let member = |s: &str, m: &str| {
        btf.member_offset(s, m)
            .map_err(|e| MonitorError::Io { action: "read the kernel's BTF".into(), source: std::io::Error::other(e) })
    };
    let newtask_pid = tracepoint_field_offset("task", "task_newtask", "pid")?;
    let newtask_flags = tracepoint_field_offset("task", "task_newtask", "clone_flags")?;
    let exec_filename = tracepoint_field_offset("sched", "sched_process_exec", "filename")?;
    // Linux 6.16+; before, the leader's exit stands for the process's.
    let exit_group_dead = tracepoint_field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0);
    let exit_code = member("task_struct", "exit_code")?;
    let mm = member("task_struct", "mm")?;
    let arg_start = member("mm_struct", "arg_start")?;
    let arg_end = member("mm_struct", "arg_end")?;
    // The probes use fixed offsets, no CO-RE relocations: aya need not parse the kernel's BTF.
    Ok(EbpfLoader::new()
        .btf(None)
        .override_global("NEWTASK_PID", &newtask_pid, true)
        .override_global("NEWTASK_FLAGS", &newtask_flags, true)
        .override_global("EXEC_FILENAME", &exec_filename, true)
        .override_global("EXIT_GROUP_DEAD", &exit_group_dead, true)
        .override_global("TASK_EXIT_CODE", &exit_code, true)
        .override_global("TASK_MM", &mm, true)
        .override_global("MM_ARG_START", &arg_start, true)
        .override_global("MM_ARG_END", &arg_end, true)
        .load(probes)?)
}

/// How a pinned program is attached.
#[derive(Clone, Copy)]
enum Hook {
    /// A classic tracepoint: (category, event).
    TracePoint(&'static str, &'static str),
    /// A raw tracepoint by name.
    Raw(&'static str),
    /// A BPF LSM hook (the hook is recorded in the program).
    Lsm,
}

/// The tracepoints every server uses, and the BPF LSM hooks where they were loaded.
fn tree_links(dir: &Path) -> Vec<(&'static str, Hook)> {
    let mut links = TREE_LINKS.to_vec();
    for (name, _) in super::LSM_HOOKS {
        if dir.join("progs").join(name).exists() {
            links.push((name, Hook::Lsm));
        }
    }
    links
}

/// Attaches each pinned program that is not attached yet and pins its link.
fn attach(dir: &Path, links: &[(&'static str, Hook)]) -> Result<(), MonitorError> {
    for &(name, hook) in links {
        let pin = dir.join("links").join(name);
        if pin.exists() {
            continue;
        }
        let prog = dir.join("progs").join(name);
        let opened = |source| MonitorError::Program { action: "open the pinned", program: name, source };
        let attached = |source| MonitorError::Program { action: "attach", program: name, source };
        let taken = |source| MonitorError::Program { action: "take the link of", program: name, source };
        let link: FdLink = match hook {
            Hook::TracePoint(category, event) => {
                let mut p = TracePoint::from_pin(&prog).map_err(opened)?;
                let id = p.attach(category, event).map_err(attached)?;
                p.take_link(id).map_err(taken)?.try_into().map_err(|e| link_error(name, e))?
            }
            Hook::Raw(event) => {
                let mut p = RawTracePoint::from_pin(&prog).map_err(opened)?;
                let id = p.attach(event).map_err(attached)?;
                p.take_link(id).map_err(taken)?.into()
            }
            Hook::Lsm => {
                let mut p = Lsm::from_pin(&prog).map_err(opened)?;
                let id = p.attach().map_err(attached)?;
                p.take_link(id).map_err(taken)?.into()
            }
        };
        link.pin(&pin).map_err(|e| pin_error(name, e))?;
    }
    Ok(())
}

/// Removes link pins: the kernel detaches each in the background once its last reference is gone.
fn detach(dir: &Path, links: &[(&'static str, Hook)]) {
    for (name, _) in links {
        let _ = std::fs::remove_file(dir.join("links").join(name));
    }
}

/// Removes a pin directory: unlinking the last reference makes the kernel release each object.
fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn pin_error(name: &'static str, e: aya::pin::PinError) -> MonitorError {
    MonitorError::Io { action: format!("pin `{name}`"), source: std::io::Error::other(e) }
}

fn link_error(name: &'static str, e: aya::programs::links::LinkError) -> MonitorError {
    MonitorError::Io { action: format!("take the link of `{name}`"), source: std::io::Error::other(e) }
}

/// Whether the launcher that wrote an entry still runs: same pid and same start time.
fn owner_alive(pid: u32, start: u64) -> bool {
    process_start(pid).is_some_and(|s| s == start)
}

/// A process's start time (clock ticks after boot), field 22 of `/proc/PID/stat`.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// bpffs is where pins live: mount it where the kernel documents it if nobody has.
fn ensure_bpffs() -> Result<(), MonitorError> {
    let mounted = nix::sys::statfs::statfs(BPFFS).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC);
    if !mounted {
        nix::mount::mount(Some("bpf"), BPFFS, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|e| MonitorError::Io { action: format!("mount bpffs on {BPFFS}"), source: e.into() })?;
    }
    std::fs::create_dir_all(PIN_ROOT).map_err(io(format!("create {PIN_ROOT}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_read_past_a_command_name_with_spaces() {
        let me = std::process::id();
        let start = process_start(me).unwrap();
        assert!(start > 0);
        assert!(owner_alive(me, start));
        assert!(!owner_alive(me, start + 1));
    }

    #[test]
    fn versions_differ_with_the_object() {
        assert_ne!(version(b"a"), version(b"b"));
        assert_eq!(version(b"a").len(), 16);
    }
}
