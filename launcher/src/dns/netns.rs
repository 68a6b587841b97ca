//! The DNS namespace: a network namespace (with a user namespace of its own when mcp-warden runs
//! without privileges) whose loopback takes every address (`local 0.0.0.0/0` and `local ::/0`
//! routes), so that a socket there reaches port 53 of any address and finds mcp-warden's
//! resolver. Nothing else is reachable from it: it has no other interface.
//!
//! A helper process forked while the supervisor is single-threaded creates the namespace, binds
//! the resolver's sockets there and hands them over, then makes sockets inside it on request:
//! the broker swaps each socket the server sends DNS on for one of these.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::sys::socket::{
    AddressFamily as Af, Backlog, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, socketpair, sockopt,
};

use super::serve::Listeners;
use crate::sys::{self, Forked, fdpass};

/// The helper that makes sockets in the DNS namespace.
#[derive(Debug)]
pub struct DnsNamespace {
    channel: Mutex<OwnedFd>,
    helper: libc::pid_t,
}

/// `lo`'s index in a new network namespace.
const LOOPBACK: u32 = 1;

impl DnsNamespace {
    /// Forks the helper. Only call this while the process is single-threaded.
    pub fn start() -> io::Result<(DnsNamespace, Listeners)> {
        let (ours, theirs) =
            socketpair(Af::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)?;
        let flags = if nix::unistd::geteuid().is_root() { 0 } else { libc::CLONE_NEWUSER };
        let supervisor = nix::unistd::getpid();
        match sys::fork_into_namespaces(flags | libc::CLONE_NEWNET)? {
            Forked::Child => {
                drop(ours);
                helper(theirs, supervisor)
            }
            Forked::Parent(helper) => {
                drop(theirs);
                let ns = DnsNamespace { channel: Mutex::new(ours), helper };
                let listeners = ns.listeners()?;
                Ok((ns, listeners))
            }
        }
    }

    fn listeners(&self) -> io::Result<Listeners> {
        let channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, fds) = fdpass::recv(channel.as_fd(), 512)?;
        let mut fds = fds.into_iter();
        match (bytes.first(), fds.next(), fds.next(), fds.next(), fds.next()) {
            (Some(b'+'), Some(udp4), Some(udp6), Some(tcp4), Some(tcp6)) => Ok(Listeners { udp4, udp6, tcp4, tcp6 }),
            _ => Err(io::Error::other(String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned())),
        }
    }

    /// A new socket in the namespace: `family` `AF_INET` or `AF_INET6`, `stream` TCP or UDP.
    pub fn socket(&self, family: i32, stream: bool) -> io::Result<OwnedFd> {
        let channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        let v6 = family == libc::AF_INET6;
        fdpass::send(channel.as_fd(), &[u8::from(v6), u8::from(stream)], &[])?;
        let (bytes, mut fds) = fdpass::recv(channel.as_fd(), 8)?;
        match (fds.pop(), bytes.as_slice()) {
            (Some(fd), _) => Ok(fd),
            (None, [a, b, c, d]) => Err(io::Error::from_raw_os_error(i32::from_ne_bytes([*a, *b, *c, *d]))),
            (None, _) => Err(io::Error::other("the DNS namespace's helper is gone")),
        }
    }
}

impl Drop for DnsNamespace {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.helper), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.helper), None);
    }
}

/// The helper: set the namespace up, hand the listeners over, then make sockets until the
/// supervisor closes the channel (or dies: the helper dies with it).
fn helper(channel: OwnedFd, supervisor: nix::unistd::Pid) -> ! {
    let ready =
        detach(channel.as_fd(), supervisor).and_then(|()| route_everything_locally()).and_then(|()| bind_listeners());
    let sent = match &ready {
        Ok(l) => fdpass::send(channel.as_fd(), b"+", &[l.udp4.as_fd(), l.udp6.as_fd(), l.tcp4.as_fd(), l.tcp6.as_fd()]),
        Err(e) => fdpass::send(channel.as_fd(), format!("-{e}").as_bytes(), &[]),
    };
    if ready.is_err() || sent.is_err() {
        sys::exit_now(1);
    }
    drop(ready);
    while let Ok((request, _)) = fdpass::recv(channel.as_fd(), 8) {
        let [v6, stream] = request[..] else { break };
        let family = if v6 == 1 { Af::Inet6 } else { Af::Inet };
        let kind = if stream == 1 { SockType::Stream } else { SockType::Datagram };
        let sent = match socket(family, kind, SockFlag::SOCK_CLOEXEC, None) {
            Ok(fd) => fdpass::send(channel.as_fd(), b"+", &[fd.as_fd()]),
            Err(e) => fdpass::send(channel.as_fd(), &(e as i32).to_ne_bytes(), &[]),
        };
        if sent.is_err() {
            break;
        }
    }
    sys::exit_now(0)
}

/// Dies with the supervisor, keeps nothing of its descriptors, and never writes the MCP stream.
/// The supervisor may itself be PID 1 (a container's entrypoint): whether it died before the
/// death signal was set is told by the parent having changed, not by the parent being PID 1.
fn detach(channel: BorrowedFd<'_>, supervisor: nix::unistd::Pid) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
    if nix::unistd::getppid() != supervisor {
        sys::exit_now(1);
    }
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null).map_err(io::Error::from)?;
    nix::unistd::dup2_stdout(&null).map_err(io::Error::from)?;
    drop(null);
    sys::close_all_but(&[std::os::fd::AsRawFd::as_raw_fd(&channel)])
}

/// `ip link set lo up; ip route add local 0.0.0.0/0 dev lo; ip -6 route add local ::/0 dev lo`.
fn route_everything_locally() -> io::Result<()> {
    let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut link = LinkMessage::default();
    link.header.index = LOOPBACK;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    request(&sock, RouteNetlinkMessage::SetLink(link)).map_err(|e| annotate(e, "bring the loopback up"))?;
    for v6 in [false, true] {
        let mut r = RouteMessage::default();
        r.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        r.header.table = libc::RT_TABLE_LOCAL;
        r.header.protocol = RouteProtocol::Static;
        r.header.scope = RouteScope::Host;
        r.header.kind = RouteType::Local;
        let any =
            if v6 { RouteAddress::Inet6(Ipv6Addr::UNSPECIFIED) } else { RouteAddress::Inet(Ipv4Addr::UNSPECIFIED) };
        r.attributes.push(RouteAttribute::Destination(any));
        r.attributes.push(RouteAttribute::Oif(LOOPBACK));
        request(&sock, RouteNetlinkMessage::NewRoute(r))
            .map_err(|e| annotate(e, "route every address to the loopback"))?;
    }
    Ok(())
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One rtnetlink request, and the kernel's acknowledgement.
fn request(sock: &netlink_sys::Socket, msg: RouteNetlinkMessage) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut reply = vec![0u8; 4096];
    let n = sock.recv(&mut &mut reply[..], 0)?;
    let reply =
        NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n]).map_err(|e| io::Error::other(e.to_string()))?;
    match reply.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        _ => Err(io::Error::other("an unexpected netlink answer")),
    }
}

/// Port 53 over UDP and TCP, IPv4 and IPv6 (each family its own socket), UDP with the
/// destination address of each datagram.
fn bind_listeners() -> io::Result<Listeners> {
    let v4 = SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53));
    let v6 = SockaddrIn6::from(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 53, 0, 0));
    let make =
        |family, kind| socket(family, kind, SockFlag::SOCK_CLOEXEC, None::<SockProtocol>).map_err(io::Error::from);
    let udp4 = make(Af::Inet, SockType::Datagram)?;
    setsockopt(&udp4, sockopt::Ipv4PacketInfo, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&udp4), &v4)?;
    let udp6 = make(Af::Inet6, SockType::Datagram)?;
    setsockopt(&udp6, sockopt::Ipv6V6Only, &true)?;
    setsockopt(&udp6, sockopt::Ipv6RecvPacketInfo, &true)?;
    // IPv6 checks an answer's source (IPV6_PKTINFO) against the addresses assigned to an
    // interface, not against the local route: freebind lets it leave from the address asked. (The
    // flag is the socket's, shared by IPv4 and IPv6.)
    setsockopt(&udp6, sockopt::IpFreebind, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&udp6), &v6)?;
    let tcp4 = make(Af::Inet, SockType::Stream)?;
    setsockopt(&tcp4, sockopt::ReuseAddr, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&tcp4), &v4)?;
    listen(&tcp4, Backlog::new(64).map_err(io::Error::from)?)?;
    let tcp6 = make(Af::Inet6, SockType::Stream)?;
    setsockopt(&tcp6, sockopt::Ipv6V6Only, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&tcp6), &v6)?;
    listen(&tcp6, Backlog::new(64).map_err(io::Error::from)?)?;
    Ok(Listeners { udp4, udp6, tcp4, tcp6 })
}
