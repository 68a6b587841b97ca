//! DNS rebinding: a public name whose answer points inside the host or its network. An answer
//! carrying one of these addresses is dropped whole (the server gets SERVFAIL) unless the
//! profile lets names answer that range (`[network] private-answers`).

use std::net::IpAddr;

use crate::profile::{IpNet, parse_net};

/// Ranges no public name should answer with.
const RANGES: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (reaches the local host)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, with the cloud metadata service"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/96", "IPv4-compatible (deprecated), with the unspecified address"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("::ffff:0:0:0/96", "IPv4-translated (SIIT)"),
    ("100::/64", "discard"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4 (embeds an IPv4 address)"),
    ("fc00::/7", "unique local (ULA)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("fd00:ec2::254/128", "the cloud metadata service"),
];

/// Names under these are private by definition: their answers may be private addresses.
const PRIVATE_SUFFIXES: &[&str] = &["internal", "local", "lan", "home.arpa", "localhost", "intranet", "corp"];

/// Why `ip` may not be a public name's answer, or `None` when it may. An IPv4-mapped form, and
/// the well-known NAT64 prefix (`64:ff9b::/96`, which a NAT64 gateway turns into the IPv4 address
/// it embeds), are checked as the IPv4 address they carry.
pub fn private(ip: IpAddr) -> Option<&'static str> {
    let ip = carried(ip);
    ranges().iter().find(|(net, _)| net.contains(&ip)).map(|(_, why)| *why)
}

/// [`RANGES`], parsed once.
fn ranges() -> &'static [(IpNet, &'static str)] {
    static PARSED: std::sync::OnceLock<Vec<(IpNet, &'static str)>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| RANGES.iter().filter_map(|(net, why)| Some((parse_net(net).ok()?, *why))).collect())
}

/// Why `ip` may not be a public name's answer on this host, whose interfaces have `host`: one of
/// [`private`]'s ranges, or an address of the host itself, in any form that carries it.
pub fn refused(ip: IpAddr, host: &[IpAddr]) -> Option<&'static str> {
    private(ip).or_else(|| (host.contains(&ip) || host.contains(&carried(ip))).then_some("an address of this host"))
}

/// The IPv4 address an IPv6 one carries and reaches (IPv4-mapped, NAT64's well-known prefix), or
/// the address itself.
fn carried(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.octets() {
            [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d] => IpAddr::from([a, b, c, d]),
            _ => ip.to_canonical(),
        },
        v4 => v4,
    }
}

/// The addresses of this host's interfaces (a name pointing at the host itself reaches its
/// services whatever range they are in), read when the resolver starts.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            let v4 = a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()));
            v4.or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A single label (`intranet-host`) or a name under a private suffix (`db.internal`).
pub fn is_private_name(name: &str) -> bool {
    !name.contains('.') || PRIVATE_SUFFIXES.iter().any(|s| name == *s || name.ends_with(&format!(".{s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_caught_in_every_form() {
        for a in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "172.16.5.5", "192.168.1.1", "0.0.0.0"] {
            assert!(private(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in [
            "::1",
            "::",
            "::127.0.0.1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "::ffff:0:7f00:1",
            "2002:7f00:1::1",
            "192.0.2.2",
            "198.51.100.7",
        ] {
            assert!(private(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in
            ["93.184.216.34", "140.82.112.6", "2606:2800:220:1::1", "::ffff:93.184.216.34", "64:ff9b::93.184.216.34"]
        {
            assert!(private(a.parse().unwrap()).is_none(), "{a}");
        }
    }

    #[test]
    fn this_hosts_addresses_are_refused_in_every_form() {
        let local = host_addresses();
        assert!(local.contains(&"127.0.0.1".parse().unwrap()), "{local:?}");
        let host: Vec<IpAddr> = vec!["93.184.216.34".parse().unwrap()];
        for a in ["93.184.216.34", "::ffff:93.184.216.34", "64:ff9b::93.184.216.34"] {
            assert_eq!(refused(a.parse().unwrap(), &host), Some("an address of this host"), "{a}");
        }
        assert_eq!(refused("93.184.216.35".parse().unwrap(), &host), None);
    }

    #[test]
    fn every_range_parses() {
        assert_eq!(ranges().len(), RANGES.len());
    }

    #[test]
    fn private_names() {
        assert!(is_private_name("db.internal"));
        assert!(is_private_name("metadata.google.internal"));
        assert!(is_private_name("printer.local"));
        assert!(is_private_name("nas"));
        assert!(!is_private_name("api.github.com"));
        assert!(!is_private_name("internal.example.com"));
    }
}
