//! Annotations made true, on the syscall path: while a call to a tool annotated read-only is in
//! flight, the server's writes are refused; while a call to a closed-world tool is in flight, its
//! new network connections are. The MCP layer says which calls are in flight and what each one
//! promised ([`InFlight`]); the seccomp filter hands the guarded calls here ([`Guarded`]).
//!
//! The verdict never depends on memory the server can change: every guarded call is refused while
//! such a call is in flight, whatever path or address it names. Two exceptions are made sound by
//! the supervisor doing the call itself and putting the descriptor into the server
//! (`SECCOMP_IOCTL_NOTIF_ADDFD`): a harmless device (`/dev/null`...) opened for writing, and a
//! regular file with no other link opened beneath a scratch directory (resolved with `openat2`,
//! with the server's credentials). The path or address read from memory is used for the record
//! only.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::refusals::Refusals;
use crate::layers::seccomp::{Guarded, Guards};
use crate::mcp::{Attempt, InFlight};
use crate::sys::notify::{self, Notification};

/// Devices a read-only tool may open for writing: writing to them changes nothing.
const HARMLESS: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// What the guard needs, shared by the listener's thread.
pub struct Guard {
    pub calls: Guarded,
    pub in_flight: Arc<InFlight>,
    /// Write grants: a write outside them would be refused by Landlock anyway, so it is refused
    /// but not recorded as a violation of the tool's annotations.
    pub write_grants: Vec<PathBuf>,
    /// Directories a read-only tool may still create and write files in: each path (canonical),
    /// and the directory itself, opened before the server ran (a path the server could later
    /// turn into a symlink to elsewhere in its write grants; the descriptor stays the directory).
    pub scratch: Vec<(PathBuf, Arc<OwnedFd>)>,
    pub refusals: Arc<Refusals>,
}

/// The guard's answer to a guarded call.
pub enum Verdict {
    /// No call in flight forbids it: it goes on as if unguarded.
    Pass,
    /// Answered: refused, or done by the supervisor.
    Answered(Result<i64, i32>),
}

impl Guard {
    pub fn covers(&self, n: &Notification) -> Option<Guards> {
        self.calls.covers(n.nr, &n.args)
    }

    pub fn check(&self, listener: BorrowedFd<'_>, n: &Notification, what: Guards) -> Verdict {
        let attempt = match what {
            Guards::Write => Attempt::Write,
            Guards::Connect => Attempt::Connect,
        };
        let Some(tool) = self.in_flight.forbidding(attempt) else { return Verdict::Pass };
        match what {
            Guards::Write => self.write(listener, n, &tool),
            Guards::Connect => self.connect(n, &tool),
        }
    }

    /// A write during a read-only call.
    fn write(&self, listener: BorrowedFd<'_>, n: &Notification, tool: &str) -> Verdict {
        let target = named_path(n);
        if let (Some(path), Some((flags, mode))) = (&target, open_arguments(n))
            && let Some(answer) = self.open_for_server(listener, n, &path.to_string_lossy(), flags, mode)
        {
            return Verdict::Answered(answer);
        }
        let inside_grants = target.as_deref().is_none_or(|p| self.write_grants.iter().any(|g| p.starts_with(g)));
        if inside_grants {
            self.in_flight.observe(tool, Attempt::Write);
            let target = target.map(|p| p.display().to_string());
            self.refusals.annotation_violation(n.pid, tool, "readOnlyHint", &syscall_name(n.nr), target, libc::EACCES);
        }
        Verdict::Answered(Err(libc::EACCES))
    }

    /// An open the supervisor may do for the server: a harmless device, or a file beneath a
    /// scratch directory. `None`: refused.
    fn open_for_server(
        &self,
        listener: BorrowedFd<'_>,
        n: &Notification,
        path: &str,
        flags: u32,
        mode: u32,
    ) -> Option<Result<i64, i32>> {
        let flags = OFlags::from_bits_retain(flags);
        let cloexec = flags.contains(OFlags::CLOEXEC);
        let opened = if HARMLESS.contains(&path) {
            rustix::fs::open(path, flags & (OFlags::RWMODE | OFlags::CLOEXEC), Mode::empty())
                .map_err(|e| e.raw_os_error())
        } else {
            let (dir, rel) = self.scratch_of(path)?;
            let mode = Mode::from_bits_truncate(mode);
            as_server(n.pid, move || open_beneath(&dir, &rel, flags, mode))
        };
        Some(opened.and_then(|fd| add(listener, n, fd.as_fd(), cloexec)))
    }

    /// The scratch directory `path` is under, and the rest of it (no `..` allowed).
    fn scratch_of(&self, path: &str) -> Option<(Arc<OwnedFd>, PathBuf)> {
        let path = Path::new(path);
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return None;
        }
        let (dir, fd) = self.scratch.iter().find(|(d, _)| path.starts_with(d))?;
        let rel = path.strip_prefix(dir).ok()?;
        (!rel.as_os_str().is_empty()).then(|| (Arc::clone(fd), rel.to_path_buf()))
    }

    /// A connection or send to an address during a closed-world call: refused, whatever the
    /// socket (a Unix socket reaches a daemon, and its family could change under a racing `dup2`
    /// between a check and the call).
    fn connect(&self, n: &Notification, tool: &str) -> Verdict {
        self.in_flight.observe(tool, Attempt::Connect);
        let syscall = syscall_name(n.nr);
        let target = destination(n, &syscall).map(|a| a.to_string());
        self.refusals.annotation_violation(n.pid, tool, "openWorldHint", &syscall, target, libc::EACCES);
        Verdict::Answered(Err(libc::EACCES))
    }
}

/// The address a `connect` or `sendto` names, read from the caller's memory (for the record).
fn destination(n: &Notification, syscall: &str) -> Option<std::net::SocketAddr> {
    let (ptr, len) = match syscall {
        "connect" => (n.args[1], n.args[2]),
        "sendto" => (n.args[4], n.args[5]),
        _ => return None,
    };
    let len = usize::try_from(len).ok()?.min(128);
    let mut buf = vec![0u8; len];
    let remote = [nix::sys::uio::RemoteIoVec { base: ptr as usize, len }];
    let pid = nix::unistd::Pid::from_raw(n.pid as i32);
    let read = nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(&mut buf)], &remote).ok()?;
    crate::layers::broker::socket_addr(&buf[..read])
}

/// Puts `fd` into the server as the result of its call.
fn add(listener: BorrowedFd<'_>, n: &Notification, fd: BorrowedFd<'_>, cloexec: bool) -> Result<i64, i32> {
    notify::add_fd_send(listener, n.id, fd, cloexec).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens a scratch directory for [`Guard::scratch`], before the server runs: the directory
/// itself, not a symlink.
pub fn open_scratch(dir: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::open(dir, flags, Mode::empty())?)
}

/// Opens `rel` beneath the directory `dir` without leaving it (no `..`, no symlink out, no magic
/// links), and only a regular file with no other link: a hard link in the scratch directory to a
/// file elsewhere is the same file (`RESOLVE_BENEATH` cannot tell). The open never blocks (a FIFO
/// is refused) and truncates only once the file is known to be the scratch directory's own.
fn open_beneath(dir: &OwnedFd, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, i32> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let how = (flags - OFlags::TRUNC) | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat2(dir, rel, how, mode, resolve).map_err(|e| e.raw_os_error())?;
    let st = rustix::fs::fstat(&fd).map_err(|e| e.raw_os_error())?;
    // nlink 0: an O_TMPFILE file, which names nothing else either
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile || st.st_nlink > 1 {
        return Err(libc::EACCES);
    }
    if !flags.contains(OFlags::NONBLOCK) {
        let status = rustix::fs::fcntl_getfl(&fd).map_err(|e| e.raw_os_error())?;
        rustix::fs::fcntl_setfl(&fd, status - OFlags::NONBLOCK).map_err(|e| e.raw_os_error())?;
    }
    if flags.contains(OFlags::TRUNC) {
        rustix::fs::ftruncate(&fd, 0).map_err(|e| e.raw_os_error())?;
    }
    Ok(fd)
}

/// Runs `f` on a thread of its own with the credentials of process `pid` (uid, gid, no
/// supplementary groups), so that a file it creates is the server's and permissions are the
/// server's. The thread's credentials are its own (raw per-thread syscalls), never the process's.
fn as_server<T: Send + 'static>(pid: u32, f: impl FnOnce() -> Result<T, i32> + Send + 'static) -> Result<T, i32> {
    let (uid, gid) = crate::sys::ids_of(pid).map_err(|e| e.raw_os_error().unwrap_or(libc::ESRCH))?;
    let worker = std::thread::spawn(move || {
        crate::sys::become_ids(uid, gid).map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM))?;
        f()
    });
    worker.join().unwrap_or(Err(libc::EIO))
}

/// The path a write names (its first), read from the caller's memory: for the record and the
/// choice of an open the supervisor does itself, never for the verdict. An fd-only call names its
/// descriptor's target.
fn named_path(n: &Notification) -> Option<std::path::PathBuf> {
    match super::tracer::named_paths(n).first() {
        Some((_, at)) => super::tracer::resolve(n, *at),
        None => super::listener::fd_target(n.pid, n.args[0]),
    }
}

/// The flags and mode of an `open` or `openat`.
fn open_arguments(n: &Notification) -> Option<(u32, u32)> {
    let (flags, mode) = match syscalls::Sysno::new(n.nr as usize)? {
        syscalls::Sysno::openat => (2, 3),
        #[cfg(target_arch = "x86_64")]
        syscalls::Sysno::open => (1, 2),
        _ => return None,
    };
    Some((n.args[flags] as u32, n.args[mode] as u32))
}

fn syscall_name(nr: i64) -> String {
    syscalls::Sysno::new(nr as usize).map_or_else(|| format!("syscall_{nr}"), |s| s.name().to_string())
}
