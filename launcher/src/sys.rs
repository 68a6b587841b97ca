//! The raw system calls that no crate covers. Every `unsafe` block of the launcher lives here.
//!
//! Each function is one syscall (or one tightly coupled pair) with a safe signature; callers never
//! see a raw pointer. Errors come back as `std::io::Error` so each layer can wrap them in its own
//! error variant with the object involved.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1; no memory is shared.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// True when the process behind `pidfd` has exited (the fd polls readable).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call; nfds is 1; timeout 0 means
    // the call never blocks.
    let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret > 0 && pfd.revents & libc::POLLIN != 0)
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

/// The installed x32-syscall guard and its evaluation, kept here because it is hand-assembled BPF.
#[cfg(target_arch = "x86_64")]
pub mod x32 {
    use seccompiler::sock_filter;

    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const BPF_JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

    /// A filter that answers ENOSYS to every x32-ABI syscall (numbers with bit 30 set). Every rule
    /// of the main filter is keyed by the x86-64 number, so without this a kernel built with
    /// `CONFIG_X86_X32_ABI` would let `io_uring_setup | 0x40000000` through. seccompiler cannot
    /// express a range check, hence five hand-written instructions.
    pub fn guard() -> Vec<sock_filter> {
        let stmt = |code, k| sock_filter { code, jt: 0, jf: 0, k };
        vec![
            stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
            sock_filter { code: BPF_JMP_JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
            stmt(BPF_RET_K, SECCOMP_RET_ALLOW), // other arches: the main filter kills them
            stmt(BPF_LD_W_ABS, 0),              // seccomp_data.nr
            sock_filter { code: BPF_JMP_JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
            stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
            stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        ]
    }
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a duplicate of another process's descriptor (the same open
/// file description). Needs ptrace access to the process: the supervisor has it over its own
/// sandboxed tree.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: three integers in, a new fd or -1 out; no memory is shared.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// seccomp user notification: the filter that hands a process's network syscalls to the
/// supervisor, and the ioctls of its listener. seccompiler has no `SECCOMP_RET_USER_NOTIF` action,
/// hence hand-assembled BPF, kept here next to the x32 guard.
#[cfg(target_arch = "x86_64")]
pub mod notify {
    use super::*;
    use seccompiler::sock_filter;

    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    /// `offsetof(struct seccomp_data, args[4])`: the low and high words of `sendto`'s address.
    const ARG4_LO: u32 = 16 + 4 * 8;
    const ARG4_HI: u32 = ARG4_LO + 4;

    /// The filter: `connect`, `sendto` with a destination address and, when `datagrams` (the
    /// server may hold UDP sockets, whose `sendmsg`/`sendmmsg` can carry a destination in memory
    /// BPF cannot read), `sendmsg` and `sendmmsg` go to the supervisor; everything else is left to
    /// the main filter. Other architectures are allowed here because the main filter kills them.
    pub fn filter(datagrams: bool) -> Vec<sock_filter> {
        let stmt = |code, k| sock_filter { code, jt: 0, jf: 0, k };
        let jeq = |k: i64, jt: u8, jf: u8| sock_filter { code: BPF_JMP_JEQ_K, jt, jf, k: k as u32 };
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let mut p = vec![
            stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
            jeq(AUDIT_ARCH_X86_64.into(), 1, 0),
            stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
            stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        ];
        if datagrams {
            p.push(jeq(libc::SYS_sendmsg, 2, 0)); // -> the `notify` after connect's test
            p.push(jeq(libc::SYS_sendmmsg, 1, 0));
        }
        p.extend([
            jeq(libc::SYS_connect, 0, 1),
            stmt(BPF_RET_K, notify),
            jeq(libc::SYS_sendto, 0, 4),
            stmt(BPF_LD_W_ABS, ARG4_LO),
            jeq(0, 0, 3), // address set -> notify
            stmt(BPF_LD_W_ABS, ARG4_HI),
            jeq(0, 0, 1), // address set -> notify
            stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
            stmt(BPF_RET_K, notify),
        ]);
        p
    }

    /// Installs `program` on the calling thread (no_new_privs must be set) and returns the
    /// listener, close-on-exec.
    pub fn install(program: &[sock_filter]) -> io::Result<OwnedFd> {
        let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
        // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the
        // instructions. seccompiler's sock_filter has the kernel's layout (it is that struct).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: with NEW_LISTENER the kernel returns a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }

    /// `connect(fd, addr)` with the socket address as raw bytes (the broker passes the very bytes
    /// it checked, whatever their family).
    pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
        // SAFETY: `addr` is valid for `addr.len()` bytes for the duration of the call; the kernel
        // copies and validates it (family, length).
        let ret = unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `sendmsg(fd, {name, iov, no control}, flags)` from buffers the broker copied.
    pub fn sendmsg_raw(fd: BorrowedFd<'_>, name: Option<&[u8]>, iov: &[Vec<u8>], flags: i32) -> io::Result<usize> {
        let slices: Vec<libc::iovec> =
            iov.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }).collect();
        // SAFETY: msghdr is plain data; zeroed means no name, no control, no flags.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(name) = name {
            msg.msg_name = name.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = name.len() as libc::socklen_t;
        }
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len();
        // SAFETY: every pointer in `msg` (name, iovec array, buffers) is valid for its length for
        // the duration of the call and only read by the kernel.
        let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret as usize)
    }

    /// Can this kernel run the broker? `pidfd_getfd` (5.6) is the newest piece; user notification
    /// (5.0) and `SECCOMP_IOCTL_NOTIF_ID_VALID` are older.
    pub fn supported() -> bool {
        // SAFETY: an invalid pidfd makes the call fail with EBADF without touching memory; ENOSYS
        // means the syscall does not exist.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0u32) };
        ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
    }

    /// One intercepted syscall.
    #[derive(Debug, Clone, Copy)]
    pub struct Notification {
        pub id: u64,
        pub pid: u32,
        pub nr: i64,
        pub args: [u64; 6],
    }

    /// Blocks until a sandboxed thread makes an intercepted syscall.
    pub fn receive(listener: BorrowedFd<'_>) -> io::Result<Notification> {
        // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed on input.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: NOTIF_RECV writes one seccomp_notif into `n`, which is valid and writable.
        let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Notification { id: n.id, pid: n.pid, nr: n.data.nr.into(), args: n.data.args })
    }

    /// Is the notification still pending (the thread still waits in that syscall)? Checked after
    /// reading its memory or opening a pidfd, so that a recycled pid cannot answer for it.
    pub fn still_pending(listener: BorrowedFd<'_>, id: u64) -> bool {
        // SAFETY: NOTIF_ID_VALID reads one u64 from the pointer, which is valid.
        unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
    }

    /// Answers a notification: the syscall returns `Ok(value)` or fails with `Err(errno)`.
    pub fn respond(listener: BorrowedFd<'_>, id: u64, result: Result<i64, i32>) -> io::Result<()> {
        let (val, error) = match result {
            Ok(v) => (v, 0),
            Err(errno) => (0, -errno),
        };
        let mut resp = libc::seccomp_notif_resp { id, val, error, flags: 0 };
        // SAFETY: NOTIF_SEND reads one seccomp_notif_resp from the pointer, which is valid.
        let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn jumps_land_on_the_notify_return() {
            for datagrams in [false, true] {
                let p = super::filter(datagrams);
                let notify = libc::SECCOMP_RET_USER_NOTIF;
                let target = |i: usize, off: u8| &p[i + 1 + off as usize];
                let is_notify = |f: &seccompiler::sock_filter| f.code == super::BPF_RET_K && f.k == notify;
                let connect = p.iter().position(|f| f.code == super::BPF_JMP_JEQ_K && f.k == libc::SYS_connect as u32);
                let connect = connect.unwrap();
                assert!(is_notify(target(connect, p[connect].jt)));
                if datagrams {
                    assert!(is_notify(target(4, p[4].jt)) && is_notify(target(5, p[5].jt)));
                }
                assert!(is_notify(p.last().unwrap()));
            }
        }
    }
}
