//! The raw system calls that no crate covers. Every `unsafe` block of the launcher lives here.
//!
//! Each function is one syscall (or one tightly coupled pair) with a safe signature; callers never
//! see a raw pointer. Errors come back as `std::io::Error` so each layer can wrap them in its own
//! error variant with the object involved. Calls a crate does cover with the kernel's errno
//! (pidfds and `poll` through rustix) are wrapped here too, so callers keep one signature.
//!
//! - this file: process and descriptor calls (pidfds, fork into namespaces, `close_range`,
//!   signal dispositions, `_exit`, the thread count, the x32 probe, plain-data reads);
//! - [`x32`]: the hand-assembled BPF guard against x32-ABI syscalls;
//! - [`mount`]: `mount_setattr`, for the filesystem view;
//! - [`notify`]: seccomp user notification (the network broker's filter, listener ioctls, and the
//!   calls the broker makes with the bytes it checked).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags};

pub mod fdpass;
pub mod mount;
#[cfg(target_arch = "x86_64")]
pub mod notify;
#[cfg(target_arch = "x86_64")]
pub mod x32;

/// Landlock ABI version of the running kernel: `Ok(n)` (n >= 1) or the errno that says why not
/// (`ENOSYS`: not built in; `EOPNOTSUPP`: built in but disabled at boot).
///
/// The landlock crate keeps its own probe private, and `doctor`/`explain` must report the version
/// without creating a ruleset.
pub fn landlock_abi_version() -> io::Result<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attr, size 0 and the VERSION flag the kernel reads no memory and only
    // returns the ABI version (or an error); no fd is created.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret as i32) }
}

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when `pid` exits. Stage 2 holds one
/// for the supervisor to detect a supervisor that died before the parent-death signal was armed,
/// which `getppid()` cannot do from inside a PID namespace (it returns 0 there).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // rustix's `Pid` is a positive pid; the kernel would answer EINVAL for anything else.
    let pid = match pid {
        1.. => Pid::from_raw(pid),
        _ => None,
    };
    let pid = pid.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// A pidfd for the process a thread belongs to (a notification names the calling thread, and
/// `pidfd_open` takes only a thread-group leader before Linux 6.9): the leader's own, else the
/// one `/proc/TID/status` names. The caller checks afterwards that the thread still waits in its
/// call, so a recycled id cannot answer for it.
pub fn pidfd_of_thread(tid: libc::pid_t) -> io::Result<OwnedFd> {
    match pidfd_open(tid) {
        Err(_) if tid > 0 => {
            let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
            let tgid = status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok());
            pidfd_open(tgid.ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?)
        }
        other => other,
    }
}

/// True when the process behind `pidfd` has exited (the fd polls readable).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    // A zero timeout: the call never blocks.
    let ready = rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }))?;
    Ok(ready > 0 && fds[0].revents().contains(PollFlags::IN))
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a duplicate of another process's descriptor (the same open
/// file description). Needs ptrace access to the process: the supervisor has it over its own
/// sandboxed tree.
///
/// A negative `target_fd` (the broker passes numbers a sandboxed server chose) is answered EBADF,
/// as the kernel would, without reaching rustix, which asserts that descriptors are not negative.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: RawFd) -> io::Result<OwnedFd> {
    if target_fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(rustix::process::pidfd_getfd(pidfd, target_fd, PidfdGetfdFlags::empty())?)
}

/// The effective uid and gid of a process, from `/proc/PID/status`.
pub fn ids_of(pid: u32) -> io::Result<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let effective = |key: &str| {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    match (effective("Uid:"), effective("Gid:")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// Gives the calling THREAD alone (raw per-thread syscalls, not glibc's process-wide ones) the
/// uid and gid, with no supplementary groups when it may drop them. For a thread that does one
/// thing as the server's user and ends.
pub fn become_ids(uid: u32, gid: u32) -> io::Result<()> {
    use rustix::process::{Gid, Uid};
    if rustix::process::geteuid().is_root() {
        rustix::thread::set_thread_groups(&[])?;
    }
    rustix::thread::set_thread_gid(Gid::from_raw(gid))?;
    rustix::thread::set_thread_uid(Uid::from_raw(uid))?;
    Ok(())
}

/// The result of [`fork_into_namespaces`], as seen by each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent: the child's pid (in the parent's PID namespace).
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// `fork()`, optionally into new namespaces (`CLONE_NEWPID`, `CLONE_NEWUSER`): the raw `clone`
/// syscall with a null stack behaves exactly like `fork`, but can take namespace flags so that the
/// child becomes PID 1 of a fresh PID namespace (`unshare(CLONE_NEWPID)` would only affect the
/// caller's later children and need a third process).
///
/// Only call this while the process is single-threaded: no `atfork` handlers run.
pub fn fork_into_namespaces(ns_flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: clone with a null child stack duplicates the address space copy-on-write, exactly
    // like fork(2). The caller guarantees the process is single-threaded, so no lock (malloc,
    // stdio) can be held by a thread that does not exist in the child. Parent and child tids are
    // not requested (null pointers) and no TLS is set.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (ns_flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `struct clone_args` of clone3(2) (`linux/sched.h`), up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7; libc's constant does not fit its own `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// As [`fork_into_namespaces`], with the child created in the cgroup v2 directory `cgroup`
/// (`clone3` with `CLONE_INTO_CGROUP`): no migration afterwards, so none of the RCU grace period a
/// write to `cgroup.procs` waits for (tens of milliseconds on a quiet host).
pub fn fork_into_cgroup(ns_flags: libc::c_int, cgroup: BorrowedFd<'_>) -> io::Result<Forked> {
    let args = CloneArgs {
        flags: ns_flags as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a stack duplicates the address space copy-on-write, like fork(2);
    // the caller guarantees the process is single-threaded (as for `fork_into_namespaces`). The
    // kernel reads `size_of::<CloneArgs>()` bytes from a valid, initialised struct; no pidfd, tid
    // or TLS pointer is passed.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `union bpf_attr` for `BPF_MAP_DELETE_ELEM`.
#[repr(C)]
struct BpfDeleteAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_DELETE_ELEM: libc::c_int = 3;

/// Deletes `key` from the BPF map `map` in a child process, so that this process need not wait:
/// deleting from a map of maps waits for an RCU grace period (several milliseconds), which the
/// launcher's exit should not. The child makes one `bpf(2)` call and exits; it outlives us when
/// we exit first (the init process reaps it).
pub fn bpf_delete_in_child(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let attr = BpfDeleteAttr { map_fd: map.as_raw_fd() as u32, _pad: 0, key: key.as_ptr() as u64, value: 0, flags: 0 };
    // SAFETY: fork in a process that may have other threads: the child makes only the bpf(2) and
    // _exit(2) system calls, takes no lock and touches no Rust object; `attr` and `key` are in its
    // copy of our memory, and the descriptor is inherited.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: as above: one bpf(2) call on a valid attr, then _exit.
        0 => unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_DELETE_ELEM,
                &attr as *const BpfDeleteAttr,
                std::mem::size_of::<BpfDeleteAttr>(),
            );
            libc::_exit(0)
        },
        _ => Ok(()),
    }
}

/// What a non-blocking `waitpid` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// A child ended, with its status as a shell reports it: the exit code, or 128 + the signal.
    Child { pid: libc::pid_t, status: i32 },
    /// No child has ended (or the call was interrupted).
    Running,
    /// There are no children at all.
    NoChildren,
}

/// Reaps one ended child (`pid`, or any child). Raw `waitpid` rather than nix's: nix cannot name
/// real-time signals and fails on a child killed by one, after the kernel has already reaped it,
/// so its status would be lost and the waiting loop would never learn the child ended.
pub fn reap(pid: Option<libc::pid_t>) -> Reaped {
    let mut raw = 0;
    // SAFETY: waitpid writes one int through the pointer, which is valid.
    let ret = unsafe { libc::waitpid(pid.unwrap_or(-1), &mut raw, libc::WNOHANG) };
    match ret {
        0 => Reaped::Running,
        -1 if io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) => Reaped::NoChildren,
        -1 => Reaped::Running,
        pid if libc::WIFSIGNALED(raw) => Reaped::Child { pid, status: 128 + libc::WTERMSIG(raw) },
        pid => Reaped::Child { pid, status: libc::WEXITSTATUS(raw) },
    }
}

/// Marks every fd from `first` upwards close-on-exec (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`),
/// so nothing the launcher inherited reaches the server, while the fds stage 2 still needs until
/// `execve` (error pipe, Landlock ruleset, cgroup file) stay usable.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags in this process's table; no memory is passed.
    let ret =
        unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Closes every fd from `first` upwards (`close_range(first, ~0, 0)`): used by the PID-1 reaper,
/// which must not keep the server's pipes or the error pipe open.
pub fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: as above; the caller owns no Rust object that wraps these fds any more (the reaper
    // never touches them again and only exits).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0u32) };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Closes every fd from 3 upwards except `keep` (`close_range` over the gaps between them). The
/// caller must own no object that wraps a closed fd and is used or dropped later: stage 2 calls it
/// once everything but `keep` has been dropped.
pub fn close_all_but(keep: &[RawFd]) -> io::Result<()> {
    let mut kept: Vec<libc::c_uint> = keep.iter().filter(|fd| **fd >= 3).map(|fd| *fd as libc::c_uint).collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first: libc::c_uint = 3;
    for fd in kept.into_iter().chain([libc::c_uint::MAX]) {
        if fd > first {
            let last = if fd == libc::c_uint::MAX { fd } else { fd - 1 };
            // SAFETY: close_range takes two integers and a flag; per this function's contract no
            // live Rust object owns a descriptor in the range.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
            if ret < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// Resets every catchable signal to its default disposition. Ignored signals survive `execve`,
/// so a launcher started with, e.g., SIGPIPE ignored would otherwise hand that to the server.
pub fn reset_signal_dispositions() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; the previous handler is discarded. No
        // handler of ours can be running: the process is single-threaded and all signals are
        // blocked at this point.
        let prev = unsafe { libc::signal(sig, libc::SIG_DFL) };
        if prev == libc::SIG_ERR {
            // Signals reserved by libc (32, 33) refuse; they cannot be inherited as ignored anyway.
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// `_exit(code)`: leave without running atexit handlers or flushing stdio buffers that belong to
/// the parent's copy of the process (stage 2 and the reaper are forked copies).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Makes `sock` take only packets that carry `mark` (a classic socket filter: `ld mark; jeq mark;
/// ret all / ret 0`), and locks the filter. Other packets are dropped before its queue.
pub fn accept_only_mark(sock: BorrowedFd<'_>, mark: u32) -> io::Result<()> {
    const SKF_AD_MARK: u32 = 20;
    let load_mark = libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: (libc::SKF_AD_OFF + SKF_AD_MARK as i32) as u32,
    };
    let is_mark =
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt: 0, jf: 1, k: mark };
    let ret = |k| libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k };
    let mut program = [load_mark, is_mark, ret(u32::MAX), ret(0)];
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    let size = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: `fprog` points at `program`, both live across the call, and `size` is its size; the
    // kernel copies the program.
    let attached = unsafe {
        libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, (&raw const fprog).cast(), size)
    };
    if attached != 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    let int = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid int option value and its size.
    let locked = unsafe {
        libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LOCK_FILTER, (&raw const one).cast(), int)
    };
    if locked != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Puts the calling thread under `SCHED_BATCH` (`batch`) or back under `SCHED_OTHER`. A batch
/// thread has the same share of the CPU, but its wake-ups never preempt the task running on a CPU:
/// it runs at once on an idle CPU, else at the next scheduling point.
pub fn batch_scheduling(batch: bool) -> io::Result<()> {
    let policy = if batch { libc::SCHED_BATCH } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Number of threads in this process (from `/proc/self/stat`, field 20). Fork-first stage 2 is
/// only sound while this is 1.
pub fn thread_count() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The comm field (2) is in parentheses and may contain spaces: count fields after the last ')'.
    let after =
        stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| io::Error::other("malformed /proc/self/stat"))?;
    after
        .split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed /proc/self/stat"))
}

/// Does this kernel run x32-ABI syscalls (`CONFIG_X86_X32_ABI`)? Probed with a harmless
/// `getpid` through the x32 number space; without x32 the kernel answers ENOSYS and no seccomp
/// guard is needed for that number space.
#[cfg(target_arch = "x86_64")]
pub fn x32_abi_enabled() -> bool {
    // SAFETY: getpid takes no arguments and touches no memory; with the x32 bit set it is either
    // getpid or rejected with ENOSYS.
    unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) >= 0 }
}

/// Would a seccomp filter this process already runs under (a container runtime's) let `clone`
/// with the namespace flags `ns_flags` through? Asked without creating anything: with
/// `CLONE_NEWNS` and `CLONE_FS` added, the kernel refuses the call (`EINVAL`) before it checks a
/// permission or allocates a namespace, while the filter sees the call first. `Err(errno)`: the
/// filter's answer. A filter that compares the whole flag word exactly is not told apart.
pub fn clone_filtered(ns_flags: libc::c_int) -> Result<(), io::Error> {
    match fork_into_namespaces(ns_flags | libc::CLONE_FS | libc::CLONE_NEWNS) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(e),
        // a kernel that created a child anyway: it only `_exit`s (safe in any process) and is reaped
        Ok(Forked::Child) => exit_now(0),
        Ok(Forked::Parent(pid)) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Ok(())
        }
    }
}

/// Reads a plain-data value from the front of `bytes` (an eBPF ring-buffer record); `None` when
/// the record is shorter than `T`.
pub fn read_pod<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked above; read_unaligned accepts any alignment; `aya::Pod`
    // types are plain data for which every bit pattern is a valid value.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn pidfd_of_a_live_process_is_not_readable() {
        let own = pidfd_open(std::process::id() as i32).expect("pidfd_open(self)");
        assert!(!pidfd_exited(own.as_fd()).expect("poll the pidfd"));
    }

    #[test]
    fn pidfd_of_an_exited_child_is_readable() {
        let mut child = std::process::Command::new("/bin/true").spawn().expect("spawn /bin/true");
        let pidfd = pidfd_open(child.id() as i32).expect("pidfd_open(child)");
        child.wait().expect("wait for /bin/true");
        assert!(pidfd_exited(pidfd.as_fd()).expect("poll the pidfd"));
    }

    #[test]
    fn pidfd_open_rejects_non_positive_pids_with_einval() {
        for pid in [0, -1] {
            assert_eq!(pidfd_open(pid).err().and_then(|e| e.raw_os_error()), Some(libc::EINVAL), "pid {pid}");
        }
    }

    #[test]
    fn pidfd_getfd_duplicates_our_own_descriptor() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let own = pidfd_open(std::process::id() as i32).expect("pidfd_open(self)");
        let dup = pidfd_getfd(own.as_fd(), file.as_raw_fd()).expect("pidfd_getfd");
        assert_ne!(dup.as_raw_fd(), file.as_raw_fd());
        for target in [RawFd::MAX, -1] {
            let bad = pidfd_getfd(own.as_fd(), target).err().and_then(|e| e.raw_os_error());
            assert_eq!(bad, Some(libc::EBADF), "target fd {target}");
        }
    }
}
