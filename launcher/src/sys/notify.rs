//! seccomp user notification: installing the filter that carries the listener, the ioctls of the
//! listener (receive, check, answer), the raw calls the network broker performs for the server, and
//! the layouts the broker reads out of the server's memory (`struct msghdr`, `struct iovec`),
//! located with `offset_of!`.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use seccompiler::sock_filter;

/// Installs `program` on the calling thread (no_new_privs must be set) and returns the
/// listener, close-on-exec.
pub fn install(program: &[sock_filter]) -> io::Result<OwnedFd> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
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

/// `bind(fd, addr, len)` with a socket address the broker copied and checked.
pub fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: `addr` is valid for `addr.len()` bytes for the duration of the call; the kernel
    // copies and validates it (family, length).
    let ret = unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t) };
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
    #[allow(clippy::unnecessary_cast)] // an int on musl, a size_t on glibc
    {
        msg.msg_iovlen = slices.len() as _;
    }
    // SAFETY: every pointer in `msg` (name, iovec array, buffers) is valid for its length for
    // the duration of the call and only read by the kernel.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// Can this process run the broker? `pidfd_getfd` (5.6) is the newest piece; user notification
/// (5.0) and `SECCOMP_IOCTL_NOTIF_ID_VALID` are older. Probed on our own pidfd with an invalid
/// target descriptor (`RawFd::MAX`, never open): EBADF when the call exists and may be made;
/// ENOSYS when the kernel lacks it; EPERM (or whatever errno it chose) when a seccomp filter this
/// process already runs under refuses it, as a container runtime's default profile does without
/// `CAP_SYS_PTRACE`.
pub fn supported() -> Result<(), rustix::io::Errno> {
    let own = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty())?;
    match rustix::process::pidfd_getfd(&own, RawFd::MAX, rustix::process::PidfdGetfdFlags::empty()) {
        Err(rustix::io::Errno::BADF) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
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

/// A duplicate of descriptor `fd` of the notified thread, taken only while its notification is
/// still pending (so the pid is the thread that asked, not a recycled one): as an errno.
pub fn caller_fd(listener: BorrowedFd<'_>, n: &Notification, fd: u64) -> Result<OwnedFd, i32> {
    let fd = i32::try_from(fd).map_err(|_| libc::EBADF)?;
    let pidfd = super::pidfd_of_thread(n.pid as i32).map_err(|_| libc::ESRCH)?;
    if !still_pending(listener, n.id) {
        return Err(libc::ESRCH);
    }
    super::pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), fd).map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))
}

/// Is the notification still pending (the thread still waits in that syscall)? Checked after
/// reading its memory or opening a pidfd, so that a recycled pid cannot answer for it.
pub fn still_pending(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: NOTIF_ID_VALID reads one u64 from the pointer, which is valid.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

/// Lets the notified call go ahead as if no filter had stopped it: the kernel then runs it, with
/// every other layer (Landlock, the view) deciding it. Only for calls the supervisor observes,
/// never for ones it decides: the caller's memory may change before the kernel reads it again.
pub fn respond_continue(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let mut resp =
        libc::seccomp_notif_resp { id, val: 0, error: 0, flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 };
    // SAFETY: NOTIF_SEND reads one seccomp_notif_resp from the pointer, which is valid.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fd` into the notified process at descriptor number `target`, in place of whatever is
/// there (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`, Linux 5.14), atomically as
/// `dup2` would. `cloexec`: the new descriptor's close-on-exec flag.
pub fn add_fd(listener: BorrowedFd<'_>, id: u64, fd: BorrowedFd<'_>, target: u32, cloexec: bool) -> io::Result<()> {
    let add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: target,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: NOTIF_ADDFD reads one seccomp_notif_addfd from the pointer, which is valid; it
    // duplicates `fd` into the target, leaving ours open.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &add) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fd` into the notified process at the lowest free descriptor number and answers its call
/// with that number, atomically (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND`,
/// Linux 5.14): the call returns as if it had opened the file itself.
pub fn add_fd_send(listener: BorrowedFd<'_>, id: u64, fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<i64> {
    let add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: NOTIF_ADDFD reads one seccomp_notif_addfd from the pointer, which is valid; it
    // duplicates `fd` into the target, leaving ours open, and answers the notification.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &add) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i64::from(ret))
}

/// `SO_NETNS_COOKIE` (asm-generic's value; libc does not export it for every target).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace a socket belongs to (`SO_NETNS_COOKIE`, Linux 5.14).
pub fn netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which is a valid u64, and
    // updates `len`, which is valid.
    let ret = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut len)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
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

/// The fields of a `struct msghdr` the broker needs, decoded from bytes copied out of the
/// server's memory (`process_vm_readv`): pointers there are the server's addresses, plain numbers
/// here. The offsets come from `libc::msghdr` itself, not from hand-counted constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteMsghdr {
    pub name: u64,
    pub name_len: u32,
    pub iov: u64,
    pub iov_len: u64,
    pub control_len: u64,
}

impl RemoteMsghdr {
    /// How many bytes to copy out of the server for one `struct msghdr`.
    pub const SIZE: usize = size_of::<libc::msghdr>();

    /// `None` when `bytes` is shorter than a `struct msghdr`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        Some(RemoteMsghdr {
            name: u64::from_ne_bytes(field(bytes, offset_of!(libc::msghdr, msg_name))?),
            name_len: u32::from_ne_bytes(field(bytes, offset_of!(libc::msghdr, msg_namelen))?),
            iov: u64::from_ne_bytes(field(bytes, offset_of!(libc::msghdr, msg_iov))?),
            iov_len: u64::from_ne_bytes(field(bytes, offset_of!(libc::msghdr, msg_iovlen))?),
            control_len: u64::from_ne_bytes(field(bytes, offset_of!(libc::msghdr, msg_controllen))?),
        })
    }
}

/// One `struct iovec` copied out of the server's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteIovec {
    pub base: u64,
    pub len: u64,
}

impl RemoteIovec {
    /// The size of one `struct iovec` in the server's array.
    pub const SIZE: usize = size_of::<libc::iovec>();

    /// `None` when `bytes` is shorter than a `struct iovec`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        Some(RemoteIovec {
            base: u64::from_ne_bytes(field(bytes, offset_of!(libc::iovec, iov_base))?),
            len: u64::from_ne_bytes(field(bytes, offset_of!(libc::iovec, iov_len))?),
        })
    }
}

/// `N` bytes at `offset`, or `None` past the end.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a value, as `process_vm_readv` would copy them out of the server.
    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: `value` is a live, initialised `T`, readable for `size_of::<T>()` bytes; the
        // bytes are only copied. (Padding bytes are read as whatever they hold; the tests use
        // zeroed structs, so they hold zeros.)
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn msghdr_fields_decode_from_the_copied_bytes() {
        // SAFETY: msghdr is plain data; zeroed is a valid value (and zeroes the padding).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = 0x1000 as *mut libc::c_void;
        msg.msg_namelen = 16;
        msg.msg_iov = 0x2000 as *mut libc::iovec;
        msg.msg_iovlen = 3;
        msg.msg_controllen = 24;
        let bytes = bytes_of(&msg);
        let want = RemoteMsghdr { name: 0x1000, name_len: 16, iov: 0x2000, iov_len: 3, control_len: 24 };
        assert_eq!(RemoteMsghdr::parse(&bytes), Some(want));
        assert_eq!(RemoteMsghdr::parse(&bytes[..RemoteMsghdr::SIZE - 1]), None);
    }

    #[test]
    fn iovec_fields_decode_from_the_copied_bytes() {
        let iov = libc::iovec { iov_base: 0x3000 as *mut libc::c_void, iov_len: 42 };
        let bytes = bytes_of(&iov);
        assert_eq!(RemoteIovec::parse(&bytes), Some(RemoteIovec { base: 0x3000, len: 42 }));
        assert_eq!(RemoteIovec::SIZE, 16);
    }
}
