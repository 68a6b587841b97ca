//! The threads the supervisor starts after the fork: the monitor's reader (probe events into the
//! audit log), the MCP proxy (client <-> server stdio) and the seccomp listener taken from stage 2
//! (refusals recorded, the network broker's calls performed).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::unistd::Pid;

use super::error::{SupervisorError, sys_err};
use super::guard::{self, Guard};
use super::listener::{self, Listener};
use super::refusals::Refusals;
use super::stdio;
use super::teardown::Held;
use super::tracer::{self, Tracer, TracerInputs};
use crate::audit::AuditLog;
use crate::dns::askers::Askers;
use crate::dns::netns::DnsNamespace;
use crate::dns::pins::Pins;
use crate::dns::serve::Listeners;
use crate::dns::{Resolver, serve};
use crate::ebpf::{EventDecoder, Monitor, ProcessTable, Reader};
use crate::gate::Gate;
use crate::layers::broker::{Broker, DnsRoute, DnsVia, NetPolicy, Observer};
use crate::layers::seccomp::{Guarded, Mediated, SyscallPolicy};
use crate::mcp::{InFlight, McpConfig};
use crate::plan::Plan;
use crate::sys;

/// What the services start from, prepared before the fork.
pub struct ServiceInputs {
    /// The eBPF layer's audit log, opened (and its start record written) when the monitor loaded.
    pub monitor_log: Option<AuditLog>,
    pub mcp: Option<McpEnds>,
    pub listener: Option<ListenerEnd>,
    /// The server's stdio relayed through pipes (a client file or terminal).
    pub relays: Vec<stdio::Relay>,
}

/// The MCP layer's configuration, its audit log, and the supervisor's ends of the server's stdio.
pub struct McpEnds {
    pub config: McpConfig,
    pub log: AuditLog,
    pub server_in: OwnedFd,
    pub server_out: OwnedFd,
}

/// Where the resolver's sockets are, and so how the server's DNS reaches them.
#[derive(Debug)]
pub enum DnsInputs {
    /// In the DNS namespace, where the broker moves the server's DNS sockets.
    Namespace(DnsNamespace, Listeners),
    /// On the host's loopback, where the eBPF layer's socket programs send the server's DNS.
    Loopback(LoopbackDns),
}

/// The resolver's sockets on the loopback, and the cgroup whose sockets it answers.
#[derive(Debug)]
pub struct LoopbackDns {
    pub bound: crate::dns::loopback::Loopback,
    pub cgroup: u64,
}

/// The supervisor's end of the channel the seccomp listener comes back over, what it serves, and
/// the audit log its refusals go to.
pub struct ListenerEnd {
    pub channel: UnixStream,
    pub policy: SyscallPolicy,
    pub broker: Option<(NetPolicy, Mediated)>,
    /// The resolver's sockets, when mcp-warden answers the server's DNS.
    pub dns: Option<DnsInputs>,
    pub log: AuditLog,
    /// Traced file calls: what the tracer judges with (and records, in a learning run).
    pub tracer: Option<TracerInputs>,
    /// The calls the MCP layer's annotations guard, the write grants and the scratch directories.
    pub guarded: Option<(Guarded, Vec<PathBuf>, Vec<PathBuf>)>,
    /// `listen` is mediated: the TCP ports a socket listened on may be bound to.
    pub listens: Option<std::collections::BTreeSet<u16>>,
}

/// The services that run, for the teardown to stop. The listener's thread is not among them: it
/// ends by itself once no process uses its seccomp filter.
#[derive(Default)]
pub struct Services {
    pub reader: Option<Reader>,
    pub proxy: Option<JoinHandle<()>>,
    /// The relays towards the client (stdout, stderr), drained by the teardown.
    pub relays: Vec<JoinHandle<()>>,
    /// Where the listener records refusals, for the summary.
    pub refusals: Option<Arc<Refusals>>,
    /// Taking the listener failed: stage 2 then fails its step, and this error, the cause, is
    /// reported in place of stage 2's.
    pub listener_error: Option<SupervisorError>,
}

/// Starts the services into `held.services` as each one starts, so that the teardown stops those
/// that run even when a later one fails.
pub fn start(plan: &Plan, child: Pid, inputs: ServiceInputs, held: &mut Held) -> Result<(), SupervisorError> {
    let ServiceInputs { monitor_log, mcp, listener, relays } = inputs;
    held.services.relays = stdio::start(relays).map_err(sys_err("start the stdio relays"))?;
    if let (Some(monitor), Some(log)) = (held.monitor.as_mut(), monitor_log) {
        held.services.reader = Some(start_reader(plan, child, monitor, log)?);
    }
    let in_flight = Arc::new(InFlight::default());
    if let Some(mcp) = mcp {
        held.services.proxy = Some(start_proxy(mcp, Arc::clone(&in_flight))?);
    }
    // The ring buffer before the listener: stage 2 cannot exec the server until it is taken.
    if let Some(monitor) = held.monitor.as_mut() {
        monitor.insert_ring().map_err(SupervisorError::from)?;
    }
    // Take the listener from stage 2 before it can exec; a failure here makes stage 2 fail its
    // step (the channel closes), which the error pipe then reports.
    if let Some(end) = listener {
        let refusals = Arc::new(Refusals::new(Some(end.log)).noting_calls(Arc::clone(&in_flight)));
        let tracer = match end.tracer {
            Some(inputs) => Some(start_tracer(inputs, &refusals, child, Arc::clone(&in_flight))?),
            None => None,
        };
        match take_listener(end.channel, child) {
            Ok(Some(fd)) => {
                let observer = tracer.clone().map(|t| t as Arc<dyn Observer>);
                let broker = match end.broker {
                    Some((policy, m)) => {
                        let dns = start_resolver(&policy, end.dns, &refusals)?;
                        Some((Broker::new(policy, dns, Arc::clone(&refusals), observer), m))
                    }
                    None => None,
                };
                let guard = end.guarded.map(|(calls, write_grants, scratch)| Guard {
                    calls,
                    in_flight: Arc::clone(&in_flight),
                    write_grants,
                    // a directory that cannot be opened is not exempt: writes there are refused
                    scratch: scratch
                        .into_iter()
                        .filter_map(|d| guard::open_scratch(&d).ok().map(|fd| (d, Arc::new(fd))))
                        .collect(),
                    refusals: Arc::clone(&refusals),
                });
                let served = Listener {
                    fd,
                    policy: end.policy,
                    broker,
                    refusals: Arc::clone(&refusals),
                    tracer,
                    calls: Gate::new(listener::CALLS_MAX),
                    guard,
                    listens: end.listens,
                };
                listener::spawn(served).map_err(sys_err("start the seccomp listener"))?;
                held.services.refusals = Some(refusals);
            }
            Ok(None) => {}
            Err(e) => held.services.listener_error = Some(e),
        }
    }
    Ok(())
}

/// mcp-warden's resolver, serving the DNS namespace's sockets: the route the broker sends the
/// server's DNS along.
fn start_resolver(
    policy: &NetPolicy,
    dns: Option<DnsInputs>,
    refusals: &Arc<Refusals>,
) -> Result<Option<DnsRoute>, SupervisorError> {
    let (Some(dns_policy), Some(inputs)) = (&policy.dns, dns) else { return Ok(None) };
    let (via, listeners, askers) = match inputs {
        DnsInputs::Namespace(namespace, listeners) => {
            let cookie = sys::notify::netns_cookie(listeners.udp4.as_fd()).map_err(SupervisorError::Dns)?;
            (DnsVia::Namespace { namespace, cookie }, vec![listeners], Askers::Anyone)
        }
        DnsInputs::Loopback(l) => (DnsVia::SocketPrograms, l.bound.listeners, Askers::Cgroup(l.cgroup)),
    };
    let pins = Arc::new(Pins::default());
    crate::dns::pin_hosts_file(&dns_policy.names, &pins);
    let journal = Arc::clone(refusals) as Arc<dyn crate::dns::Journal>;
    let resolver = Arc::new(Resolver::new(dns_policy.clone(), Arc::clone(&pins), journal));
    serve::start(resolver, listeners, askers).map_err(SupervisorError::Dns)?;
    Ok(Some(DnsRoute { via, pins }))
}

/// A learning run's tracer: its session file created, and a thread sampling the server's tree
/// for the limits.
fn start_tracer(
    inputs: TracerInputs,
    refusals: &Arc<Refusals>,
    child: Pid,
    in_flight: Arc<InFlight>,
) -> Result<Arc<Tracer>, SupervisorError> {
    let tracer = Arc::new(
        Tracer::new(inputs, Arc::clone(refusals), in_flight).map_err(sys_err("create the learning session file"))?,
    );
    let sampler = Arc::clone(&tracer);
    let root = child.as_raw() as u32;
    std::thread::Builder::new()
        .name("learn-sampler".into())
        .spawn(move || tracer::sample_peaks(sampler, root))
        .map_err(sys_err("start the learning run's sampler"))?;
    Ok(tracer)
}

/// Starts reading the probes' events into `log`, decoded against the server's process tree.
fn start_reader(plan: &Plan, child: Pid, monitor: &mut Monitor, log: AuditLog) -> Result<Reader, SupervisorError> {
    let table = ProcessTable::new(child.as_raw() as u32, std::process::id());
    let fs = plan.paths().iter().map(|(p, (a, _))| (p.clone(), *a)).collect();
    let decoder = EventDecoder::new(table, plan.audit_mode(), fs)
        .with_broker(plan.broker_policy(true).is_some())
        .with_hidden_root(plan.hide().is_some());
    monitor.start(decoder, log).map_err(SupervisorError::from)
}

/// Starts the MCP proxy between the client (the launcher's stdin and stdout) and the server.
fn start_proxy(mcp: McpEnds, in_flight: Arc<InFlight>) -> Result<JoinHandle<()>, SupervisorError> {
    let dup = |fd: BorrowedFd<'_>, what: &'static str| fd.try_clone_to_owned().map(File::from).map_err(sys_err(what));
    let client_in = dup(std::io::stdin().as_fd(), "duplicate stdin for the MCP layer")?;
    let client_out = dup(std::io::stdout().as_fd(), "duplicate stdout for the MCP layer")?;
    crate::mcp::proxy::start(
        mcp.config,
        mcp.log,
        client_in,
        client_out,
        mcp.server_in.into(),
        mcp.server_out.into(),
        in_flight,
    )
    .map_err(sys_err("start the MCP layer"))
}

/// Receives the listener's fd number from stage 2, duplicates it out of the child
/// (`pidfd_getfd`) and acknowledges. `None`: stage 2 failed before the broker step.
fn take_listener(mut channel: UnixStream, child: Pid) -> Result<Option<OwnedFd>, SupervisorError> {
    let mut num = [0u8; 4];
    if channel.read_exact(&mut num).is_err() {
        return Ok(None);
    }
    let pidfd = sys::pidfd_open(child.as_raw()).map_err(sys_err("open a pidfd for stage 2"))?;
    let listener = sys::pidfd_getfd(pidfd.as_fd(), i32::from_ne_bytes(num))
        .map_err(sys_err("take the seccomp listener from stage 2"))?;
    channel.write_all(&[1]).map_err(sys_err("acknowledge the seccomp listener"))?;
    Ok(Some(listener))
}
