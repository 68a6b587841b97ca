//! The resolver on the host's loopback, for the eBPF layer: its socket programs send the server's
//! DNS (port 53, any address) to `127.0.0.1`, `::1` or `::ffff:127.0.0.1` at one of
//! `DNS_SLOTS` ports, and make the answer seem to come from the address asked (`ebpf-probes`:
//! `to_resolver`, `from_resolver`). A socket asking several nameservers at once (musl) has each
//! one's queries go to a port of its own, so each answer shows where its query went. Each port
//! has UDP and TCP sockets, IPv4 and IPv6, and any local user can reach them: who may ask is
//! checked per query (`askers.rs`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use mcp_warden_ebpf_common::DNS_SLOTS;

use super::serve::Listeners;

/// Tries for a port free for the four sockets.
const ATTEMPTS: usize = 20;

/// The resolver's sockets on the loopback, a set per slot, and the slots' ports.
#[derive(Debug)]
pub struct Loopback {
    pub listeners: Vec<Listeners>,
    pub ports: [u16; DNS_SLOTS],
}

/// Binds a set of sockets for each slot.
pub fn bind() -> io::Result<Loopback> {
    let mut ports = [0; DNS_SLOTS];
    let mut listeners = Vec::with_capacity(DNS_SLOTS);
    for port in &mut ports {
        let (set, bound) = bind_set()?;
        *port = bound;
        listeners.push(set);
    }
    Ok(Loopback { listeners, ports })
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
