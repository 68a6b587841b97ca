//! Plan: a loaded profile, the command-line grants and the server command, resolved against
//! HostFacts into exactly what stage 2 will enforce, plus a report of every layer on this host.
//!
//! Everything fallible about the *policy* happens here (paths that do not exist, unknown users,
//! a program outside the exec allow-list, a required layer this host cannot enforce), so that
//! `explain` shows the same decisions `run` acts on.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::audit::Destination;
use crate::host::{HostFacts, LANDLOCK_TARGET_ABI};
use crate::layers::cgroup::{Backend, LimitWrite};
use crate::layers::landlock::{FsAccess, NetPorts};
use crate::layers::seccomp::{SocketPolicy, SyscallPolicy};
use crate::profile::load::{Origin, Sourced};
use crate::profile::vars::Vars;
use crate::profile::{Endpoint, Level, LoadedProfile, Size, Violation};

pub mod package_runner;

/// Grants given on the command line, on top of the profile.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Vec<PathBuf>,
    pub connect: Vec<Endpoint>,
    pub bind: Vec<u16>,
    pub pass_env: Vec<String>,
    pub set_env: Vec<(String, String)>,
    pub max_processes: Option<u64>,
    pub max_memory: Option<Size>,
    pub max_open_files: Option<u64>,
    pub max_file_size: Option<Size>,
    pub max_cpu_time: Option<u64>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// `--require LAYER=LEVEL` overrides.
    pub require: Vec<(Layer, Level)>,
    /// `--mode audit`: log what would be denied, deny nothing.
    pub audit_mode: bool,
    /// `--audit-log PATH|-`.
    pub audit_log: Option<String>,
    /// `--audit-buffer SIZE`: the ring buffer's size (default 4M).
    pub audit_buffer: Option<Size>,
    /// `--stop-timeout SECONDS`: how long the server has to exit once told to stop.
    pub stop_timeout: Option<u64>,
    pub mcp: McpGrants,
}

/// The MCP layer's command-line flags.
#[derive(Debug, Clone, Default)]
pub struct McpGrants {
    pub on: bool,
    pub allow_tools: Vec<String>,
    pub deny_tools: Vec<String>,
    pub rate_limits: Vec<(String, crate::mcp::policy::Rate)>,
    pub no_redact: bool,
    pub hide_errors: bool,
}

impl McpGrants {
    fn any(&self) -> bool {
        self.on
            || !self.allow_tools.is_empty()
            || !self.deny_tools.is_empty()
            || !self.rate_limits.is_empty()
            || self.no_redact
            || self.hide_errors
    }
}

/// The layers a profile sets a requirement for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Landlock,
    Seccomp,
    Limits,
    Network,
    PidNamespace,
    Monitor,
    AuditLog,
}

impl Layer {
    pub const ALL: [Layer; 7] = [
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Limits,
        Layer::Network,
        Layer::PidNamespace,
        Layer::Monitor,
        Layer::AuditLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Limits => "limits",
            Layer::Network => "network",
            Layer::PidNamespace => "pid-namespace",
            Layer::Monitor => "monitor",
            Layer::AuditLog => "audit-log",
        }
    }

    fn default_level(self) -> Level {
        match self {
            Layer::PidNamespace | Layer::Monitor => Level::BestEffort,
            _ => Level::Required,
        }
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Layer::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown layer `{s}` (one of: {})", Layer::ALL.map(Layer::name).join(", ")))
    }
}

/// Who the server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
    /// `setgroups`/`setresgid`/`setresuid` are needed (started as root with a user named).
    pub switch: bool,
}

/// How the server tree gets its own PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidNamespace {
    Off,
    /// `CLONE_NEWPID` (root).
    Plain,
    /// `CLONE_NEWUSER | CLONE_NEWPID`, mapping the caller's own uid and gid (unprivileged).
    WithUserNamespace,
}

/// rlimits to set (core dumps are always off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    pub memory: Option<Size>,
    pub file_size: Option<Size>,
    pub cpu_time: Option<u64>,
}

/// Whether a layer is enforced in full on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    Full,
    Partial(String),
    Missing(String),
    Off,
}

#[derive(Debug, Clone)]
pub struct LayerReport {
    pub layer: Layer,
    pub level: Level,
    pub enforcement: Enforcement,
    /// What enforces it, for `explain`.
    pub mechanism: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: String,
    pub description: Option<String>,
    pub chain: Vec<String>,
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    /// `npx -y PACKAGE`, resolved to the installed copy: `(package@version, script)`.
    pub npx: Option<(String, PathBuf)>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub identity: Identity,
    /// Canonical path -> rights, with the first place each was granted.
    pub paths: BTreeMap<PathBuf, (FsAccess, Origin)>,
    /// A private `TMPDIR`, created by the supervisor at start and removed at exit.
    pub private_tmp: bool,
    /// Optional (`?`) paths absent on this host.
    pub skipped: Vec<Sourced<String>>,
    pub ports: NetPorts,
    /// `ADDR:PORT` destinations, whose address part needs the eBPF layer.
    pub address_rules: Vec<Sourced<Endpoint>>,
    /// TCP ports granted to any destination address.
    pub connect_any: std::collections::BTreeSet<u16>,
    /// UDP destinations.
    pub udp_rules: Vec<Sourced<Endpoint>>,
    /// `HOST:PORT` destinations.
    pub host_rules: Vec<Sourced<Endpoint>>,
    /// Networks a bare-port grant never reaches.
    pub deny: Vec<Sourced<crate::profile::IpNet>>,
    /// Nameservers the server may query (`dns = true` or a `HOST:PORT` destination).
    pub resolvers: Vec<std::net::IpAddr>,
    /// The connect broker's policy, when the network allow-list names destinations (addresses,
    /// names, UDP destinations, denied ranges) that Landlock's port rules cannot express.
    pub broker: Option<crate::layers::broker::NetPolicy>,
    /// The eBPF cgroup programs express every rule of `broker` (addresses and UDP destinations,
    /// no names, `deny` or `dns`): when the eBPF layer loads, it enforces them and the broker is
    /// not installed.
    pub ebpf_covers_network: bool,
    pub syscalls: SyscallPolicy,
    pub limits: Limits,
    pub cgroup_limits: Vec<LimitWrite>,
    pub pid_namespace: PidNamespace,
    /// Guard the x32 syscall number space (the kernel runs x32 syscalls).
    pub x32_abi: bool,
    /// `--mode audit`: the eBPF layer and seccomp log instead of denying, Landlock is off.
    pub audit_mode: bool,
    /// Where the audit log goes (when the monitor or the MCP layer runs).
    pub audit_log: Destination,
    /// The MCP-aware layer, when on: stdio is proxied.
    pub mcp: Option<crate::mcp::McpConfig>,
    /// Bytes of the eBPF ring buffer.
    pub audit_buffer: u32,
    /// How long the server has to exit after a forwarded termination signal (or once its client is
    /// gone) before its tree is killed.
    pub stop_timeout: std::time::Duration,
    /// Why the eBPF layer cannot run on this host, if it cannot.
    pub monitor_unavailable: Option<String>,
    /// Our cgroup v2 directory, under which the server's monitored cgroup is created.
    pub monitor_cgroup_parent: Option<PathBuf>,
    /// The requirement of each layer (profile, then `--require`).
    pub levels: BTreeMap<Layer, Level>,
    pub layers: Vec<LayerReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{key} path `{path}` ({origin}): {why}")]
    Path { key: &'static str, path: String, origin: Origin, why: String },
    #[error("command not found: `{program}` (searched PATH={path})")]
    NotFound { program: String, path: String },
    #[error("`{}` is not executable: {why}", path.display())]
    NotExecutable { path: PathBuf, why: String },
    #[error("`{}` is outside the profile's exec allow-list", path.display())]
    ExecNotAllowed { path: PathBuf, dir: PathBuf },
    #[error("no command given")]
    NoCommand,
    #[error("unknown {kind} `{name}`")]
    UnknownId { kind: &'static str, name: String },
    #[error("cannot run the server as `{user}`: switching user needs root (mcp-warden runs as uid {uid})")]
    SwitchNeedsRoot { user: String, uid: u32 },
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    #[error("cannot run the npx/uvx command hardened: {why}")]
    Npx { why: String },
    #[error("{layer} is required but cannot be enforced on this host: {why}")]
    Unenforceable { layer: &'static str, why: String },
}

impl crate::error::Diagnose for PlanError {
    /// 127 not found, 126 not executable, 125 every other launcher failure.
    fn exit_code(&self) -> i32 {
        match self {
            PlanError::NotFound { .. } => 127,
            PlanError::NotExecutable { .. } => 126,
            _ => 125,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            PlanError::Path { why, .. } if why.contains("No such file") => {
                "create it, fix the path, or mark a path that may be absent with a trailing `?`".into()
            }
            PlanError::Path { .. } => return None,
            PlanError::Npx { .. } => {
                "install the package once outside the sandbox (`npx -y PACKAGE --help` or `uvx PACKAGE --help`, which fetch it into their cache), then run it under mcp-warden: the hardened run never fetches".into()
            }
            PlanError::NotFound { .. } => {
                "give the full path of the server program, or pass PATH with --pass-env PATH".into()
            }
            PlanError::NotExecutable { .. } => "check the file's mode and the filesystem's noexec option".into(),
            PlanError::ExecNotAllowed { dir, .. } => format!("grant it with `--allow-exec {}`", dir.display()),
            PlanError::NoCommand => {
                "put the server command after `--`: mcp-warden run --profile strict -- CMD ARGS".into()
            }
            PlanError::UnknownId { .. } => "use a user (or group) that exists in /etc/passwd (/etc/group)".into(),
            PlanError::SwitchNeedsRoot { .. } => "drop `user` from the profile, or start mcp-warden as root".into(),
            PlanError::Invalid { .. } => return None,
            PlanError::Unenforceable { layer, .. } => format!(
                "`mcp-warden doctor` shows what this host supports; to run anyway with less protection, set `{layer} = \"best-effort\"` under [require] or pass `--require {layer}=best-effort`"
            ),
        })
    }
}

/// Where the process environment and filesystem facts come from (swappable in tests).
#[derive(Debug)]
pub struct Inputs<'a> {
    pub env: &'a [(OsString, OsString)],
    pub cwd: PathBuf,
}

impl Inputs<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.env.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.to_str().map(String::from))
    }
}

impl Plan {
    pub fn resolve(
        profile: &LoadedProfile,
        grants: &Grants,
        command: &[OsString],
        host: &HostFacts,
        inputs: &Inputs<'_>,
    ) -> Result<Plan, PlanError> {
        let mut levels = levels(profile, grants);
        if grants.audit_mode {
            // Landlock has no log-only mode: in audit mode the filesystem is open and every open
            // is logged with the verdict the allow-list would have given.
            levels.insert(Layer::Landlock, Level::Off);
        }
        let mut warnings = Vec::new();
        let identity = resolve_identity(profile, grants, host, inputs, &mut warnings)?;
        let server = crate::profile::vars::ServerArgs {
            args: command.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect(),
            env: inputs
                .env
                .iter()
                .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
                .collect(),
        };
        let home = identity.home.to_string_lossy().into_owned();
        let vars =
            Vars::new(&home, &identity.name, &inputs.cwd.to_string_lossy(), &|k| inputs.var(k)).with_server(server);
        let env = resolve_env(profile, grants, inputs, &vars, &identity)?;

        // `npx -y PACKAGE`: run the installed copy with node, without npm (see npx.rs).
        let caches = crate::plan::package_runner::Caches {
            npm: inputs.var("npm_config_cache").map(PathBuf::from).unwrap_or_else(|| identity.home.join(".npm")),
            uv: inputs.var("UV_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
                inputs
                    .var("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| identity.home.join(".cache"))
                    .join("uv")
            }),
        };
        let npx = crate::plan::package_runner::resolve(command, &caches).map_err(|why| PlanError::Npx { why })?;
        let rewritten: Vec<OsString>;
        let command = match &npx {
            Some(r) => {
                rewritten = [r.interpreter.clone().into_os_string(), r.script.clone().into_os_string()]
                    .into_iter()
                    .chain(r.args.iter().cloned())
                    .collect();
                &rewritten[..]
            }
            None => command,
        };
        let (arg0, args) = command.split_first().ok_or(PlanError::NoCommand)?;
        let search_path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let program = resolve_program(arg0, search_path.as_deref(), &inputs.cwd)?;
        let mut argv = vec![arg0.clone()];
        argv.extend(args.iter().cloned());

        let (mut paths, skipped) = resolve_paths(profile, grants, &vars, &inputs.cwd)?;
        if let Some(runtime) = profile.runtime {
            for dir in installation(runtime, &program, &argv[1..], &inputs.cwd) {
                let slot =
                    paths.entry(dir).or_insert((FsAccess::EXEC, format!("runtime = {runtime:?} (its installation)")));
                slot.0 = slot.0.union(FsAccess::EXEC);
            }
        }
        if levels[&Layer::Landlock] != Level::Off {
            check_exec_allowed(&program, &paths)?;
        }

        let mut ports = NetPorts::default();
        let mut address_rules = Vec::new();
        let mut connect_any = std::collections::BTreeSet::new();
        let mut udp_rules = Vec::new();
        let cli_endpoints =
            grants.connect.iter().map(|e| Sourced { value: e.clone(), origin: "--allow-connect".into() });
        let mut host_rules = Vec::new();
        for e in profile.connect.iter().cloned().chain(cli_endpoints) {
            if e.value.host.is_some() {
                if !e.value.udp {
                    ports.connect.insert(e.value.port);
                }
                host_rules.push(e);
                continue;
            }
            if e.value.udp {
                udp_rules.push(e);
                continue;
            }
            ports.connect.insert(e.value.port);
            if e.value.addr.is_some() {
                address_rules.push(e);
            } else {
                connect_any.insert(e.value.port);
            }
        }
        ports.bind.extend(profile.bind.iter().chain(&grants.bind));
        let dns = profile.dns || !host_rules.is_empty();
        let resolvers = if dns { crate::layers::broker::system_resolvers() } else { Vec::new() };
        if dns {
            ports.connect.insert(53);
        }
        let sockets = SocketPolicy {
            tcp: !ports.connect.is_empty() || !ports.bind.is_empty(),
            udp: profile.udp || !udp_rules.is_empty() || dns,
            unix: profile.unix,
        };
        let ebpf_covers_network = host_rules.is_empty() && profile.deny.is_empty() && !dns;
        let brokered = dns || !address_rules.is_empty() || !udp_rules.is_empty() || !profile.deny.is_empty();
        if brokered && profile.unix {
            return Err(PlanError::Invalid {
                what: "network allow-list".into(),
                why: "`unix = true` cannot be combined with address, host, UDP, `deny` or `dns` rules: the network broker that enforces those mediates IPv4/IPv6 only".into(),
            });
        }
        let broker = brokered.then(|| {
            use crate::layers::broker::{NetPolicy, Proto};
            let proto = |e: &Endpoint| if e.udp { Proto::Udp } else { Proto::Tcp };
            NetPolicy {
                tcp_ports: connect_any.clone(),
                udp_ports: udp_rules.iter().filter(|e| e.value.addr.is_none()).map(|e| e.value.port).collect(),
                udp_any: profile.udp,
                exact: address_rules
                    .iter()
                    .chain(&udp_rules)
                    .filter_map(|e| e.value.addr.map(|a| (proto(&e.value), a, e.value.port)))
                    .collect(),
                hosts: host_rules
                    .iter()
                    .filter_map(|e| e.value.host.clone().map(|h| (proto(&e.value), h, e.value.port)))
                    .collect(),
                resolvers: resolvers.clone(),
                deny: profile.deny.iter().map(|d| d.value).collect(),
                audit: grants.audit_mode,
            }
        });
        let action = if grants.audit_mode { Violation::Log } else { profile.on_violation.unwrap_or(Violation::Errno) };
        let syscalls = SyscallPolicy::new(
            profile.syscalls_allow.iter().map(|s| s.value),
            profile.syscalls_deny.iter().map(|s| s.value),
            action,
            sockets,
        );

        let p = &profile.process;
        let limits = Limits {
            processes: grants.max_processes.or(p.max_processes),
            open_files: grants.max_open_files.or(p.max_open_files),
            memory: grants.max_memory.or(p.max_memory),
            file_size: grants.max_file_size.or(p.max_file_size),
            cpu_time: grants.max_cpu_time.or(p.max_cpu_time),
        };
        let cgroup_limits =
            if levels[&Layer::Limits] == Level::Off { Vec::new() } else { cgroup_limits(&limits, host) };

        let pid_namespace = match (levels[&Layer::PidNamespace], p.pid_namespace.unwrap_or(true)) {
            (Level::Off, _) | (_, false) => PidNamespace::Off,
            _ if host.has_cap(caps::Capability::CAP_SYS_ADMIN) => PidNamespace::Plain,
            _ if host.user_namespaces.is_ok() && !identity.switch => PidNamespace::WithUserNamespace,
            _ => PidNamespace::Off,
        };

        let mut plan = Plan {
            profile: profile.name.clone(),
            description: profile.description.clone(),
            chain: profile.chain.clone(),
            program,
            argv,
            npx: npx.map(|r| (format!("{}@{}", r.package, r.version), r.script)),
            env,
            cwd: inputs.cwd.clone(),
            identity,
            paths,
            private_tmp: profile.private_tmp,
            skipped,
            ports,
            address_rules,
            connect_any,
            udp_rules,
            host_rules,
            deny: profile.deny.clone(),
            resolvers,
            ebpf_covers_network,
            broker,
            syscalls,
            limits,
            cgroup_limits,
            pid_namespace,
            x32_abi: host.x32_abi,
            audit_mode: grants.audit_mode,
            audit_log: match &grants.audit_log {
                Some(d) => Destination::parse(d),
                // A systemd service logs to the journal.
                None if inputs.var("INVOCATION_ID").is_some() && Path::new("/run/systemd/journal/socket").exists() => {
                    Destination::Journal(None)
                }
                None => Destination::File(default_audit_log(inputs, &profile.name, &plan_program_name(command))),
            },
            mcp: None,
            monitor_unavailable: monitor_unavailable(host),
            monitor_cgroup_parent: host.cgroups.v2.as_ref().map(|v2| v2.own.clone()),
            audit_buffer: ring_size(grants.audit_buffer.unwrap_or(Size(4 << 20)))?,
            stop_timeout: std::time::Duration::from_secs(grants.stop_timeout.unwrap_or(5)),
            levels,
            layers: Vec::new(),
            warnings,
        };
        if profile.mcp.is_some() || grants.mcp.any() {
            let state = state_home(|k| inputs.var(k));
            let key = pins_key(&plan.profile, command);
            plan.mcp = Some(resolve_mcp(
                profile,
                grants,
                &vars,
                &inputs.cwd,
                plan.audit_log.clone(),
                state.map(|s| crate::mcp::pins::pins_dir(&s).join(format!("{key}.json"))),
            )?);
        }
        plan.layers = Layer::ALL.iter().map(|l| plan.report(*l, host, profile)).collect();
        Ok(plan)
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

    /// The network allow-list as eBPF rules (cgroup socket programs).
    pub fn net_rules(&self) -> Vec<mcp_warden_ebpf_common::NetRule> {
        use mcp_warden_ebpf_common::{NetRule, op};
        let fam = |a: &std::net::IpAddr| if a.is_ipv4() { libc::AF_INET as u32 } else { libc::AF_INET6 as u32 };
        let bytes = |a: &std::net::IpAddr| -> [u8; 16] {
            let mut b = [0u8; 16];
            match a {
                std::net::IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
                std::net::IpAddr::V6(v6) => b = v6.octets(),
            }
            b
        };
        let both = [libc::AF_INET as u32, libc::AF_INET6 as u32];
        let tcp = libc::SOCK_STREAM as u32;
        let mut rules = Vec::new();
        for port in &self.connect_any {
            for family in both {
                rules.push(NetRule {
                    ops: 1 << op::CONNECT,
                    family,
                    sock_type: tcp,
                    port: *port,
                    ..Default::default()
                });
            }
        }
        // Host names and the resolvers are checked by the broker; here only their ports.
        let host_ports = self.host_rules.iter().filter(|e| !e.value.udp).map(|e| e.value.port);
        let dns_port = (!self.resolvers.is_empty()).then_some(53);
        for port in host_ports.chain(dns_port) {
            for family in both {
                rules.push(NetRule { ops: 1 << op::CONNECT, family, sock_type: tcp, port, ..Default::default() });
            }
        }
        for e in &self.address_rules {
            if let Some(net) = e.value.addr {
                rules.push(NetRule {
                    ops: 1 << op::CONNECT,
                    family: fam(&net.addr),
                    sock_type: tcp,
                    prefix: u32::from(net.prefix),
                    port: e.value.port,
                    addr: bytes(&net.addr),
                    ..Default::default()
                });
            }
        }
        for port in &self.ports.bind {
            for family in both {
                rules.push(NetRule { ops: 1 << op::BIND, family, sock_type: tcp, port: *port, ..Default::default() });
            }
        }
        for e in &self.udp_rules {
            let families: Vec<(u32, u32, [u8; 16])> = match &e.value.addr {
                Some(net) => vec![(fam(&net.addr), u32::from(net.prefix), bytes(&net.addr))],
                None => both.iter().map(|f| (*f, 0, [0u8; 16])).collect(),
            };
            for (family, prefix, addr) in families {
                rules.push(NetRule {
                    ops: (1 << op::CONNECT) | (1 << op::SEND),
                    family,
                    sock_type: libc::SOCK_DGRAM as u32,
                    prefix,
                    port: e.value.port,
                    addr,
                    ..Default::default()
                });
            }
        }
        if self.syscalls.sockets.udp && self.udp_rules.is_empty() {
            for family in both {
                rules.push(NetRule {
                    ops: (1 << op::CONNECT) | (1 << op::SEND) | (1 << op::BIND),
                    family,
                    sock_type: libc::SOCK_DGRAM as u32,
                    ..Default::default()
                });
            }
        }
        rules
    }

    /// The network broker's policy, unless the eBPF layer (loaded) enforces every rule itself.
    pub fn broker_policy(&self, monitor_loaded: bool) -> Option<&crate::layers::broker::NetPolicy> {
        self.broker.as_ref().filter(|_| !(self.ebpf_covers_network && monitor_loaded))
    }

    /// Will the eBPF layer be loaded?
    pub fn monitor_runs(&self) -> bool {
        self.level(Layer::Monitor) != Level::Off && self.monitor_unavailable.is_none()
    }

    pub fn enforcement(&self, layer: Layer) -> &Enforcement {
        self.layers.iter().find(|r| r.layer == layer).map_or(&Enforcement::Off, |r| &r.enforcement)
    }

    pub fn level(&self, layer: Layer) -> Level {
        self.levels.get(&layer).copied().unwrap_or(Level::Off)
    }

    fn report(&self, layer: Layer, host: &HostFacts, profile: &LoadedProfile) -> LayerReport {
        let level = self.level(layer);
        let (enforcement, mechanism) = if level == Level::Off {
            (Enforcement::Off, "off".to_string())
        } else {
            match layer {
                Layer::Landlock => landlock_report(host),
                Layer::Seccomp => match host.seccomp_filter {
                    true => (
                        Enforcement::Full,
                        format!("seccomp-bpf, {} syscalls denied + argument rules", self.syscalls.deny.len()),
                    ),
                    false => {
                        (Enforcement::Missing("the kernel has no seccomp filter mode".into()), "seccomp-bpf".into())
                    }
                },
                Layer::Limits => self.limits_report(),
                Layer::Network => self.network_report(host),
                Layer::Monitor => match &self.monitor_unavailable {
                    None => (
                        Enforcement::Full,
                        format!(
                            "eBPF: tracepoints (exec, fork, exit, opens, syscalls) and cgroup socket programs; audit log {}{}",
                            self.audit_log.describe(),
                            if self.audit_mode { " (audit mode: nothing denied)" } else { "" }
                        ),
                    ),
                    Some(why) => (Enforcement::Missing(why.clone()), "eBPF (not loaded)".into()),
                },
                Layer::AuditLog => match (self.monitor_runs(), &self.mcp) {
                    (false, None) => {
                        (Enforcement::Off, "nothing to log: neither the eBPF layer nor the MCP layer runs".into())
                    }
                    _ => (
                        Enforcement::Full,
                        format!(
                            "{}: a start record is written first; {}",
                            self.audit_log.describe(),
                            if level == Level::Required {
                                "a log that cannot be written refuses the run"
                            } else {
                                "a log that cannot be written is reported, and every record is counted as lost"
                            }
                        ),
                    ),
                },
                Layer::PidNamespace => match self.pid_namespace {
                    PidNamespace::Plain => (Enforcement::Full, "CLONE_NEWPID, mcp-warden as PID 1 reaper".into()),
                    PidNamespace::WithUserNamespace => (
                        Enforcement::Full,
                        "CLONE_NEWUSER|CLONE_NEWPID (own uid mapped), mcp-warden as PID 1 reaper".into(),
                    ),
                    PidNamespace::Off if profile.process.pid_namespace == Some(false) => {
                        (Enforcement::Off, "disabled by the profile (process.pid-namespace = false)".into())
                    }
                    PidNamespace::Off => (
                        Enforcement::Missing(match &host.user_namespaces {
                            Err(why) => format!("not root and no user namespaces: {why}"),
                            Ok(()) => "a user switch needs root, which this run does not have".into(),
                        }),
                        "none: only the direct child gets the parent-death signal".into(),
                    ),
                },
            }
        };
        LayerReport { layer, level, enforcement, mechanism }
    }

    fn limits_report(&self) -> (Enforcement, String) {
        let mut mech = vec!["rlimits (CORE=0".to_string()];
        let l = &self.limits;
        let mut push = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                mech.push(format!("{name}={v}"));
            }
        };
        push("NOFILE", l.open_files.map(|v| v.to_string()));
        push("NPROC", l.processes.map(|v| v.to_string()));
        push("DATA", l.memory.map(|v| v.to_string()));
        push("FSIZE", l.file_size.map(|v| v.to_string()));
        push("CPU", l.cpu_time.map(|v| format!("{v}s")));
        let mut mech = mech.join(", ") + ")";
        for w in &self.cgroup_limits {
            mech.push_str(&format!("; {}={} in {}", w.file, w.value, w.backend));
        }
        let has_pids_cgroup = self.cgroup_limits.iter().any(|w| w.file == "pids.max");
        if l.processes.is_some() && self.identity.uid == 0 && !has_pids_cgroup {
            return (
                Enforcement::Partial(
                    "max-processes: RLIMIT_NPROC does not bind uid 0 and no pids cgroup is available (run the server as another user, or delegate the pids controller)".into(),
                ),
                mech,
            );
        }
        (Enforcement::Full, mech)
    }

    fn network_report(&self, host: &HostFacts) -> (Enforcement, String) {
        let s = self.syscalls.sockets;
        let mut mech = Vec::new();
        mech.push(if s.tcp {
            format!(
                "TCP connect ports {:?}, bind ports {:?} (Landlock)",
                self.ports.connect.iter().collect::<Vec<_>>(),
                self.ports.bind.iter().collect::<Vec<_>>()
            )
        } else {
            "no TCP/IP sockets (seccomp)".into()
        });
        if s.udp && self.broker.is_none() {
            mech.push("UDP sockets allowed to any destination".into());
        }
        mech.push(if s.unix { "AF_UNIX sockets allowed".into() } else { "no AF_UNIX sockets (seccomp)".into() });
        if let Some(b) = self.broker_policy(self.monitor_runs()) {
            let mut dest: Vec<String> = self
                .address_rules
                .iter()
                .chain(&self.udp_rules)
                .chain(&self.host_rules)
                .map(|e| e.value.to_string())
                .collect();
            if !b.resolvers.is_empty() {
                let list: Vec<String> = b.resolvers.iter().map(|r| r.to_string()).collect();
                dest.push(format!("nameservers {} port 53", list.join(", ")));
            }
            let deny: Vec<String> = b.deny.iter().map(|d| d.to_string()).collect();
            mech.push(format!(
                "every connect/sendto/sendmsg destination checked by the network broker (seccomp user notification; the supervisor performs the call with the address it checked): {}{}",
                if dest.is_empty() { "bare ports only".to_string() } else { dest.join(", ") },
                if deny.is_empty() { String::new() } else { format!("; bare ports never reach {}", deny.join(", ")) }
            ));
        }
        let mech = mech.join("; ");
        if self.broker_policy(self.monitor_runs()).is_some()
            && !(host.seccomp_filter && crate::sys::notify::supported())
        {
            return (
                Enforcement::Missing(
                    "the network broker needs seccomp user notification and pidfd_getfd (Linux 5.9)".into(),
                ),
                mech,
            );
        }
        let mech =
            if self.monitor_runs() { format!("{mech}; eBPF cgroup programs check ports and addresses") } else { mech };
        let landlock_net = matches!(host.landlock, Ok(abi) if abi >= 4) && self.level(Layer::Landlock) != Level::Off;
        if s.tcp && !landlock_net && !self.monitor_runs() {
            return (Enforcement::Partial("TCP ports cannot be restricted without Landlock ABI 4".into()), mech);
        }
        if !(s.tcp && s.udp && s.unix) && (!host.seccomp_filter || self.level(Layer::Seccomp) == Level::Off) {
            return (
                Enforcement::Missing(
                    "socket families are closed by the seccomp layer, which is off or unavailable".into(),
                ),
                mech,
            );
        }
        (Enforcement::Full, mech)
    }
}

/// The ring buffer must be a power-of-two multiple of the page size.
fn ring_size(size: Size) -> Result<u32, PlanError> {
    let ok = size.0 >= 4096 && size.0.is_power_of_two() && size.0 <= 1 << 30;
    if ok {
        Ok(size.0 as u32)
    } else {
        Err(PlanError::Invalid {
            what: format!("--audit-buffer {size}"),
            why: "must be a power of two between 4K and 1G (e.g. 64K, 4M)".into(),
        })
    }
}

/// Why the eBPF layer cannot run on this host, if it cannot.
fn monitor_unavailable(host: &HostFacts) -> Option<String> {
    if !host.bpf_capable() {
        return Some("loading eBPF needs root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN".into());
    }
    match &host.cgroups.v2 {
        None => Some("no cgroup v2 hierarchy is mounted (needed to scope the probes)".into()),
        Some(v2) if nix::unistd::access(&v2.own, nix::unistd::AccessFlags::W_OK).is_err() => {
            Some(format!("cannot create a cgroup under {}", v2.own.display()))
        }
        Some(_) => None,
    }
}

fn plan_program_name(command: &[OsString]) -> String {
    command
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server".into())
}

/// `$XDG_STATE_HOME` (or `~/.local/state`) of the invoking user.
pub fn state_home(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var("XDG_STATE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".local/state")))
}

/// A server's identity for its tool pins: the profile, the program and a hash of the command.
fn pins_key(profile: &str, command: &[OsString]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for a in command {
        h.update(a.as_encoded_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let profile =
        Path::new(profile).file_stem().map_or_else(|| profile.to_string(), |s| s.to_string_lossy().into_owned());
    let safe = |s: &str| {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect::<String>()
    };
    format!("{}-{}-{digest}", safe(&profile), safe(&plan_program_name(command)))
}

/// The MCP layer's configuration: the profile's `[mcp]` merged with the flags.
fn resolve_mcp(
    profile: &LoadedProfile,
    grants: &Grants,
    vars: &Vars,
    cwd: &Path,
    audit: Destination,
    pins: Option<PathBuf>,
) -> Result<crate::mcp::McpConfig, PlanError> {
    use crate::mcp::policy::{Constraint, Rate, ToolFilter};
    let invalid = |why: String| PlanError::Invalid { what: "[mcp] section".into(), why };
    let m = profile.mcp.clone().unwrap_or_default();
    let g = &grants.mcp;
    let allow: Vec<String> = m.allow_tools.iter().chain(&g.allow_tools).cloned().collect();
    let deny: Vec<String> = m.deny_tools.iter().chain(&g.deny_tools).cloned().collect();
    let tools = ToolFilter::new(&allow, &deny).map_err(invalid)?;
    let mut rates: Vec<(String, Rate)> = Vec::new();
    for (tool, rate) in &m.rate_limits {
        rates.push((tool.clone(), rate.parse().map_err(|e| invalid(format!("rate-limits.{tool}: {e}")))?));
    }
    rates.extend(g.rate_limits.iter().cloned());
    let mut constraints = Vec::new();
    for c in &m.constraints {
        let tool = globset::Glob::new(&c.tool).map_err(|e| invalid(format!("constraint tool `{}`: {e}", c.tool)))?;
        let pattern = match &c.pattern {
            Some(p) => Some(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| invalid(format!("constraint pattern `{p}`: {e}")))?,
            ),
            None => None,
        };
        let mut under = Vec::new();
        for raw in &c.under {
            for dir in vars.expand_many(raw).map_err(|e| invalid(format!("constraint under `{raw}`: {e}")))? {
                let dir = cwd.join(dir);
                under.push(
                    dir.canonicalize().map_err(|e| invalid(format!("constraint under `{}`: {e}", dir.display())))?,
                );
            }
        }
        constraints.push(Constraint {
            tool: tool.compile_matcher(),
            argument: c.argument.clone(),
            max_length: c.max_length,
            pattern,
            one_of: c.one_of.clone(),
            under,
        });
    }
    let redactor = match m.redact.unwrap_or(true) && !g.no_redact {
        true => Some(crate::mcp::redact::Redactor::new(&m.redact_patterns, &m.redact_keys).map_err(invalid)?),
        false => None,
    };
    Ok(crate::mcp::McpConfig {
        tools,
        rates,
        constraints,
        redactor,
        hide_errors: m.hide_errors.unwrap_or(false) || g.hide_errors,
        pins: if m.pin_tools.unwrap_or(true) { pins } else { None },
        log_arguments: m.log_arguments.unwrap_or(false),
        audit,
    })
}

/// `$XDG_STATE_HOME/mcp-warden/audit/<profile>-<program>.jsonl` (of the invoking user).
fn default_audit_log(inputs: &Inputs<'_>, profile: &str, program: &str) -> PathBuf {
    let state = state_home(|k| inputs.var(k)).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let profile =
        Path::new(profile).file_stem().map_or_else(|| profile.to_string(), |s| s.to_string_lossy().into_owned());
    let safe = |s: &str| {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect::<String>()
    };
    state.join("mcp-warden/audit").join(format!("{}-{}.jsonl", safe(&profile), safe(program)))
}

fn levels(profile: &LoadedProfile, grants: &Grants) -> BTreeMap<Layer, Level> {
    let r = &profile.require;
    let from_profile = |l: Layer| match l {
        Layer::Landlock => r.landlock,
        Layer::Seccomp => r.seccomp,
        Layer::Limits => r.limits,
        Layer::Network => r.network,
        Layer::PidNamespace => r.pid_namespace,
        Layer::Monitor => r.monitor,
        Layer::AuditLog => r.audit_log,
    };
    Layer::ALL
        .into_iter()
        .map(|l| {
            let cli = grants.require.iter().rev().find(|(g, _)| *g == l).map(|(_, v)| *v);
            (l, cli.or(from_profile(l)).unwrap_or(l.default_level()))
        })
        .collect()
}

fn landlock_report(host: &HostFacts) -> (Enforcement, String) {
    match &host.landlock {
        Ok(abi) if *abi >= LANDLOCK_TARGET_ABI => (
            Enforcement::Full,
            format!(
                "Landlock ABI {abi} (uses ABI {LANDLOCK_TARGET_ABI} features: fs rights, TCP ports, socket and signal scoping)"
            ),
        ),
        Ok(abi) => {
            let missing: Vec<&str> = [
                (2, "refer"),
                (3, "truncate"),
                (4, "TCP port rules"),
                (5, "device ioctl"),
                (6, "abstract-socket and signal scoping"),
            ]
            .iter()
            .filter(|(v, _)| v > abi)
            .map(|(_, n)| *n)
            .collect();
            (
                Enforcement::Partial(format!("kernel Landlock ABI {abi} lacks: {}", missing.join(", "))),
                format!("Landlock ABI {abi}"),
            )
        }
        Err(why) => (Enforcement::Missing(format!("Landlock is {why}")), "Landlock".into()),
    }
}

fn resolve_identity(
    profile: &LoadedProfile,
    grants: &Grants,
    host: &HostFacts,
    inputs: &Inputs<'_>,
    warnings: &mut Vec<String>,
) -> Result<Identity, PlanError> {
    use nix::unistd::{Gid, Group, Uid, User};
    let user_name = grants.user.as_ref().or(profile.process.user.as_ref());
    let group_name = grants.group.as_ref().or(profile.process.group.as_ref());
    let lookup_user = |name: &str| -> Result<User, PlanError> {
        let found = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(name),
        };
        found.ok().flatten().ok_or_else(|| PlanError::UnknownId { kind: "user", name: name.to_string() })
    };
    let Some(user_name) = user_name else {
        let uid = host.euid;
        let me = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        if uid == 0 {
            warnings.push(
                "the server runs as root (uid 0) with every capability dropped; name an unprivileged user with `--user` or [process] user to switch (user = \"root\" silences this)".into(),
            );
        }
        if group_name.is_some() {
            return Err(PlanError::Invalid {
                what: "group".into(),
                why: "a group switch needs a user switch too: set [process] user (or --user)".into(),
            });
        }
        return Ok(Identity {
            uid,
            gid: nix::unistd::getegid().as_raw(),
            name: me.as_ref().map_or_else(|| uid.to_string(), |u| u.name.clone()),
            home: inputs.var("HOME").map(PathBuf::from).or(me.map(|u| u.dir)).unwrap_or_else(|| "/".into()),
            switch: false,
        });
    };
    let user = lookup_user(user_name)?;
    let gid = match group_name {
        None => user.gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid)
                .ok_or_else(|| PlanError::UnknownId { kind: "group", name: g.clone() })?,
        },
    };
    if !host.is_root() {
        if user.uid.as_raw() == host.euid && gid.as_raw() == nix::unistd::getegid().as_raw() {
            return Ok(Identity { uid: host.euid, gid: gid.as_raw(), name: user.name, home: user.dir, switch: false });
        }
        return Err(PlanError::SwitchNeedsRoot { user: user_name.clone(), uid: host.euid });
    }
    if user.uid.as_raw() == 0 && user_name != "root" && user_name != "0" {
        warnings.push(format!("user `{user_name}` is uid 0: the server runs as root with every capability dropped"));
    }
    Ok(Identity { uid: user.uid.as_raw(), gid: gid.as_raw(), name: user.name, home: user.dir, switch: true })
}

fn matches_pattern(pattern: &str, name: &OsStr) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.as_bytes().starts_with(prefix.as_bytes()),
        None => name.as_bytes() == pattern.as_bytes(),
    }
}

fn resolve_env(
    profile: &LoadedProfile,
    grants: &Grants,
    inputs: &Inputs<'_>,
    vars: &Vars,
    identity: &Identity,
) -> Result<Vec<(OsString, OsString)>, PlanError> {
    for name in &grants.pass_env {
        if !crate::profile::load::valid_env_pattern(name) {
            return Err(PlanError::Invalid { what: format!("--pass-env {name}"), why: "not a variable name".into() });
        }
    }
    let patterns: Vec<&str> =
        profile.env_pass.iter().map(|s| s.value.as_str()).chain(grants.pass_env.iter().map(String::as_str)).collect();
    let mut env: BTreeMap<OsString, OsString> =
        inputs.env.iter().filter(|(k, _)| patterns.iter().any(|p| matches_pattern(p, k))).cloned().collect();
    if identity.switch {
        // The invoking user's HOME and names are wrong for the target user.
        for (k, v) in [
            ("HOME", identity.home.as_os_str()),
            ("USER", OsStr::new(&identity.name)),
            ("LOGNAME", OsStr::new(&identity.name)),
        ] {
            if let Some(slot) = env.get_mut(OsStr::new(k)) {
                *slot = v.to_os_string();
            }
        }
    }
    for (k, v) in &profile.env_set {
        let value = vars
            .expand(&v.value)
            .map_err(|why| PlanError::Invalid { what: format!("environment.set.{k} ({})", v.origin), why })?;
        env.insert(k.into(), value.into());
    }
    for (k, v) in &grants.set_env {
        if !crate::profile::load::valid_env_pattern(k) || k.ends_with('*') {
            return Err(PlanError::Invalid { what: format!("--set-env {k}={v}"), why: "not a variable name".into() });
        }
        env.insert(k.into(), v.into());
    }
    Ok(env.into_iter().collect())
}

fn resolve_program(arg0: &OsStr, search_path: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, PlanError> {
    let check = |p: &Path| -> Result<PathBuf, PlanError> {
        let meta = p.metadata().map_err(|e| PlanError::NotExecutable { path: p.into(), why: e.to_string() })?;
        if meta.is_dir() {
            return Err(PlanError::NotExecutable { path: p.into(), why: "is a directory".into() });
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(PlanError::NotExecutable { path: p.into(), why: "no execute permission".into() });
        }
        Ok(p.to_path_buf())
    };
    if arg0.as_bytes().contains(&b'/') {
        let p = cwd.join(arg0);
        if !p.exists() {
            return Err(PlanError::NotFound {
                program: arg0.to_string_lossy().into(),
                path: "(not searched: a path was given)".into(),
            });
        }
        return check(&p);
    }
    let default = OsStr::new("/usr/local/bin:/usr/bin:/bin");
    let search = search_path.unwrap_or(default);
    for dir in std::env::split_paths(search) {
        let candidate = cwd.join(dir).join(arg0);
        if candidate.is_file()
            && let Ok(p) = check(&candidate)
        {
            return Ok(p);
        }
    }
    Err(PlanError::NotFound { program: arg0.to_string_lossy().into(), path: search.to_string_lossy().into() })
}

type PathGrants = (BTreeMap<PathBuf, (FsAccess, Origin)>, Vec<Sourced<String>>);

fn resolve_paths(profile: &LoadedProfile, grants: &Grants, vars: &Vars, cwd: &Path) -> Result<PathGrants, PlanError> {
    let mut paths: BTreeMap<PathBuf, (FsAccess, Origin)> = BTreeMap::new();
    let mut skipped = Vec::new();
    let lists: [(&'static str, &[Sourced<String>], FsAccess); 3] = [
        ("filesystem.read", &profile.read, FsAccess::READ),
        ("filesystem.write", &profile.write, FsAccess::WRITE),
        ("filesystem.exec", &profile.exec, FsAccess::EXEC),
    ];
    let mut add = |path: PathBuf, access: FsAccess, origin: Origin| {
        let slot = paths.entry(path).or_insert((access, origin));
        slot.0 = slot.0.union(access);
    };
    for (key, list, access) in lists {
        for entry in list {
            let (raw, optional) = match entry.value.strip_suffix('?') {
                Some(r) => (r, true),
                None => (entry.value.as_str(), false),
            };
            let err =
                |why: String| PlanError::Path { key, path: entry.value.clone(), origin: entry.origin.clone(), why };
            let expanded = match vars.expand_many(raw) {
                Ok(list) => list,
                // A server-derived variable with no value (a flag not given) in an optional entry.
                Err(_) if optional => {
                    skipped.push(entry.clone());
                    continue;
                }
                Err(why) => return Err(err(why)),
            };
            for one in expanded {
                match Path::new(&one).canonicalize() {
                    Ok(p) => add(p, access, entry.origin.clone()),
                    Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => skipped.push(entry.clone()),
                    // name the expanded path when variables made it differ from what was written
                    Err(e) if one == raw => return Err(err(e.to_string())),
                    Err(e) => return Err(err(format!("{one}: {e}"))),
                }
            }
        }
    }
    let cli: [(&'static str, &[PathBuf], FsAccess); 3] = [
        ("--allow-read", &grants.read, FsAccess::READ),
        ("--allow-write", &grants.write, FsAccess::WRITE),
        ("--allow-exec", &grants.exec, FsAccess::EXEC),
    ];
    for (flag, list, access) in cli {
        for p in list {
            let canonical = cwd.join(p).canonicalize().map_err(|e| PlanError::Path {
                key: flag,
                path: p.display().to_string(),
                origin: "command line".into(),
                why: e.to_string(),
            })?;
            add(canonical, access, flag.to_string());
        }
    }
    Ok((paths, skipped))
}

/// The directories a server's own installation lives in, for `runtime = ...` profiles:
/// - python: the interpreter's prefix (`<prefix>/bin/python3`), and the virtualenv the program
///   (or a console script) belongs to (`pyvenv.cfg` next to its `bin/`);
/// - node: the outermost `node_modules` containing the script (the program, or its first
///   argument that is a file), or else the script's package root (`package.json`).
fn installation(runtime: crate::profile::Runtime, program: &Path, args: &[OsString], cwd: &Path) -> Vec<PathBuf> {
    use crate::profile::Runtime;
    let mut out = Vec::new();
    let real = |p: &Path| p.canonicalize().ok();
    match runtime {
        Runtime::Python => {
            let interpreter = shebang_interpreter(program).unwrap_or_else(|| program.to_path_buf());
            for candidate in [program, interpreter.as_path()] {
                // a virtualenv: <venv>/bin/<program> with <venv>/pyvenv.cfg
                if let Some(venv) = candidate.parent().and_then(Path::parent)
                    && venv.join("pyvenv.cfg").is_file()
                {
                    out.extend(real(venv));
                }
            }
            // the interpreter's own prefix, e.g. /root/.pyenv/versions/3.11.7 (nothing new under /usr)
            if let Some(prefix) = real(&interpreter).as_deref().and_then(Path::parent).and_then(Path::parent) {
                out.push(prefix.to_path_buf());
            }
        }
        Runtime::Node => {
            // The program itself when it is a script (`#!/usr/bin/env node`), else `node SCRIPT`.
            let script = shebang_interpreter(program)
                .map(|_| program.to_path_buf())
                .into_iter()
                .chain(args.iter().filter(|a| !a.to_string_lossy().starts_with('-')).map(|a| cwd.join(a)))
                .filter(|p| p.is_file())
                .find_map(|p| real(&p));
            if let Some(script) = script {
                let modules = script.ancestors().filter(|a| a.file_name().is_some_and(|n| n == "node_modules")).last();
                match modules {
                    Some(m) => out.push(m.to_path_buf()),
                    None => out.extend(
                        script.ancestors().skip(1).find(|a| a.join("package.json").is_file()).map(Path::to_path_buf),
                    ),
                }
            }
        }
    }
    out
}

/// The program, and a script's interpreter, must be under an exec grant or Landlock will refuse
/// the `execve` with a bare EACCES; saying so before the fork gives a useful message.
fn check_exec_allowed(program: &Path, paths: &BTreeMap<PathBuf, (FsAccess, Origin)>) -> Result<(), PlanError> {
    let allowed = |p: &Path| paths.iter().any(|(dir, (a, _))| a.exec && p.starts_with(dir));
    let mut to_check = vec![program.canonicalize().unwrap_or_else(|_| program.to_path_buf())];
    if let Some(interp) = shebang_interpreter(program) {
        to_check.push(interp.canonicalize().unwrap_or(interp));
    }
    for p in to_check {
        if !allowed(&p) {
            let dir = p.parent().map_or_else(|| p.clone(), Path::to_path_buf);
            return Err(PlanError::ExecNotAllowed { path: p, dir });
        }
    }
    Ok(())
}

fn shebang_interpreter(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let interp = line.split(|b| *b == b' ' || *b == b'\t').find(|s| !s.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(interp)))
}

fn cgroup_limits(limits: &Limits, host: &HostFacts) -> Vec<LimitWrite> {
    let mut out = Vec::new();
    if let Some(n) = limits.processes
        && let Some(backend) = host.cgroups.backend_for("pids")
    {
        out.push(LimitWrite { backend, file: "pids.max", value: n.to_string() });
    }
    if let Some(size) = limits.memory
        && let Some(backend) = host.cgroups.backend_for("memory")
    {
        let file = match backend {
            Backend::V2 { .. } => "memory.max",
            Backend::V1 { .. } => "memory.limit_in_bytes",
        };
        out.push(LimitWrite { backend, file, value: size.0.to_string() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Diagnose;
    use crate::profile::load_source;

    fn host() -> HostFacts {
        HostFacts::probe()
    }

    fn inputs(env: &[(OsString, OsString)]) -> Inputs<'_> {
        Inputs { env, cwd: "/".into() }
    }

    fn env() -> Vec<(OsString, OsString)> {
        [("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("AWS_SECRET_ACCESS_KEY", "x"), ("LC_ALL", "C")]
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    fn resolve(text: &str, grants: &Grants, cmd: &[&str]) -> Result<Plan, PlanError> {
        let p = load_source("t.toml", text).unwrap();
        let env = env();
        let cmd: Vec<OsString> = cmd.iter().map(OsString::from).collect();
        Plan::resolve(&p, grants, &cmd, &host(), &inputs(&env))
    }

    #[test]
    fn environment_is_built_from_the_allow_list() {
        let plan = resolve(
            "extends = [\"strict\"]\n[environment]\nset = { A = \"${HOME}/a\" }\n",
            &Grants::default(),
            &["true"],
        )
        .unwrap();
        let names: Vec<_> = plan.env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert!(names.contains(&"PATH") && names.contains(&"LC_ALL") && names.contains(&"A"));
        assert!(!names.contains(&"AWS_SECRET_ACCESS_KEY"), "secrets are dropped: {names:?}");
        assert_eq!(plan.program, Path::new("/usr/bin/true"));
    }

    #[test]
    fn missing_paths_fail_unless_optional() {
        let e = resolve("[filesystem]\nread = [\"/nonexistent/x\"]\n", &Grants::default(), &["/bin/true"]).unwrap_err();
        assert!(e.to_string().starts_with("filesystem.read path `/nonexistent/x` (t.toml:2:9): No such file"), "{e}");
        let plan = resolve(
            "[filesystem]\nread = [\"/nonexistent/x?\"]\nexec = [\"/usr\", \"/bin\"]\n",
            &Grants::default(),
            &["/bin/true"],
        )
        .unwrap();
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn program_outside_exec_list_is_refused_with_a_hint() {
        let e = resolve("[filesystem]\nread = [\"/usr\"]\n", &Grants::default(), &["/usr/bin/true"]).unwrap_err();
        assert!(matches!(e, PlanError::ExecNotAllowed { .. }), "{e}");
        assert!(e.hint().unwrap().contains("--allow-exec /usr/bin"));
    }

    #[test]
    fn not_found_and_not_executable_have_their_exit_codes() {
        let e = resolve("extends = [\"strict\"]\n", &Grants::default(), &["no-such-program-xyz"]).unwrap_err();
        assert_eq!(e.exit_code(), 127, "{e}");
        let e = resolve("extends = [\"strict\"]\n", &Grants::default(), &["/etc/passwd"]).unwrap_err();
        assert_eq!(e.exit_code(), 126, "{e}");
    }

    #[test]
    fn address_rules_are_enforced_by_the_broker_without_the_monitor() {
        let g = Grants {
            connect: vec!["127.0.0.1:5432".parse().unwrap(), "api.example.com:443".parse().unwrap()],
            require: vec![(Layer::Monitor, Level::Off)],
            ..Default::default()
        };
        let mut plan = resolve("extends = [\"strict\"]\n[network]\ndeny = [\"10.0.0.0/8\"]\n", &g, &["true"]).unwrap();
        assert!(plan.ports.connect.contains(&5432) && plan.ports.connect.contains(&53));
        plan.check_requirements().unwrap();
        let b = plan.broker.as_ref().expect("address rules need the broker");
        assert_eq!(b.hosts, vec![(crate::layers::broker::Proto::Tcp, "api.example.com".to_string(), 443)]);
        assert!(!b.resolvers.is_empty(), "a host name implies DNS");
        assert!(b.tcp_ports.is_empty(), "no bare port: 5432 is for 127.0.0.1 only");
        // A host name never lands among the any-address ports.
        assert!(!plan.connect_any.contains(&443));
        // Bare ports alone keep Landlock's port rules and need no broker.
        let g = Grants { connect: vec!["443".parse().unwrap()], ..Default::default() };
        assert!(resolve("extends = [\"strict\"]\n", &g, &["true"]).unwrap().broker.is_none());
        // The broker mediates IPv4/IPv6 only.
        let e = resolve("extends = [\"strict\"]\n[network]\nunix = true\ndns = true\n", &Grants::default(), &["true"]);
        assert!(e.unwrap_err().to_string().contains("`unix = true` cannot be combined"));
    }

    #[test]
    fn cli_limits_override_the_profile() {
        let g = Grants { max_processes: Some(9), max_memory: Some(Size(1 << 20)), ..Default::default() };
        let plan = resolve("extends = [\"strict\"]\n", &g, &["true"]).unwrap();
        assert_eq!(plan.limits.processes, Some(9));
        assert_eq!(plan.limits.memory, Some(Size(1 << 20)));
        assert_eq!(plan.limits.open_files, Some(4096));
    }
}
