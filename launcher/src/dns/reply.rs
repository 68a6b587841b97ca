//! DNS messages: the query the server sent, the answers kept from upstream's response, and the
//! reply the server gets. Only what the profile's policy needs: one question of class IN; A,
//! AAAA and CNAME records (other types of an allowed name get an empty answer, so a record type
//! cannot carry an address the pins do not know, such as the hints of an HTTPS record).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The payload a reply over UDP is held to without EDNS (RFC 1035).
const UDP_PLAIN: usize = 512;
/// What mcp-warden advertises and honours over UDP with EDNS (the DNS flag day's 1232).
const UDP_EDNS: u16 = 1232;

/// A query the resolver can decide: exactly one question, class IN, opcode QUERY.
#[derive(Debug)]
pub struct Query {
    pub message: Message,
    /// The name, lower case, without the root's dot.
    pub name: String,
    pub qtype: RecordType,
}

/// Why a message is not a [`Query`]: the code to answer with, or `None` to drop it (not even a
/// header to answer).
pub fn parse(bytes: &[u8]) -> Result<Query, Option<Box<(Message, ResponseCode)>>> {
    let message = Message::from_vec(bytes).map_err(|_| None)?;
    let code = if message.message_type() != MessageType::Query {
        return Err(None);
    } else if message.op_code() != OpCode::Query {
        ResponseCode::NotImp
    } else if message.queries().len() != 1 {
        ResponseCode::FormErr
    } else if message.queries()[0].query_class() != DNSClass::IN {
        ResponseCode::Refused
    } else {
        let q = &message.queries()[0];
        let (name, qtype) = (super::names::normalize(&q.name().to_ascii()), q.query_type());
        return Ok(Query { message, name, qtype });
    };
    Err(Some(Box::new((message, code))))
}

/// Whether the resolver answers records of this type (others get an empty answer).
pub fn answered_type(qtype: RecordType) -> bool {
    matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::CNAME)
}

/// The records of upstream's answer that answer the question: the CNAME chain from the name, and
/// the addresses of its last link.
#[derive(Debug, Default, PartialEq)]
pub struct Kept {
    pub records: Vec<Record>,
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the kept records.
    pub ttl: u32,
}

/// Keeps the answers that belong to `name`'s chain; a record for any other owner is dropped (an
/// upstream cannot slip in addresses for a name that was not asked).
pub fn keep(name: &Name, qtype: RecordType, answers: &[Record]) -> Kept {
    let mut chain = vec![name.to_lowercase()];
    let mut kept = Kept { ttl: u32::MAX, ..Default::default() };
    // Each pass adds at most one link; a chain cannot be longer than the answer.
    for _ in 0..=answers.len() {
        let last = chain.last().cloned().unwrap_or_else(Name::root);
        let next = answers.iter().find_map(|r| match r.data() {
            RData::CNAME(c) if r.name().to_lowercase() == last && !chain.contains(&c.0.to_lowercase()) => {
                Some((r.clone(), c.0.to_lowercase()))
            }
            _ => None,
        });
        let Some((record, target)) = next else { break };
        kept.ttl = kept.ttl.min(record.ttl());
        kept.records.push(record);
        chain.push(target);
    }
    let last = chain.last().cloned().unwrap_or_else(Name::root);
    for r in answers.iter().filter(|r| r.name().to_lowercase() == last) {
        let addr = match (r.data(), qtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        kept.ttl = kept.ttl.min(r.ttl());
        kept.addrs.push(addr);
        kept.records.push(r.clone());
    }
    if kept.records.is_empty() {
        kept.ttl = 0;
    }
    kept
}

/// The reply to `query` with `code` and `records`, each TTL at most `ttl_max`; over UDP, cut to
/// what the query can take (TC set, no records: the client asks again over TCP).
pub fn reply(query: &Message, code: ResponseCode, records: Vec<Record>, ttl_max: u32, udp: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(query.checking_disabled())
        .set_response_code(code)
        .add_queries(query.queries().iter().cloned());
    for mut r in records {
        let ttl = r.ttl().min(ttl_max);
        r.set_ttl(ttl);
        m.add_answer(r);
    }
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_EDNS);
        m.set_edns(edns);
    }
    let limit = match query.extensions() {
        Some(e) => usize::from(e.max_payload().clamp(UDP_PLAIN as u16, UDP_EDNS)),
        None => UDP_PLAIN,
    };
    let bytes = m.to_vec().unwrap_or_default();
    if udp && bytes.len() > limit {
        m.take_answers();
        m.set_truncated(true);
        return m.to_vec().unwrap_or_default();
    }
    bytes
}

/// An answer without records.
pub fn empty(query: &Message, code: ResponseCode, udp: bool) -> Vec<u8> {
    reply(query, code, Vec::new(), 0, udp)
}

/// The query mcp-warden sends upstream for `name`: its own id, recursion desired, EDNS, and the
/// name in lower case (the case of the server's letters could otherwise carry bits out).
pub fn upstream_query(id: u16, name: &str, qtype: RecordType) -> Option<Vec<u8>> {
    let mut m = Message::new();
    let name = Name::from_ascii(format!("{name}.")).ok()?;
    m.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    m.add_query(hickory_proto::op::Query::query(name, qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_EDNS);
    m.set_edns(edns);
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(owner: &str, ip: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(ip.parse().unwrap())))
    }

    fn cname(owner: &str, target: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    #[test]
    fn the_chain_from_the_name_is_kept_and_nothing_else() {
        let answers = vec![
            cname("api.example.com.", "lb.cdn.example.", 300),
            a("lb.cdn.example.", "93.184.216.34", 60),
            a("lb.cdn.example.", "93.184.216.35", 30),
            a("evil.example.", "10.0.0.1", 60),
            a("api.example.com.", "1.2.3.4", 60),
        ];
        let kept = keep(&name("API.example.com."), RecordType::A, &answers);
        let addrs: Vec<String> = kept.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["93.184.216.34", "93.184.216.35"], "the last link's addresses only");
        assert_eq!(kept.records.len(), 3);
        assert_eq!(kept.ttl, 30);
    }

    #[test]
    fn a_cname_loop_ends() {
        let answers = vec![cname("a.example.", "b.example.", 60), cname("b.example.", "a.example.", 60)];
        let kept = keep(&name("a.example."), RecordType::A, &answers);
        assert!(kept.addrs.is_empty());
        assert_eq!(kept.records.len(), 1);
    }

    #[test]
    fn addresses_of_the_other_family_are_not_kept() {
        let v6 = Record::from_rdata(name("x.example."), 60, RData::AAAA(AAAA("2001:db8::1".parse().unwrap())));
        let kept = keep(&name("x.example."), RecordType::A, &[v6.clone(), a("x.example.", "1.2.3.4", 60)]);
        assert_eq!(kept.addrs, vec!["1.2.3.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(keep(&name("x.example."), RecordType::AAAA, &[v6]).addrs.len(), 1);
    }

    #[test]
    fn queries_are_parsed_and_replies_echo_them() {
        let bytes = upstream_query(7, "Api.Example.com", RecordType::A).unwrap();
        let q = parse(&bytes).unwrap();
        assert_eq!((q.name.as_str(), q.qtype), ("api.example.com", RecordType::A), "lower case upstream");
        let r = Message::from_vec(&reply(
            &q.message,
            ResponseCode::NoError,
            vec![a("api.example.com.", "1.2.3.4", 9999)],
            60,
            true,
        ))
        .unwrap();
        assert_eq!((r.id(), r.response_code(), r.answers().len()), (7, ResponseCode::NoError, 1));
        assert_eq!(r.answers()[0].ttl(), 60, "TTL held to the pin's");
        assert!(parse(&reply(&q.message, ResponseCode::NXDomain, vec![], 0, true)).is_err(), "a response is no query");
        assert!(matches!(parse(b"\x00\x01"), Err(None)));
    }

    #[test]
    fn a_udp_reply_too_long_is_truncated() {
        let bytes = upstream_query(1, "x.example", RecordType::A).unwrap();
        let mut q = parse(&bytes).unwrap().message;
        *q.extensions_mut() = None;
        let many = (0..100).map(|i| a("x.example.", &format!("1.2.3.{i}"), 60)).collect();
        let r = Message::from_vec(&reply(&q, ResponseCode::NoError, many, 60, true)).unwrap();
        assert!(r.truncated());
        assert!(r.answers().is_empty());
    }
}
