//! Asking the host's resolvers (or the profile's `dns-upstream`) for a name the profile allows,
//! from the supervisor: UDP first, TCP when the answer is truncated, each server in turn.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RecordType;

use super::reply;

/// How long one server has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The resolvers mcp-warden asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub servers: Vec<SocketAddr>,
}

impl Upstream {
    /// Upstream's response to `name`/`qtype`, or why there is none.
    pub fn query(&self, name: &str, qtype: RecordType) -> Result<Message, String> {
        let id = random_id();
        let bytes = reply::upstream_query(id, name, qtype).ok_or_else(|| format!("`{name}` is not a DNS name"))?;
        let mut why = "no upstream resolver".to_string();
        for server in &self.servers {
            let answer =
                udp(*server, &bytes, id).and_then(|m| if m.truncated() { tcp(*server, &bytes, id) } else { Ok(m) });
            match answer {
                Ok(m) => return Ok(m),
                Err(e) => why = format!("{server}: {e}"),
            }
        }
        Err(why)
    }
}

fn udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let local: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let sock = UdpSocket::bind((local, 0)).map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    sock.send(query).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()).ok_or("no answer")?;
        sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
        // Anything else reaching this port (a late answer, a spoofing attempt) is skipped.
        if let Some(m) = response(&buf[..n], id) {
            return Ok(m);
        }
    }
}

fn tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let mut s = TcpStream::connect_timeout(&server, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long")?;
    s.write_all(&[&len.to_be_bytes()[..], query].concat()).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    response(&buf, id).ok_or_else(|| "a malformed answer".into())
}

fn response(bytes: &[u8], id: u16) -> Option<Message> {
    Message::from_vec(bytes).ok().filter(|m| m.id() == id && m.message_type() == MessageType::Response)
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // Without getrandom (it does not fail on Linux once the pool is ready) the id is the clock's.
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        b = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos()
            as u16)
            .to_ne_bytes();
    }
    u16::from_ne_bytes(b)
}
