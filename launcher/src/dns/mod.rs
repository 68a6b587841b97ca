//! mcp-warden's own DNS resolver: every query the server sends (UDP or TCP, port 53, to any
//! address) is answered here, in the supervisor.
//!
//! - A name the profile allows (`HOST:PORT`, `*.SUFFIX:PORT`, or any name with `dns = true`) is
//!   resolved upstream (`upstream.rs`) and answered with the records of its CNAME chain
//!   (`reply.rs`); the answer's addresses are pinned (`pins.rs`): open for that name's ports, for
//!   the answer's TTL. The broker lets a connection to a name's destination through only to a
//!   pinned address, so the addresses the server connects to are the ones it was told.
//! - Any other name gets NXDOMAIN and is never sent upstream: a query name carries nothing out.
//! - An answer for a public name that holds a private, loopback, link-local, metadata, CGNAT,
//!   ULA or documentation address, or one of this host's own, is dropped whole (`rebind.rs`),
//!   unless `[network] private-answers` covers it.
//! - Every query is a `dns` audit record.
//! - The addresses /etc/hosts gives the profile's names are pinned for the whole run: the server's
//!   resolver answers those names from the file (`localhost`) without a query.
//!
//! How queries reach it, so that the server's resolver (glibc's, musl's, c-ares', its own),
//! whatever nameserver address it uses, gets its answer from the address it asked:
//! - with the eBPF layer, its socket programs send port 53 to this resolver on the host's loopback
//!   (`loopback.rs`) and rewrite the answer's source back; a query is answered only when the
//!   socket it came from is the server's (`askers.rs`);
//! - without it, the broker moves each socket the server sends DNS on into a network namespace of
//!   the supervisor's (`netns.rs`) where every address is local and this resolver listens on
//!   port 53 (`serve.rs`).

pub mod askers;
pub mod loopback;
pub mod names;
pub mod netns;
pub mod pins;
mod rebind;
pub use rebind::host_addresses;
mod reply;
pub mod serve;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;

use crate::audit::record::{Dns, DnsOutcome, Verdict};
use crate::profile::{IpNet, NetDisplay};
use names::{Names, Opens};
use pins::Pins;
use upstream::Upstream;

/// What the resolver answers, from the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPolicy {
    pub names: Names,
    pub upstream: Upstream,
    /// Ranges a public name's answer may hold (`[network] private-answers`).
    pub private_answers: Vec<IpNet>,
    /// `--mode audit`: refused names and rebinding answers are answered anyway, and recorded.
    pub audit: bool,
}

/// Where the resolver's records go (the supervisor's audit log and stderr).
pub trait Journal: Send + Sync + std::fmt::Debug {
    fn dns(&self, record: Dns);
}

/// How a query came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The resolver of one run.
#[derive(Debug)]
pub struct Resolver {
    policy: DnsPolicy,
    pins: Arc<Pins>,
    journal: Arc<dyn Journal>,
    /// This host's own addresses: a public name may not answer them either.
    host: Vec<IpAddr>,
}

/// One query's outcome, before it becomes a reply and a record.
struct Decided {
    code: ResponseCode,
    records: Vec<hickory_proto::rr::Record>,
    ttl: u32,
    record: Dns,
}

impl Resolver {
    pub fn new(policy: DnsPolicy, pins: Arc<Pins>, journal: Arc<dyn Journal>) -> Resolver {
        Resolver { policy, pins, journal, host: rebind::host_addresses() }
    }

    /// The reply to one query (`None`: not a DNS query at all, dropped).
    pub fn answer(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let udp = transport == Transport::Udp;
        let query = match reply::parse(bytes) {
            Ok(q) => q,
            Err(None) => return None,
            Err(Some(bad)) => {
                let (message, code) = *bad;
                let name = message.queries().first().map(|q| names::normalize(&q.name().to_ascii()));
                self.journal.dns(record(name.unwrap_or_default(), "-", transport, DnsOutcome::Malformed));
                return Some(reply::empty(&message, code, udp));
            }
        };
        let d = self.decide(&query, transport);
        self.journal.dns(d.record);
        Some(reply::reply(&query.message, d.code, d.records, d.ttl, udp))
    }

    /// Records a query left unanswered because its socket's port is shared with a socket that is
    /// not the server's (`askers.rs`): the answer could reach the other.
    pub fn withhold(&self, bytes: &[u8], transport: Transport) {
        let name = reply::parse(bytes).ok().map(|q| (q.name.clone(), q.qtype.to_string()));
        let (name, qtype) = name.unwrap_or_else(|| (String::new(), "-".into()));
        let mut rec = record(name, &qtype, transport, DnsOutcome::Withheld);
        rec.reason = Some("not answered: a socket that is not the server's shares the port it asked from".into());
        rec.verdict = Verdict::Deny { enforced: true };
        self.journal.dns(rec);
    }

    fn decide(&self, q: &reply::Query, transport: Transport) -> Decided {
        let mut rec = record(q.name.clone(), &q.qtype.to_string(), transport, DnsOutcome::Answered);
        let opens = match self.policy.names.lookup(&q.name) {
            Some(opens) => opens,
            None if self.policy.audit => {
                rec.reason = Some("not one of the profile's names (audit mode: answered)".into());
                rec.verdict = Verdict::Deny { enforced: false };
                Vec::new()
            }
            None => {
                rec.outcome = DnsOutcome::Refused;
                rec.reason = Some("not one of the profile's names".into());
                rec.verdict = Verdict::Deny { enforced: true };
                return Decided { code: ResponseCode::NXDomain, records: vec![], ttl: 0, record: rec };
            }
        };
        if !reply::answered_type(q.qtype) {
            rec.outcome = DnsOutcome::Empty;
            return Decided { code: ResponseCode::NoError, records: vec![], ttl: 0, record: rec };
        }
        let message = match self.policy.upstream.query(&q.name, q.qtype) {
            Ok(m) => m,
            Err(why) => {
                rec.outcome = DnsOutcome::Failed;
                rec.reason = Some(why);
                return Decided { code: ResponseCode::ServFail, records: vec![], ttl: 0, record: rec };
            }
        };
        let kept = reply::keep(q.message.queries()[0].name(), q.qtype, message.answers());
        self.admit(q, kept, message.response_code(), opens, rec)
    }

    /// Pins and answers upstream's addresses, unless one of them rebinds the name.
    fn admit(&self, q: &reply::Query, kept: reply::Kept, code: ResponseCode, opens: Opens, mut rec: Dns) -> Decided {
        let rebinding: Vec<(IpAddr, &str)> = match rebind::is_private_name(&q.name) {
            true => vec![],
            false => kept
                .addrs
                .iter()
                .filter(|a| !self.policy.private_answers.iter().any(|n| n.contains(*a)))
                .filter_map(|a| rebind::refused(*a, &self.host).map(|why| (*a, why)))
                .collect(),
        };
        if let Some((addr, why)) = rebinding.first() {
            rec.outcome = DnsOutcome::Rebinding;
            rec.addresses = rebinding.iter().map(|(a, _)| a.to_string()).collect();
            rec.reason = Some(format!(
                "the answer holds {addr} ({why}); to let names answer it: [network] private-answers = [\"{}\"]",
                NetDisplay(&IpNet::from(*addr))
            ));
            rec.verdict = Verdict::Deny { enforced: !self.policy.audit };
            if !self.policy.audit {
                return Decided { code: ResponseCode::ServFail, records: vec![], ttl: 0, record: rec };
            }
        }
        let ttl = pins::clamp(kept.ttl);
        self.pins.pin(&q.name, &kept.addrs, &opens, ttl);
        rec.addresses = kept.addrs.iter().map(ToString::to_string).collect();
        rec.ttl = (!kept.addrs.is_empty()).then_some(ttl.as_secs());
        rec.opens = opens.iter().map(|(p, port)| format!("{p}:{port}")).collect();
        let ttl_max = ttl.as_secs().try_into().unwrap_or(u32::MAX);
        Decided { code, records: kept.records, ttl: ttl_max, record: rec }
    }
}

/// Pins, for the whole run, the addresses /etc/hosts gives the profile's names: the server's own
/// resolver answers those from the file without asking DNS (`localhost`, names an administrator
/// pinned), and the file is the host's, not an answer an attacker could shape.
pub fn pin_hosts_file(names: &Names, pins: &Pins) {
    const RUN: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
    for (addr, name) in hosts_file() {
        if let Some(opens) = names.lookup(&name) {
            pins.pin(&names::normalize(&name), &[addr], &opens, RUN);
        }
    }
}

/// The addresses /etc/hosts gives `name` (`localhost`, names an administrator pinned): the only
/// way a profile's name leads to a loopback or private address, since an answer putting a public
/// name there is dropped ([`rebind`]).
pub fn hosts_file_addresses(hosts: &[(IpAddr, String)], name: &str) -> Vec<IpAddr> {
    let name = names::normalize(name);
    hosts.iter().filter(|(_, n)| names::normalize(n) == name).map(|(a, _)| *a).collect()
}

/// Every `(address, name)` pair of /etc/hosts, in its order.
pub fn hosts_file() -> Vec<(IpAddr, String)> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut pairs = Vec::new();
    for line in text.lines() {
        let mut fields = line.split('#').next().unwrap_or_default().split_whitespace();
        let Some(addr) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        pairs.extend(fields.map(|name| (addr, name.to_string())));
    }
    pairs
}

fn record(name: String, qtype: &str, transport: Transport, outcome: DnsOutcome) -> Dns {
    Dns {
        name,
        qtype: qtype.to_string(),
        transport: if transport == Transport::Udp { "udp" } else { "tcp" }.into(),
        outcome,
        addresses: vec![],
        ttl: None,
        opens: vec![],
        reason: None,
        verdict: Verdict::Allow,
    }
}
