//! Supervising the running server: its signals blocked from the start and forwarded to its process
//! group, the stop timeout, the client going away, and its exit status (128+N for signal N).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::error::{SupervisorError, sys_err};

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

/// The blocked signals, and the signalfd the supervisor reads them from.
pub struct Signals {
    /// The forwarded ones: stage 2 keeps them blocked until just before exec.
    pub forwarded: SigSet,
    fd: SignalFd,
}

impl Signals {
    /// Blocks the forwarded signals and SIGCHLD, and opens the signalfd that receives them.
    pub fn block() -> Result<Signals, SupervisorError> {
        let mut forwarded = SigSet::empty();
        for s in FORWARDED {
            forwarded.add(s);
        }
        let mut waited = forwarded;
        waited.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None).map_err(sys_err("block signals"))?;
        // Close-on-exec: stage 2 does not keep it.
        let fd = SignalFd::with_flags(&waited, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys_err("create a signalfd"))?;
        Ok(Signals { forwarded, fd })
    }
}

/// Waits for the server and returns the status to leave with. Signals are forwarded to its process
/// group (or to its PID-1 reaper, which passes them to the whole namespace). After a forwarded
/// termination signal, or when the client's end of stdout is gone (the client vanished), the
/// server has `stop_timeout` to exit before its whole tree is killed.
pub fn wait_for_exit(child: Pid, signals: &Signals, stop_timeout: Duration) -> i32 {
    // Only a pipe or socket tells us that its reader is gone.
    let mut watch_stdout = nix::sys::stat::fstat(std::io::stdout())
        .map(|st| matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK))
        .unwrap_or(false);
    let mut deadline: Option<Instant> = None;
    loop {
        if let Some(status) = exit_status(child) {
            return status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!("the server did not stop within {stop_timeout:?}: killing its process tree");
            signal_tree(child, Signal::SIGKILL);
            deadline = None;
        }
        let Some(client_gone) = poll(signals, watch_stdout, deadline) else { continue };
        if client_gone {
            tracing::warn!("the client closed the server's output: stopping the server");
            watch_stdout = false;
            signal_tree(child, Signal::SIGTERM);
            deadline.get_or_insert(Instant::now() + stop_timeout);
        }
        while let Ok(Some(info)) = signals.fd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
            if sig == Signal::SIGCHLD {
                continue;
            }
            tracing::debug!(signal = %sig, "forwarding signal to the server");
            signal_tree(child, sig);
            if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT) {
                deadline.get_or_insert(Instant::now() + stop_timeout);
            }
        }
    }
}

/// The status to leave with once the server has exited; `None` while it runs.
fn exit_status(child: Pid) -> Option<i32> {
    match crate::sys::reap(Some(child.as_raw())) {
        crate::sys::Reaped::Child { status, .. } => Some(status),
        crate::sys::Reaped::NoChildren => Some(125),
        crate::sys::Reaped::Running => None,
    }
}

/// Sleeps until a signal arrives, the client's end of stdout goes away (when `watch_stdout`) or
/// `deadline` passes. `Some(true)` when the client is gone; `None` when the poll failed.
fn poll(signals: &Signals, watch_stdout: bool, deadline: Option<Instant>) -> Option<bool> {
    let timeout = match deadline {
        Some(d) => {
            PollTimeout::try_from(d.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::NONE)
        }
        None => PollTimeout::NONE,
    };
    let stdout = std::io::stdout();
    let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
    if watch_stdout {
        fds.push(PollFd::new(stdout.as_fd(), PollFlags::empty()));
    }
    nix::poll::poll(&mut fds, timeout).ok()?;
    Some(
        watch_stdout
            && fds
                .get(1)
                .and_then(PollFd::revents)
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
    )
}

/// Stage 2 made the server a session (and process group) leader: signal the group, as a terminal
/// would; fall back to the process if it left its group.
fn signal_tree(child: Pid, sig: Signal) {
    if kill(Pid::from_raw(-child.as_raw()), sig).is_err() {
        let _ = kill(child, sig);
    }
}
