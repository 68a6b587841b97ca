//! Plan: a loaded profile (with the command line's grants laid over it), the run options and the
//! server command, resolved against HostFacts into exactly what stage 2 will enforce, plus a
//! report of every layer on this host.
//!
//! Everything fallible about the *policy* happens here (paths that do not exist, unknown users,
//! a program outside the exec allow-list, a required layer this host cannot enforce), so that
//! `explain` shows the same decisions `run` acts on. Each part resolves itself in its own module;
//! [`Plan::resolve`] only says in which order.

mod blind_spots;
mod command;
mod environment;
mod error;
mod fs;
mod identity;
mod layer;
mod learn;
pub mod limits;
mod links;
mod mcp;
mod monitor;
mod net;
pub mod package_runner;
mod report;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::Destination;
use crate::host::{HostFacts, NotifyUnavailable};
use crate::layers::broker::NetPolicy;
use crate::layers::cgroup::LimitWrite;
use crate::layers::fs_hide::{self, HidePlan};
use crate::layers::fs_view::ViewPlan;
use crate::layers::landlock::{FsAccess, NetPorts};
use crate::layers::namespaces::Namespaces;
use crate::layers::seccomp::SyscallPolicy;
use crate::mcp::McpConfig;
use crate::profile::vars::{ServerArgs, Vars};
use crate::profile::{Level, LoadedProfile, Origin, Size, Syscalls, Violation};

pub use blind_spots::BlindSpot;
pub use command::{CommandPlan, shebang_line};
pub use error::{NotExecutable, PlanError};
pub use fs::FsPlan;
pub use identity::{Identity, NamespaceAccess, PidNamespace};
pub use layer::{Layer, UnknownLayer};
use learn::LearnInputs;
pub use learn::LearnPlan;
pub use limits::LimitsPlan;
pub use monitor::{MonitorPlan, state_home};
pub use net::NetPlan;
pub use report::{Enforcement, LayerReport};

/// What a run is told besides the profile: options that are not profile keys.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--mode audit`: log what would be denied, deny nothing.
    pub audit_mode: bool,
    /// `--audit-log PATH|-|journal`.
    pub audit_log: Option<String>,
    /// `--audit-buffer SIZE`: the ring buffer's size (default 4M).
    pub audit_buffer: Option<Size>,
    /// `--monitor-level full`: the eBPF layer also traces every syscall of the server.
    pub monitor_full: bool,
    /// `--stop-timeout SECONDS`: how long the server has to exit once told to stop (default 5).
    pub stop_timeout: Option<u64>,
    /// `--learn NAME`: a learning run, its sessions kept under NAME.
    pub learn: Option<String>,
    /// `--explain-denials`: file calls traced to explain refusals (a learning run always is).
    pub explain_denials: bool,
    /// `--args-file FILE`: where the run's arguments came from.
    pub args_file: Option<PathBuf>,
}

/// Where the process environment and filesystem facts come from (swappable in tests).
#[derive(Debug)]
pub struct Inputs<'a> {
    pub env: &'a [(OsString, OsString)],
    pub cwd: PathBuf,
    /// The nameservers of this host (read only when the server may resolve names).
    pub resolvers: fn() -> Vec<IpAddr>,
}

impl<'a> Inputs<'a> {
    /// This process's environment and working directory, and the host's `/etc/resolv.conf`.
    pub fn new(env: &'a [(OsString, OsString)], cwd: PathBuf) -> Self {
        Inputs { env, cwd, resolvers: crate::layers::broker::system_resolvers }
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.to_str().map(String::from))
    }
}

/// The resolved plan. Its parts are read through accessors: only this module builds one.
#[derive(Debug, Clone)]
pub struct Plan {
    profile: String,
    description: Option<String>,
    chain: Vec<String>,
    command: CommandPlan,
    identity: Identity,
    fs: FsPlan,
    net: NetPlan,
    syscalls: SyscallPolicy,
    limits: LimitsPlan,
    /// The profile's `[environment] pass` names and globs (what `export` asks the Pod to provide).
    env_pass: Vec<String>,
    pid_namespace: PidNamespace,
    /// The namespaces stage 2 is forked into (the PID namespace, the filesystem view's).
    namespaces: Namespaces,
    /// Guard the x32 syscall number space (the kernel runs x32 syscalls).
    x32_abi: bool,
    /// The kernel can hand refused calls to the supervisor (seccomp user notification).
    user_notification: Result<(), NotifyUnavailable>,
    monitor: MonitorPlan,
    /// The MCP-aware layer, when on: stdio is proxied.
    mcp: Option<McpConfig>,
    /// A learning run (`--learn NAME`).
    learn: Option<LearnPlan>,
    /// File calls go to the supervisor, which explains the refused ones (`--explain-denials`,
    /// and every learning run).
    trace_files: bool,
    /// The server cannot read its own installation: it would start and fail at once.
    fails_at_start: bool,
    /// How long the server has to exit after a forwarded termination signal (or once its client is
    /// gone) before its tree is killed.
    stop_timeout: Duration,
    /// The requirement of each layer (profile, then `--require`).
    levels: BTreeMap<Layer, Level>,
    layers: Vec<LayerReport>,
    warnings: Vec<String>,
}

impl Plan {
    /// `profile` has the command line's grants laid over it ([`LoadedProfile::overlay`]).
    pub fn resolve(
        profile: &LoadedProfile,
        options: &RunOptions,
        command: &[OsString],
        host: &HostFacts,
        inputs: &Inputs<'_>,
    ) -> Result<Plan, PlanError> {
        let p = &profile.layer;
        let mut levels = report::levels(&p.require, options.audit_mode);
        let mut warnings = Vec::new();
        if options.learn.is_some() {
            // A learning run records through the supervisor (seccomp listener, broker), with or
            // without privileges; the eBPF layer's in-kernel network rules would refuse what the
            // run opens.
            levels.insert(Layer::Monitor, Level::Off);
        }
        let identity = Identity::resolve(&p.process, host, inputs, &mut warnings)?;
        let vars = server_vars(command, &identity, inputs);
        let cmd = CommandPlan::resolve(&p.environment, command, &identity, inputs, &vars)?;
        let mut fs = FsPlan::resolve(&p.filesystem, &vars, &inputs.cwd)?;
        if let Some(runtime) = p.runtime {
            fs.grant_runtime(runtime, &cmd.program, &cmd.argv[1..], &inputs.cwd, &identity.home);
        }
        warnings.extend(fs.warnings());
        fs.note_command_links(&cmd);
        let fails_at_start =
            levels[&Layer::Landlock] != Level::Off && server_files_granted(&fs, &cmd, &inputs.cwd, &mut warnings)?;
        tracing_available(options, host)?;
        let learn = match &options.learn {
            Some(name) => {
                let input = LearnInputs {
                    name,
                    profile: &profile.name,
                    cmd: &cmd,
                    home: identity.home.clone(),
                    state_home: state_home(|k| inputs.var(k)),
                    passed: passed_by_flag(&p.environment),
                };
                let (plan, notes) = learn::resolve(input, &mut fs, &vars, &inputs.cwd)?;
                warnings.extend(notes.into_iter().map(|n| format!("learn: {n}")));
                Some(plan)
            }
            None => None,
        };
        let mut net = NetPlan::resolve(&p.network, options.audit_mode, inputs.resolvers)?;
        if learn.is_some() {
            net.open_for_learning(options.audit_mode, inputs.resolvers);
        }
        let syscalls = syscall_policy(&p.syscalls, &net, options.audit_mode);
        let limits = LimitsPlan::resolve(&p.process, levels[&Layer::Limits] != Level::Off, host);
        warnings.extend(limits.clamp_notes());
        let pid_namespace = PidNamespace::resolve(levels[&Layer::PidNamespace], &p.process, &identity, host);
        let namespaces = fs_view_namespaces(levels[&Layer::FsView], pid_namespace, &identity, host);
        let monitor = MonitorPlan::resolve(options, &profile.name, &mcp::program_name(command), host, inputs)?;
        let mcp = (p.mcp.as_ref())
            .map(|section| {
                let pins = mcp::pins_file(&profile.name, command, state_home(|k| inputs.var(k)));
                mcp::resolve_mcp(section, &vars, &inputs.cwd, monitor.audit_log.clone(), pins)
            })
            .transpose()?;
        outside_write_grants(&fs, &kept_files(&monitor, mcp.as_ref(), &profile.files, options, inputs), inputs)?;
        shared_dirs_not_granted_to_root(&fs, &identity)?;
        let mut plan = Plan {
            profile: profile.name.clone(),
            description: p.description.clone(),
            chain: profile.chain.clone(),
            command: cmd,
            identity,
            fs,
            net,
            syscalls,
            limits,
            env_pass: p.environment.pass.iter().map(|n| n.value.clone()).collect(),
            pid_namespace,
            namespaces,
            x32_abi: host.x32_abi,
            user_notification: host.user_notification.clone(),
            monitor,
            mcp,
            trace_files: learn.is_some() || options.explain_denials,
            fails_at_start,
            learn,
            stop_timeout: Duration::from_secs(options.stop_timeout.unwrap_or(5)),
            levels,
            layers: Vec::new(),
            warnings,
        };
        let pid_ns_disabled = p.process.pid_namespace == Some(false);
        plan.layers = Layer::ALL.iter().map(|l| plan.report(*l, host, pid_ns_disabled)).collect();
        plan.complete_mcp();
        plan.check_mcp(host)?;
        Ok(plan)
    }

    /// What the MCP layer needs of the resolved plan: the grants roots are narrowed to, and the
    /// posture it tells the client.
    fn complete_mcp(&mut self) {
        if self.mcp.is_none() {
            return;
        }
        let grants = self.fs.paths.keys().cloned().collect();
        let plan = format!("{:?}", (&self.command, &self.fs, &self.net, &self.syscalls, &self.levels));
        let posture = mcp::posture(&self.layers, &plan);
        if let Some(m) = self.mcp.as_mut() {
            m.grants = grants;
            m.posture = Some(posture);
        }
    }

    /// The MCP layer's annotations need the seccomp listener to put descriptors into the server
    /// (Linux 5.14), and its scratch directories must be writable at all.
    fn check_mcp(&self, host: &HostFacts) -> Result<(), PlanError> {
        let Some(m) = &self.mcp else { return Ok(()) };
        if m.annotations.enforce && !(host.notifies() && host.socket_swap) {
            return Err(PlanError::Unenforceable {
                layer: "mcp annotations",
                why: "holding tools to their annotations needs seccomp user notification with SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.14), which this kernel lacks; set [mcp] enforce-annotations = false to run with the annotations unchecked".into(),
            });
        }
        let writable = |d: &PathBuf| self.fs.paths.iter().any(|(p, (a, _))| a.write && d.starts_with(p));
        if let Some(dir) = m.scratch.iter().find(|d| !writable(d)) {
            return Err(PlanError::Invalid {
                what: "[mcp] scratch".into(),
                why: format!("{} is not inside a write grant; add it to [filesystem] write", dir.display()),
            });
        }
        Ok(())
    }

    /// The first required layer this host cannot enforce in full; best-effort shortfalls become
    /// warnings.
    pub fn check_requirements(&mut self) -> Result<(), PlanError> {
        for r in &self.layers {
            let why = match &r.enforcement {
                Enforcement::Partial(why) | Enforcement::Missing(why) => why,
                Enforcement::Full | Enforcement::Off => continue,
            };
            if r.level == Level::Required {
                return Err(PlanError::Unenforceable { layer: r.layer.name(), why: why.clone() });
            }
            self.warnings.push(format!("{} is best-effort and not fully enforced: {why}", r.layer.name()));
        }
        Ok(())
    }

    /// This layer's enforcement on this host.
    fn report(&self, layer: Layer, host: &HostFacts, pid_ns_disabled: bool) -> LayerReport {
        let level = self.level(layer);
        let (enforcement, mechanism) = match layer {
            _ if level == Level::Off => (Enforcement::Off, "off".to_string()),
            Layer::Landlock => report::landlock(host),
            Layer::Seccomp => report::seccomp(host, self.syscalls.deny.len(), self.syscalls.action),
            Layer::Limits => self.limits.report(self.identity.uid),
            Layer::Network => self.net.report(&net::Enforcers {
                host,
                monitor_runs: self.monitor_runs(),
                landlock_on: self.level(Layer::Landlock) != Level::Off,
                seccomp_on: self.level(Layer::Seccomp) != Level::Off,
            }),
            Layer::Monitor => report::monitor(&self.monitor),
            Layer::AuditLog => report::audit_log(&self.monitor, self.monitor_runs() || self.mcp.is_some(), level),
            Layer::PidNamespace => report::pid_namespace(self.pid_namespace, pid_ns_disabled, host),
            Layer::FsView => report::fs_view(self.namespaces, host, self.view().binds.len()),
            Layer::FsHide => report::fs_hide(&report::HideInputs {
                ns: self.namespaces,
                host,
                view_on: self.level(Layer::FsView) != Level::Off,
                landlock_on: self.level(Layer::Landlock) != Level::Off,
                staging: fs_hide::staging_dir().is_some(),
                plan: self.hide().as_ref(),
            }),
        };
        LayerReport { layer, level, enforcement, mechanism }
    }
}

/// The namespaces of stage 2: the PID namespace as resolved, plus a mount namespace for the
/// filesystem view where this run can make one (root, or user namespaces for a launcher that does
/// not switch users).
fn fs_view_namespaces(level: Level, pid: PidNamespace, identity: &Identity, host: &HostFacts) -> Namespaces {
    let access = NamespaceAccess::of(identity, host);
    Namespaces::new(pid, level != Level::Off && access.is_some(), access == Some(NamespaceAccess::Privileged))
}

/// The variables given with `--pass-env` (a client config entry's `env`, as `wrap` writes it).
fn passed_by_flag(section: &crate::profile::Environment) -> Vec<String> {
    section.pass.iter().filter(|s| s.origin.flag() == Some("--pass-env")).map(|s| s.value.clone()).collect()
}

/// Variables for the server's user, its command line and the launcher's environment.
fn server_vars(command: &[OsString], identity: &Identity, inputs: &Inputs<'_>) -> Vars {
    let server = ServerArgs {
        args: command.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect(),
        env: inputs.env.iter().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string()))).collect(),
    };
    let home = identity.home.to_string_lossy().into_owned();
    Vars::new(&home, &identity.name, &inputs.cwd.to_string_lossy(), &|k| inputs.var(k)).with_server(server)
}

/// The default deny-set with the profile's changes; socket families from the network plan. In
/// audit mode a denied syscall is logged, not refused. Names were checked when the profile loaded.
fn syscall_policy(section: &Syscalls, net: &NetPlan, audit_mode: bool) -> SyscallPolicy {
    let action = if audit_mode { Violation::Log } else { section.on_violation.unwrap_or(Violation::Errno) };
    let names = |list: &[crate::profile::Sourced<String>]| {
        list.iter().filter_map(|s| s.value.parse::<syscalls::Sysno>().ok()).collect::<Vec<_>>()
    };
    SyscallPolicy::new(names(&section.allow), names(&section.deny), action, net.sockets)
}

/// What the rest of the launcher reads.
impl Plan {
    /// The profile's name as the user gave it.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Every profile file merged, bases first.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    pub fn command(&self) -> &CommandPlan {
        &self.command
    }

    pub fn program(&self) -> &Path {
        &self.command.program
    }

    pub fn argv(&self) -> &[OsString] {
        &self.command.argv
    }

    pub fn env(&self) -> &[(OsString, OsString)] {
        &self.command.env
    }

    pub fn cwd(&self) -> &Path {
        &self.command.cwd
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn fs(&self) -> &FsPlan {
        &self.fs
    }

    /// Canonical path -> rights, with the first place each was granted.
    pub fn paths(&self) -> &BTreeMap<PathBuf, (FsAccess, Origin)> {
        &self.fs.paths
    }

    /// The learning run, when this is one.
    pub fn learn(&self) -> Option<&LearnPlan> {
        self.learn.as_ref()
    }

    /// The write grant a file is in, holds, or is reached through (by name or by place): a client
    /// configuration there is the server's to rewrite, its own entry included.
    pub fn write_grant_reaching(&self, file: &Path, cwd: &Path) -> Option<PathBuf> {
        let mounts = crate::mounts::Mounts::of_this_process();
        let grants = write_grant_places(&self.fs, &mounts);
        let resolved = crate::paths::resolve(file, cwd);
        grant_reaching(file, &resolved, &grants, &mounts, cwd).cloned()
    }

    /// Would the server start and fail at once (its script, virtualenv or interpreter unreadable;
    /// a warning says what to grant)?
    pub fn fails_at_start(&self) -> bool {
        self.fails_at_start
    }

    /// Are file calls traced (to explain refusals, and to record them in a learning run)?
    pub fn trace_files(&self) -> bool {
        self.trace_files
    }

    pub fn private_tmp(&self) -> bool {
        self.fs.private_tmp
    }

    pub fn net(&self) -> &NetPlan {
        &self.net
    }

    pub fn ports(&self) -> &NetPorts {
        &self.net.ports
    }

    /// The network broker's policy, unless the eBPF layer (loaded) enforces every rule itself.
    pub fn broker_policy(&self, monitor_loaded: bool) -> Option<&NetPolicy> {
        self.net.broker_policy(monitor_loaded)
    }

    /// The network allow-list as eBPF rules (cgroup socket programs).
    pub fn net_rules(&self) -> Vec<mcp_warden_ebpf_common::NetRule> {
        self.net.ebpf_rules()
    }

    pub fn syscalls(&self) -> &SyscallPolicy {
        &self.syscalls
    }

    pub fn x32_abi(&self) -> bool {
        self.x32_abi
    }

    /// Can refused calls be handed to the supervisor to be recorded?
    pub fn user_notification(&self) -> Result<(), &NotifyUnavailable> {
        match &self.user_notification {
            Ok(()) => Ok(()),
            Err(why) => Err(why),
        }
    }

    pub fn env_pass(&self) -> &[String] {
        &self.env_pass
    }

    pub fn limits(&self) -> &LimitsPlan {
        &self.limits
    }

    /// The limits to write into the server's cgroups.
    pub fn cgroup_limits(&self) -> &[LimitWrite] {
        &self.limits.cgroup
    }

    pub fn pid_namespace(&self) -> PidNamespace {
        self.pid_namespace
    }

    /// The namespaces stage 2 is forked into.
    pub fn namespaces(&self) -> Namespaces {
        self.namespaces
    }

    /// The filesystem view's mounts for the granted paths, empty when there is no view. (The
    /// supervisor adds the private TMPDIR, which exists only once it runs.)
    pub fn view(&self) -> ViewPlan {
        match self.namespaces.mount {
            true => ViewPlan::new(&self.granted_paths()),
            false => ViewPlan::default(),
        }
    }

    /// The hidden root for the granted paths, `None` when it is not built (the layer is off, there
    /// is no mount namespace, or `/` is granted). (The supervisor adds the private TMPDIR.)
    pub fn hide(&self) -> Option<HidePlan> {
        self.hide_with(&self.granted_paths())
    }

    /// The hidden root for `paths` (the plan's grants, and what the supervisor adds to them).
    pub fn hide_with(&self, paths: &BTreeMap<PathBuf, FsAccess>) -> Option<HidePlan> {
        let on = [Layer::FsView, Layer::FsHide].iter().all(|l| self.level(*l) != Level::Off);
        if !on || !self.namespaces.mount {
            return None;
        }
        HidePlan::new(paths, &self.fs.links, &self.command.cwd, fs_hide::staging_dir()?)
    }

    /// Canonical path -> rights, without the origins.
    pub fn granted_paths(&self) -> BTreeMap<PathBuf, FsAccess> {
        self.fs.paths.iter().map(|(p, (a, _))| (p.clone(), *a)).collect()
    }

    pub fn monitor(&self) -> &MonitorPlan {
        &self.monitor
    }

    pub fn audit_mode(&self) -> bool {
        self.monitor.audit_mode
    }

    pub fn audit_log(&self) -> &Destination {
        &self.monitor.audit_log
    }

    /// Bytes of the eBPF ring buffer.
    pub fn audit_buffer(&self) -> u32 {
        self.monitor.ring_bytes
    }

    /// `--monitor-level full`: opens, syscall counts and file refusals from per-syscall tracing.
    pub fn monitor_full(&self) -> bool {
        self.monitor.full
    }

    /// Our cgroup v2 directory, under which the server's monitored cgroup is created.
    pub fn monitor_cgroup_parent(&self) -> Option<&Path> {
        self.monitor.cgroup_parent.as_deref()
    }

    /// Will the eBPF layer be loaded?
    pub fn monitor_runs(&self) -> bool {
        self.level(Layer::Monitor) != Level::Off && self.monitor.unavailable.is_none()
    }

    pub fn mcp(&self) -> Option<&McpConfig> {
        self.mcp.as_ref()
    }

    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }

    pub fn level(&self, layer: Layer) -> Level {
        self.levels.get(&layer).copied().unwrap_or(Level::Off)
    }

    /// Every layer's report, in [`Layer::ALL`] order.
    pub fn layers(&self) -> &[LayerReport] {
        &self.layers
    }

    pub fn enforcement(&self, layer: Layer) -> &Enforcement {
        self.layers.iter().find(|r| r.layer == layer).map_or(&Enforcement::Off, |r| &r.enforcement)
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The server's program may run, and its installation be read (Landlock on): an error for a program
/// outside the exec grants; `true`, with a warning, when the script, its virtualenv or its
/// interpreter's installation is outside every read grant (the server would start and fail at once).
fn server_files_granted(
    fs: &FsPlan,
    cmd: &CommandPlan,
    cwd: &Path,
    warnings: &mut Vec<String>,
) -> Result<bool, PlanError> {
    fs.check_exec_allowed(&cmd.program)?;
    let Some((what, path, dir)) = fs.unreadable_installation(&cmd.program, &cmd.argv[1..], cwd) else {
        return Ok(false);
    };
    warnings.push(format!(
        "the server's {what} {} is outside every read grant: the server would start and fail at once; grant it with `--allow-read {}` (or a runtime profile such as `node` or `python`)",
        path.display(),
        dir.display()
    ));
    Ok(true)
}

/// `learn` and `--explain-denials` trace file calls through the seccomp listener: refused where
/// this host cannot hand calls to the supervisor.
fn tracing_available(options: &RunOptions, host: &HostFacts) -> Result<(), PlanError> {
    match &host.user_notification {
        Err(why) if options.learn.is_some() || options.explain_denials => Err(PlanError::Unenforceable {
            layer: if options.learn.is_some() { "learn" } else { "explain-denials" },
            why: format!("it traces file calls through seccomp user notification and pidfd_getfd: {why}"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;

fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// A server running as uid 0 owns, in effect, every directory it may write: on a directory the host's
/// users share (sticky or world-writable, like /tmp) it could drop the sticky bit or change the
/// owner, for everyone. Landlock has no right for that and the view binds a write grant writable.
fn shared_dirs_not_granted_to_root(fs: &FsPlan, identity: &Identity) -> Result<(), PlanError> {
    use std::os::unix::fs::PermissionsExt;
    if identity.uid != 0 {
        return Ok(());
    }
    for (grant, _) in fs.paths.iter().filter(|(_, (access, _))| access.write) {
        let Ok(meta) = std::fs::metadata(grant) else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() && mode & (libc::S_ISVTX | libc::S_IWOTH) != 0 {
            return Err(PlanError::SharedDirForRoot { grant: grant.clone(), mode });
        }
    }
    Ok(())
}

/// What a server must not be able to erase, forge or redirect: the records of what it did (the
/// audit log, the tool pins, the state directory of every server's defaults) and what its next
/// start reads (its profile files and argument file: a server that could rewrite them would give
/// itself any grant, or switch a layer off, from then on).
fn kept_files(
    monitor: &MonitorPlan,
    mcp: Option<&McpConfig>,
    profile_files: &[PathBuf],
    options: &RunOptions,
    inputs: &Inputs<'_>,
) -> Vec<(&'static str, PathBuf)> {
    let state = state_home(|k| inputs.var(k)).map(|s| s.join("mcp-warden"));
    let records = [
        ("audit log", monitor.audit_log.file().map(Path::to_path_buf)),
        ("tool pin file", mcp.and_then(|m| m.pins.clone())),
        ("state directory of mcp-warden (every server's default audit logs and tool pins)", state),
        ("argument file", options.args_file.clone()),
    ];
    let profiles = profile_files.iter().map(|f| ("profile file", f.clone()));
    records.into_iter().filter_map(|(what, path)| Some((what, path?))).chain(profiles).collect()
}

/// Each `(what, path)` is outside every write grant, holds none, and is not reached through one
/// ([`grant_reaching`]), nor has another hard link (which could be in a grant). Else the server
/// could erase, forge or redirect it.
fn outside_write_grants(fs: &FsPlan, paths: &[(&'static str, PathBuf)], inputs: &Inputs<'_>) -> Result<(), PlanError> {
    use std::os::unix::fs::MetadataExt;
    let mounts = crate::mounts::Mounts::of_this_process();
    let grants = write_grant_places(fs, &mounts);
    for (what, path) in paths {
        let resolved = crate::paths::resolve(path, &inputs.cwd);
        if is_char_device(&resolved) {
            continue; // /dev/null or a terminal: nothing kept there to erase or forge
        }
        if let Some(grant) = grant_reaching(path, &resolved, &grants, &mounts, &inputs.cwd) {
            return Err(PlanError::RecordInGrant { what, path: path.clone(), grant: grant.clone() });
        }
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_file() && m.nlink() > 1 => {
                return Err(PlanError::OtherLinks { what, path: path.clone(), links: m.nlink() });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each write grant, with the places it reaches: its own, and every mount beneath it.
fn write_grant_places<'f>(
    fs: &'f FsPlan,
    mounts: &crate::mounts::Mounts,
) -> Vec<(&'f PathBuf, Vec<crate::mounts::Place>)> {
    (fs.paths.iter())
        .filter(|(_, (access, _))| access.write)
        .map(|(grant, _)| (grant, mounts.places_under(grant)))
        .collect()
}

/// The write grant `path` (resolved: `resolved`) is in, holds, or is reached through: by name (a
/// directory of the way there, or of a symlink on it, in the grant), or by place (the grant is, or
/// holds, a mount of one of those directories: one directory, two names).
fn grant_reaching<'g>(
    path: &Path,
    resolved: &Path,
    grants: &[(&'g PathBuf, Vec<crate::mounts::Place>)],
    mounts: &crate::mounts::Mounts,
    cwd: &Path,
) -> Option<&'g PathBuf> {
    let mut way = crate::paths::directories_read(path, cwd);
    way.push(resolved.to_path_buf());
    let places: Vec<_> = way.iter().filter_map(|dir| mounts.place(dir)).collect();
    grants.iter().find_map(|(grant, held)| {
        let by_name = way.iter().any(|dir| dir.starts_with(grant)) || grant.starts_with(resolved);
        let by_place = places.iter().any(|p| held.iter().any(|h| p.within(h)));
        (by_name || by_place).then_some(*grant)
    })
}
