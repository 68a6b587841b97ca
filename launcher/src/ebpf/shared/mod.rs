//! The probes every monitored server of the host shares: loaded and verified once per host
//! (`load`), pinned in bpffs, a hold on them reference-counted with file locks (here), and the
//! servers registered in their maps (`servers`).
//!
//! Layout, for one build of the probes (`VERSION`, a hash of the object):
//! - `/sys/fs/bpf/mcp-warden/VERSION/{maps,progs}`: the maps and the verified programs. They stay
//!   loaded between runs, so that a start pays neither the load nor the verifier; a launcher of
//!   another build removes them when no launcher of their build runs, and `mcp-warden doctor`
//!   when no launcher runs.
//! - `/sys/fs/bpf/mcp-warden/VERSION/links`: the attachments. The tree level's tracepoints
//!   (`task_newtask`, `sched_process_exec`, `sched_process_exit`, and the BPF LSM hooks where the
//!   kernel accepts them) stay attached while the probes are loaded; `sys_enter`/`sys_exit` while
//!   a `full` server runs; `srv-<cgroup>-<program>`, a server's socket programs, until its tree is
//!   gone.
//! - `/run/mcp-warden/ebpf/VERSION.{setup,host,full}.lock`: `setup` serialises setting up and
//!   releasing; every launcher holds `host` shared while it runs, and `full` shared while it runs a
//!   `full` server. `VERSION.srv-<cgroup>` records where a server's cgroup is.
//!
//! The last `full` holder removes the per-syscall link pins when it leaves: the kernel detaches a
//! link in the background once its last reference is gone, so no exit waits for an RCU grace
//! period. A launcher killed with SIGKILL drops its locks with its file descriptors; what it
//! attached and registered stays (one set per build, and its own entries: nothing grows, and its
//! server stays enforced) until the next launcher, which kills what is left of its server first.

mod load;
mod servers;

pub use servers::{Ring, process_start};

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, HashOfMaps, Map, MapData, PerCpuHashMap};
use aya::programs::links::FdLink;
use aya::programs::{Lsm, RawTracePoint, TracePoint};
use mcp_warden_ebpf_common::{CallKey, Counters, NetRule, OpenKey, RuleKey, Server, level};
use nix::fcntl::{Flock, FlockArg};

use super::{MonitorError, io};

const PIN_ROOT: &str = "/sys/fs/bpf/mcp-warden";
const LOCK_ROOT: &str = "/run/mcp-warden/ebpf";

/// The tracepoints every server uses: (program, category, event).
const TREE_LINKS: [(&str, Hook); 3] = [
    ("task_newtask", Hook::TracePoint("task", "task_newtask")),
    ("sched_process_exec", Hook::TracePoint("sched", "sched_process_exec")),
    ("sched_process_exit", Hook::TracePoint("sched", "sched_process_exit")),
];
/// The per-syscall tracepoints of the `full` level.
const FULL_LINKS: [(&str, Hook); 2] = [("sys_enter", Hook::Raw("sys_enter")), ("sys_exit", Hook::Raw("sys_exit"))];
/// The cgroup programs each server attaches to its own cgroup.
pub const CGROUP_PROGRAMS: [&str; 12] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "recvmsg4",
    "recvmsg6",
    "getpeername4",
    "getpeername6",
    "bind4",
    "bind6",
    "sock_create",
    "egress",
];
const MAPS: [&str; 7] = ["SERVERS", "RINGS", "COUNTERS", "SYSCALLS", "RULES", "OPENS_SEEN", "BROKERS"];

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
        load::ensure_bpffs()?;
        let setup = lock(&version, "setup", FlockArg::LockExclusive)?;
        remove_unused(&version)?;
        let dir = Path::new(PIN_ROOT).join(&version);
        let lsm = if dir.join("maps/BROKERS").exists() { None } else { Some(load::load_and_pin(probes, &dir)?) };
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

pub(crate) fn pin_error(name: &'static str, e: aya::pin::PinError) -> MonitorError {
    MonitorError::Io { action: format!("pin `{name}`"), source: std::io::Error::other(e) }
}

pub(crate) fn link_error(name: &'static str, e: aya::programs::links::LinkError) -> MonitorError {
    MonitorError::Io { action: format!("take the link of `{name}`"), source: std::io::Error::other(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_differ_with_the_object() {
        assert_ne!(version(b"a"), version(b"b"));
        assert_eq!(version(b"a").len(), 16);
    }
}
