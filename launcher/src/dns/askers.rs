//! Who may ask the resolver. In the DNS namespace only the broker puts sockets, so anyone there
//! is the server. On the host's loopback any local user can send to it, so a query is answered
//! only when the socket its answer would reach belongs to the server's cgroup: the kernel's
//! socket table (sock_diag) is asked for that socket and its cgroup, per query.

use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
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
    /// Whether a query from `asker` to the resolver's `resolver` address may be answered. A
    /// socket that cannot be looked up is refused.
    pub fn may_ask(&self, transport: Transport, resolver: SocketAddr, asker: SocketAddr) -> bool {
        let Askers::Cgroup(server) = *self else { return true };
        match cgroup_of(transport, resolver, asker) {
            Ok(Some(cgroup)) => cgroup == server,
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %e, "dns: looking up who asked");
                false
            }
        }
    }
}

/// The cgroup of the socket at `asker` that talks to `resolver` (`None`: there is none).
fn cgroup_of(transport: Transport, resolver: SocketAddr, asker: SocketAddr) -> io::Result<Option<u64>> {
    let request = InetRequest {
        family: if asker.is_ipv4() { AF_INET } else { AF_INET6 },
        protocol: if transport == Transport::Udp { IPPROTO_UDP } else { IPPROTO_TCP },
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: socket_id(transport, resolver, asker),
    };
    let Some(response) = ask_kernel(request)? else { return Ok(None) };
    Ok(response.nlas.iter().find_map(|nla| match nla {
        Nla::Other(other) if netlink_packet_core::Nla::kind(other) == INET_DIAG_CGROUP_ID => {
            let mut id = [0u8; 8];
            (netlink_packet_core::Nla::value_len(other) == 8).then(|| {
                netlink_packet_core::Nla::emit_value(other, &mut id);
                u64::from_ne_bytes(id)
            })
        }
        _ => None,
    }))
}

/// The lookup key of the asker's socket. TCP names the socket's own address as the source; UDP,
/// "for historical reasons" (`udp_dump_one`), looks up the socket that a datagram from the source
/// to the destination would reach: the one the answer goes to.
fn socket_id(transport: Transport, resolver: SocketAddr, asker: SocketAddr) -> SocketId {
    let (source, destination) = match transport {
        Transport::Tcp => (asker, resolver),
        Transport::Udp => (resolver, asker),
    };
    let mut id = if asker.is_ipv4() { SocketId::new_v4() } else { SocketId::new_v6() };
    id.source_address = source.ip();
    id.source_port = source.port();
    id.destination_address = destination.ip();
    id.destination_port = destination.port();
    id.cookie = [0xff; 8]; // INET_DIAG_NOCOOKIE: any socket at these addresses
    id
}

/// One `SOCK_DIAG_BY_FAMILY` request for one socket, and the kernel's answer (`None`: no such
/// socket).
fn ask_kernel(request: InetRequest) -> io::Result<Option<InetResponse>> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut answer = vec![0; 8192];
    let len = socket.recv(&mut &mut answer[..], 0)?;
    let message = NetlinkMessage::<SockDiagMessage>::deserialize(&answer[..len]).map_err(io::Error::other)?;
    match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => Ok(Some(*response)),
        NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => Ok(None),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(io::Error::other(format!("sock_diag answered {other:?}"))),
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
    fn the_kernel_names_the_cgroup_of_the_socket_an_answer_would_reach() {
        let own = own_cgroup();
        let resolver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let asker = UdpSocket::bind("0.0.0.0:0").unwrap();
        let from = SocketAddr::from(([127, 0, 0, 1], asker.local_addr().unwrap().port()));
        let at = resolver.local_addr().unwrap();
        assert_eq!(cgroup_of(Transport::Udp, at, from).unwrap(), Some(own));
        assert!(Askers::Cgroup(own).may_ask(Transport::Udp, at, from));
        assert!(!Askers::Cgroup(own + 1).may_ask(Transport::Udp, at, from), "another cgroup's socket");
        drop(asker);
        assert_eq!(cgroup_of(Transport::Udp, at, from).unwrap(), None, "a socket that is gone");
        assert!(!Askers::Cgroup(own).may_ask(Transport::Udp, at, from));

        let listener = TcpListener::bind("[::1]:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert_eq!(cgroup_of(Transport::Tcp, listener.local_addr().unwrap(), peer).unwrap(), Some(own));
    }
}
