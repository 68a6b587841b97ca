//! cgroups: finding the hierarchies from `/proc/self/mountinfo` (parsed by procfs-core), and a per-server cgroup that
//! carries the process and memory limits the kernel's rlimits cannot (RLIMIT_NPROC does not bind
//! uid 0) and is cleaned up when the server ends.
//!
//! cgroup v2 is used when the limit's controller is delegated to us; otherwise a v1 controller
//! hierarchy, where the host mounts one (the hybrid layout of these machines).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procfs_core::process::MountInfo;

use crate::mounts::unescape;

/// The cgroup hierarchies this process is in.
#[derive(Debug, Clone, Default)]
pub struct CgroupFacts {
    pub v2: Option<V2Facts>,
    /// v1 controller name -> this process's cgroup directory in that hierarchy.
    pub v1: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone)]
pub struct V2Facts {
    /// Where cgroup2 is mounted.
    pub mount: PathBuf,
    /// This process's cgroup directory.
    pub own: PathBuf,
    /// Controllers available in our cgroup (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Controllers our children get (`cgroup.subtree_control`).
    pub subtree_control: Vec<String>,
}

impl V2Facts {
    /// Can a child cgroup of ours use `controller`? Either it is already enabled for our children,
    /// or we sit in the root cgroup (exempt from the no-internal-process rule) and may enable it.
    pub fn delegates(&self, controller: &str) -> bool {
        self.subtree_control.iter().any(|c| c == controller)
            || (self.own == self.mount && self.controllers.iter().any(|c| c == controller))
    }
}

/// Which hierarchy enforces one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    V2 { dir: PathBuf },
    V1 { controller: String, dir: PathBuf },
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::V2 { dir } => write!(f, "cgroup v2 ({})", dir.display()),
            Backend::V1 { controller, dir } => write!(f, "cgroup v1 {controller} ({})", dir.display()),
        }
    }
}

impl CgroupFacts {
    pub fn probe() -> Self {
        // Bytes: a mount point elsewhere that is not UTF-8 must not hide the cgroup mounts.
        let mountinfo = fs::read("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::from_proc(&String::from_utf8_lossy(&mountinfo), &own, &|p| fs::read_to_string(p).ok())
    }

    /// Parses mountinfo and /proc/self/cgroup texts (separate for tests).
    pub fn from_proc(mountinfo: &str, own: &str, read: &dyn Fn(&Path) -> Option<String>) -> Self {
        let mut facts = CgroupFacts::default();
        let (own_v2, own_v1) = own_cgroups(own);
        for mount in mountinfo.lines().filter_map(|l| MountInfo::from_line(l).ok()) {
            let root = unescape(OsStr::new(&mount.root));
            let mount_point = unescape(mount.mount_point.as_os_str());
            // A cgroup namespace or bind mount shows a non-/ root: our path is relative to it.
            let join = |path: &str| -> PathBuf {
                let path = Path::new(path);
                let rel = path.strip_prefix(&root).unwrap_or(path);
                let rel = rel.strip_prefix("/").unwrap_or(rel);
                if rel.as_os_str().is_empty() { mount_point.clone() } else { mount_point.join(rel) }
            };
            match mount.fs_type.as_str() {
                "cgroup2" if facts.v2.is_none() => {
                    if let Some(path) = own_v2 {
                        let own = join(path);
                        let list = |f: &str| {
                            read(&own.join(f))
                                .map(|s| s.split_whitespace().map(String::from).collect())
                                .unwrap_or_default()
                        };
                        facts.v2 = Some(V2Facts {
                            controllers: list("cgroup.controllers"),
                            subtree_control: list("cgroup.subtree_control"),
                            mount: mount_point.clone(),
                            own,
                        });
                    }
                }
                "cgroup" => {
                    for ctrl in ["pids", "memory"] {
                        if mount.super_options.contains_key(ctrl)
                            && let Some(path) = own_v1.get(ctrl)
                        {
                            facts.v1.entry(ctrl.to_string()).or_insert_with(|| join(path));
                        }
                    }
                }
                _ => {}
            }
        }
        facts
    }

    /// The hierarchy that can enforce `controller` ("pids" or "memory") for a child of ours, if
    /// any, and whether we may create cgroups there.
    pub fn backend_for(&self, controller: &str) -> Option<Backend> {
        if let Some(v2) = self.v2.as_ref().filter(|v2| v2.delegates(controller) && writable(&v2.own)) {
            return Some(Backend::V2 { dir: v2.own.clone() });
        }
        self.v1
            .get(controller)
            .filter(|dir| writable(dir))
            .map(|dir| Backend::V1 { controller: controller.to_string(), dir: dir.clone() })
    }
}

/// This process's cgroup v2 path and its v1 path per controller, from `/proc/self/cgroup`.
fn own_cgroups(own: &str) -> (Option<&str>, BTreeMap<&str, &str>) {
    let mut v2 = None;
    let mut v1 = BTreeMap::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if ctrls.is_empty() {
            v2 = Some(path);
        } else {
            for c in ctrls.split(',') {
                v1.insert(c, path);
            }
        }
    }
    (v2, v1)
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// One limit to write into a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitWrite {
    pub backend: Backend,
    pub file: &'static str,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {}: {source}", path.display())]
pub struct CgroupError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// The server's cgroups (one per hierarchy used), created before the fork. Stage 2 joins them
/// through the pre-opened `cgroup.procs` files; dropping this kills what is left and removes them.
#[derive(Debug)]
pub struct ServerCgroups {
    dirs: Vec<(PathBuf, bool)>,
    /// The cgroup v2 directory the eBPF probes are scoped to, when asked for.
    pub monitor_dir: Option<PathBuf>,
    /// Open `cgroup.procs` of each directory, for stage 2 to write "0" (itself) into.
    pub procs: Vec<File>,
    /// The cgroup v2 directory (opened), for stage 2 to be created in, and the index of its
    /// `cgroup.procs` in `procs`.
    pub v2: Option<(OwnedFd, usize)>,
}

pub const PREFIX: &str = "mcp-warden.";

impl ServerCgroups {
    /// Creates `<backend dir>/mcp-warden.<pid>` for each backend and writes its limits, and, with
    /// `monitor_parent`, a cgroup v2 directory there for the eBPF probes to be scoped to.
    pub fn create(limits: &[LimitWrite], monitor_parent: Option<&Path>) -> Result<Self, CgroupError> {
        let mut cgroups = ServerCgroups { dirs: Vec::new(), monitor_dir: None, procs: Vec::new(), v2: None };
        for limit in limits {
            let (parent, is_v2) = match &limit.backend {
                Backend::V2 { dir } => (dir, true),
                Backend::V1 { dir, .. } => (dir, false),
            };
            if is_v2 {
                enable_controller(parent, limit.file.split('.').next().unwrap_or_default())?;
            }
            let dir = cgroups.ensure_dir(parent, is_v2)?;
            let path = dir.join(limit.file);
            fs::write(&path, &limit.value).map_err(|source| CgroupError { action: "write limit to", path, source })?;
        }
        if let Some(parent) = monitor_parent {
            cgroups.monitor_dir = Some(cgroups.ensure_dir(parent, true)?);
        }
        Ok(cgroups)
    }

    /// `<parent>/mcp-warden.<pid>`, created once, with its `cgroup.procs` opened for stage 2.
    fn ensure_dir(&mut self, parent: &Path, is_v2: bool) -> Result<PathBuf, CgroupError> {
        let dir = parent.join(format!("{PREFIX}{}", std::process::id()));
        if self.dirs.iter().any(|(d, _)| *d == dir) {
            return Ok(dir);
        }
        remove_stale(parent, is_v2);
        fs::create_dir(&dir).map_err(|source| CgroupError { action: "create cgroup", path: dir.clone(), source })?;
        self.dirs.push((dir.clone(), is_v2));
        let procs = dir.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&procs)
            .map_err(|source| CgroupError { action: "open", path: procs, source })?;
        if is_v2 {
            let opened =
                File::open(&dir).map_err(|source| CgroupError { action: "open", path: dir.clone(), source })?;
            self.v2 = Some((opened.into(), self.procs.len()));
        }
        self.procs.push(file);
        Ok(dir)
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

fn enable_controller(parent: &Path, controller: &str) -> Result<(), CgroupError> {
    let control = parent.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    fs::write(&control, format!("+{controller}")).map_err(|source| CgroupError {
        action: "enable controller in",
        path: control,
        source,
    })
}

impl Drop for ServerCgroups {
    fn drop(&mut self) {
        self.procs.clear();
        for (dir, is_v2) in &self.dirs {
            if let Err(e) = kill_and_remove(dir, *is_v2) {
                tracing::warn!("failed to remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// Kills every process left in `dir` and removes it, waiting (bounded) for the kernel to empty it.
pub fn kill_and_remove(dir: &Path, is_v2: bool) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                if is_v2
                    && OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.kill"))
                        .and_then(|mut f| f.write_all(b"1"))
                        .is_ok()
                {
                } else {
                    for pid in fs::read_to_string(dir.join("cgroup.procs"))?.lines().filter_map(|l| l.parse().ok()) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes cgroups left by launchers that died without cleaning up (SIGKILL): `mcp-warden.<pid>`
/// whose pid is gone. What is still running in one is the remains of that launcher's server tree:
/// it is killed first.
fn remove_stale(parent: &Path, is_v2: bool) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(e) = kill_and_remove(&entry.path(), is_v2)
        {
            tracing::warn!("failed to remove stale cgroup {}: {e}", entry.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_layout_finds_v1_controllers_and_empty_v2() {
        let own = "8:pids:/\n4:memory:/svc/x\n0::/\n";
        let f = CgroupFacts::from_proc(HYBRID, own, &|p| {
            (p == Path::new("/sys/fs/cgroup/unified/cgroup.controllers")).then(String::new)
        });
        let v2 = f.v2.unwrap();
        assert_eq!(v2.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own, Path::new("/sys/fs/cgroup/unified"));
        assert!(!v2.delegates("pids"));
        assert_eq!(f.v1["pids"], Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(f.v1["memory"], Path::new("/sys/fs/cgroup/memory/svc/x"));
    }

    #[test]
    fn systemd_layout_delegation_is_read_from_subtree_control() {
        let mi = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let own = "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n";
        let f = CgroupFacts::from_proc(mi, own, &|p| {
            let s = p.to_str().unwrap();
            if s.ends_with("app.slice/cgroup.controllers") {
                Some("cpu memory pids\n".into())
            } else if s.ends_with("app.slice/cgroup.subtree_control") {
                Some("memory\n".into())
            } else {
                None
            }
        });
        let v2 = f.v2.unwrap();
        assert_eq!(v2.own, Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice"));
        assert!(v2.delegates("memory"));
        assert!(!v2.delegates("pids"), "not in subtree_control and not the root cgroup");
        assert!(f.v1.is_empty());
    }

    #[test]
    fn mount_points_with_escapes_and_utf8_round_trip() {
        let mi = "41 31 0:38 / /sys/fs/cgroup/\u{fc}n\u{ef}\\040dir\\134x rw,relatime shared:5 - cgroup2 cgroup2 rw\n";
        let f = CgroupFacts::from_proc(mi, "0::/svc\n", &|_| None);
        let v2 = f.v2.unwrap();
        assert_eq!(v2.mount, Path::new("/sys/fs/cgroup/\u{fc}n\u{ef} dir\\x"));
        assert_eq!(v2.own, Path::new("/sys/fs/cgroup/\u{fc}n\u{ef} dir\\x/svc"));
    }
}
