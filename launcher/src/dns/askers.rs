//! Who may ask the resolver. In the DNS namespace only the broker puts sockets, so anyone there
//! is the server. On the host's loopback any local user can send to it, so the kernel's socket
//! table (sock_diag) is asked, per query, whose the asking socket is:
//! - TCP: the connection's peer, one socket; it must have been made in the server's cgroup.
//! - UDP: every socket bound where the query came from (its port, at its address or a wildcard)
//!   must have been made in the server's cgroup. One alone is not enough: a socket of another
//!   user's sharing the port (`SO_REUSEADDR` on both) could be the sender, and the kernel's lookup
//!   would name the server's.
//!
//! What this cannot tell apart: a process that can act as the server (ptrace it or take its
//! descriptors: root, or its own uid where ptrace is open) and one that forges a source address
//! (`CAP_NET_RAW`). Both can already do anything the server can.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

use super::Transport;

/// `INET_DIAG_CGROUP_ID` (Linux 5.7): the cgroup the socket was made in.
const INET_DIAG_CGROUP_ID: u16 = 21;

/// Whose queries the resolver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Askers {
    /// Anyone who reaches it: the DNS namespace.
    Anyone,
    /// Sockets made in this cgroup (the server's, by id): the loopback.
    Cgroup(u64),
}

impl Askers {
    /// Whether a query from `asker` to the resolver's `resolver` address may be answered. Where
    /// the sockets cannot be looked up, no.
    pub fn may_ask(&self, transport: Transport, resolver: SocketAddr, asker: SocketAddr) -> bool {
        let Askers::Cgroup(server) = *self else { return true };
        let cgroups = match transport {
            Transport::Tcp => tcp_peer(resolver, asker),
            Transport::Udp => udp_senders(asker),
        };
        match cgroups {
            Ok(cgroups) => !cgroups.is_empty() && cgroups.iter().all(|c| *c == Some(server)),
            Err(e) => {
                tracing::debug!(error = %e, "dns: looking up who asked");
                false
            }
        }
    }
}

/// The cgroup of the TCP connection from `asker` to `resolver` (none: it is gone).
fn tcp_peer(resolver: SocketAddr, asker: SocketAddr) -> io::Result<Vec<Option<u64>>> {
    let mut r = request(asker.is_ipv4(), IPPROTO_TCP);
    r.socket_id.source_address = asker.ip();
    r.socket_id.source_port = asker.port();
    r.socket_id.destination_address = resolver.ip();
    r.socket_id.destination_port = resolver.port();
    Ok(ask_kernel(r, false)?.iter().map(cgroup).collect())
}

/// The cgroups of every UDP socket that could have sent from `asker`: bound to its port, at its
/// address or a wildcard, IPv4 or (for an IPv4 address, dual-stack) IPv6.
fn udp_senders(asker: SocketAddr) -> io::Result<Vec<Option<u64>>> {
    let mut found = Vec::new();
    let families: &[bool] = if asker.is_ipv4() { &[true, false] } else { &[false] };
    for v4 in families {
        let mut r = request(*v4, IPPROTO_UDP);
        r.socket_id.source_port = asker.port(); // udp_dump skips sockets bound to another port
        for s in ask_kernel(r, true)? {
            let local = &s.header.socket_id;
            // An IPv6-only socket at the port never sends from an IPv4 address: counting it
            // would let anyone bind one and stop the server's IPv4 queries.
            let v6_only = s.nlas.iter().any(|n| matches!(n, Nla::SkV6Only(true)));
            if local.source_port == asker.port()
                && could_send_from(local.source_address, asker.ip())
                && !(v6_only && asker.is_ipv4())
            {
                found.push(cgroup(&s));
            }
        }
    }
    Ok(found)
}

/// Whether a socket bound to `local` sends from `from`.
fn could_send_from(local: IpAddr, from: IpAddr) -> bool {
    let local = match local {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(local, IpAddr::V4),
        v4 => v4,
    };
    local == from || local.is_unspecified()
}

/// A request for IPv4 (`v4`) or IPv6 sockets of `protocol`, in any state, at any address (the
/// caller narrows it).
fn request(v4: bool, protocol: u8) -> InetRequest {
    let mut socket_id = if v4 { SocketId::new_v4() } else { SocketId::new_v6() };
    socket_id.cookie = [0xff; 8]; // INET_DIAG_NOCOOKIE: any socket at these addresses
    InetRequest {
        family: if v4 { AF_INET } else { AF_INET6 },
        protocol,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id,
    }
}

/// The cgroup a socket was made in, as sock_diag tells it.
fn cgroup(response: &InetResponse) -> Option<u64> {
    response.nlas.iter().find_map(|nla| match nla {
        Nla::Other(other) if netlink_packet_core::Nla::kind(other) == INET_DIAG_CGROUP_ID => {
            let mut id = [0u8; 8];
            (netlink_packet_core::Nla::value_len(other) == 8).then(|| {
                netlink_packet_core::Nla::emit_value(other, &mut id);
                u64::from_ne_bytes(id)
            })
        }
        _ => None,
    })
}

/// One `SOCK_DIAG_BY_FAMILY` request: for one socket (none found: empty), or a dump.
fn ask_kernel(request: InetRequest, dump: bool) -> io::Result<Vec<InetResponse>> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut found = Vec::new();
    let mut answer = vec![0; 32 * 1024];
    loop {
        let len = socket.recv(&mut &mut answer[..], 0)?;
        let mut at = 0;
        while at < len {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&answer[at..len]).map_err(io::Error::other)?;
            at += message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) if !dump => return Ok(vec![*r]),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => found.push(*r),
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => return Ok(found),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                _ => {}
            }
            if message.header.length == 0 {
                return Err(io::Error::other("sock_diag: an empty message"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// This process's cgroup id: its cgroup v2 directory's inode.
    fn own_cgroup() -> u64 {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        std::fs::metadata(format!("/sys/fs/cgroup{path}")).unwrap().ino()
    }

    #[test]
    fn the_kernel_names_the_cgroup_of_the_sockets_a_query_can_come_from() {
        let own = own_cgroup();
        let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let asker = UdpSocket::bind("0.0.0.0:0").unwrap();
        let from = SocketAddr::from(([127, 0, 0, 1], asker.local_addr().unwrap().port()));
        let at = resolver.local_addr().unwrap();
        assert_eq!(udp_senders(from).unwrap(), [Some(own)]);
        assert!(Askers::Cgroup(own).may_ask(Transport::Udp, at, from));
        assert!(!Askers::Cgroup(own + 1).may_ask(Transport::Udp, at, from), "another cgroup's socket");
        drop(asker);
        assert!(udp_senders(from).unwrap().is_empty(), "a socket that is gone");
        assert!(!Askers::Cgroup(own).may_ask(Transport::Udp, at, from));

        let listener = TcpListener::bind("[::1]:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert_eq!(tcp_peer(listener.local_addr().unwrap(), peer).unwrap(), [Some(own)]);
    }

    /// A socket bound with `SO_REUSEADDR` to the address and port of another's.
    fn reusing(addr: &str) -> UdpSocket {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt};
        let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::empty(), None).unwrap();
        setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr.parse::<SockaddrIn>().unwrap()).unwrap();
        UdpSocket::from(fd)
    }

    #[test]
    fn every_socket_sharing_the_askers_port_is_a_possible_sender() {
        let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first = reusing("0.0.0.0:0");
        let port = first.local_addr().unwrap().port();
        first.connect(resolver.local_addr().unwrap()).unwrap();
        // Another's socket at the same port, on the loopback address: the kernel's lookup from
        // the resolver names the connected one, but either could have sent.
        let _second = reusing(&format!("127.0.0.1:{port}"));
        let from = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(udp_senders(from).unwrap().len(), 2);
        // An IPv6-only socket at the same port cannot send from 127.0.0.1: not counted.
        let v6_only = {
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn6, bind, setsockopt, socket, sockopt};
            let fd = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::empty(), None).unwrap();
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).unwrap();
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &format!("[::]:{port}").parse::<SockaddrIn6>().unwrap())
                .unwrap();
            fd
        };
        assert_eq!(udp_senders(from).unwrap().len(), 2, "the IPv6-only socket is not a sender from 127.0.0.1");
        drop(v6_only);
        // A socket at the same port on another address is not a sender from this one.
        assert!(!could_send_from("127.0.0.2".parse().unwrap(), from.ip()));
        assert!(could_send_from("::ffff:127.0.0.1".parse().unwrap(), from.ip()));
        assert!(could_send_from("::".parse().unwrap(), from.ip()));
    }
}
