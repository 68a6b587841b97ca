//! The profile schema. Every key is documented in docs/profiles.md; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// One profile file, as written (before `extends` is merged).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// One line saying what the profile is for.
    pub description: Option<String>,
    /// Base profiles merged under this one, in order (embedded names or paths relative to this file).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub extends: Vec<Spanned<String>>,
    /// The server's runtime: its own installation (interpreter prefix, virtualenv, the script's
    /// node_modules or package) is granted read+execute automatically.
    pub runtime: Option<Runtime>,
    #[serde(default)]
    pub filesystem: Filesystem,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub syscalls: Syscalls,
    /// The MCP-aware layer: a section here (even empty) turns it on.
    pub mcp: Option<Mcp>,
    #[serde(default)]
    pub require: Require,
}

/// The MCP-aware layer: mcp-warden proxies the JSON-RPC stream between client and server and
/// polices tool calls. Off unless a profile has this section or a flag asks for it; when off,
/// stdio is not proxied at all.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Mcp {
    /// Tools the model may see and call, by name or glob (`read_*`); empty: every tool.
    #[serde(default)]
    pub allow_tools: Vec<String>,
    /// Tools removed from `tools/list` and refused, by name or glob; wins over `allow-tools`.
    #[serde(default)]
    pub deny_tools: Vec<String>,
    /// Calls per tool and period, `"30/min"` (`s`, `min`, `h`), with a burst of the same size;
    /// `"*"` limits all calls together.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, String>,
    /// Redact secrets from tool results (default true).
    pub redact: Option<bool>,
    /// Extra regular expressions whose matches are redacted from tool results.
    #[serde(default)]
    pub redact_patterns: Vec<String>,
    /// Extra key names (case-insensitive substrings) whose values are redacted.
    #[serde(default)]
    pub redact_keys: Vec<String>,
    /// Replace server error messages and failed tool results with a generic message; the full
    /// text goes to the audit log only (default false).
    pub hide_errors: Option<bool>,
    /// Pin each tool's name, description and schema at the first `tools/list`; a later change
    /// blocks the tool until `mcp-warden pins accept` (default true).
    pub pin_tools: Option<bool>,
    /// Log argument values in the audit log, not only their shape (default false).
    pub log_arguments: Option<bool>,
    /// Constraints on tool arguments beyond the server's schema.
    #[serde(default)]
    pub constraints: Vec<ArgConstraint>,
}

/// A constraint on one argument of one tool.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArgConstraint {
    /// Tool name or glob.
    pub tool: String,
    /// Argument name (a top-level property of the call's arguments).
    pub argument: String,
    /// Longest string allowed.
    pub max_length: Option<usize>,
    /// A regular expression the whole string must match.
    pub pattern: Option<String>,
    /// The only values allowed.
    #[serde(rename = "enum")]
    pub one_of: Option<Vec<String>>,
    /// The argument is a path that must stay under one of these directories (variables such as
    /// `${args:dirs}` allowed); `..` and symlinks are resolved before the check.
    #[serde(default)]
    pub under: Vec<String>,
}

/// Filesystem allow-lists. Paths may use `${VAR}` variables; a trailing `?` marks a path that may be
/// absent on some hosts (it is then skipped and reported by `explain`); any other missing path is
/// an error.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Filesystem {
    /// Read files and list directories beneath these paths.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub read: Vec<Spanned<String>>,
    /// Read, write, create, remove, rename and truncate beneath these paths (not execute).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub write: Vec<Spanned<String>>,
    /// Read and execute beneath these paths.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exec: Vec<Spanned<String>>,
    /// Give the server a private temporary directory: created empty (mode 0700, owned by the
    /// server's user) under the launcher's temporary directory, readable and writable by the
    /// server only, passed as `TMPDIR`, and removed with its contents when the server exits.
    pub private_tmp: Option<bool>,
}

/// Network allow-lists. Without any entry the server gets no network at all.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Network {
    /// Destinations: a TCP port (`443`), `ADDR:PORT` / `CIDR:PORT` (`"127.0.0.1:5432"`), `HOST:PORT`
    /// (`"api.github.com:443"`), or the same prefixed with `udp:` (`"udp:10.0.0.53:53"`). Ports are
    /// enforced by Landlock (TCP); addresses, names and UDP by the connect broker (and the eBPF
    /// layer when it runs).
    #[serde(default)]
    #[schemars(with = "Vec<Endpoint>")]
    pub connect: Vec<Spanned<Endpoint>>,
    /// TCP ports the server may bind (listen on).
    #[serde(default)]
    pub bind: Vec<u16>,
    /// Allow UDP sockets. Landlock has no UDP rules on this kernel generation: with UDP allowed, any
    /// UDP destination is reachable unless the eBPF network layer enforces the allow-list.
    pub udp: Option<bool>,
    /// Allow AF_UNIX sockets (`socket(AF_UNIX)`; `socketpair` is always allowed). Connecting to a
    /// pathname socket is not a Landlock right before ABI 9, so this is a seccomp switch.
    pub unix: Option<bool>,
    /// Addresses or networks (`"127.0.0.0/8"`, `"fe80::/10"`) that a bare-port grant (`443`,
    /// `"udp:53"`) never reaches. Explicit `ADDR:PORT` and `HOST:PORT` entries are not affected.
    /// IPv4-mapped IPv6 destinations are checked as the IPv4 address they carry.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<IpNet>,
    /// Let the server resolve names: UDP and TCP port 53 to the nameservers listed in
    /// /etc/resolv.conf (read at start), nothing else. Implied by any `HOST:PORT` entry.
    pub dns: Option<bool>,
}

/// A destination: protocol (TCP unless written `udp:`), port, optionally narrowed to an address
/// or network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    pub udp: bool,
    pub addr: Option<IpNet>,
    /// A host name (`api.github.com`): the destination is any address the name resolves to when
    /// the server connects. Exclusive with `addr`.
    pub host: Option<String>,
    pub port: u16,
}

/// An IP address with a prefix length (a host address has the full length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Process identity and resource limits.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Process {
    /// User to run the server as, when mcp-warden starts as root (name or numeric uid).
    pub user: Option<String>,
    /// Group to run the server as (default: the user's primary group).
    pub group: Option<String>,
    /// Most processes (and threads) the server tree may have.
    pub max_processes: Option<u64>,
    /// Most open file descriptors per process.
    pub max_open_files: Option<u64>,
    /// Most memory: `"512M"`, `"2G"` or a byte count.
    pub max_memory: Option<Size>,
    /// Largest file the server may write.
    pub max_file_size: Option<Size>,
    /// CPU seconds per process.
    pub max_cpu_time: Option<u64>,
    /// Run the server tree in its own PID namespace under a tiny reaper, so that it cannot see
    /// other processes and dies as a whole with the launcher (default true).
    pub pid_namespace: Option<bool>,
}

/// The server's environment: built from scratch.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Environment {
    /// Variables passed through from the launcher's environment; `PREFIX_*` globs allowed.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub pass: Vec<Spanned<String>>,
    /// Variables set to a value (after `pass`; may use `${VAR}` variables).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

/// The seccomp filter, on top of the documented default deny-set (docs/syscalls.md).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Syscalls {
    /// Syscalls removed from the default deny-set.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
    /// Syscalls added to the deny-set.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<Spanned<String>>,
    /// What a denied syscall does: `errno` (fails with EPERM), `kill` (kills the process), or
    /// `log` (allowed, logged by the kernel's audit: for trying a profile out).
    pub on_violation: Option<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Node,
    Python,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Violation {
    Errno,
    Kill,
    Log,
}

/// How much each layer matters: `required` refuses to start the server if the layer cannot be
/// enforced in full on this host; `best-effort` applies what it can and reports the rest; `off`
/// skips the layer.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Require {
    pub landlock: Option<Level>,
    pub seccomp: Option<Level>,
    /// Resource limits (a process limit that cannot bind, e.g. RLIMIT_NPROC for uid 0 without a
    /// pids cgroup, counts as not enforced).
    pub limits: Option<Level>,
    /// The network allow-list as written: an `ADDR:PORT` entry needs the eBPF layer.
    pub network: Option<Level>,
    /// The PID namespace (needs root or unprivileged user namespaces).
    pub pid_namespace: Option<Level>,
    /// The eBPF layer: audit log of the server tree and in-kernel network address rules (needs
    /// root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN).
    pub monitor: Option<Level>,
    /// The audit log (of the eBPF and MCP layers): required, a log that cannot be written (an
    /// unwritable file, a full disk) refuses the run; best-effort, the run goes on and every
    /// record that could not be written is counted and reported.
    pub audit_log: Option<Level>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Required,
    BestEffort,
    Off,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Required => "required",
            Level::BestEffort => "best-effort",
            Level::Off => "off",
        })
    }
}

/// A byte size written as a number or with a binary suffix (`K`, `M`, `G`, `T`; `512M`, `1.5G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
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
                    other => return Err(format!("unknown size suffix `{other}` in `{s}` (use K, M, G or T)")),
                };
                (t[..i].trim(), mult)
            }
        };
        let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 512M, 2G, 1048576)"))?;
        if !(value.is_finite() && value > 0.0) {
            return Err(format!("size `{s}` must be positive"));
        }
        let bytes = value * mult as f64;
        if bytes > u64::MAX as f64 {
            return Err(format!("size `{s}` is too large"));
        }
        if bytes < 1.0 {
            // found by fuzzing: `.4` would otherwise round down to a limit of zero bytes
            return Err(format!("size `{s}` is less than one byte"));
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

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("bad prefix length in `{s}`"))?
            }
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        match (self.addr, self.prefix == full) {
            (IpAddr::V6(a), true) => write!(f, "[{a}]"),
            (IpAddr::V6(a), false) => write!(f, "[{a}/{}]", self.prefix),
            (a, true) => write!(f, "{a}"),
            (a, false) => write!(f, "{a}/{}", self.prefix),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
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
    fn parse_unprefixed(s: &str, whole: &str) -> Result<Self, String> {
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{p}` is not a port (1-65535) in `{whole}`"))
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, p) = rest.split_once("]:").ok_or_else(|| format!("`{whole}`: expected [IPv6]:PORT"))?;
            return Ok(Endpoint { udp: false, addr: Some(addr.parse()?), host: None, port: port(p)? });
        }
        match s.rsplit_once(':') {
            None => Ok(Endpoint { udp: false, addr: None, host: None, port: port(s)? }),
            Some((addr, _)) if addr.contains(':') => Err(format!("`{whole}`: write IPv6 destinations as [ADDR]:PORT")),
            Some((addr, p)) => match addr.parse::<IpNet>() {
                Ok(net) => Ok(Endpoint { udp: false, addr: Some(net), host: None, port: port(p)? }),
                Err(_) if is_host_name(addr) => {
                    Ok(Endpoint { udp: false, addr: None, host: Some(addr.to_ascii_lowercase()), port: port(p)? })
                }
                Err(e) => Err(format!("{e}, nor a host name")),
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

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.udp {
            f.write_str("udp:")?;
        }
        match (&self.addr, &self.host) {
            (Some(a), _) => write!(f, "{a}:{}", self.port),
            (None, Some(h)) => write!(f, "{h}:{}", self.port),
            (None, None) => write!(f, "{}", self.port),
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
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

impl IpNet {
    /// Does this network contain `ip`?
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
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

/// The JSON Schema of a profile file (for editors: TOML language servers read JSON Schema).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Profile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_json_schema_is_current() {
        let committed = include_str!("../../../docs/profile.schema.json");
        assert!(
            committed == json_schema(),
            "docs/profile.schema.json is stale: run `cargo xtask schema` and commit the result"
        );
    }

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
        assert!(".4019696".parse::<Size>().unwrap_err().contains("less than one byte"), "fuzzing regression");
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
        assert!(e.addr.unwrap().contains("10.1.2.3".parse().unwrap()));
        assert!(!e.addr.unwrap().contains("11.1.2.3".parse().unwrap()));
        let e: Endpoint = "[::1]:8080".parse().unwrap();
        assert_eq!(e.to_string(), "[::1]:8080");
        assert!("0".parse::<Endpoint>().is_err());
        assert!("70000".parse::<Endpoint>().is_err());
        assert!("::1:80".parse::<Endpoint>().is_err());
        assert!("10.0.0.0/33:1".parse::<Endpoint>().is_err());
    }
}
