//! The resolver's sockets: UDP and TCP, IPv4 and IPv6, on port 53 in the DNS namespace where
//! every address is local, or on the host's loopback. A UDP answer leaves from the address the
//! query was sent to (its `IP_PKTINFO`), so a resolver that checks where its answer came from
//! accepts it. A query is answered only if its asker may ask (`askers.rs`).

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg};

use super::askers::Askers;
use super::{Resolver, Transport};
use crate::gate::Gate;
use crate::layers::broker::inet_addr;

/// The resolver's sockets: UDP and TCP, IPv4 and IPv6 (in the DNS namespace on port 53, or on
/// the host's loopback at one port).
#[derive(Debug)]
pub struct Listeners {
    pub udp4: OwnedFd,
    pub udp6: OwnedFd,
    pub tcp4: OwnedFd,
    pub tcp6: OwnedFd,
}

/// Queries answered at once (each waits for upstream on a thread of its own); past this, a UDP
/// query is dropped (its client asks again).
const IN_FLIGHT_MAX: usize = 64;
/// TCP connections served at once (a thread each); past this, a new one is closed at once, so a
/// server opening connections without end cannot grow the supervisor.
const TCP_MAX: usize = 64;
/// An idle TCP connection, or one whose client does not read its answers, is closed after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Starts serving each set of `listeners` with `resolver`, a thread per socket, for `askers`.
pub fn start(resolver: Arc<Resolver>, listeners: Vec<Listeners>, askers: Askers) -> std::io::Result<()> {
    let in_flight = Gate::new(IN_FLIGHT_MAX);
    let open = Gate::new(TCP_MAX);
    for Listeners { udp4, udp6, tcp4, tcp6 } in listeners {
        for (sock, v6) in [(udp4, false), (udp6, true)] {
            let serving = Serving { resolver: Arc::clone(&resolver), askers, local: local_addr(&sock)? };
            let (f, sock) = (Arc::clone(&in_flight), Arc::new(sock));
            std::thread::Builder::new().name("dns-udp".into()).spawn(move || udp_loop(&serving, &sock, v6, &f))?;
        }
        for sock in [tcp4, tcp6] {
            let serving = Serving { resolver: Arc::clone(&resolver), askers, local: local_addr(&sock)? };
            let open = Arc::clone(&open);
            let listener = TcpListener::from(sock);
            std::thread::Builder::new().name("dns-tcp".into()).spawn(move || tcp_loop(&serving, &listener, &open))?;
        }
    }
    Ok(())
}

/// What one socket's thread answers with, and for whom.
#[derive(Clone)]
struct Serving {
    resolver: Arc<Resolver>,
    askers: Askers,
    /// The socket's own address (in the namespace, its port; the address is any).
    local: SocketAddr,
}

fn local_addr(sock: &OwnedFd) -> std::io::Result<SocketAddr> {
    let addr = nix::sys::socket::getsockname::<SockaddrStorage>(sock.as_raw_fd())?;
    inet_addr(&addr).ok_or_else(|| std::io::Error::other("the resolver's socket has no inet address"))
}

/// A query, who sent it and the address it was sent to.
struct Datagram {
    bytes: Vec<u8>,
    from: SockaddrStorage,
    to: Option<Destination>,
}

#[derive(Clone, Copy)]
enum Destination {
    V4(libc::in_addr),
    V6(libc::in6_addr),
}

fn udp_loop(serving: &Serving, sock: &Arc<OwnedFd>, v6: bool, in_flight: &Arc<Gate>) {
    loop {
        let Some(d) = receive(sock.as_raw_fd()) else { continue };
        let Some(ticket) = in_flight.enter() else { continue };
        let (serving, s) = (serving.clone(), Arc::clone(sock));
        // A thread that cannot start drops the query and, with it, its ticket.
        let _ = std::thread::Builder::new().name("dns-query".into()).spawn(move || {
            serving.query(&s, &d, v6);
            drop(ticket);
        });
    }
}

impl Serving {
    fn may_ask(&self, transport: Transport, asker: SocketAddr) -> bool {
        self.askers.may_ask(transport, self.local, asker)
    }

    /// Answers one UDP query if its asker may ask, both before upstream is asked and before the
    /// answer goes (a socket that closed meanwhile leaves its port to whoever binds it next);
    /// otherwise records it as withheld.
    fn query(&self, sock: &OwnedFd, d: &Datagram, v6: bool) {
        let may_ask = || inet_addr(&d.from).is_some_and(|from| self.may_ask(Transport::Udp, from));
        if !may_ask() {
            return self.resolver.withhold(&d.bytes, Transport::Udp);
        }
        let Some(answer) = self.resolver.answer(&d.bytes, Transport::Udp) else { return };
        match may_ask() {
            true => reply(sock, &answer, d, v6),
            false => self.resolver.withhold(&d.bytes, Transport::Udp),
        }
    }
}

fn receive(fd: std::os::fd::RawFd) -> Option<Datagram> {
    let mut buf = vec![0u8; 65_535];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::empty()).ok()?;
    let to = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(i) => Some(Destination::V4(i.ipi_addr)),
        ControlMessageOwned::Ipv6PacketInfo(i) => Some(Destination::V6(i.ipi6_addr)),
        _ => None,
    });
    let (len, from) = (msg.bytes, msg.address?);
    buf.truncate(len);
    Some(Datagram { bytes: buf, from, to })
}

/// Sends `answer` back from the address the query was sent to.
fn reply(sock: &OwnedFd, answer: &[u8], d: &Datagram, v6: bool) {
    let iov = [IoSlice::new(answer)];
    let fd = sock.as_fd().as_raw_fd();
    let result = match (d.to, v6) {
        (Some(Destination::V4(dst)), false) => {
            let info = libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: dst, ipi_addr: libc::in_addr { s_addr: 0 } };
            sendmsg(fd, &iov, &[ControlMessage::Ipv4PacketInfo(&info)], MsgFlags::empty(), Some(&d.from))
        }
        (Some(Destination::V6(dst)), true) => {
            let info = libc::in6_pktinfo { ipi6_addr: dst, ipi6_ifindex: 0 };
            sendmsg(fd, &iov, &[ControlMessage::Ipv6PacketInfo(&info)], MsgFlags::empty(), Some(&d.from))
        }
        _ => sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(&d.from)),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "dns: sending an answer");
    }
}

fn tcp_loop(serving: &Serving, listener: &TcpListener, open: &Arc<Gate>) {
    for stream in listener.incoming().flatten() {
        let Some(ticket) = open.enter() else { continue }; // dropped: closed
        let serving = serving.clone();
        let _ = std::thread::Builder::new().name("dns-tcp-conn".into()).spawn(move || {
            // The filter lets only the server's marked handshakes in: a peer that is not the
            // server's is gone already, or another's socket at its port.
            if stream.peer_addr().is_ok_and(|peer| serving.may_ask(Transport::Tcp, peer)) {
                tcp_connection(&serving.resolver, stream);
            }
            drop(ticket);
        });
    }
}

/// Queries over one TCP connection (RFC 7766: each prefixed by its length), until it closes.
fn tcp_connection(resolver: &Resolver, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(TCP_IDLE));
    let _ = s.set_write_timeout(Some(TCP_IDLE));
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut query).is_err() {
            return;
        }
        let Some(answer) = resolver.answer(&query, Transport::Tcp) else { return };
        let Ok(len) = u16::try_from(answer.len()) else { return };
        if s.write_all(&[&len.to_be_bytes()[..], &answer].concat()).is_err() {
            return;
        }
    }
}
