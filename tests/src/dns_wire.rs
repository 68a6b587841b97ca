//! DNS on the wire, just enough for the tests: a query for one name, the addresses of an answer.
//! Shared by the stand-in authoritative server and the probe's resolver actions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An A (`qtype` 1) or AAAA (28) query for `name`, with recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = [id.to_be_bytes(), 0x0100u16.to_be_bytes(), 1u16.to_be_bytes(), [0, 0], [0, 0], [0, 0]].concat();
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The question of a query: (id, lower-case name, qtype, question bytes with type and class).
pub fn question(q: &[u8]) -> Option<(u16, String, u16, Vec<u8>)> {
    let id = u16::from_be_bytes([*q.first()?, *q.get(1)?]);
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = usize::from(q[i]);
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    Some((id, labels.join("."), qtype, q.get(12..i + 5)?.to_vec()))
}

/// An answer to `query` with `rcode` and `addrs` (each TTL `ttl`), the name compressed to the question's.
pub fn answer(query: &[u8], rcode: u16, addrs: &[IpAddr], ttl: u32) -> Option<Vec<u8>> {
    let (id, _, _, question) = question(query)?;
    let head = [id.to_be_bytes(), (0x8180 | rcode).to_be_bytes(), 1u16.to_be_bytes()];
    let mut out = [&head.concat()[..], &(addrs.len() as u16).to_be_bytes(), &[0, 0, 0, 0], &question].concat();
    for a in addrs {
        let (kind, data) = match a {
            IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
            IpAddr::V6(v6) => (28u16, v6.octets().to_vec()),
        };
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// An answer to `query` with a CNAME to `target` and `addrs` as `target`'s records, plus one A
/// record for `extra.warden.example` (outside the chain: a resolver must drop it).
pub fn cname_answer(query: &[u8], target: &str, addrs: &[IpAddr], ttl: u32) -> Option<Vec<u8>> {
    let (id, _, _, question) = question(query)?;
    let count = (addrs.len() + 2) as u16;
    let head = [id.to_be_bytes(), 0x8180u16.to_be_bytes(), 1u16.to_be_bytes(), count.to_be_bytes(), [0, 0], [0, 0]];
    let mut out = [&head.concat()[..], &question].concat();
    let name = |n: &str| {
        let mut v = Vec::new();
        for l in n.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    };
    let record = |out: &mut Vec<u8>, owner: &[u8], kind: u16, data: &[u8]| {
        out.extend_from_slice(owner);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    };
    record(&mut out, &[0xc0, 0x0c], 5, &name(target));
    for a in addrs {
        let (kind, data) = match a {
            IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
            IpAddr::V6(v6) => (28u16, v6.octets().to_vec()),
        };
        record(&mut out, &name(target), kind, &data);
    }
    record(&mut out, &name("extra.warden.example"), 1, &[127, 0, 0, 9]);
    Some(out)
}

/// (rcode, addresses) of an answer.
pub fn parse_answer(r: &[u8]) -> Option<(u16, Vec<IpAddr>)> {
    let rcode = u16::from_be_bytes([*r.get(2)?, *r.get(3)?]) & 0xf;
    let count = u16::from_be_bytes([*r.get(6)?, *r.get(7)?]);
    let (_, _, _, question) = question(r)?;
    let mut i = 12 + question.len();
    let mut addrs = Vec::new();
    for _ in 0..count {
        // The owner: a pointer or labels.
        while *r.get(i)? != 0 && r[i] & 0xc0 != 0xc0 {
            i += 1 + usize::from(r[i]);
        }
        i += if r[i] == 0 { 1 } else { 2 };
        let kind = u16::from_be_bytes([*r.get(i)?, *r.get(i + 1)?]);
        let len = usize::from(u16::from_be_bytes([*r.get(i + 8)?, *r.get(i + 9)?]));
        let data = r.get(i + 10..i + 10 + len)?;
        match (kind, len) {
            (1, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (28, 16) => addrs.push(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
            _ => {}
        }
        i += 10 + len;
    }
    Some((rcode, addrs))
}
