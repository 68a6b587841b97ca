//! The resolver on the host's loopback, for the eBPF layer: its socket programs send the server's
//! DNS (port 53, any address) to `127.0.0.1`, `::1` or `::ffff:127.0.0.1` at one of
//! `DNS_SLOTS` ports, and make the answer seem to come from the address asked (`ebpf-probes`:
//! `to_resolver`, `from_resolver`). A socket asking several nameservers at once (musl) has each
//! one's queries go to a port of its own, so each answer shows where its query went. Each port
//! has UDP and TCP sockets, IPv4 and IPv6. Any local user can send to them, so they take only
//! packets with the run's mark, which the socket programs put on the server's packets to these
//! ports (`egress`) and which no process without `CAP_NET_ADMIN` can set; who may ask is also
//! checked per query (`askers.rs`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;

use mcp_warden_ebpf_common::DNS_SLOTS;

use super::serve::Listeners;

/// Tries for a port free for the four sockets.
const ATTEMPTS: usize = 20;

/// The resolver's sockets on the loopback, a set per slot, the slots' ports, and the mark their
/// packets must carry.
#[derive(Debug)]
pub struct Loopback {
    pub listeners: Vec<Listeners>,
    pub ports: [u16; DNS_SLOTS],
    pub mark: u32,
}

/// Binds a set of sockets for each slot, taking only packets with a mark of this run's.
pub fn bind() -> io::Result<Loopback> {
    let mark = run_mark();
    let mut ports = [0; DNS_SLOTS];
    let mut listeners = Vec::with_capacity(DNS_SLOTS);
    for port in &mut ports {
        let (set, bound) = bind_set()?;
        for sock in [&set.udp4, &set.udp6, &set.tcp4, &set.tcp6] {
            // An accepted TCP connection inherits its listener's filter.
            crate::sys::accept_only_mark(sock.as_fd(), mark)?;
        }
        *port = bound;
        listeners.push(set);
    }
    Ok(Loopback { listeners, ports, mark })
}

/// A mark for this run: random, never 0 (no mark). It need not be secret: setting any mark takes
/// `CAP_NET_ADMIN`; being random keeps one run's packets from passing another's filter.
fn run_mark() -> u32 {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(b).max(1)
}

/// UDP and TCP, IPv4 and IPv6, at one port the kernel chose.
fn bind_set() -> io::Result<(Listeners, u16)> {
    let mut last = io::Error::other("no loopback port free for UDP and TCP, IPv4 and IPv6");
    for _ in 0..ATTEMPTS {
        let udp4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp4.local_addr()?.port();
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let rest = (|| {
            let tcp4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
            Ok::<_, io::Error>((tcp4, UdpSocket::bind(v6)?, TcpListener::bind(v6)?))
        })();
        match rest {
            Ok((tcp4, udp6, tcp6)) => {
                let listeners =
                    Listeners { udp4: udp4.into(), udp6: udp6.into(), tcp4: tcp4.into(), tcp6: tcp6.into() };
                return Ok((listeners, port));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
