//! The resolver's sockets: port 53 over UDP and TCP, IPv4 and IPv6, in the DNS namespace where
//! every address is local. A UDP answer leaves from the address the query was sent to (its
//! `IP_PKTINFO`), so a resolver that checks where its answer came from accepts it.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg};

use super::netns::Listeners;
use super::{Resolver, Transport};
use crate::gate::Gate;

/// Queries answered at once (each waits for upstream on a thread of its own); past this, a UDP
/// query is dropped (its client asks again).
const IN_FLIGHT_MAX: usize = 64;
/// TCP connections served at once (a thread each); past this, a new one is closed at once, so a
/// server opening connections without end cannot grow the supervisor.
const TCP_MAX: usize = 64;
/// An idle TCP connection, or one whose client does not read its answers, is closed after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Starts serving `listeners` with `resolver`, a thread per socket.
pub fn start(resolver: Arc<Resolver>, listeners: Listeners) -> std::io::Result<()> {
    let in_flight = Gate::new(IN_FLIGHT_MAX);
    let Listeners { udp4, udp6, tcp4, tcp6 } = listeners;
    for (sock, v6) in [(udp4, false), (udp6, true)] {
        let (r, f, sock) = (Arc::clone(&resolver), Arc::clone(&in_flight), Arc::new(sock));
        std::thread::Builder::new().name("dns-udp".into()).spawn(move || udp_loop(&r, &sock, v6, &f))?;
    }
    let open = Gate::new(TCP_MAX);
    for sock in [tcp4, tcp6] {
        let (r, open) = (Arc::clone(&resolver), Arc::clone(&open));
        let listener = TcpListener::from(sock);
        std::thread::Builder::new().name("dns-tcp".into()).spawn(move || tcp_loop(&r, &listener, &open))?;
    }
    Ok(())
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

fn udp_loop(resolver: &Arc<Resolver>, sock: &Arc<OwnedFd>, v6: bool, in_flight: &Arc<Gate>) {
    loop {
        let Some(d) = receive(sock.as_raw_fd()) else { continue };
        let Some(ticket) = in_flight.enter() else { continue };
        let (r, s) = (Arc::clone(resolver), Arc::clone(sock));
        // A thread that cannot start drops the query and, with it, its ticket.
        let _ = std::thread::Builder::new().name("dns-query".into()).spawn(move || {
            if let Some(answer) = r.answer(&d.bytes, Transport::Udp) {
                reply(&s, &answer, &d, v6);
            }
            drop(ticket);
        });
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

fn tcp_loop(resolver: &Arc<Resolver>, listener: &TcpListener, open: &Arc<Gate>) {
    for stream in listener.incoming().flatten() {
        let Some(ticket) = open.enter() else { continue }; // dropped: closed
        let r = Arc::clone(resolver);
        let _ = std::thread::Builder::new().name("dns-tcp-conn".into()).spawn(move || {
            tcp_connection(&r, stream);
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
