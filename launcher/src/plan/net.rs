//! The network allow-list: destinations sorted into the rules each layer can enforce, the
//! nameservers a server that resolves names may reach, and the connect broker's policy.
//!
//! Which layer enforces which rule:
//! - TCP ports (bare `443`, and the port of every TCP destination): Landlock, and the eBPF cgroup
//!   programs when they load;
//! - socket families (TCP, UDP, AF_UNIX at all): seccomp;
//! - addresses (`ADDR:PORT`), UDP destinations: the broker, or the eBPF programs when they load
//!   (they express those rules in full);
//! - host names (`HOST:PORT`), `deny` ranges and `dns`: the broker only.
//!
//! Reading `/etc/resolv.conf` is an input ([`Inputs::resolvers`](super::Inputs)); everything
//! else here is policy computed from the profile.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::dns::DnsPolicy;
use crate::dns::names::Names;
use crate::dns::upstream::Upstream;
use crate::host::HostFacts;
use crate::layers::broker::{NetPolicy, Proto};
use crate::layers::landlock::NetPorts;
use crate::layers::seccomp::SocketPolicy;
use crate::profile::{Endpoint, IpNet, NetDisplay, Network, Sourced};

use super::error::PlanError;
use super::report::Enforcement;

#[derive(Debug, Clone, Default)]
pub struct NetPlan {
    pub ports: NetPorts,
    /// `ADDR:PORT` destinations, whose address part needs the eBPF layer or the broker.
    pub address_rules: Vec<Sourced<Endpoint>>,
    /// TCP ports granted to any destination address.
    pub connect_any: BTreeSet<u16>,
    /// UDP destinations.
    pub udp_rules: Vec<Sourced<Endpoint>>,
    /// `HOST:PORT` destinations.
    pub host_rules: Vec<Sourced<Endpoint>>,
    /// Networks a bare-port grant never reaches.
    pub deny: Vec<Sourced<IpNet>>,
    /// The host's nameservers (/etc/resolv.conf), read when the server may resolve names.
    pub resolvers: Vec<IpAddr>,
    /// What mcp-warden's resolver answers the server (`dns = true` or a `HOST:PORT` entry).
    pub dns: Option<DnsPolicy>,
    /// The socket families seccomp lets the server create.
    pub sockets: SocketPolicy,
    /// The connect broker's policy, when the network allow-list names destinations (addresses,
    /// names, UDP destinations, denied ranges) that Landlock's port rules cannot express.
    pub broker: Option<NetPolicy>,
    /// The eBPF cgroup programs express every rule of `broker` (addresses and UDP destinations,
    /// no names, `deny` or `dns`): when the eBPF layer loads, it enforces them and the broker is
    /// not installed.
    pub ebpf_covers_network: bool,
}

impl NetPlan {
    /// `read_resolvers` is called only when the server may resolve names.
    pub fn resolve(
        section: &Network,
        audit_mode: bool,
        read_resolvers: impl FnOnce() -> Vec<IpAddr>,
    ) -> Result<NetPlan, PlanError> {
        let mut plan = NetPlan::classify(section);
        let dns = section.dns.unwrap_or(false) || !plan.host_rules.is_empty();
        if dns {
            plan.resolvers = read_resolvers();
            plan.ports.connect.insert(53);
            plan.dns = Some(plan.dns_policy(section, section.dns.unwrap_or(false), audit_mode)?);
        }
        let (udp, unix) = (section.udp.unwrap_or(false), section.unix.unwrap_or(false));
        plan.sockets = SocketPolicy {
            tcp: !plan.ports.connect.is_empty() || !plan.ports.bind.is_empty(),
            udp: udp || !plan.udp_rules.is_empty() || dns,
            unix,
            listen: !plan.ports.bind.is_empty() || unix,
        };
        plan.ebpf_covers_network = plan.host_rules.is_empty() && plan.deny.is_empty() && !dns;
        let brokered = dns || !plan.address_rules.is_empty() || !plan.udp_rules.is_empty() || !plan.deny.is_empty();
        if brokered && unix {
            return Err(PlanError::Invalid {
                what: "network allow-list".into(),
                why: "`unix = true` cannot be combined with address, host, UDP, `deny` or `dns` rules: the network broker that enforces those mediates IPv4/IPv6 only".into(),
            });
        }
        if brokered {
            plan.broker = Some(plan.broker_rules(udp, audit_mode));
        }
        Ok(plan)
    }

    /// Sorts each destination into the rule kind that enforces it.
    fn classify(section: &Network) -> NetPlan {
        let mut plan = NetPlan { deny: section.deny.clone(), ..Default::default() };
        for e in &section.connect {
            if e.value.host.is_some() {
                if !e.value.udp {
                    plan.ports.connect.insert(e.value.port);
                }
                plan.host_rules.push(e.clone());
            } else if e.value.udp {
                plan.udp_rules.push(e.clone());
            } else {
                plan.ports.connect.insert(e.value.port);
                match e.value.addr {
                    Some(_) => plan.address_rules.push(e.clone()),
                    None => {
                        plan.connect_any.insert(e.value.port);
                    }
                }
            }
        }
        plan.ports.bind.extend(&section.bind);
        plan
    }

    /// What the resolver answers: the `HOST:PORT` names (every name with `any`), asked of
    /// `dns-upstream` or the host's nameservers.
    fn dns_policy(&self, section: &Network, any: bool, audit: bool) -> Result<DnsPolicy, PlanError> {
        let upstream = match section.dns_upstream.is_empty() {
            true => self.resolvers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect(),
            false => section.dns_upstream.iter().map(|s| upstream_addr(&s.value)).collect::<Result<_, _>>()?,
        };
        Ok(DnsPolicy {
            names: Names::new(&self.host_names(), any),
            upstream: Upstream { servers: upstream },
            private_answers: section.private_answers.iter().map(|n| n.value).collect(),
            audit,
        })
    }

    fn host_names(&self) -> Vec<(Proto, String, u16)> {
        let proto = |e: &Endpoint| if e.udp { Proto::Udp } else { Proto::Tcp };
        self.host_rules
            .iter()
            .filter_map(|e| e.value.host.clone().map(|h| (proto(&e.value), h, e.value.port)))
            .collect()
    }

    /// The broker's policy for these rules (`udp_any`: `udp = true`).
    fn broker_rules(&self, udp_any: bool, audit: bool) -> NetPolicy {
        let proto = |e: &Endpoint| if e.udp { Proto::Udp } else { Proto::Tcp };
        NetPolicy {
            tcp_any: false,
            tcp_ports: self.connect_any.clone(),
            udp_ports: self.udp_rules.iter().filter(|e| e.value.addr.is_none()).map(|e| e.value.port).collect(),
            udp_any,
            exact: self
                .address_rules
                .iter()
                .chain(&self.udp_rules)
                .filter_map(|e| e.value.addr.map(|a| (proto(&e.value), a, e.value.port)))
                .collect(),
            hosts: self.host_names(),
            dns: self.dns.clone(),
            deny: self.deny.iter().map(|d| d.value).collect(),
            this_host: self.denies_loopback().then_some(crate::dns::host_addresses as fn() -> Vec<IpAddr>),
            bind: self.ports.bind.clone(),
            audit,
        }
    }

    /// The `deny` list keeps the server off this machine's loopback: it is kept off the host's
    /// other addresses too (a public address reaches the same services).
    fn denies_loopback(&self) -> bool {
        let loopback: [IpAddr; 2] = [std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()];
        self.deny.iter().any(|d| loopback.iter().any(|l| d.value.contains(l)))
    }

    /// A learning run: any TCP or UDP destination outside the `deny` ranges (the profile's, plus
    /// the cloud metadata addresses), through the broker, which records each one.
    pub fn open_for_learning(&mut self, audit: bool, read_resolvers: impl FnOnce() -> Vec<IpAddr>) {
        const METADATA: &[&str] = &["169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32"];
        if self.resolvers.is_empty() {
            self.resolvers = read_resolvers();
        }
        let upstream = Upstream { servers: self.resolvers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect() };
        let dns = self.dns.take().unwrap_or_else(|| DnsPolicy {
            names: Names::default(),
            upstream,
            private_answers: Vec::new(),
            audit,
        });
        self.dns = Some(DnsPolicy { names: Names::new(&self.host_names(), true), ..dns });
        self.ports.connect_any_port = true;
        self.sockets.tcp = true;
        self.sockets.udp = true;
        self.sockets.listen = true;
        let mut policy = self.broker_rules(true, audit);
        policy.tcp_any = true;
        policy.deny.extend(METADATA.iter().filter_map(|n| crate::profile::parse_net(n).ok()));
        self.broker = Some(policy);
        self.ebpf_covers_network = false;
    }

    /// The network broker's policy, unless the eBPF layer (loaded) enforces every rule itself.
    pub fn broker_policy(&self, monitor_loaded: bool) -> Option<&NetPolicy> {
        self.broker.as_ref().filter(|_| !(self.ebpf_covers_network && monitor_loaded))
    }

    /// The allow-list as eBPF rules (cgroup socket programs).
    pub fn ebpf_rules(&self) -> Vec<mcp_warden_ebpf_common::NetRule> {
        use mcp_warden_ebpf_common::{NetRule, op};
        let both = [libc::AF_INET as u32, libc::AF_INET6 as u32];
        let tcp = libc::SOCK_STREAM as u32;
        let connect =
            |family, port| NetRule { ops: 1 << op::CONNECT, family, sock_type: tcp, port, ..Default::default() };
        // Host names and the resolvers are checked by the broker; here only their ports.
        let host_ports = self.host_rules.iter().filter(|e| !e.value.udp).map(|e| e.value.port);
        let dns_port = (!self.resolvers.is_empty()).then_some(53);
        let any_address: Vec<u16> = self.connect_any.iter().copied().chain(host_ports).chain(dns_port).collect();
        let mut rules: Vec<NetRule> = any_address.iter().flat_map(|p| both.map(|f| connect(f, *p))).collect();
        for e in &self.address_rules {
            if let Some(net) = e.value.addr {
                let (family, prefix, addr) = rule_net(&net);
                rules.push(NetRule { prefix, addr, ..connect(family, e.value.port) });
            }
        }
        for port in &self.ports.bind {
            rules.extend(both.map(|family| NetRule { ops: 1 << op::BIND, ..connect(family, *port) }));
        }
        let udp = libc::SOCK_DGRAM as u32;
        for e in &self.udp_rules {
            let families: Vec<(u32, u32, [u8; 16])> = match &e.value.addr {
                Some(net) => vec![rule_net(net)],
                None => both.iter().map(|f| (*f, 0, [0u8; 16])).collect(),
            };
            for (family, prefix, addr) in families {
                let ops = (1 << op::CONNECT) | (1 << op::SEND);
                rules.push(NetRule {
                    ops,
                    family,
                    sock_type: udp,
                    prefix,
                    port: e.value.port,
                    addr,
                    ..Default::default()
                });
            }
        }
        // No BIND: a UDP socket may bind port 0 only (the programs allow that to every datagram
        // socket; the `bind` ports' rules are TCP), never a port of its choosing.
        if self.sockets.udp && self.udp_rules.is_empty() {
            let ops = (1 << op::CONNECT) | (1 << op::SEND);
            rules.extend(both.map(|family| NetRule { ops, family, sock_type: udp, ..Default::default() }));
        }
        rules
    }

    /// Enforced in full, or why not; and the mechanism, for the report.
    pub fn report(&self, by: &Enforcers<'_>) -> (Enforcement, String) {
        let mech = self.mechanism(by.monitor_runs);
        let s = self.sockets;
        if self.broker_policy(by.monitor_runs).is_some() {
            let why = match &by.host.user_notification {
                Err(why) => Some(why.to_string()),
                Ok(()) if !by.host.seccomp_filter => Some("the kernel has no seccomp filter mode".into()),
                Ok(()) => None,
            };
            if let Some(why) = why {
                return (
                    Enforcement::Missing(format!("the network broker needs seccomp user notification: {why}")),
                    mech,
                );
            }
        }
        // `listen` on a TCP socket is performed by the supervisor (on a socket never bound it would
        // take a port of the kernel's choosing): with a `bind` port or unix sockets
        if s.listen
            && s.tcp
            && let Err(why) = &by.host.user_notification
        {
            return (
                Enforcement::Missing(format!(
                    "listening is checked through seccomp user notification (a socket never bound would listen on a port of the kernel's choosing): {why}"
                )),
                mech,
            );
        }
        if self.broker_policy(by.monitor_runs).is_some_and(|b| b.dns.is_some()) && !by.host.socket_swap {
            return (
                Enforcement::Missing(format!(
                    "answering the server's DNS needs SECCOMP_ADDFD_FLAG_SETFD (Linux 5.14; this kernel is {})",
                    by.host.kernel
                )),
                mech,
            );
        }
        let mech =
            if by.monitor_runs { format!("{mech}; eBPF cgroup programs check ports and addresses") } else { mech };
        let landlock_net = matches!(by.host.landlock, Ok(abi) if abi >= 4) && by.landlock_on;
        if s.tcp && !landlock_net && !by.monitor_runs {
            return (Enforcement::Partial("TCP ports cannot be restricted without Landlock ABI 4".into()), mech);
        }
        let every_family = s.tcp && s.udp && s.unix;
        let seccomp_runs = by.host.seccomp_filter && by.seccomp_on;
        if !every_family && !seccomp_runs {
            return (
                Enforcement::Missing(
                    "socket families are closed by the seccomp layer, which is off or unavailable".into(),
                ),
                mech,
            );
        }
        (Enforcement::Full, mech)
    }

    /// What enforces the allow-list, in words.
    fn mechanism(&self, monitor_runs: bool) -> String {
        let s = self.sockets;
        let mut mech = Vec::new();
        mech.push(if s.tcp && self.ports.connect_any_port {
            format!(
                "TCP connect to any port, each destination checked and recorded by the broker (a learning run), bind ports {:?} (Landlock)",
                self.ports.bind.iter().collect::<Vec<_>>()
            )
        } else if s.tcp {
            format!(
                "TCP connect ports {:?}, bind ports {:?} (Landlock)",
                self.ports.connect.iter().collect::<Vec<_>>(),
                self.ports.bind.iter().collect::<Vec<_>>()
            )
        } else {
            "no TCP/IP sockets (seccomp)".into()
        });
        if s.udp && self.broker.is_none() {
            mech.push("UDP sockets allowed to any destination".into());
        }
        mech.push(if s.unix { "AF_UNIX sockets allowed".into() } else { "no AF_UNIX sockets (seccomp)".into() });
        if let Some(b) = self.broker_policy(monitor_runs) {
            let mut dest: Vec<String> = self
                .address_rules
                .iter()
                .chain(&self.udp_rules)
                .chain(&self.host_rules)
                .map(|e| e.value.to_string())
                .collect();
            if let Some(dns) = &b.dns {
                dest.push(dns_report(dns, monitor_runs));
            }
            let deny: Vec<String> = b.deny.iter().map(|d| NetDisplay(d).to_string()).collect();
            mech.push(format!(
                "every connect/sendto/sendmsg destination checked by the network broker (seccomp user notification; the supervisor performs the call with the address it checked): {}{}",
                if dest.is_empty() { "bare ports only".to_string() } else { dest.join(", ") },
                if deny.is_empty() { String::new() } else { format!("; bare ports never reach {}", deny.join(", ")) }
            ));
        }
        mech.join("; ")
    }
}

/// How `explain` says what the resolver answers, and how queries reach it.
fn dns_report(dns: &DnsPolicy, monitor_runs: bool) -> String {
    let upstream: Vec<String> = dns.upstream.servers.iter().map(ToString::to_string).collect();
    let names = match (dns.names.any(), dns.names.is_empty()) {
        (true, _) => "every name (dns = true: query names leave the host)".to_string(),
        (false, true) => "no name".to_string(),
        (false, false) => "only the names above; any other gets NXDOMAIN and never leaves the host".to_string(),
    };
    let route = match monitor_runs {
        true => "routed by the eBPF socket programs to its resolver on the loopback",
        false => "routed by the broker to its resolver in a network namespace of its own",
    };
    format!(
        "DNS (port 53, any address) answered by mcp-warden ({route}): {names}, resolved through {}; a name's addresses open its ports for the answer's TTL (5 s to 1 h); answers rebinding a public name to a private address are dropped{}",
        if upstream.is_empty() { "no upstream".to_string() } else { upstream.join(", ") },
        if dns.private_answers.is_empty() {
            String::new()
        } else {
            let nets: Vec<String> = dns.private_answers.iter().map(|n| NetDisplay(n).to_string()).collect();
            format!(" (except {})", nets.join(", "))
        }
    )
}

/// `ADDR`, `ADDR:PORT` or `[V6ADDR]:PORT` of a `dns-upstream` entry (port 53 by default).
fn upstream_addr(text: &str) -> Result<SocketAddr, PlanError> {
    text.parse::<SocketAddr>().or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53))).map_err(|_| {
        PlanError::Invalid {
            what: format!("[network] dns-upstream entry `{text}`"),
            why: "expected ADDR, ADDR:PORT or [IPV6]:PORT".into(),
        }
    })
}

/// What the network report depends on besides the plan's own rules.
#[derive(Debug)]
pub struct Enforcers<'a> {
    pub host: &'a HostFacts,
    pub monitor_runs: bool,
    /// Landlock and seccomp are not `off`.
    pub landlock_on: bool,
    pub seccomp_on: bool,
}

/// `(family, prefix length, address bytes)` of a network, as an eBPF rule holds it.
fn rule_net(net: &IpNet) -> (u32, u32, [u8; 16]) {
    let mut bytes = [0u8; 16];
    let family = match net.addr() {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            libc::AF_INET as u32
        }
        IpAddr::V6(v6) => {
            bytes = v6.octets();
            libc::AF_INET6 as u32
        }
    };
    (family, u32::from(net.prefix_len()), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(connect: &[&str], deny: &[&str], dns: bool) -> Network {
        let sourced = |v| Sourced::flag("--allow-connect", v);
        Network {
            connect: connect.iter().map(|c| sourced(c.parse().unwrap())).collect(),
            deny: deny.iter().map(|d| Sourced::flag("test", crate::profile::parse_net(d).unwrap())).collect(),
            dns: Some(dns),
            ..Default::default()
        }
    }

    #[test]
    fn destinations_are_sorted_by_the_rule_that_enforces_them() {
        let n = network(&["443", "127.0.0.1:5432", "udp:10.0.0.53:53", "api.example.com:8443"], &[], false);
        let plan = NetPlan::resolve(&n, false, || vec!["192.0.2.53".parse().unwrap()]).unwrap();
        assert_eq!(plan.connect_any, [443].into());
        assert_eq!(plan.ports.connect, [53, 443, 5432, 8443].into(), "a host name implies DNS");
        assert_eq!((plan.address_rules.len(), plan.udp_rules.len(), plan.host_rules.len()), (1, 1, 1));
        assert_eq!(plan.resolvers, vec!["192.0.2.53".parse::<IpAddr>().unwrap()], "read from the input");
        assert!(plan.sockets.tcp && plan.sockets.udp && !plan.sockets.unix);
        assert!(!plan.ebpf_covers_network, "host names need the broker");
        let b = plan.broker.as_ref().unwrap();
        assert_eq!(b.hosts, vec![(Proto::Tcp, "api.example.com".to_string(), 8443)]);
    }

    #[test]
    fn resolv_conf_is_read_only_when_names_are_resolved() {
        let n = network(&["443", "127.0.0.1:5432"], &[], false);
        let plan = NetPlan::resolve(&n, false, || panic!("no DNS: resolv.conf is not read")).unwrap();
        assert!(plan.resolvers.is_empty() && plan.ebpf_covers_network);
        assert_eq!(plan.broker.as_ref().unwrap().exact.len(), 1);
        assert!(plan.broker_policy(true).is_none(), "the eBPF layer enforces addresses when it loads");
    }

    #[test]
    fn deny_ranges_print_as_profiles_write_them() {
        let n = network(&["443"], &["10.0.0.0/8", "::1/128"], false);
        let plan = NetPlan::resolve(&n, false, Vec::new).unwrap();
        let mech = plan.mechanism(false);
        assert!(mech.ends_with("; bare ports never reach 10.0.0.0/8, [::1]"), "{mech}");
    }
}
