//! The addresses the server's answers gave, each open for the ports of the names that led to it
//! until its TTL runs out. The broker checks a connection to a name's destination against these:
//! the address must be one an answer handed to this server, for that name's port, still in date.
//! A connection made while the pin held is not touched when it expires.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::names::Opens;
use crate::layers::broker::Proto;

/// The shortest time an answer's addresses stay open: a resolver hands an address to a `connect`
/// that follows at once, and a TTL of 0 must not refuse it.
pub const TTL_MIN: Duration = Duration::from_secs(5);
/// The longest; answers say at most this much to the server too.
pub const TTL_MAX: Duration = Duration::from_secs(3600);
/// Pins held at once; past this, the oldest go first (a server resolving without end must not
/// grow the supervisor).
const PINS_MAX: usize = 16_384;

/// A TTL as the pin keeps it.
pub fn clamp(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).clamp(TTL_MIN, TTL_MAX)
}

#[derive(Debug, Clone)]
struct Pin {
    name: String,
    opens: Opens,
    until: Instant,
}

/// The pins of one server.
#[derive(Debug, Default)]
pub struct Pins(Mutex<HashMap<IpAddr, Vec<Pin>>>);

impl Pins {
    /// Opens `addrs` for `opens` until `ttl` from now, as answers for `name`.
    pub fn pin(&self, name: &str, addrs: &[IpAddr], opens: &Opens, ttl: Duration) {
        if opens.is_empty() || addrs.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() + addrs.len() > PINS_MAX {
            prune(&mut map, now);
        }
        // One pin per address and set of destinations, whichever name answered it last (the
        // name is only for the record): many names answering one address do not grow the list.
        for addr in addrs {
            let pins = map.entry(addr.to_canonical()).or_default();
            pins.retain(|p| p.until > now && p.opens != *opens);
            pins.push(Pin { name: name.to_string(), opens: opens.clone(), until: now + ttl });
        }
    }

    /// The name whose answer opened `ip` for `proto`/`port`, while that answer is in date.
    pub fn allows(&self, proto: Proto, ip: IpAddr, port: u16) -> Option<String> {
        let now = Instant::now();
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let pins = map.get(&ip.to_canonical())?;
        pins.iter().find(|p| p.until > now && p.opens.contains(&(proto, port))).map(|p| p.name.clone())
    }
}

/// Drops expired pins, then those soonest to expire until half the room is free.
fn prune(map: &mut HashMap<IpAddr, Vec<Pin>>, now: Instant) {
    map.retain(|_, pins| {
        pins.retain(|p| p.until > now);
        !pins.is_empty()
    });
    let Some(excess) = map.len().checked_sub(PINS_MAX / 2) else { return };
    let mut by_expiry: Vec<(Instant, IpAddr)> =
        map.iter().map(|(a, pins)| (pins.iter().map(|p| p.until).max().unwrap_or(now), *a)).collect();
    by_expiry.sort_unstable();
    for (_, addr) in by_expiry.into_iter().take(excess) {
        map.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_opens_its_ports_only_until_it_expires() {
        let pins = Pins::default();
        let a: IpAddr = "93.184.216.34".parse().unwrap();
        pins.pin("api.example.com", &[a], &vec![(Proto::Tcp, 443)], Duration::from_millis(50));
        assert_eq!(pins.allows(Proto::Tcp, a, 443).as_deref(), Some("api.example.com"));
        assert_eq!(
            pins.allows(Proto::Tcp, "::ffff:93.184.216.34".parse().unwrap(), 443).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(pins.allows(Proto::Tcp, a, 80), None, "another port");
        assert_eq!(pins.allows(Proto::Udp, a, 443), None, "another protocol");
        assert_eq!(pins.allows(Proto::Tcp, "93.184.216.35".parse().unwrap(), 443), None, "another address");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(pins.allows(Proto::Tcp, a, 443), None, "expired");
    }

    #[test]
    fn answers_without_ports_pin_nothing_and_ttls_are_clamped() {
        let pins = Pins::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        pins.pin("x.example", &[a], &vec![], TTL_MAX);
        assert_eq!(pins.allows(Proto::Tcp, a, 443), None);
        assert_eq!(clamp(0), TTL_MIN);
        assert_eq!(clamp(60), Duration::from_secs(60));
        assert_eq!(clamp(u32::MAX), TTL_MAX);
    }

    #[test]
    fn many_names_answering_one_address_keep_one_pin() {
        let pins = Pins::default();
        let a: IpAddr = "93.184.216.34".parse().unwrap();
        for i in 0..10_000 {
            pins.pin(&format!("n{i}.example.com"), &[a], &vec![(Proto::Tcp, 443)], TTL_MAX);
        }
        assert_eq!(pins.0.lock().unwrap()[&a].len(), 1);
        assert_eq!(pins.allows(Proto::Tcp, a, 443).as_deref(), Some("n9999.example.com"));
    }

    #[test]
    fn pins_stay_bounded() {
        let pins = Pins::default();
        for i in 0..(PINS_MAX as u32 + 100) {
            pins.pin("n.example", &[IpAddr::from(i.to_be_bytes())], &vec![(Proto::Tcp, 443)], TTL_MAX);
        }
        assert!(pins.0.lock().unwrap().len() <= PINS_MAX);
    }
}
