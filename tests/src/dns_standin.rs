//! A stand-in authoritative DNS server on loopback (UDP and TCP, one port), for mcp-warden's
//! resolver to ask: each name answers from a rotating list of address sets (a round-robin name's
//! second answer differs from its first), with one TTL; every question it gets is logged. An
//! address written `cname:TARGET` answers a CNAME to TARGET, followed by TARGET's own addresses in
//! the same answer (and an extra A record for a name nobody asked, which a resolver must drop).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};

use crate::dns_wire;

/// The server, running until the test ends.
#[derive(Debug)]
pub struct StandIn {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

type Zone = HashMap<String, (Vec<Vec<Entry>>, usize)>;

/// One record of a name's answer.
#[derive(Debug, Clone)]
enum Entry {
    Addr(IpAddr),
    Cname(String),
}

impl Entry {
    fn parse(text: &str) -> Entry {
        match text.strip_prefix("cname:") {
            Some(target) => Entry::Cname(target.to_string()),
            None => Entry::Addr(text.parse().unwrap()),
        }
    }

    fn addr(&self) -> Option<IpAddr> {
        match self {
            Entry::Addr(a) => Some(*a),
            Entry::Cname(_) => None,
        }
    }
}

impl StandIn {
    /// `zone`: each name and its answers in turn; `ttl`: every record's.
    pub fn start(zone: &[(&str, &[&[&str]])], ttl: u32) -> StandIn {
        let zone: Zone = zone
            .iter()
            .map(|(name, sets)| {
                let sets = sets.iter().map(|s| s.iter().map(|a| Entry::parse(a)).collect()).collect();
                (name.to_string(), (sets, 0))
            })
            .collect();
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let (zone, log) = (Arc::new(Mutex::new(zone)), Arc::new(Mutex::new(Vec::new())));
        let (z, l) = (Arc::clone(&zone), Arc::clone(&log));
        let (zone_tcp, log_tcp) = (zone, Arc::clone(&log));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                if let Some(a) = respond(&z, &l, &buf[..n], ttl) {
                    let _ = udp.send_to(&a, from);
                }
            }
        });
        std::thread::spawn(move || {
            for mut s in tcp.incoming().flatten() {
                let mut len = [0u8; 2];
                let mut q = vec![];
                if s.read_exact(&mut len).is_ok() {
                    q.resize(usize::from(u16::from_be_bytes(len)), 0);
                }
                if s.read_exact(&mut q).is_ok()
                    && let Some(a) = respond(&zone_tcp, &log_tcp, &q, ttl)
                {
                    let _ = s.write_all(&[&(a.len() as u16).to_be_bytes()[..], &a].concat());
                }
            }
        });
        StandIn { addr, log }
    }

    /// The names asked so far, in order.
    pub fn queried(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A UDP socket and a TCP listener on the same loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn respond(zone: &Mutex<Zone>, log: &Mutex<Vec<String>>, q: &[u8], ttl: u32) -> Option<Vec<u8>> {
    let (_, name, qtype, _) = dns_wire::question(q)?;
    log.lock().unwrap().push(name.clone());
    let mut zone = zone.lock().unwrap();
    let Some((sets, next)) = zone.get_mut(&name) else { return dns_wire::answer(q, 3, &[], ttl) };
    let set = sets[*next % sets.len()].clone();
    *next += 1;
    if let Some(Entry::Cname(target)) = set.first() {
        let target = target.clone();
        let addrs: Vec<IpAddr> = match zone.get(&target) {
            Some((sets, _)) => sets[0].iter().filter_map(Entry::addr).filter(|a| a.is_ipv4() == (qtype == 1)).collect(),
            None => vec![],
        };
        return dns_wire::cname_answer(q, &target, &addrs, ttl);
    }
    let wanted: Vec<IpAddr> = set.iter().filter_map(Entry::addr).filter(|a| a.is_ipv4() == (qtype == 1)).collect();
    dns_wire::answer(q, 0, &wanted, ttl)
}
