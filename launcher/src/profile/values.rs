//! The value syntaxes profiles and flags share: byte sizes (`512M`), destinations (`443`,
//! `10.0.0.0/8:5432`, `udp:[::1]:53`, `api.github.com:443`) and networks (CIDRs, `ipnet`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::merge::replaced;
use super::origin::no_origin;

/// A byte size written as a number or with a binary suffix (`K`, `M`, `G`, `T`; `512M`, `1.5G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Size(pub u64);

no_origin!(Size);
replaced!(Size);

/// Why a text is not a [`Size`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("unknown size suffix `{suffix}` in `{text}` (use K, M, G or T)")]
    Suffix { suffix: String, text: String },
    #[error("`{0}` is not a size (e.g. 512M, 2G, 1048576)")]
    NotANumber(String),
    #[error("size `{0}` must be positive")]
    NotPositive(String),
    #[error("size `{0}` is too large")]
    TooLarge(String),
    /// Found by fuzzing: `.4` would otherwise round down to a limit of zero bytes.
    #[error("size `{0}` is less than one byte")]
    BelowOneByte(String),
}

impl crate::error::Diagnose for SizeError {
    fn hint(&self) -> Option<String> {
        Some("write a byte count or a number with K, M, G or T (512M, 1.5G)".into())
    }
}

impl std::str::FromStr for Size {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            None => (t, 1u64),
            Some((i, _)) => {
                let mult = match t[i..].to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
                    "" => 1,
                    "K" => 1 << 10,
                    "M" => 1 << 20,
                    "G" => 1 << 30,
                    "T" => 1 << 40,
                    other => return Err(SizeError::Suffix { suffix: other.into(), text: s.into() }),
                };
                (t[..i].trim(), mult)
            }
        };
        let value: f64 = num.parse().map_err(|_| SizeError::NotANumber(s.into()))?;
        if !(value.is_finite() && value > 0.0) {
            return Err(SizeError::NotPositive(s.into()));
        }
        let bytes = value * mult as f64;
        if bytes > u64::MAX as f64 {
            return Err(SizeError::TooLarge(s.into()));
        }
        if bytes < 1.0 {
            return Err(SizeError::BelowOneByte(s.into()));
        }
        Ok(Size(bytes as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
        for (unit, mult) in UNITS {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512M\" or a byte count")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).ok().filter(|v| *v > 0).map(Size).ok_or_else(|| E::custom("size must be positive"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A byte count, or a number with a binary suffix K, M, G or T (\"512M\", \"1.5G\")",
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^\\s*[0-9.]+\\s*([KkMmGgTt]([Ii]?[Bb])?)?\\s*$"}
            ]
        })
    }
}

/// Why a text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("`{0}` is not an IP address or CIDR network")]
    NotAnAddress(String),
    #[error("bad prefix length in `{0}`")]
    Prefix(String),
}

impl crate::error::Diagnose for NetError {}

/// A network as profiles write it: `10.0.0.0/8`, `fe80::/10`, or an address alone (the network
/// of that one address).
pub fn parse_net(s: &str) -> Result<IpNet, NetError> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| NetError::NotAnAddress(s.into()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| NetError::Prefix(s.into()))?,
    };
    IpNet::new(addr, prefix).map_err(|_| NetError::Prefix(s.into()))
}

/// A network as profiles and reports write it: an address alone when it is one address, an IPv6
/// network in brackets (so that a port can follow: `[::1]:8080`).
#[derive(Debug, Clone, Copy)]
pub struct NetDisplay<'a>(pub &'a IpNet);

impl fmt::Display for NetDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.0;
        let whole = net.prefix_len() == net.max_prefix_len();
        match (net.addr(), whole) {
            (IpAddr::V6(a), true) => write!(f, "[{a}]"),
            (IpAddr::V6(a), false) => write!(f, "[{a}/{}]", net.prefix_len()),
            (a, true) => write!(f, "{a}"),
            (a, false) => write!(f, "{a}/{}", net.prefix_len()),
        }
    }
}

/// A destination: protocol (TCP unless written `udp:`), port, optionally narrowed to an address
/// or network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub udp: bool,
    pub addr: Option<IpNet>,
    /// A host name (`api.github.com`) or a wildcard (`*.example.com`): the destination is an
    /// address mcp-warden's resolver answered the server for that name. Exclusive with `addr`.
    pub host: Option<String>,
    pub port: u16,
}

/// Why a text is not an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("`{port}` is not a port (1-65535) in `{text}`")]
    Port { port: String, text: String },
    #[error("`{0}`: expected [IPv6]:PORT")]
    Bracket(String),
    #[error("`{0}`: write IPv6 destinations as [ADDR]:PORT")]
    Unbracketed(String),
    #[error(transparent)]
    Net(NetError),
    #[error("{0}, nor a host name")]
    NotAHost(NetError),
}

impl crate::error::Diagnose for EndpointError {
    fn hint(&self) -> Option<String> {
        Some("write PORT, ADDR:PORT, CIDR:PORT, [IPV6]:PORT or HOST:PORT, optionally prefixed with udp:".into())
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    /// `PORT`, `ADDR:PORT`, `CIDR:PORT`, `[V6ADDR]:PORT` or `[V6CIDR]:PORT`, each optionally
    /// prefixed with `tcp:` (the default) or `udp:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (udp, rest) = match s.split_once(':') {
            Some(("udp", rest)) => (true, rest),
            Some(("tcp", rest)) => (false, rest),
            _ => (false, s),
        };
        let mut e = Self::parse_unprefixed(rest, s)?;
        e.udp = udp;
        Ok(e)
    }
}

impl Endpoint {
    fn parse_unprefixed(s: &str, whole: &str) -> Result<Self, EndpointError> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| EndpointError::Port { port: p.into(), text: whole.into() })
        };
        let to = |addr, host, p| Ok(Endpoint { udp: false, addr, host, port: port(p)? });
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, p) = rest.split_once("]:").ok_or_else(|| EndpointError::Bracket(whole.into()))?;
            return to(Some(parse_net(addr).map_err(EndpointError::Net)?), None, p);
        }
        match s.rsplit_once(':') {
            None => to(None, None, s),
            Some((addr, _)) if addr.contains(':') => Err(EndpointError::Unbracketed(whole.into())),
            Some((addr, p)) => match parse_net(addr) {
                Ok(net) => to(Some(net), None, p),
                Err(_) if is_host_name(addr) || is_wildcard(addr) => to(None, Some(addr.to_ascii_lowercase()), p),
                Err(e) => Err(EndpointError::NotAHost(e)),
            },
        }
    }
}

/// A DNS name as RFC 1123 allows it: dot-separated labels of letters, digits and inner hyphens,
/// with at least one letter (so that a mistyped address is not taken for a name).
fn is_host_name(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= 253 && s.bytes().any(|b| b.is_ascii_alphabetic()) && s.split('.').all(label_ok)
}

/// `*.SUFFIX`: every name one or more labels below SUFFIX, which has at least two labels (a
/// wildcard over a whole top-level domain is refused).
fn is_wildcard(s: &str) -> bool {
    s.strip_prefix("*.").is_some_and(|suffix| suffix.contains('.') && is_host_name(suffix))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp {
            f.write_str("udp:")?;
        }
        match (&self.addr, &self.host) {
            (Some(a), _) => write!(f, "{}:{}", NetDisplay(a), self.port),
            (None, Some(h)) => write!(f, "{h}:{}", self.port),
            (None, None) => write!(f, "{}", self.port),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (443), \"ADDR:PORT\" or \"HOST:PORT\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Endpoint, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Endpoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Endpoint".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A TCP port (443), or [udp:|tcp:]ADDR:PORT, CIDR:PORT, [IPV6]:PORT, HOST:PORT (\"127.0.0.1:5432\", \"udp:10.0.0.53:53\", \"api.github.com:443\")",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string"}
            ]
        })
    }
}

/// The profile syntax of a `deny` entry (a network or one address), for serde.
pub(super) struct NetSyntax(pub IpNet);

impl<'de> Deserialize<'de> for NetSyntax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_net(&String::deserialize(d)?).map(NetSyntax).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!("512M".parse::<Size>().unwrap(), Size(512 << 20));
        assert_eq!("2G".parse::<Size>().unwrap(), Size(2 << 30));
        assert_eq!("1.5k".parse::<Size>().unwrap(), Size(1536));
        assert_eq!("64MiB".parse::<Size>().unwrap(), Size(64 << 20));
        assert_eq!("4096".parse::<Size>().unwrap(), Size(4096));
        assert!("12Q".parse::<Size>().is_err());
        assert!("-1M".parse::<Size>().is_err());
        assert!("lots".parse::<Size>().is_err());
        let e = ".4019696".parse::<Size>().unwrap_err();
        assert!(e.to_string().contains("less than one byte"), "fuzzing regression");
        assert_eq!(Size(512 << 20).to_string(), "512M");
    }

    #[test]
    fn endpoints_parse_ports_addresses_and_networks() {
        assert_eq!("443".parse::<Endpoint>().unwrap(), Endpoint { udp: false, addr: None, host: None, port: 443 });
        let e: Endpoint = "udp:10.0.0.53:53".parse().unwrap();
        assert!(e.udp && e.port == 53 && e.to_string() == "udp:10.0.0.53:53");
        assert_eq!("tcp:443".parse::<Endpoint>().unwrap(), "443".parse::<Endpoint>().unwrap());
        let e: Endpoint = "127.0.0.1:5432".parse().unwrap();
        assert_eq!(e.to_string(), "127.0.0.1:5432");
        let e: Endpoint = "10.0.0.0/8:5432".parse().unwrap();
        assert!(e.addr.unwrap().contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        assert!(!e.addr.unwrap().contains(&"11.1.2.3".parse::<IpAddr>().unwrap()));
        let e: Endpoint = "[::1]:8080".parse().unwrap();
        assert_eq!(e.to_string(), "[::1]:8080");
        let e: Endpoint = "udp:[fe80::1/10]:53".parse().unwrap();
        assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e, "prints back to itself");
        assert!("0".parse::<Endpoint>().is_err());
        assert!("70000".parse::<Endpoint>().is_err());
        assert!("::1:80".parse::<Endpoint>().is_err());
        assert_eq!(
            "10.0.0.0/33:1".parse::<Endpoint>().unwrap_err().to_string(),
            "bad prefix length in `10.0.0.0/33`, nor a host name"
        );
        let e: Endpoint = "*.Example.com:443".parse().unwrap();
        assert_eq!((e.host.as_deref(), e.to_string().as_str()), (Some("*.example.com"), "*.example.com:443"));
        assert!("*.com:443".parse::<Endpoint>().is_err(), "not a whole top-level domain");
        assert!("a.*.example.com:443".parse::<Endpoint>().is_err(), "a wildcard is the first label only");
    }

    #[test]
    fn networks_keep_their_written_form() {
        let net = parse_net("10.1.2.3/8").unwrap();
        assert_eq!(NetDisplay(&net).to_string(), "10.1.2.3/8", "host bits are kept, as written");
        assert_eq!(NetDisplay(&parse_net("127.0.0.1").unwrap()).to_string(), "127.0.0.1");
        assert_eq!(NetDisplay(&parse_net("fe80::/10").unwrap()).to_string(), "[fe80::/10]");
        assert_eq!(parse_net("::1/129").unwrap_err(), NetError::Prefix("::1/129".into()));
        assert_eq!(parse_net("nope").unwrap_err().to_string(), "`nope` is not an IP address or CIDR network");
    }
}
