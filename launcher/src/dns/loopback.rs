//! The resolver on the host's loopback, for the eBPF layer: its socket programs send the server's
//! DNS (port 53, any address) to `127.0.0.1:PORT` or `[::1]:PORT` and make the answer seem to come
//! from the address asked (`ebpf-probes`: `to_resolver`, `recvmsg4`/`recvmsg6`). One port for UDP
//! and TCP, IPv4 and IPv6, chosen by the kernel.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use super::serve::Listeners;

/// Tries for a port free for the four sockets.
const ATTEMPTS: usize = 20;

/// The four sockets at one port, and the port.
pub fn bind() -> io::Result<(Listeners, u16)> {
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
