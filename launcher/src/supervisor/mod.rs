//! The supervisor: does the fallible preparation (cgroups, Landlock ruleset, seccomp programs),
//! forks stage 2 while still single-threaded, learns from the error pipe whether the server was
//! executed, then forwards signals and exits with the server's status.

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::resource::Resource;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::audit::{AuditLog, Destination, Summary, write_summary};
use crate::ebpf::{EventDecoder, Monitor, MonitorConfig, MonitorError, ProcessTable};
use crate::layers::broker;
use crate::layers::cgroup::{CgroupError, ServerCgroups};
use crate::layers::landlock::{self, LandlockError, NetPorts};
use crate::plan::{Enforcement, Layer, PidNamespace, Plan};
use crate::profile::Level;
use crate::stage2::{self, Stage2, Step, StepError};
use crate::sys;

/// Signals forwarded to the server. SIGCHLD is handled, everything else keeps its default.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    #[error("failed to compile the seccomp filter: {0}")]
    Seccomp(#[from] seccompiler::BackendError),
    #[error("failed to {action}: {source}")]
    Sys { action: &'static str, source: std::io::Error },
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error(
        "refusing to fork the sandbox: the launcher has {0} threads (stage 2 must fork from a single-threaded process)"
    )]
    Threads(u64),
    #[error("failed to {}: {}", .0.step.describe(), describe_errno(.0.errno))]
    Stage2(StepError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("cannot write the audit log {path}: {source}")]
    AuditLog { path: String, source: std::io::Error },
}

fn describe_errno(errno: i32) -> String {
    if errno == 0 {
        "not enforced".into()
    } else {
        format!("{} ({})", std::io::Error::from_raw_os_error(errno), Errno::from_raw(errno))
    }
}

impl crate::error::Diagnose for SupervisorError {
    fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::Stage2(e) => e.exit_code(),
            _ => 125,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            SupervisorError::Cgroup(_) => "limits that need a cgroup fall back to rlimits with `--require limits=best-effort`".into(),
            SupervisorError::Monitor(_) => {
                "`mcp-warden doctor` shows which eBPF program types load here; `--require monitor=best-effort` runs without the eBPF layer".into()
            }
            SupervisorError::AuditLog { .. } => "choose another file with --audit-log PATH (or - for stderr), or run without a complete log with `--require audit-log=best-effort`".into(),
            SupervisorError::Landlock(LandlockError::Create(_)) => {
                "`mcp-warden doctor` shows this kernel's Landlock support; `--require landlock=best-effort` runs with what it has".into()
            }
            SupervisorError::Stage2(e) => match (e.step, e.errno) {
                (Step::Exec, libc::EACCES) => {
                    "Landlock denied the exec: the program (or its interpreter) must be under an --allow-exec path".into()
                }
                (Step::Exec, libc::ENOENT) => "check the program path, or a script's interpreter line".into(),
                (Step::MapUserNamespace, _) => "disable the PID namespace with `--require pid-namespace=off`".into(),
                _ => return None,
            },
            _ => return None,
        })
    }
}

fn cstring(what: &str, s: &OsStr) -> Result<CString, SupervisorError> {
    CString::new(s.as_bytes()).map_err(|_| SupervisorError::Nul { what: format!("{what} `{}`", s.to_string_lossy()) })
}

fn sys_err(action: &'static str) -> impl FnOnce(std::io::Error) -> SupervisorError {
    move |source| SupervisorError::Sys { action, source }
}

/// Runs the plan's server and returns the exit status to leave with.
pub fn run(plan: &Plan) -> Result<i32, SupervisorError> {
    // Signals we forward, and SIGCHLD, are blocked first: one that arrives while the sandbox is
    // being prepared is forwarded once the server runs instead of killing the launcher midway;
    // stage 2 inherits the blocked mask until just before exec.
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut waited = forwarded;
    waited.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .map_err(|e| SupervisorError::Sys { action: "block signals", source: e.into() })?;

    // 0. Fallible work, before the fork: the cgroups (with their limits), the Landlock ruleset
    //    (every path opened), the seccomp programs, the argv/envp as C strings.
    let monitor_parent =
        if plan.monitor_runs() { plan.monitor_cgroup_parent().map(std::path::Path::to_path_buf) } else { None };
    let mut cgroups = ServerCgroups::create(plan.cgroup_limits(), monitor_parent.as_deref())?;
    let mut monitor = load_monitor(plan, &cgroups)?;
    let audit_log = match &monitor {
        Some(_) => Some(open_audit_log(plan, plan.audit_log(), "ebpf")?),
        None => None,
    };
    let owner = plan.identity().switch.then_some((plan.identity().uid, plan.identity().gid));
    let private_tmp = match plan.private_tmp() {
        true => Some(PrivateTmp::create(owner).map_err(sys_err("create the private temporary directory"))?),
        false => None,
    };
    let landlock = match plan.level(Layer::Landlock) {
        Level::Off => None,
        _ if matches!(plan.enforcement(Layer::Landlock), Enforcement::Missing(_)) => None,
        level => {
            let mut paths: std::collections::BTreeMap<_, _> =
                plan.paths().iter().map(|(p, (a, _))| (p.clone(), *a)).collect();
            if let Some(tmp) = &private_tmp {
                paths.insert(tmp.0.clone(), crate::layers::landlock::FsAccess::WRITE);
            }
            let ports = NetPorts { connect: plan.ports().connect.clone(), bind: plan.ports().bind.clone() };
            Some((landlock::prepare(&paths, &ports, level)?, level))
        }
    };
    let seccomp = match (plan.level(Layer::Seccomp), plan.enforcement(Layer::Seccomp)) {
        (Level::Off, _) | (_, Enforcement::Missing(_)) => Vec::new(),
        _ => plan.syscalls().compile(plan.x32_abi())?,
    };
    let mut rlimits = vec![(Resource::RLIMIT_CORE, 0)];
    rlimits.extend(plan.limits().rlimits());
    let mut env_pairs = plan.env().to_vec();
    if let Some(tmp) = &private_tmp {
        env_pairs.retain(|(k, _)| k != "TMPDIR");
        env_pairs.push(("TMPDIR".into(), tmp.0.clone().into_os_string()));
    }
    let env = env_pairs
        .iter()
        .map(|(k, v)| {
            let mut kv = OsString::from(k);
            kv.push("=");
            kv.push(v);
            cstring("environment variable", &kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let argv = plan.argv().iter().map(|a| cstring("argument", a)).collect::<Result<Vec<_>, _>>()?;

    let supervisor = sys::pidfd_open(std::process::id() as i32).map_err(sys_err("open a pidfd for the supervisor"))?;
    let (error_read, error_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SupervisorError::Sys { action: "create the error pipe", source: e.into() })?;

    // Signals reach the supervisor through a signalfd (close-on-exec: stage 2 does not keep it).
    let signals = SignalFd::with_flags(&waited, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SupervisorError::Sys { action: "create a signalfd", source: e.into() })?;

    // The MCP layer: the server's stdin and stdout become pipes to the proxy; the audit log is
    // opened now so that a failure refuses the run before anything starts.
    let mut mcp_pipes = None;
    let mcp = match plan.mcp() {
        Some(cfg) => {
            let log = open_audit_log(plan, &cfg.audit, "mcp")?;
            let pipe = || {
                nix::unistd::pipe2(OFlag::O_CLOEXEC)
                    .map_err(|e| SupervisorError::Sys { action: "create the MCP pipes", source: e.into() })
            };
            let (stdin_r, stdin_w) = pipe()?;
            let (stdout_r, stdout_w) = pipe()?;
            mcp_pipes = Some((stdin_r, stdout_w));
            Some((cfg.clone(), log, stdin_w, stdout_r))
        }
        None => None,
    };

    // The network broker: its filter travels with stage 2, its listener comes back over `channel`.
    // Not needed when the eBPF layer loaded and expresses every rule itself.
    let broker_policy = plan.broker_policy(monitor.is_some());
    let (broker_stage2, broker_channel) = match broker_policy {
        Some(_) => {
            let (ours, theirs) =
                std::os::unix::net::UnixStream::pair().map_err(sys_err("create the broker channel"))?;
            (Some((sys::notify::filter(plan.syscalls().sockets.udp), theirs)), Some(ours))
        }
        None => (None, None),
    };

    let threads = sys::thread_count().map_err(sys_err("count the launcher's threads"))?;
    if threads != 1 {
        return Err(SupervisorError::Threads(threads));
    }
    let ns_flags = match plan.pid_namespace() {
        PidNamespace::Off => 0,
        PidNamespace::Plain => libc::CLONE_NEWPID,
        PidNamespace::WithUserNamespace => libc::CLONE_NEWUSER | libc::CLONE_NEWPID,
    };
    let stage2 = Stage2 {
        program: cstring("program path", plan.program().as_os_str())?,
        argv,
        env,
        cwd: cstring("working directory", plan.cwd().as_os_str())?,
        switch_to: plan.identity().switch.then_some((plan.identity().uid, plan.identity().gid)),
        own_ids: (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
        rlimits,
        cgroup_procs: std::mem::take(&mut cgroups.procs),
        pid_namespace: plan.pid_namespace(),
        landlock,
        seccomp,
        broker: broker_stage2,
        stdio: mcp_pipes,
        forwarded,
        supervisor,
        error_pipe: error_write,
    };

    let child = match sys::fork_into_namespaces(ns_flags).map_err(sys_err("fork the sandboxed process"))? {
        sys::Forked::Child => {
            drop(error_read);
            stage2::run(stage2)
        }
        sys::Forked::Parent(pid) => Pid::from_raw(pid),
    };
    drop(stage2);
    // The reader thread starts only now: stage 2 had to be forked from a single-threaded process.
    let reader = match (monitor.as_mut(), audit_log) {
        (Some(m), Some(log)) => {
            let table = ProcessTable::new(child.as_raw() as u32, std::process::id());
            let fs = plan.paths().iter().map(|(p, (a, _))| (p.clone(), *a)).collect();
            Some(m.start(EventDecoder::new(table, plan.audit_mode(), fs), log)?)
        }
        _ => None,
    };

    let proxy = match mcp {
        Some((cfg, log, server_in, server_out)) => {
            let dup = |fd: std::os::fd::BorrowedFd<'_>, what: &'static str| {
                fd.try_clone_to_owned().map(std::fs::File::from).map_err(sys_err(what))
            };
            let client_in = dup(std::io::stdin().as_fd(), "duplicate stdin for the MCP layer")?;
            let client_out = dup(std::io::stdout().as_fd(), "duplicate stdout for the MCP layer")?;
            Some(
                crate::mcp::proxy::start(cfg, log, client_in, client_out, server_in.into(), server_out.into())
                    .map_err(sys_err("start the MCP layer"))?,
            )
        }
        None => None,
    };

    // Take the broker's listener from stage 2 before it can exec; a failure here makes stage 2
    // fail its step (the channel closes), which the error pipe then reports.
    let mut broker_error = None;
    if let (Some(channel), Some(policy)) = (broker_channel, broker_policy) {
        match take_listener(channel, child) {
            Ok(Some(listener)) => {
                broker::spawn(listener, policy.clone()).map_err(sys_err("start the network broker"))?;
            }
            Ok(None) => {}
            Err(e) => broker_error = Some(e),
        }
    }

    if let Some(err) = read_stage2_error(error_read) {
        if let Some(e) = broker_error {
            let _ = waitpid(child, None);
            return Err(e);
        }
        let _ = waitpid(child, None);
        if let Some(reader) = reader {
            let _ = reader.stop();
        }
        drop(monitor);
        drop(cgroups);
        return Err(SupervisorError::Stage2(err));
    }
    tracing::debug!(pid = child.as_raw(), "server started");
    if let Some(m) = monitor.as_mut() {
        m.attach_lsm();
    }

    let status = supervise(child, &signals, plan.stop_timeout());
    if let Some(proxy) = proxy {
        // Deliver what the server wrote before it exited (its stdout closes with the last
        // process holding it).
        let deadline = Instant::now() + Duration::from_secs(2);
        while !proxy.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if monitor.is_some() {
        // Detaching tracepoint programs waits for RCU grace periods (tens of milliseconds): let
        // the client see the server's stdout close now rather than after the teardown.
        release_stdio();
    }
    if let (Some(reader), Some(m)) = (reader, monitor.as_ref()) {
        let (decoder, mut log) = reader.stop();
        let summary = Summary {
            profile: plan.profile().to_string(),
            program: plan.program().display().to_string(),
            mode: if plan.audit_mode() { "audit" } else { "enforce" },
            exit_code: (status < 128).then_some(status),
            signal: (status > 128).then_some(status - 128),
        };
        let line = write_summary(&mut log, &decoder, &m.counters(), m.lsm(), &summary);
        eprintln!("mcp-warden: {line}");
    }
    drop(monitor);
    drop(cgroups);
    Ok(status)
}

/// The server's private `TMPDIR`, removed with its contents when dropped. Its name carries the
/// launcher's pid, so that a directory left behind by a killed launcher is removed by the next one.
struct PrivateTmp(std::path::PathBuf);

const PRIVATE_TMP_PREFIX: &str = "mcp-warden-tmp.";

impl PrivateTmp {
    fn create(owner: Option<(u32, u32)>) -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        Self::sweep(&base);
        let template = base.join(format!("{PRIVATE_TMP_PREFIX}{}.XXXXXX", std::process::id()));
        let dir = nix::unistd::mkdtemp(&template)?; // mode 0700
        let tmp = PrivateTmp(dir);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&tmp.0, Some(uid), Some(gid))?;
        }
        Ok(tmp)
    }

    /// Removes the directories of launchers that are gone (and that are ours to remove).
    fn sweep(base: &std::path::Path) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = std::fs::read_dir(base) else { return };
        let euid = nix::unistd::geteuid().as_raw();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PRIVATE_TMP_PREFIX)) else { continue };
            let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let ours = entry.metadata().is_ok_and(|m| m.is_dir() && (euid == 0 || m.uid() == euid));
            if ours && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "mcp-warden: warning: could not remove the private temporary directory {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Opens the audit log and writes its start record at once: a log that cannot be written refuses
/// the run when the `audit-log` requirement is `required`; best-effort, it is reported and every
/// record is counted as lost (in the summary).
fn open_audit_log(plan: &Plan, destination: &Destination, writer: &str) -> Result<AuditLog, SupervisorError> {
    let fail = |source| SupervisorError::AuditLog { path: destination.describe(), source };
    let mut log = AuditLog::open(destination.clone()).map_err(fail)?;
    let record = serde_json::json!({
        "ts": crate::audit::now_rfc3339(),
        "kind": "start",
        "writer": writer,
        "profile": plan.profile(),
        "program": plan.program().display().to_string(),
        "launcher_pid": std::process::id(),
    });
    match log.start(&record) {
        Ok(()) => Ok(log),
        Err(e) if plan.level(Layer::AuditLog) == Level::Required => Err(fail(e)),
        Err(e) => {
            eprintln!(
                "mcp-warden: warning: the audit log {} cannot be written ({e}); audit-log is best-effort: the server runs and every record is counted as lost",
                destination.describe()
            );
            Ok(log)
        }
    }
}

/// Points stdin and stdout at /dev/null, dropping the supervisor's references to the client's
/// pipes (stderr stays: the summary goes there).
fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Loads the eBPF layer when the plan runs it: a failure refuses the run when the layer is
/// required, and is reported when it is best-effort.
fn load_monitor(plan: &Plan, cgroups: &ServerCgroups) -> Result<Option<Monitor>, SupervisorError> {
    let Some(dir) = cgroups.monitor_dir.clone() else { return Ok(None) };
    let config = MonitorConfig {
        cgroup_dir: dir,
        audit_mode: plan.audit_mode(),
        rules: plan.net_rules(),
        allow_raw_sockets: false,
        denied_syscalls: plan.syscalls().deny.iter().map(|s| s.id() as u32).collect(),
        ring_bytes: plan.audit_buffer(),
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

/// Receives the broker listener's fd number from stage 2, duplicates it out of the child
/// (`pidfd_getfd`) and acknowledges. `None`: stage 2 failed before the broker step.
fn take_listener(mut channel: std::os::unix::net::UnixStream, child: Pid) -> Result<Option<OwnedFd>, SupervisorError> {
    use std::io::Write;
    let mut num = [0u8; 4];
    if channel.read_exact(&mut num).is_err() {
        return Ok(None);
    }
    let pidfd = sys::pidfd_open(child.as_raw()).map_err(sys_err("open a pidfd for stage 2"))?;
    let listener = sys::pidfd_getfd(pidfd.as_fd(), i32::from_ne_bytes(num))
        .map_err(sys_err("take the network broker's listener from stage 2"))?;
    channel.write_all(&[1]).map_err(sys_err("acknowledge the broker listener"))?;
    Ok(Some(listener))
}

/// Reads the error pipe to EOF: `None` when stage 2 executed the server (close-on-exec closed
/// the pipe), `Some` when it reported a failed step.
fn read_stage2_error(pipe: OwnedFd) -> Option<StepError> {
    let mut buf = [0u8; StepError::WIRE_LEN];
    let mut file = std::fs::File::from(pipe);
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if got == buf.len() { StepError::from_bytes(&buf) } else { None }
}

/// Waits for the server and returns the status to leave with. Signals are forwarded to its process
/// group (or to its PID-1 reaper, which passes them to the whole namespace). After a forwarded
/// termination signal, or when the client's end of stdout is gone (the client vanished), the
/// server has `stop_timeout` to exit before its whole tree is killed.
fn supervise(child: Pid, signals: &SignalFd, stop_timeout: Duration) -> i32 {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    // Only a pipe or socket tells us that its reader is gone.
    let mut watch_stdout = nix::sys::stat::fstat(std::io::stdout())
        .map(|st| matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK))
        .unwrap_or(false);
    let mut deadline: Option<Instant> = None;
    let signal_tree = |sig: Signal| {
        // Stage 2 made the server a session (and process group) leader: signal the group, as a
        // terminal would; fall back to the process if it left its group.
        if kill(Pid::from_raw(-child.as_raw()), sig).is_err() {
            let _ = kill(child, sig);
        }
    };
    loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(Errno::ECHILD) => return 125,
            Err(_) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!("the server did not stop within {stop_timeout:?}: killing its process tree");
            signal_tree(Signal::SIGKILL);
            deadline = None;
        }
        let timeout = match deadline {
            Some(d) => {
                PollTimeout::try_from(d.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::NONE)
            }
            None => PollTimeout::NONE,
        };
        let stdout = std::io::stdout();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if watch_stdout {
            fds.push(PollFd::new(stdout.as_fd(), PollFlags::empty()));
        }
        if nix::poll::poll(&mut fds, timeout).is_err() {
            continue;
        }
        let client_gone = watch_stdout
            && fds
                .get(1)
                .and_then(PollFd::revents)
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        if client_gone {
            tracing::warn!("the client closed the server's output: stopping the server");
            watch_stdout = false;
            signal_tree(Signal::SIGTERM);
            deadline.get_or_insert(Instant::now() + stop_timeout);
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            if sig == Signal::SIGCHLD {
                continue;
            }
            tracing::debug!(signal = %sig, "forwarding signal to the server");
            signal_tree(sig);
            if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT) {
                deadline.get_or_insert(Instant::now() + stop_timeout);
            }
        }
    }
}
