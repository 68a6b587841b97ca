//! The connect broker: address-level network rules without privileges.
//!
//! Landlock restricts TCP ports but not addresses, and the eBPF cgroup programs that check
//! addresses need root. So when a profile names destinations (`ADDR:PORT`, `HOST:PORT`, UDP
//! destinations, `deny` ranges, `dns`), stage 2 installs a second seccomp filter that hands every
//! `connect`, every `sendto` with an address and (with UDP) every `sendmsg`/`sendmmsg` to the
//! supervisor as a user notification. The supervisor reads the destination from the server's
//! memory, decides, and on "allow" performs the call itself on a duplicate of the server's socket
//! (`pidfd_getfd`), with the bytes it checked. The server's own syscall never runs, so a second
//! thread rewriting the address after the check (the classic user-notification race) changes
//! nothing: the destination is the one that was checked.
//!
//! What it costs: one round trip to the supervisor per mediated call (connects are rare; UDP
//! sends are DNS). What it refuses: control messages on mediated `sendmsg` (no fd passing or
//! ancillary data through the broker) and socket families other than IPv4/IPv6.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{SockType, SockaddrLike, getsockopt, sockopt};
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

use crate::audit::record::DenyLayer;
use crate::dns::DnsPolicy;
use crate::dns::netns::DnsNamespace;
use crate::dns::pins::Pins;
use crate::profile::{IpNet, NetDisplay};
use crate::supervisor::refusals::{Refusal, Refusals};
use crate::sys;
use crate::sys::notify::{self, Notification};

/// Bytes copied per mediated send. A stream socket may send less than asked (the caller loops);
/// a datagram larger than this is refused with EMSGSIZE (UDP's own limit is 65,507).
const MAX_SEND: usize = 1 << 20;
/// The kernel's UIO_MAXIOV.
const MAX_IOV: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if *self == Proto::Tcp { "tcp" } else { "udp" })
    }
}

/// The destinations a sandboxed server may reach, as the broker checks them.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// TCP ports open to any address outside `deny`.
    pub tcp_ports: BTreeSet<u16>,
    /// Any TCP destination outside `deny` (a learning run).
    pub tcp_any: bool,
    /// UDP ports open to any address outside `deny`.
    pub udp_ports: BTreeSet<u16>,
    /// `udp = true` without destinations: any UDP destination outside `deny`.
    pub udp_any: bool,
    /// `ADDR:PORT` / `CIDR:PORT` grants (they win over `deny`).
    pub exact: Vec<(Proto, IpNet, u16)>,
    /// `HOST:PORT` grants: an address is open for one when mcp-warden's resolver gave it to the
    /// server in an answer for that name, for as long as the answer lives (`dns::pins`).
    pub hosts: Vec<(Proto, String, u16)>,
    /// The server's DNS is answered by mcp-warden (`dns = true` or a `HOST:PORT` entry): every
    /// query to port 53 goes to the resolver in the supervisor, whatever its address.
    pub dns: Option<DnsPolicy>,
    pub deny: Vec<IpNet>,
    /// The addresses of this host's interfaces, read at each decision (an address added while
    /// the server runs counts), refused along with `deny` when the `deny` list covers loopback:
    /// a profile that keeps the server off this machine's loopback keeps it off this machine's
    /// other addresses too (its public address reaches the same services). `None` otherwise.
    pub this_host: Option<fn() -> Vec<IpAddr>>,
    /// TCP ports the server may bind (`[network] bind`). A UDP socket may take an ephemeral
    /// port only (port 0, what a send does implicitly), as under the eBPF layer.
    pub bind: BTreeSet<u16>,
    /// `--mode audit`: report what would be refused, refuse nothing.
    pub audit: bool,
}

/// The broker's answer for one destination.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(String),
}

impl NetPolicy {
    /// Is a `proto` packet or connection to `dest` allowed? `pins` are the answers the server got.
    pub fn check(&self, proto: Proto, dest: SocketAddr, pins: &Pins) -> Verdict {
        // An IPv4-mapped destination (`::ffff:127.0.0.1`) reaches the IPv4 address it carries.
        let ip = dest.ip().to_canonical();
        let port = dest.port();
        if self.exact.iter().any(|(p, net, pt)| *p == proto && *pt == port && net.contains(&ip)) {
            return Verdict::Allow;
        }
        if pins.allows(proto, ip, port).is_some() {
            return Verdict::Allow;
        }
        let open = match proto {
            Proto::Tcp => self.tcp_any || self.tcp_ports.contains(&port),
            Proto::Udp => self.udp_any || self.udp_ports.contains(&port),
        };
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Verdict::Refuse(format!("{ip} is in the denied range {}", NetDisplay(net)));
        }
        if self.this_host.is_some_and(|addresses| addresses().contains(&ip)) {
            return Verdict::Refuse(format!("{ip} is an address of this host (a `deny` list keeps the server off it)"));
        }
        if open {
            return Verdict::Allow;
        }
        Verdict::Refuse(format!("{proto} {} is not in the allow-list", SocketAddr::new(ip, port)))
    }
}

/// The nameservers of /etc/resolv.conf (the resolver's default, 127.0.0.1, when none is listed).
pub fn system_resolvers() -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse().ok())
        .collect();
    if out.is_empty() {
        out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    out.dedup();
    out
}

/// Told of every destination the broker lets a call reach (a learning run records them).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `payload`: the first buffer sent (a DNS query names the host looked up).
    fn reached(&self, proto: Proto, dest: SocketAddr, payload: &[u8]);
}

/// Where the server's DNS goes, and the answers the resolver pinned.
#[derive(Debug)]
pub struct DnsRoute {
    pub via: DnsVia,
    pub pins: Arc<Pins>,
}

/// How a DNS query reaches mcp-warden's resolver.
#[derive(Debug)]
pub enum DnsVia {
    /// The broker swaps the socket for one in the DNS namespace. `cookie` is the namespace's
    /// (`SO_NETNS_COOKIE`): a socket already there is not swapped again.
    Namespace { namespace: DnsNamespace, cookie: u64 },
    /// The eBPF layer's socket programs send it to the resolver on the loopback: the broker
    /// performs the call as the server made it.
    SocketPrograms,
}

/// The broker of one run: the policy, where DNS goes, and where refusals are recorded.
#[derive(Debug)]
pub struct Broker {
    policy: NetPolicy,
    dns: Option<DnsRoute>,
    /// The answers pinned, empty without DNS.
    pins: Arc<Pins>,
    refusals: Arc<Refusals>,
    observer: Option<Arc<dyn Observer>>,
}

impl Broker {
    pub fn new(
        policy: NetPolicy,
        dns: Option<DnsRoute>,
        refusals: Arc<Refusals>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Broker {
        let pins = dns.as_ref().map_or_else(Arc::default, |d| Arc::clone(&d.pins));
        Broker { policy, dns, pins, refusals, observer }
    }

    /// Decides one mediated call and, when allowed, performs it for the server: the call's
    /// result, or the errno to answer with.
    pub fn handle(&self, listener: BorrowedFd<'_>, n: &Notification) -> Result<i64, i32> {
        handle(self, &Target { n, listener })
    }
}

/// The process behind one notification.
struct Target<'a> {
    n: &'a Notification,
    listener: BorrowedFd<'a>,
}

impl Target<'_> {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.n.pid as i32)
    }

    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len];
        if len == 0 {
            return Ok(buf);
        }
        let remote = [RemoteIoVec { base: addr as usize, len }];
        match process_vm_readv(self.pid(), &mut [std::io::IoSliceMut::new(&mut buf)], &remote) {
            Ok(n) if n == len => Ok(buf),
            _ => Err(libc::EFAULT),
        }
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        let remote = [RemoteIoVec { base: addr as usize, len: data.len() }];
        match process_vm_writev(self.pid(), &[std::io::IoSlice::new(data)], &remote) {
            Ok(n) if n == data.len() => Ok(()),
            _ => Err(libc::EFAULT),
        }
    }

    /// A duplicate of the target's socket, taken only while the notification is still pending
    /// (so the pid is the thread that asked, not a recycled one).
    fn socket(&self, fd: u64) -> Result<OwnedFd, i32> {
        notify::caller_fd(self.listener, self.n, fd)
    }

    fn pending(&self) -> Result<(), i32> {
        if notify::still_pending(self.listener, self.n.id) { Ok(()) } else { Err(libc::ESRCH) }
    }
}

fn handle(shared: &Broker, t: &Target<'_>) -> Result<i64, i32> {
    let n = t.n;
    let a = n.args;
    match n.nr {
        libc::SYS_connect => {
            let addr = t.read(a[1], bounded_len(a[2])?)?;
            let mut sock = t.socket(a[0])?;
            if let Some(swapped) = route(shared, t, a[0], &sock, &addr, "connect")? {
                sock = swapped;
            }
            t.pending()?;
            observe(shared, sock.as_fd(), Some(&addr), &[]);
            sys::notify::connect_raw(sock.as_fd(), &addr).map(|()| 0).map_err(errno)
        }
        libc::SYS_sendto => {
            // Without an address (only a learning run mediates those) the socket is connected:
            // its destination was decided at connect.
            let addr = if a[4] == 0 { None } else { Some(t.read(a[4], bounded_len(a[5])?)?) };
            let mut sock = t.socket(a[0])?;
            if let Some(addr) = &addr
                && let Some(swapped) = route(shared, t, a[0], &sock, addr, "sendto")?
            {
                sock = swapped;
            }
            let data = t.read(a[1], send_len(sock.as_fd(), a[2] as usize)?)?;
            t.pending()?;
            observe(shared, sock.as_fd(), addr.as_deref(), &data);
            send(t, sock.as_fd(), addr.as_deref(), &[data], a[3] as i32)
        }
        libc::SYS_sendmsg => {
            let mut sock = t.socket(a[0])?;
            send_msghdr(shared, t, (a[0], &mut sock), a[1], a[2] as i32)
        }
        libc::SYS_bind => {
            let addr = t.read(a[1], bounded_len(a[2])?)?;
            let sock = t.socket(a[0])?;
            decide_bind(shared, t, sock.as_fd(), &addr)?;
            t.pending()?;
            sys::notify::bind_raw(sock.as_fd(), &addr).map(|()| 0).map_err(errno)
        }
        libc::SYS_sendmmsg => {
            let mut sock = t.socket(a[0])?;
            let count = (a[2] as usize).min(MAX_IOV);
            let mut sent = 0;
            for i in 0..count {
                let entry = a[1] + (i * MMSGHDR_LEN) as u64;
                match send_msghdr(shared, t, (a[0], &mut sock), entry, a[3] as i32) {
                    Ok(len) => {
                        t.write(entry + MSGHDR_LEN as u64, &(len as u32).to_ne_bytes())?;
                        sent += 1;
                    }
                    Err(e) if sent == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(sent)
        }
        _ => Err(libc::ENOSYS),
    }
}

const MSGHDR_LEN: usize = std::mem::size_of::<libc::msghdr>();
const MMSGHDR_LEN: usize = std::mem::size_of::<libc::mmsghdr>();

/// The server's socket (its descriptor number there, our duplicate), which a DNS query swaps.
type ServerSocket<'a> = (u64, &'a mut OwnedFd);

/// One `struct msghdr` at `at` in the target: check its destination, copy its data, send it.
fn send_msghdr(shared: &Broker, t: &Target<'_>, (fd, sock): ServerSocket<'_>, at: u64, flags: i32) -> Result<i64, i32> {
    let h = t.read(at, notify::RemoteMsghdr::SIZE)?;
    let Some(m) = notify::RemoteMsghdr::parse(&h) else { return Err(libc::EFAULT) };
    if m.control_len != 0 {
        refused(
            shared,
            t,
            "sendmsg",
            None,
            "control messages are not passed through the network broker",
            NO_GRANT,
            libc::EPERM,
        );
        return Err(libc::EPERM);
    }
    let iov_len = m.iov_len as usize;
    if iov_len > MAX_IOV {
        return Err(libc::EMSGSIZE);
    }
    let name = if m.name != 0 && m.name_len != 0 {
        let name = t.read(m.name, bounded_len(m.name_len.into())?)?;
        if let Some(swapped) = route(shared, t, fd, sock, &name, "sendmsg")? {
            *sock = swapped;
        }
        Some(name)
    } else {
        None
    };
    let sock = sock.as_fd();
    let iov = t.read(m.iov, iov_len * notify::RemoteIovec::SIZE)?;
    let mut budget = send_len(sock, usize::MAX)?;
    let mut data = Vec::with_capacity(iov_len);
    for chunk in iov.chunks_exact(notify::RemoteIovec::SIZE) {
        let Some(v) = notify::RemoteIovec::parse(chunk) else { return Err(libc::EFAULT) };
        let len = (v.len as usize).min(budget);
        budget -= len;
        data.push(t.read(v.base, len)?);
    }
    t.pending()?;
    observe(shared, sock, name.as_deref(), data.first().map_or(&[], Vec::as_slice));
    send(t, sock, name.as_deref(), &data, flags)
}

/// Sends on the server's behalf. MSG_NOSIGNAL keeps a broken pipe from signalling the supervisor;
/// the server gets its SIGPIPE as it would have, unless it asked not to.
fn send(t: &Target<'_>, sock: BorrowedFd<'_>, name: Option<&[u8]>, data: &[Vec<u8>], flags: i32) -> Result<i64, i32> {
    match sys::notify::sendmsg_raw(sock, name, data, flags | libc::MSG_NOSIGNAL) {
        Ok(n) => Ok(n as i64),
        Err(e) => {
            let e = errno(e);
            if e == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                let _ = nix::sys::signal::kill(t.pid(), nix::sys::signal::Signal::SIGPIPE);
            }
            Err(e)
        }
    }
}

/// A datagram must fit whole; a stream send may be short.
fn send_len(sock: BorrowedFd<'_>, asked: usize) -> Result<usize, i32> {
    match getsockopt(&sock, sockopt::SockType) {
        Ok(SockType::Stream) => Ok(asked.min(MAX_SEND)),
        _ if asked != usize::MAX && asked > MAX_SEND => Err(libc::EMSGSIZE),
        _ => Ok(asked.min(MAX_SEND)),
    }
}

fn bounded_len(len: u64) -> Result<usize, i32> {
    // sizeof(struct sockaddr_storage): anything longer is refused by the kernel too.
    if len > 128 { Err(libc::EINVAL) } else { Ok(len as usize) }
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Tells the observer, if any, where a call goes: `name`, else the connected socket's peer.
fn observe(shared: &Broker, sock: BorrowedFd<'_>, name: Option<&[u8]>, payload: &[u8]) {
    let Some(observer) = &shared.observer else { return };
    let dest = match name {
        Some(raw) => socket_addr(raw),
        None => peer(sock),
    };
    let proto = match getsockopt(&sock, sockopt::SockType) {
        Ok(SockType::Stream) => Proto::Tcp,
        _ => Proto::Udp,
    };
    if let Some(dest) = dest {
        observer.reached(proto, dest, payload);
    }
}

/// A connected socket's peer, when it is an IPv4 or IPv6 address.
fn peer(sock: BorrowedFd<'_>) -> Option<SocketAddr> {
    inet_addr(&nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(sock.as_raw_fd()).ok()?)
}

/// A socket address as an IPv4 or IPv6 address (`None`: another family).
pub(crate) fn inet_addr(s: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    let v4 = s.as_sockaddr_in().map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)));
    v4.or_else(|| s.as_sockaddr_in6().map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a))))
}

/// An IPv4 or IPv6 destination from a raw socket address.
pub(crate) fn socket_addr(addr: &[u8]) -> Option<SocketAddr> {
    let family = addr.get(..2).map(|b| i32::from(u16::from_ne_bytes([b[0], b[1]])))?;
    let port = u16::from_be_bytes([*addr.get(2)?, *addr.get(3)?]);
    match family {
        libc::AF_INET if addr.len() >= 16 => {
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7])), port))
        }
        // 24 bytes: a `sockaddr_in6` without the scope id (RFC 2133), which the kernel accepts.
        libc::AF_INET6 if addr.len() >= 24 => {
            let octets: [u8; 16] = addr[8..24].try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => None,
    }
}

/// Where a call to `addr` goes: a DNS query (port 53, when mcp-warden answers the server's DNS)
/// to mcp-warden's resolver, on a socket swapped into the DNS namespace (returned), or as made
/// when the socket programs route it; anything else is checked against the policy, on the
/// server's own socket (`None`).
fn route(
    shared: &Broker,
    t: &Target<'_>,
    fd: u64,
    sock: &OwnedFd,
    addr: &[u8],
    call: &str,
) -> Result<Option<OwnedFd>, i32> {
    match (shared.dns.as_ref().map(|d| &d.via), socket_addr(addr)) {
        (Some(DnsVia::Namespace { namespace, cookie }), Some(dest)) if dest.port() == 53 => {
            to_resolver(namespace, *cookie, t, fd, sock)
        }
        (Some(DnsVia::SocketPrograms), Some(dest)) if dest.port() == 53 => Ok(None),
        _ => decide(shared, t, sock.as_fd(), addr, call).map(|()| None),
    }
}

/// Swaps the server's socket `fd` for a new one in the DNS namespace, of the same family, type and
/// blocking mode, at the same descriptor number (`SECCOMP_IOCTL_NOTIF_ADDFD`). The call then runs
/// on it: port 53 of every address there is mcp-warden's resolver, and nothing else is reachable.
/// A socket already there is kept.
fn to_resolver(
    namespace: &DnsNamespace,
    cookie: u64,
    t: &Target<'_>,
    fd: u64,
    sock: &OwnedFd,
) -> Result<Option<OwnedFd>, i32> {
    if sys::notify::netns_cookie(sock.as_fd()).ok() == Some(cookie) {
        return Ok(None);
    }
    let family = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(sock.as_raw_fd())
        .ok()
        .and_then(|a| a.family())
        .map_or(libc::AF_INET, |f| f as i32);
    let stream = match getsockopt(sock, sockopt::SockType) {
        Ok(kind) => kind == SockType::Stream,
        Err(e) => return Err(e as i32), // ENOTSOCK: not a socket, as the kernel would answer
    };
    let swapped = namespace.socket(family, stream).map_err(errno)?;
    let status = nix::fcntl::fcntl(sock, nix::fcntl::FcntlArg::F_GETFL).map_err(|e| e as i32)?;
    let nonblock = nix::fcntl::OFlag::from_bits_truncate(status) & nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&swapped, nix::fcntl::FcntlArg::F_SETFL(nonblock)).map_err(|e| e as i32)?;
    let target = u32::try_from(fd).map_err(|_| libc::EBADF)?;
    t.pending()?;
    sys::notify::add_fd(t.listener, t.n.id, swapped.as_fd(), target, close_on_exec(t.n.pid, target)).map_err(errno)?;
    Ok(Some(swapped))
}

/// The close-on-exec flag of descriptor `fd` of thread `tid` (`/proc/TID/fdinfo/FD`); set when
/// it cannot be read (resolvers open their sockets with it).
fn close_on_exec(tid: u32, fd: u32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")).unwrap_or_default();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
    flags.is_none_or(|f| f & libc::O_CLOEXEC as u32 != 0)
}

/// Checks a raw socket address for the socket `sock`: `Ok` to go ahead, `Err(errno)` to refuse.
fn decide(shared: &Broker, t: &Target<'_>, sock: BorrowedFd<'_>, addr: &[u8], call: &str) -> Result<(), i32> {
    let family = addr.get(..2).map(|b| i32::from(u16::from_ne_bytes([b[0], b[1]])));
    let dest = match (family, socket_addr(addr)) {
        // Dissolving a datagram socket's association reaches nobody.
        (Some(libc::AF_UNSPEC), _) if call == "connect" => return Ok(()),
        (_, Some(dest)) => dest,
        (Some(libc::AF_INET | libc::AF_INET6), None) => return Err(libc::EINVAL),
        _ => {
            refused(
                shared,
                t,
                call,
                None,
                "only IPv4 and IPv6 destinations pass the network broker",
                NO_GRANT,
                libc::EACCES,
            );
            return Err(libc::EACCES);
        }
    };
    let proto = match getsockopt(&sock, sockopt::SockType) {
        Ok(SockType::Stream) => Proto::Tcp,
        Ok(SockType::Datagram) => Proto::Udp,
        _ => return Err(libc::EACCES),
    };
    match shared.policy.check(proto, dest, &shared.pins) {
        Verdict::Allow => Ok(()),
        Verdict::Refuse(why) => {
            // The errnos of the kernel layers this stands in for: Landlock refuses a TCP connect
            // with EACCES, the eBPF cgroup programs refuse a datagram with EPERM.
            let errno = if proto == Proto::Tcp { libc::EACCES } else { libc::EPERM };
            refused(shared, t, call, Some(dest), &why, CONNECT_GRANT, errno);
            if shared.policy.audit { Ok(()) } else { Err(errno) }
        }
    }
}

/// `AF_UNSPEC` with `INADDR_ANY`, which the kernel binds as `0.0.0.0` on an IPv4 socket.
fn unspecified_ipv4(addr: &[u8]) -> Option<SocketAddr> {
    let family = addr.get(..2).map(|b| i32::from(u16::from_ne_bytes([b[0], b[1]])))?;
    let any = addr.len() >= 16 && addr.get(4..8)? == [0, 0, 0, 0];
    let port = u16::from_be_bytes([addr[2], addr[3]]);
    (family == libc::AF_UNSPEC && any).then(|| SocketAddr::from(([0, 0, 0, 0], port)))
}

/// What allows a refused destination.
const CONNECT_GRANT: &str = "a [network] connect entry for this destination";
/// A refusal nothing in a profile allows.
const NO_GRANT: &str = "nothing: the network broker passes IPv4 and IPv6 calls without control messages only";
const UDP_BIND_GRANT: &str = "nothing: a UDP socket binds port 0 (an ephemeral port) only";

/// Checks the local address a socket is bound to: for TCP a port of `[network] bind` (Landlock's
/// rule, which the broker stands in for once it performs the call), for UDP port 0.
fn decide_bind(shared: &Broker, t: &Target<'_>, sock: BorrowedFd<'_>, addr: &[u8]) -> Result<(), i32> {
    let Some(local) = socket_addr(addr).or_else(|| unspecified_ipv4(addr)) else {
        let why = "only IPv4 and IPv6 addresses pass the network broker";
        refused(shared, t, "bind", None, why, NO_GRANT, libc::EACCES);
        return if shared.policy.audit { Ok(()) } else { Err(libc::EACCES) };
    };
    let udp = matches!(getsockopt(&sock, sockopt::SockType), Ok(SockType::Datagram));
    let allowed = if udp { local.port() == 0 } else { shared.policy.bind.contains(&local.port()) };
    if allowed {
        return Ok(());
    }
    // Landlock refuses a TCP bind with EACCES, the eBPF cgroup programs a UDP one with EPERM.
    let errno = if udp { libc::EPERM } else { libc::EACCES };
    let (why, grant) = match udp {
        true => (format!("UDP port {}: a UDP socket may take an ephemeral port only", local.port()), UDP_BIND_GRANT),
        false => (format!("TCP port {} is not a [network] bind port", local.port()), "--allow-bind PORT"),
    };
    refused(shared, t, "bind", Some(local), &why, grant, errno);
    if shared.policy.audit { Ok(()) } else { Err(errno) }
}

/// Records a refusal (`dest`: the destination, when the call named one the broker could read).
/// `grant`: what would allow it.
fn refused(shared: &Broker, t: &Target<'_>, call: &str, dest: Option<SocketAddr>, why: &str, grant: &str, errno: i32) {
    let args = dest.map(|d| ("address".to_string(), d.to_string())).into_iter().collect();
    let refusal = Refusal {
        layer: DenyLayer::Broker,
        tid: t.n.pid,
        nr: t.n.nr,
        syscall: call.to_string(),
        args,
        path: None,
        reason: why.to_string(),
        grant: grant.to_string(),
        errno,
    };
    shared.refusals.record(refusal, !shared.policy.audit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NetPolicy {
        NetPolicy {
            tcp_any: false,
            tcp_ports: [80, 443].into(),
            exact: vec![(Proto::Tcp, crate::profile::parse_net("127.0.0.1").unwrap(), 5432)],
            hosts: vec![(Proto::Tcp, "api.example.com".into(), 443)],
            deny: ["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "::1", "fc00::/7"]
                .iter()
                .map(|s| crate::profile::parse_net(s).unwrap())
                .collect(),
            ..Default::default()
        }
    }

    fn check(p: &NetPolicy, proto: Proto, dest: &str) -> bool {
        let pins = Pins::default();
        let opens = vec![(Proto::Tcp, 443)];
        pins.pin("api.example.com", &["10.1.2.3".parse().unwrap()], &opens, crate::dns::pins::TTL_MIN);
        p.check(proto, dest.parse().unwrap(), &pins) == Verdict::Allow
    }

    #[test]
    fn a_deny_list_keeps_the_server_off_every_address_of_this_host() {
        let mut p = policy();
        p.this_host = Some(|| vec!["44.12.12.12".parse().unwrap(), "2001:db8::12".parse().unwrap()]);
        assert!(check(&p, Proto::Tcp, "44.12.12.13:443"), "control: another public address");
        for own in ["44.12.12.12:443", "[::ffff:44.12.12.12]:80", "[2001:db8::12]:443"] {
            assert!(!check(&p, Proto::Tcp, own), "{own}");
        }
        p.this_host = None;
        assert!(check(&p, Proto::Tcp, "44.12.12.12:443"), "a deny list without loopback: no host addresses");
    }

    #[test]
    fn bare_ports_reach_public_addresses_only() {
        let p = policy();
        assert!(check(&p, Proto::Tcp, "93.184.216.34:443"));
        assert!(check(&p, Proto::Tcp, "[2606:2800::1]:80"));
        assert!(!check(&p, Proto::Tcp, "93.184.216.34:22"));
        assert!(!check(&p, Proto::Tcp, "127.0.0.1:80"));
        assert!(!check(&p, Proto::Tcp, "169.254.169.254:80"));
        assert!(!check(&p, Proto::Tcp, "[::1]:443"));
        assert!(!check(&p, Proto::Tcp, "[fd00::5]:443"));
        // The IPv4-mapped form of a denied address is the denied address.
        assert!(!check(&p, Proto::Tcp, "[::ffff:127.0.0.1]:80"));
        assert!(!check(&p, Proto::Tcp, "[::ffff:169.254.169.254]:80"));
        // UDP was not granted.
        assert!(!check(&p, Proto::Udp, "93.184.216.34:443"));
    }

    #[test]
    fn explicit_addresses_and_pinned_answers_win_over_deny() {
        let p = policy();
        assert!(check(&p, Proto::Tcp, "127.0.0.1:5432"));
        assert!(!check(&p, Proto::Udp, "127.0.0.1:5432"));
        assert!(check(&p, Proto::Tcp, "10.1.2.3:443"), "an answer the server was given");
        assert!(!check(&p, Proto::Tcp, "10.1.2.4:443"), "an address no answer gave");
        assert!(!check(&p, Proto::Tcp, "10.1.2.3:80"), "another port than the name's");
        // Port 53 is not special to the policy: DNS is routed to the resolver before it.
        assert!(!check(&p, Proto::Udp, "127.0.0.53:53"));
        assert!(!check(&p, Proto::Udp, "8.8.8.8:53"));
    }

    #[test]
    fn bind_addresses_parse_as_the_kernel_reads_them() {
        let mut v6 = vec![0u8; 24]; // RFC 2133's sockaddr_in6, no scope id
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&5353u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(socket_addr(&v6), Some("[::1]:5353".parse().unwrap()));
        let mut unspec = vec![0u8; 16];
        unspec[2..4].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(unspecified_ipv4(&unspec), Some("0.0.0.0:5353".parse().unwrap()));
        unspec[4] = 127;
        assert_eq!(unspecified_ipv4(&unspec), None, "AF_UNSPEC binds INADDR_ANY only");
    }

    #[test]
    fn resolv_conf_parsing() {
        // The parser is line-based; a scope suffix is dropped.
        let r = system_resolvers();
        assert!(!r.is_empty());
    }
}
