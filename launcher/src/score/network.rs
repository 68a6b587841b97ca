//! The network axis: where the server can connect (egress, DNS, private and metadata ranges), what
//! it can listen on, which socket families it gets, and which powerful unix sockets it reaches.
//! Every row reads [`Reach`]: the plan's allow-list as the mechanisms of the view enforce it.

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::plan::Layer;
use crate::profile::NetDisplay;

use super::{Assessor, Axis, Ctx, Finding, Grade, SocketKind, graded, list};

const NET_LAYERS: &[Layer] = &[Layer::Landlock, Layer::Seccomp, Layer::Network, Layer::Monitor];

pub const ASSESSORS: &[Assessor] = &[
    Assessor {
        id: "network.egress",
        axis: Axis::Network,
        title: "where the server can connect",
        layers: NET_LAYERS,
        grades: &[EGRESS_NONE, EGRESS_LOOPBACK, EGRESS_EXACT, EGRESS_WILDCARD, EGRESS_UNRESTRICTED],
        hint: "name exact destinations in [network] connect (\"HOST:PORT\", \"ADDR:PORT\") instead of bare ports; keep the landlock and seccomp layers on",
        assess: egress,
    },
    Assessor {
        id: "network.dns",
        axis: Axis::Network,
        title: "DNS queries, a channel out through any resolver",
        layers: NET_LAYERS,
        grades: &[DNS_NONE, DNS_FILTERED, DNS_RESOLVERS, DNS_ANY],
        hint: "name the hosts the server needs (\"HOST:PORT\", \"*.SUFFIX:PORT\") instead of `dns = true`, so that mcp-warden answers those names only; keep the network broker available (Linux 5.14) so that it answers the server's DNS",
        assess: dns,
    },
    Assessor {
        id: "network.private-ranges",
        axis: Axis::Network,
        title: "this machine, its networks, cloud metadata services",
        layers: NET_LAYERS,
        grades: &[PRIVATE_NONE, PRIVATE_EXPLICIT, PRIVATE_REACHABLE, PRIVATE_METADATA],
        hint: "add the private and metadata ranges to [network] deny (as the fetch profile does), or name exact destinations",
        assess: private_ranges,
    },
    Assessor {
        id: "network.listen",
        axis: Axis::Network,
        title: "ports the server can listen on",
        layers: &[Layer::Landlock, Layer::Seccomp, Layer::Monitor],
        grades: &[LISTEN_NONE, LISTEN_UDP, LISTEN_PORTS, LISTEN_ANY],
        hint: "remove [network] bind ports (--allow-bind); set udp = false and drop dns unless the server needs them",
        assess: listen,
    },
    Assessor {
        id: "network.socket-families",
        axis: Axis::Network,
        title: "socket families beyond what the allow-list needs",
        layers: &[Layer::Seccomp],
        grades: &[FAMILIES_NEEDED, FAMILIES_UNIX, FAMILIES_EVERY],
        hint: "keep [network] unix = false and the seccomp layer on (--require seccomp=required)",
        assess: socket_families,
    },
    Assessor {
        id: "network.unix-sockets",
        axis: Axis::Network,
        title: "container engines, agents and buses reachable over unix sockets",
        layers: &[Layer::Seccomp],
        grades: &[UNIX_NONE, UNIX_ALLOWED, UNIX_AGENT, UNIX_ENGINE],
        hint: "keep [network] unix = false (connecting to a socket path is not a Landlock right before ABI 9) and the seccomp layer on",
        assess: unix_sockets,
    },
];

pub const EGRESS_NONE: Grade = Grade { name: "none", badness: 0, means: "no destination" };
pub const EGRESS_LOOPBACK: Grade =
    Grade { name: "loopback", badness: 20, means: "exact ports on this machine's loopback addresses only" };
pub const EGRESS_EXACT: Grade =
    Grade { name: "exact", badness: 35, means: "a few exact ADDR:PORT or HOST:PORT destinations" };
pub const EGRESS_WILDCARD: Grade = Grade {
    name: "wildcard",
    badness: 75,
    means: "a port to any address, a wide network, a multi-tenant domain, or many destinations",
};
pub const EGRESS_UNRESTRICTED: Grade = Grade { name: "unrestricted", badness: 100, means: "any port of any address" };
pub const DNS_NONE: Grade = Grade { name: "none", badness: 0, means: "no name resolution" };
pub const DNS_FILTERED: Grade = Grade {
    name: "filtered",
    badness: 15,
    means: "answered by mcp-warden for the profile's names only: any other name gets NXDOMAIN and never leaves the host",
};
pub const DNS_RESOLVERS: Grade = Grade {
    name: "resolvers",
    badness: 40,
    means: "answered by mcp-warden for every name: query names reach the upstream resolvers",
};
pub const DNS_ANY: Grade = Grade { name: "any-server", badness: 100, means: "port 53 of any address" };
const PRIVATE_NONE: Grade = Grade { name: "none", badness: 0, means: "no private, loopback or metadata address" };
const PRIVATE_EXPLICIT: Grade =
    Grade { name: "explicit", badness: 30, means: "exact destinations the profile names in private ranges" };
const PRIVATE_REACHABLE: Grade =
    Grade { name: "private", badness: 80, means: "private or loopback ranges through a grant to any address" };
const PRIVATE_METADATA: Grade =
    Grade { name: "metadata", badness: 100, means: "a cloud metadata service (the machine's cloud credentials)" };
const LISTEN_NONE: Grade = Grade { name: "none", badness: 0, means: "no port" };
const LISTEN_UDP: Grade =
    Grade { name: "udp", badness: 30, means: "UDP sockets bind any port (Landlock has no UDP rules)" };
const LISTEN_PORTS: Grade = Grade { name: "ports", badness: 50, means: "the TCP ports the profile names" };
const LISTEN_ANY: Grade = Grade { name: "any", badness: 100, means: "any TCP port" };
const FAMILIES_NEEDED: Grade = Grade { name: "needed", badness: 0, means: "only the families the allow-list needs" };
const FAMILIES_UNIX: Grade = Grade { name: "unix", badness: 50, means: "AF_UNIX sockets too" };
const FAMILIES_EVERY: Grade =
    Grade { name: "every", badness: 100, means: "every family: netlink, vsock, AF_ALG, bluetooth, ..." };
const UNIX_NONE: Grade = Grade { name: "none", badness: 0, means: "no AF_UNIX socket can be created" };
const UNIX_ALLOWED: Grade =
    Grade { name: "allowed", badness: 40, means: "AF_UNIX allowed; no powerful socket found on this host" };
pub const UNIX_AGENT: Grade =
    Grade { name: "agent-or-bus", badness: 80, means: "an SSH or GPG agent, a session bus or a display server" };
pub const UNIX_ENGINE: Grade =
    Grade { name: "container-engine", badness: 100, means: "a container engine's API: root on the host" };

/// The allow-list as the view enforces it.
#[derive(Debug, Default)]
struct Reach {
    /// Why some protocol reaches any port of any address, if it does.
    any_port: Option<String>,
    /// Ports open to any address: `(udp, port)`.
    any_address: BTreeSet<(bool, u16)>,
    /// Exact networks: `(network, port)`.
    nets: Vec<(IpNet, u16)>,
    /// `HOST:PORT` destinations the broker checks.
    hosts: Vec<(String, u16)>,
    /// The `deny` ranges hold for the grants to any address.
    deny_enforced: bool,
    /// Nameservers the server queries: `None` no DNS, `Some(true)` only the resolvers.
    dns: Option<bool>,
    tcp: bool,
    udp: bool,
    families_open: bool,
    /// TCP bind is not restricted by port.
    bind_any: bool,
}

fn reach(c: &Ctx<'_>) -> Reach {
    let (n, s, m) = (c.plan.net(), c.plan.syscalls().sockets, c.mech);
    let families_open = !m.seccomp;
    let (tcp, udp) = (families_open || s.tcp, families_open || s.udp);
    // `udp = true`: the broker lets any UDP destination outside `deny` through; without a broker,
    // UDP sockets are all the profile asked for.
    let udp_any = s.udp && n.broker.as_ref().is_none_or(|b| b.udp_any);
    let addresses = m.broker || (m.ebpf && n.ebpf_covers_network);
    let tcp_ports = m.landlock_net || m.ebpf || m.broker;
    let udp_checked = (m.broker && s.udp) || m.ebpf;
    let mut r = Reach { deny_enforced: m.broker, tcp, udp, families_open, ..Default::default() };
    r.bind_any = tcp && !(m.landlock_net || m.ebpf);
    if tcp && !tcp_ports {
        r.any_port = Some("TCP to any port: no Landlock port rules, eBPF programs or network broker".into());
    } else if udp && !udp_checked {
        r.any_port = Some("UDP to any port and address: nothing checks UDP destinations".into());
    } else if udp && udp_any {
        r.any_port = Some("UDP to any port of any address ([network] udp = true)".into());
    }
    for e in n.address_rules.iter().chain(&n.udp_rules) {
        match (e.value.addr, addresses) {
            (Some(net), true) => r.nets.push((canonical(net), e.value.port)),
            _ => {
                r.any_address.insert((e.value.udp, e.value.port));
            }
        }
    }
    r.any_address.extend(n.connect_any.iter().map(|p| (false, *p)));
    let hosts = if n.host_rules.is_empty() { Vec::new() } else { crate::dns::hosts_file() };
    for e in &n.host_rules {
        match m.broker {
            true => {
                let host = e.value.host.clone().unwrap_or_default();
                // /etc/hosts answers a name before DNS: `localhost:5432` is loopback as `127.0.0.1:5432` is
                let named = crate::dns::hosts_file_addresses(&hosts, &host).into_iter();
                r.nets.extend(named.map(|a| (canonical(IpNet::from(a)), e.value.port)));
                r.hosts.push((host, e.value.port));
            }
            false => {
                r.any_address.insert((e.value.udp, e.value.port));
            }
        }
    }
    if !tcp {
        r.any_address.retain(|(udp, _)| *udp);
    }
    let port_53_anywhere = r.any_port.is_some() || r.any_address.iter().any(|(_, p)| *p == 53);
    // Without the broker, port 53 is open to any address for the resolvers' sake.
    r.dns = if port_53_anywhere {
        Some(false)
    } else if n.resolvers.is_empty() {
        None
    } else {
        Some(addresses)
    };
    r
}

impl Reach {
    fn any_address_text(&self, c: &Ctx<'_>) -> String {
        if let Some(why) = &self.any_port {
            return why.clone();
        }
        let ports =
            list(self.any_address.iter().map(|(udp, p)| if *udp { format!("udp:{p}") } else { p.to_string() }), 6);
        let deny = &c.plan.net().deny;
        match (self.deny_enforced, deny.len()) {
            (true, n) if n > 0 => format!("{ports} to any address outside {n} denied range(s)"),
            _ => format!("{ports} to any address"),
        }
    }
}

fn egress(c: &Ctx<'_>) -> Finding {
    let r = reach(c);
    if let Some(why) = r.any_port {
        return graded(&EGRESS_UNRESTRICTED, why);
    }
    if !r.any_address.is_empty() {
        return graded(&EGRESS_WILDCARD, r.any_address_text(c));
    }
    let net = &c.data.networks;
    let wide: Vec<String> = r
        .nets
        .iter()
        .filter(|(n, _)| n.prefix_len() < if n.addr().is_ipv4() { net.narrow_prefix_v4 } else { net.narrow_prefix_v6 })
        .map(|(n, p)| format!("{}:{p}", NetDisplay(n)))
        .collect();
    let shared: Vec<String> =
        r.hosts.iter().filter(|(h, _)| c.data.multi_tenant(h)).map(|(h, p)| format!("{h}:{p}")).collect();
    let all: Vec<String> = r
        .nets
        .iter()
        .map(|(n, p)| format!("{}:{p}", NetDisplay(n)))
        .chain(r.hosts.iter().map(|(h, p)| format!("{h}:{p}")))
        .collect();
    if !wide.is_empty() {
        return graded(&EGRESS_WILDCARD, format!("wide networks: {}", list(wide, 4)));
    }
    if !shared.is_empty() {
        return graded(
            &EGRESS_WILDCARD,
            format!("multi-tenant domains (anyone receives data there): {}", list(shared, 4)),
        );
    }
    if all.len() > net.exact_at_most {
        return graded(&EGRESS_WILDCARD, format!("{} destinations: {}", all.len(), list(all, 4)));
    }
    let loopback = |n: &IpNet| n.addr().is_loopback() && n.prefix_len() >= if n.addr().is_ipv4() { 8 } else { 128 };
    match all.is_empty() {
        true => graded(&EGRESS_NONE, "no TCP or UDP destination"),
        false if r.hosts.is_empty() && r.nets.iter().all(|(n, _)| loopback(n)) => {
            graded(&EGRESS_LOOPBACK, list(all, 4))
        }
        false => graded(&EGRESS_EXACT, list(all, 4)),
    }
}

fn dns(c: &Ctx<'_>) -> Finding {
    let r = reach(c);
    match r.dns {
        None => graded(&DNS_NONE, "no resolver reachable"),
        Some(true) => match c.plan.net().dns.as_ref() {
            Some(dns) if !dns.names.any() => {
                graded(&DNS_FILTERED, "mcp-warden answers the profile's names only (the network broker routes port 53)")
            }
            _ => graded(
                &DNS_RESOLVERS,
                "mcp-warden answers every name (`dns = true`), asking the host's resolvers: query names leave the host",
            ),
        },
        Some(false) => graded(&DNS_ANY, "port 53 of any address: DNS to a server of the server's choosing"),
    }
}

/// `net` as the kernel routes it: an IPv4-mapped IPv6 network (`::ffff:127.0.0.1/128`) is the
/// IPv4 one, as the broker checks it.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len().saturating_sub(96)).map_or(net, IpNet::V4),
            None => net,
        },
        v4 => v4,
    }
}

/// Does `net` overlap `range`?
fn overlaps(net: &IpNet, range: &IpNet) -> bool {
    range.contains(&net.network()) || net.contains(&range.network())
}

fn private_ranges(c: &Ctx<'_>) -> Finding {
    let r = reach(c);
    let ranges = &c.data.networks;
    let deny = &c.plan.net().deny;
    if r.any_port.is_some() || !r.any_address.is_empty() {
        let open = |range: &IpNet| !(r.deny_enforced && deny.iter().any(|d| d.value.contains(range)));
        let metadata: Vec<String> =
            ranges.metadata.iter().filter(|m| open(m)).map(|m| NetDisplay(m).to_string()).collect();
        if !metadata.is_empty() {
            return graded(&PRIVATE_METADATA, format!("{} through {}", list(metadata, 2), r.any_address_text(c)));
        }
        let private: Vec<String> =
            ranges.private.iter().filter(|p| open(p)).map(|p| NetDisplay(p).to_string()).collect();
        if !private.is_empty() {
            return graded(&PRIVATE_REACHABLE, format!("{} not denied", list(private, 4)));
        }
    }
    let named = |list: &[IpNet]| -> Vec<String> {
        r.nets
            .iter()
            .filter(|(n, _)| list.iter().any(|x| overlaps(n, x)))
            .map(|(n, p)| format!("{}:{p}", NetDisplay(n)))
            .collect()
    };
    let (metadata, private) = (named(&ranges.metadata), named(&ranges.private));
    match (metadata.is_empty(), private.is_empty()) {
        (false, _) => graded(&PRIVATE_METADATA, format!("named: {}", list(metadata, 3))),
        (true, false) => graded(&PRIVATE_EXPLICIT, format!("named: {}", list(private, 3))),
        (true, true) => graded(&PRIVATE_NONE, "no private, loopback or metadata address reachable"),
    }
}

fn listen(c: &Ctx<'_>) -> Finding {
    let r = reach(c);
    let bind = &c.plan.net().ports.bind;
    if r.bind_any {
        graded(&LISTEN_ANY, "any TCP port: no Landlock port rules or eBPF programs")
    } else if r.tcp && !bind.is_empty() {
        graded(&LISTEN_PORTS, format!("TCP {}", list(bind, 6)))
    } else if r.udp {
        graded(&LISTEN_UDP, "UDP sockets can bind any port (datagrams in; what goes out is checked)")
    } else {
        graded(&LISTEN_NONE, "no TCP bind port, no UDP socket")
    }
}

fn socket_families(c: &Ctx<'_>) -> Finding {
    let s = c.plan.syscalls().sockets;
    if reach(c).families_open {
        graded(&FAMILIES_EVERY, "no seccomp filter closes socket families")
    } else if s.unix {
        graded(&FAMILIES_UNIX, "AF_UNIX sockets allowed ([network] unix = true)")
    } else {
        let mut families = vec![];
        families.extend(s.tcp.then_some("TCP"));
        families.extend(s.udp.then_some("UDP"));
        graded(&FAMILIES_NEEDED, if families.is_empty() { "none".into() } else { families.join(" and ") })
    }
}

fn unix_sockets(c: &Ctx<'_>) -> Finding {
    if !reach(c).families_open && !c.plan.syscalls().sockets.unix {
        return graded(&UNIX_NONE, "AF_UNIX sockets denied (socketpair only)");
    }
    let found = c.view.sockets();
    let of = |k: SocketKind| -> Vec<String> {
        found.iter().filter(|s| s.kind == k).map(|s| s.path.display().to_string()).collect()
    };
    let (engines, agents) = (of(SocketKind::ContainerEngine), of(SocketKind::AgentOrBus));
    if !engines.is_empty() {
        graded(&UNIX_ENGINE, format!("connectable: {}", list(engines, 3)))
    } else if !agents.is_empty() {
        graded(&UNIX_AGENT, format!("connectable: {}", list(agents, 3)))
    } else {
        graded(&UNIX_ALLOWED, "AF_UNIX sockets allowed; none of the listed sockets is connectable here")
    }
}
