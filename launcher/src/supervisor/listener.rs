//! The supervisor's end of the seccomp listener: every call the filter hands over is either one
//! the network broker performs for the server, or one a rule refused, which is recorded (with the
//! arguments that decided it and the path it names) and answered with EPERM.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

use super::guard::{Guard, Verdict};
use super::refusals::{Refusal, Refusals};
use super::tracer::Tracer;
use crate::audit::record::DenyLayer;
use crate::gate::Gate;
use crate::layers::broker::Broker;
use crate::layers::refused_call::{self, PathArg};
use crate::layers::seccomp::{Mediated, SyscallPolicy};
use crate::sys::notify::{self, Notification};

/// What the listener serves.
pub struct Listener {
    pub fd: OwnedFd,
    pub policy: SyscallPolicy,
    /// The network broker and the calls it performs, when it runs.
    pub broker: Option<(Broker, Mediated)>,
    pub refusals: Arc<Refusals>,
    /// A learning run's tracer: the traced file calls go there, then continue.
    pub tracer: Option<Arc<Tracer>>,
    /// Mediated calls being performed (a thread each), at most [`CALLS_MAX`].
    pub calls: Arc<Gate>,
    /// The MCP layer's annotations, held on the guarded calls.
    pub guard: Option<Guard>,
    /// `listen` is mediated: the TCP ports a socket listened on may be bound to.
    pub listens: Option<std::collections::BTreeSet<u16>>,
}

/// Mediated calls performed at once. A call can block (a connect to a host that never answers, a
/// send to a peer that does not read); past this, a new one fails with EAGAIN at once, so a server
/// cannot grow the supervisor without end.
pub const CALLS_MAX: usize = 256;

/// Serves the listener until every process under the filter is gone. A mediated call gets a thread
/// of its own (a blocking connect to a slow host must not hold up the others); a refusal is
/// answered at once.
pub fn spawn(listener: Listener) -> std::io::Result<JoinHandle<()>> {
    let shared = Arc::new(listener);
    std::thread::Builder::new().name("seccomp-listener".into()).spawn(move || {
        while let Some(n) = next(shared.fd.as_fd()) {
            let refused = denied_whole(&shared.policy, n.nr) || shared.policy.refuses_arguments(n.nr, &n.args);
            let guarded = shared.guard.as_ref().filter(|_| !refused).and_then(|g| Some((g, g.covers(&n)?)));
            if let Some((guard, what)) = guarded
                && let Verdict::Answered(result) = guard.check(shared.fd.as_fd(), &n, what)
            {
                if result.is_err() {
                    let _ = notify::respond(shared.fd.as_fd(), n.id, result);
                }
                continue;
            }
            if let Some(ports) = shared.listens.as_ref().filter(|_| n.nr == libc::SYS_listen && !refused) {
                let enforce = shared.policy.action != crate::profile::Violation::Log;
                let result = super::listens::perform(shared.fd.as_fd(), &n, ports, &shared.refusals, enforce);
                let _ = notify::respond(shared.fd.as_fd(), n.id, result);
                continue;
            }
            match (&shared.broker, &shared.tracer) {
                (Some((_, mediated)), _) if mediated.covers(n.nr, &n.args) && !refused => mediate(&shared, n),
                (_, Some(tracer)) if crate::layers::seccomp::is_traced(n.nr) && !refused => {
                    tracer.file_call(&n, || notify::still_pending(shared.fd.as_fd(), n.id));
                    let _ = notify::respond_continue(shared.fd.as_fd(), n.id);
                }
                _ if guarded.is_some() => {
                    let _ = notify::respond_continue(shared.fd.as_fd(), n.id);
                }
                _ => {
                    refuse(&shared, &n);
                    let _ = notify::respond(shared.fd.as_fd(), n.id, Err(libc::EPERM));
                }
            }
        }
    })
}

/// The next notification; `None` once no process uses the filter any more.
fn next(listener: BorrowedFd<'_>) -> Option<Notification> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [PollFd::new(listener, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {}
        }
        if !fds[0].revents().unwrap_or(PollFlags::POLLHUP).contains(PollFlags::POLLIN) {
            return None; // POLLHUP
        }
        // ENOENT: the thread died between poll and receive; EINTR: try again.
        if let Ok(n) = notify::receive(listener) {
            return Some(n);
        }
    }
}

/// A call of the deny-set is refused even when the broker would otherwise perform it.
fn denied_whole(policy: &SyscallPolicy, nr: i64) -> bool {
    syscalls::Sysno::new(nr as usize).is_some_and(|s| policy.deny.contains(&s))
}

fn mediate(shared: &Arc<Listener>, n: Notification) {
    let Some(ticket) = shared.calls.enter() else {
        let _ = notify::respond(shared.fd.as_fd(), n.id, Err(libc::EAGAIN));
        return;
    };
    let worker = Arc::clone(shared);
    let spawned = std::thread::Builder::new().name("broker-call".into()).spawn(move || {
        if let Some((broker, _)) = &worker.broker {
            let result = broker.handle(worker.fd.as_fd(), &n);
            let _ = notify::respond(worker.fd.as_fd(), n.id, result);
        }
        drop(ticket);
    });
    if spawned.is_err() {
        let _ = notify::respond(shared.fd.as_fd(), n.id, Err(libc::EAGAIN));
    }
}

/// Records a call a rule refused. The path is read from the caller's memory while the call still
/// waits; if the thread is gone by then (a recycled pid could have answered), it is left out.
fn refuse(shared: &Listener, n: &Notification) {
    let call = refused_call::describe(&shared.policy, n.nr, &n.args);
    let path = call.path.and_then(|p| path_of(n, p)).map(|p| own_proc(&p, n.pid));
    let path = path.filter(|_| notify::still_pending(shared.fd.as_fd(), n.id));
    let refusal = Refusal {
        layer: DenyLayer::Seccomp,
        tid: n.pid,
        nr: n.nr,
        syscall: call.syscall,
        args: call.args,
        path,
        reason: call.reason,
        grant: call.grant,
        errno: libc::EPERM,
    };
    shared.refusals.record(refusal, true);
}

/// `/proc/self/...` and `/proc/thread-self/...` name the caller's own entries: as read by the
/// supervisor they would name its own, so they are written with the caller's pid.
pub(super) fn own_proc(path: &str, pid: u32) -> String {
    for own in ["/proc/self/", "/proc/thread-self/"] {
        if let Some(rest) = path.strip_prefix(own) {
            return format!("/proc/{pid}/{rest}");
        }
    }
    path.to_string()
}

/// The path a call names: a string in its memory (relative ones joined to the directory they are
/// relative to), or a file descriptor's target.
fn path_of(n: &Notification, arg: PathArg) -> Option<String> {
    match arg {
        PathArg::Fd(i) => fd_target(n.pid, n.args[i]).map(|p| p.display().to_string()),
        PathArg::Path(i) => absolute(n, None, i),
        PathArg::At(i) => absolute(n, Some(0), i),
    }
}

/// The path a call names in argument `path` (a string in its memory), made absolute: a relative
/// one joined to the directory fd in argument `dirfd` (`*at` calls, unless `AT_FDCWD`) or to the
/// working directory. `None` when the string cannot be read; the string as written when its
/// directory cannot.
pub(super) fn absolute(n: &Notification, dirfd: Option<usize>, path: usize) -> Option<String> {
    let written = read_string(Pid::from_raw(n.pid as i32), n.args[path])?;
    if written.starts_with('/') || written.is_empty() {
        return Some(written);
    }
    let base = match dirfd.map(|i| n.args[i]).filter(|fd| *fd as i32 != libc::AT_FDCWD) {
        Some(fd) => fd_target(n.pid, fd),
        None => std::fs::read_link(format!("/proc/{}/cwd", n.pid)).ok(),
    };
    Some(base.map_or(written.clone(), |b| b.join(&written).display().to_string()))
}

/// What a descriptor of the caller refers to.
pub(super) fn fd_target(pid: u32, fd: u64) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{}", fd as i32)).ok()
}

/// A NUL-terminated string at `addr` in `pid`'s memory, at most PATH_MAX bytes, read a page at a
/// time so that a string ending just before an unmapped page is still read.
fn read_string(pid: Pid, addr: u64) -> Option<String> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let len = (PAGE - at % PAGE) as usize;
        let mut buf = vec![0u8; len];
        let remote = [RemoteIoVec { base: at as usize, len }];
        let read = process_vm_readv(pid, &mut [std::io::IoSliceMut::new(&mut buf)], &remote).ok()?;
        if let Some(end) = buf[..read].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..read]);
        at += read as u64;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_own_proc_entries_name_the_caller() {
        assert_eq!(own_proc("/proc/self/fd/4", 42), "/proc/42/fd/4");
        assert_eq!(own_proc("/etc/passwd", 42), "/etc/passwd");
    }

    #[test]
    fn a_string_is_read_from_a_process_memory() {
        let s = c"/home/u/.ssh/id_ed25519";
        let me = Pid::from_raw(std::process::id() as i32);
        assert_eq!(read_string(me, s.as_ptr() as u64).as_deref(), Some("/home/u/.ssh/id_ed25519"));
        assert_eq!(read_string(me, 0), None);
    }
}
