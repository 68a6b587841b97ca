//! Every fallible step before the fork, so that a failure refuses the run before anything starts:
//! the cgroups with their limits, the eBPF monitor, the audit logs, the private TMPDIR, the
//! Landlock ruleset (every path opened), the seccomp programs, argv/envp as C strings, the error
//! pipe, the MCP pipes and the seccomp listener's channel. The result is one `Prepared`.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use ::landlock::RulesetCreated;
use nix::fcntl::OFlag;
use nix::sys::resource::Resource;
use nix::sys::signal::SigSet;

use super::error::{SupervisorError, cstring, sys_err};
use super::services::{DnsInputs, ListenerEnd, LoopbackDns, McpEnds, ServiceInputs, Services};
use super::stdio;
use super::teardown::Held;
use crate::audit::record::{Start, Writer};
use crate::audit::{AuditLog, Destination};
use crate::dns::loopback::Loopback;
use crate::dns::netns::DnsNamespace;
use crate::ebpf::{Monitor, MonitorConfig};
use crate::layers::cgroup::ServerCgroups;
use crate::layers::fs_view::ViewPlan;
use crate::layers::landlock::{self, FsAccess};
use crate::layers::private_tmp::PrivateTmp;
use crate::layers::seccomp::{Filter, Guarded, Listened, Mediated};
use crate::plan::{Enforcement, Layer, Plan};
use crate::profile::{Level, Violation};
use crate::stage2::Stage2;
use crate::sys;
use mcp_warden_ebpf_common::DNS_SLOTS;

/// Everything the run needs, split by who takes it at the fork.
pub struct Prepared {
    /// What the child takes into stage 2.
    pub stage2: Stage2,
    /// The supervisor's end of the error pipe whose write end is in `stage2`.
    pub error_pipe: OwnedFd,
    /// What the services start from, after the fork.
    pub services: ServiceInputs,
    /// What the teardown stops and removes.
    pub held: Held,
}

/// Prepares the run of `plan`; `forwarded` are the signals stage 2 keeps blocked until exec.
pub fn prepare(plan: &Plan, forwarded: SigSet) -> Result<Prepared, SupervisorError> {
    // The cgroups first: the probes are scoped to the server's cgroup id.
    let monitor_parent =
        if plan.monitor_runs() { plan.monitor_cgroup_parent().map(std::path::Path::to_path_buf) } else { None };
    let mut cgroups = ServerCgroups::create(plan.cgroup_limits(), monitor_parent.as_deref())?;
    // With the eBPF layer, its socket programs send the server's DNS to the resolver on the
    // loopback: the ports go into the server's entry.
    let loopback = loopback_resolver(plan, &cgroups);
    let mut monitor = load_monitor(plan, &cgroups, loopback.as_ref())?;
    // The resolver answers only the sockets of the server's cgroup.
    let loopback_dns = loopback.zip(monitor.as_ref()).map(|(bound, m)| LoopbackDns { bound, cgroup: m.cgroup_id() });
    let monitor_log = match &monitor {
        Some(_) => Some(open_audit_log(plan, plan.audit_log(), Writer::Ebpf)?),
        None => None,
    };
    // The private TMPDIR before the Landlock ruleset and the environment, which both name it.
    let owner = plan.identity().switch.then_some((plan.identity().uid, plan.identity().gid));
    let private_tmp = match plan.private_tmp() {
        true => Some(PrivateTmp::create(owner).map_err(sys_err("create the private temporary directory"))?),
        false => None,
    };
    let landlock = landlock_ruleset(plan, private_tmp.as_ref())?;
    let env = environment(plan, private_tmp.as_ref())?;
    let argv = plan.argv().iter().map(|a| cstring("argument", a)).collect::<Result<Vec<_>, _>>()?;
    let supervisor = sys::pidfd_open(std::process::id() as i32).map_err(sys_err("open a pidfd for the supervisor"))?;
    let (error_read, error_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("create the error pipe"))?;
    let (mcp, mcp_stdio) = mcp_pipes(plan)?;
    let (stdio, relays) = stdio::server_stdio(mcp_stdio).map_err(sys_err("set up the server's stdio"))?;
    // After the monitor: whether it loaded decides whether the broker is needed.
    let (seccomp, listener_channel, listener) =
        seccomp_filters(plan, monitor.is_some(), loopback_dns, private_tmp.as_ref())?;
    // The server's ring buffer must be in place before it is executed. With a listener, stage 2
    // waits for the supervisor to take it, and the supervisor inserts the ring first, while stage
    // 2 hardens itself (`services::start`); without one, now.
    if listener_channel.is_none()
        && let Some(m) = monitor.as_mut()
    {
        m.insert_ring().map_err(SupervisorError::from)?;
    }
    let stage2 = Stage2 {
        program: cstring("program path", plan.program().as_os_str())?,
        argv,
        env,
        cwd: cstring("working directory", plan.cwd().as_os_str())?,
        switch_to: owner,
        own_ids: (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
        rlimits: rlimits(plan),
        cgroup_procs: std::mem::take(&mut cgroups.procs),
        cgroup_v2: cgroups.v2.take(),
        namespaces: plan.namespaces(),
        view: view(plan, private_tmp.as_ref()),
        hide: plan.hide_with(&granted_paths(plan, private_tmp.as_ref())).map(|h| (h, plan.level(Layer::FsHide))),
        landlock,
        seccomp,
        listener_channel,
        stdio,
        forwarded,
        supervisor,
        error_pipe: error_write,
    };
    Ok(Prepared {
        stage2,
        error_pipe: error_read,
        services: ServiceInputs { monitor_log, mcp, listener, relays },
        held: Held { cgroups, monitor, private_tmp, services: Services::default() },
    })
}

/// The resolver's sockets on the loopback, when the eBPF layer is to load and the server's DNS is
/// answered by mcp-warden. Where they cannot be bound (no IPv6 loopback), the broker routes DNS
/// through the DNS namespace.
fn loopback_resolver(plan: &Plan, cgroups: &ServerCgroups) -> Option<Loopback> {
    cgroups.monitor_dir.as_ref()?;
    plan.broker_policy(true)?.dns.as_ref()?;
    match crate::dns::loopback::bind() {
        Ok(bound) => Some(bound),
        Err(e) => {
            tracing::debug!("the resolver's loopback sockets: {e}; DNS goes through the DNS namespace");
            None
        }
    }
}

/// Loads the eBPF layer when the plan runs it: a failure refuses the run when the layer is
/// required, and is reported when it is best-effort.
fn load_monitor(
    plan: &Plan,
    cgroups: &ServerCgroups,
    dns: Option<&Loopback>,
) -> Result<Option<Monitor>, SupervisorError> {
    let Some(dir) = cgroups.monitor_dir.clone() else { return Ok(None) };
    let config = MonitorConfig {
        cgroup_dir: dir,
        audit_mode: plan.audit_mode(),
        rules: plan.net_rules(),
        allow_raw_sockets: false,
        ring_bytes: plan.audit_buffer(),
        full: plan.monitor_full(),
        dns_ports: dns.map_or([0; DNS_SLOTS], |d| d.ports),
        dns_mark: dns.map_or(0, |d| d.mark),
    };
    match Monitor::load(&config) {
        Ok(m) => Ok(Some(m)),
        Err(e) if plan.level(Layer::Monitor) == Level::Required => Err(e.into()),
        Err(e) => {
            tracing::warn!("monitor is best-effort and could not be loaded: {e}");
            Ok(None)
        }
    }
}

/// Opens the audit log and writes its start record at once: a log that cannot be written refuses
/// the run when the `audit-log` requirement is `required`; best-effort, it is reported and every
/// record is counted as lost (in the summary).
fn open_audit_log(plan: &Plan, destination: &Destination, writer: Writer) -> Result<AuditLog, SupervisorError> {
    let fail = |source| SupervisorError::AuditLog { path: destination.describe(), source };
    let mut log = AuditLog::open(destination.clone()).map_err(fail)?;
    let record = Start::new(writer, plan.profile(), plan.program().display().to_string());
    match log.start(&record) {
        Ok(()) => Ok(log),
        Err(e) if plan.level(Layer::AuditLog) == Level::Required => Err(fail(e)),
        Err(e) => {
            tracing::warn!(
                "the audit log {} cannot be written ({e}); audit-log is best-effort: the server runs and every record is counted as lost",
                destination.describe()
            );
            Ok(log)
        }
    }
}

/// The Landlock ruleset with every path opened (the private TMPDIR writable), or `None` when the
/// layer is off or this kernel lacks it and the plan accepts that.
fn landlock_ruleset(
    plan: &Plan,
    private_tmp: Option<&PrivateTmp>,
) -> Result<Option<(RulesetCreated, Level)>, SupervisorError> {
    let level = match plan.level(Layer::Landlock) {
        Level::Off => return Ok(None),
        _ if matches!(plan.enforcement(Layer::Landlock), Enforcement::Missing(_)) => return Ok(None),
        level => level,
    };
    let paths = granted_paths(plan, private_tmp);
    Ok(Some((landlock::prepare(&paths, plan.ports(), level)?, level)))
}

/// The plan's granted paths, and the private TMPDIR writable.
fn granted_paths(plan: &Plan, private_tmp: Option<&PrivateTmp>) -> BTreeMap<PathBuf, FsAccess> {
    let mut paths = plan.granted_paths();
    if let Some(tmp) = private_tmp {
        paths.insert(tmp.path().to_path_buf(), FsAccess::WRITE);
    }
    paths
}

/// The filesystem view's mounts (none without the view): the TMPDIR is a write grant like any.
fn view(plan: &Plan, private_tmp: Option<&PrivateTmp>) -> ViewPlan {
    match plan.namespaces().mount {
        true => ViewPlan::new(&granted_paths(plan, private_tmp)),
        false => ViewPlan::default(),
    }
}

/// The rlimits stage 2 sets; CORE=0 always.
fn rlimits(plan: &Plan) -> Vec<(Resource, u64)> {
    let mut rlimits = vec![(Resource::RLIMIT_CORE, 0)];
    rlimits.extend(plan.limits().rlimits());
    rlimits
}

/// The server's environment as `KEY=value` C strings, with the private TMPDIR as `TMPDIR`.
fn environment(plan: &Plan, private_tmp: Option<&PrivateTmp>) -> Result<Vec<CString>, SupervisorError> {
    let mut pairs = plan.env().to_vec();
    if let Some(tmp) = private_tmp {
        tmp.export(&mut pairs);
    }
    pairs
        .iter()
        .map(|(k, v)| {
            let mut kv = OsString::from(k);
            kv.push("=");
            kv.push(v);
            cstring("environment variable", &kv)
        })
        .collect()
}

/// Stage 2's part of the MCP layer: the read end of the server's stdin, the write end of its stdout.
type ServerStdio = Option<(OwnedFd, OwnedFd)>;

/// The MCP layer: the server's stdin and stdout become pipes to the proxy; the audit log is
/// opened now so that a failure refuses the run before anything starts. Returns the supervisor's
/// side and stage 2's (the server's stdin and stdout).
fn mcp_pipes(plan: &Plan) -> Result<(Option<McpEnds>, ServerStdio), SupervisorError> {
    let Some(cfg) = plan.mcp() else { return Ok((None, None)) };
    let log = open_audit_log(plan, &cfg.audit, Writer::Mcp)?;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("create the MCP pipes"));
    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let ends = McpEnds { config: cfg.clone(), log, server_in: stdin_w, server_out: stdout_r };
    Ok((Some(ends), Some((stdin_r, stdout_w))))
}

/// The seccomp filters stage 2 installs, its end of the listener channel, and the supervisor's.
type Filters = (Vec<Filter>, Option<UnixStream>, Option<ListenerEnd>);

/// The seccomp filters. Refused calls go to the supervisor, which records each one, wherever the
/// kernel can hand them over and the profile's violation action is `errno`; the network broker's
/// calls go there too when it runs (not when the eBPF layer loaded and expresses every rule). The
/// filter with the listener travels with stage 2, the listener comes back over the channel.
fn seccomp_filters(
    plan: &Plan,
    monitor_loaded: bool,
    loopback_dns: Option<LoopbackDns>,
    tmp: Option<&PrivateTmp>,
) -> Result<Filters, SupervisorError> {
    let policy = plan.syscalls();
    let learning = plan.learn().is_some();
    let mediated = Mediated { datagrams: policy.sockets.udp, every_send: learning };
    let broker = plan.broker_policy(monitor_loaded).map(|p| (p.clone(), mediated));
    let guarded = plan.mcp().filter(|m| m.annotations.enforce).map(|_| Guarded { datagrams: policy.sockets.udp });
    // Without user notification `listen` is left to the kernel: said by `explain` and on stderr.
    let listens = policy.sockets.listen && policy.sockets.tcp && plan.user_notification().is_ok();
    let listened =
        Listened { mediated: broker.as_ref().map(|(_, m)| *m), traced: plan.trace_files(), guarded, listens };
    let seccomp_on = plan.level(Layer::Seccomp) != Level::Off
        && !matches!(plan.enforcement(Layer::Seccomp), Enforcement::Missing(_));
    let filters = match (seccomp_on, listened.is_empty()) {
        (false, true) => return Ok((Vec::new(), None, None)),
        (false, false) => vec![listened.filter()?],
        (true, _) => {
            let to_supervisor = policy.action == Violation::Errno && plan.user_notification().is_ok();
            if let (Violation::Errno, Err(why)) = (policy.action, plan.user_notification()) {
                tracing::warn!(
                    "refused calls cannot be handed to the supervisor ({why}): seccomp refusals are enforced but not recorded"
                );
            }
            policy.compile(plan.x32_abi(), to_supervisor, listened)?
        }
    };
    if !filters.iter().any(|f| matches!(f, Filter::Listener(_))) {
        return Ok((filters, None, None));
    }
    let (ours, theirs) = UnixStream::pair().map_err(sys_err("create the seccomp listener channel"))?;
    let log = open_audit_log(plan, plan.audit_log(), Writer::Supervisor)?;
    // While single-threaded: the DNS namespace's helper is forked, unless the socket programs
    // route the server's DNS to the loopback.
    let dns = match (broker.as_ref().and_then(|(p, _)| p.dns.as_ref()), loopback_dns) {
        (None, _) => None,
        (Some(_), Some(loopback)) => Some(DnsInputs::Loopback(loopback)),
        (Some(_), None) => {
            let (namespace, listeners) = DnsNamespace::start().map_err(SupervisorError::Dns)?;
            Some(DnsInputs::Namespace(namespace, listeners))
        }
    };
    let guarded = guarded.map(|g| (g, write_grants(plan, tmp), scratch(plan, tmp)));
    let tracer = learn_inputs(plan, tmp);
    let listens = listens.then(|| plan.ports().bind.clone());
    let end = ListenerEnd { channel: ours, policy: policy.clone(), broker, dns, log, tracer, guarded, listens };
    Ok((filters, Some(theirs), Some(end)))
}

/// Where the server may write at all (a write elsewhere is refused by Landlock anyway).
fn write_grants(plan: &Plan, tmp: Option<&PrivateTmp>) -> Vec<PathBuf> {
    granted_paths(plan, tmp).into_iter().filter(|(_, a)| a.write).map(|(p, _)| p).collect()
}

/// The directories a read-only tool may still write files in: the profile's scratch directories
/// and the private TMPDIR.
fn scratch(plan: &Plan, tmp: Option<&PrivateTmp>) -> Vec<PathBuf> {
    let mut dirs = plan.mcp().map(|m| m.scratch.clone()).unwrap_or_default();
    dirs.extend(tmp.map(|t| t.path().to_path_buf()));
    dirs
}

/// What the seccomp listener's tracer needs when file calls are traced: the grants it judges
/// each access against, and a learning run's plan.
fn learn_inputs(plan: &Plan, tmp: Option<&PrivateTmp>) -> Option<super::tracer::TracerInputs> {
    if !plan.trace_files() {
        return None;
    }
    let grants = granted_paths(plan, tmp).into_iter().collect();
    let scratch = tmp.map(|t| t.path().to_path_buf());
    let hidden = plan.hide().is_some();
    let home = plan.identity().home.clone();
    Some(super::tracer::TracerInputs { learn: plan.learn().cloned(), grants, scratch, home, hidden })
}
