//! The profile schema: one layer of configuration, as a profile file writes it or as the command
//! line grants it, and what layers merge into. Every key is documented in docs/profiles.md; keep
//! the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::merge::{layer, replaced};
use super::origin::{Sourced, no_origin};
use super::values::{Endpoint, NetSyntax, Size};

// One type for every layer of configuration: a profile file as written, the command line's
// grants, and the merge of a profile's whole chain with them.
/// One profile file, as written (before `extends` is merged).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// One line saying what the profile is for.
    pub description: Option<String>,
    /// Base profiles merged under this one, in order (embedded names or paths relative to this file).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub extends: Vec<Sourced<String>>,
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
    /// Tools whose annotations say they may destroy data (`destructiveHint`, true when missing,
    /// unless `readOnlyHint`): `"allow"` (default) or `"deny"` (hidden and refused).
    pub destructive: Option<Permit>,
    /// Tools whose annotations say they reach outside the machine (`openWorldHint`, true when
    /// missing): `"allow"` (default) or `"deny"` (hidden and refused).
    pub open_world: Option<Permit>,
    /// Hide and refuse tools that carry no `annotations` at all (default false).
    pub require_annotations: Option<bool>,
    /// Make annotations true: while a call to a read-only tool is in flight the server's writes
    /// are refused, and while a call to a closed-world tool is in flight its new connections are
    /// (default true).
    pub enforce_annotations: Option<bool>,
    /// Directories a read-only tool may still create and write files in (caches, logs); they
    /// must be inside the filesystem's write grants.
    #[serde(default)]
    pub scratch: Vec<String>,
    /// Let the server ask the client's model for completions (`sampling/createMessage`), during
    /// a call of the client's (default false: refused and logged).
    pub sampling: Option<bool>,
}

/// `"allow"` or `"deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Permit {
    Allow,
    Deny,
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
    pub read: Vec<Sourced<PathBuf>>,
    /// Read, write, create, remove, rename and truncate beneath these paths (not execute).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub write: Vec<Sourced<PathBuf>>,
    /// Read and execute beneath these paths.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exec: Vec<Sourced<PathBuf>>,
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
    pub connect: Vec<Sourced<Endpoint>>,
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
    #[serde(default, deserialize_with = "nets")]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<Sourced<IpNet>>,
    /// Let the server resolve every name. Its DNS (UDP and TCP port 53, to any address) is
    /// answered by mcp-warden, which resolves upstream and drops answers that rebind a public name
    /// to a private address. Without it, a `HOST:PORT` entry lets the server resolve its names only
    /// (and `*.SUFFIX:PORT` every name below SUFFIX); any other name gets NXDOMAIN.
    pub dns: Option<bool>,
    /// The resolvers mcp-warden asks for the server's names (`"ADDR"` or `"ADDR:PORT"`); default:
    /// the nameservers of /etc/resolv.conf, read at start.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub dns_upstream: Vec<Sourced<String>>,
    /// Ranges a public name's answer may hold although they are private, loopback, link-local,
    /// metadata, CGNAT or ULA addresses (an answer holding one otherwise is dropped: DNS
    /// rebinding). Names under `.internal`, `.local`, `.lan`, `.home.arpa` and single labels may
    /// answer any address.
    #[serde(default, deserialize_with = "nets")]
    #[schemars(with = "Vec<String>")]
    pub private_answers: Vec<Sourced<IpNet>>,
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
    pub pass: Vec<Sourced<String>>,
    /// Variables set to a value (after `pass`; may use `${VAR}` variables).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub set: BTreeMap<String, Sourced<String>>,
}

/// The seccomp filter, on top of the documented default deny-set (docs/syscalls.md).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Syscalls {
    /// Syscalls removed from the default deny-set.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Sourced<String>>,
    /// Syscalls added to the deny-set.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<Sourced<String>>,
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
    /// The filesystem view: a mount namespace where everything is read-only and `nosuid`, the
    /// write grants writable and `noexec` (needs root or unprivileged user namespaces). It closes
    /// what Landlock does not see: chmod/chown/utimes/xattrs outside the write grants, and the
    /// dynamic loader or `/proc/self/fd` running a file the server wrote.
    pub fs_view: Option<Level>,
    /// The hidden root, on top of the filesystem view: the server's `/` is a read-only tmpfs that
    /// holds only the granted paths (bound with the view's flags), the
    /// symlinks on the way to them and the host's `/proc`; `stat`, `readlink`, `inotify` and
    /// every other lookup of a path outside the grants answer ENOENT. Needs the view's mount
    /// namespace; best-effort by default.
    pub fs_hide: Option<Level>,
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

no_origin!(Runtime, Violation, Level, Permit);
replaced!(Runtime, Violation, Level, Permit);

layer!(Profile { description, extends, runtime, filesystem, network, process, environment, syscalls, mcp, require });
layer!(Mcp {
    allow_tools,
    deny_tools,
    rate_limits,
    redact,
    redact_patterns,
    redact_keys,
    hide_errors,
    pin_tools,
    log_arguments,
    constraints,
    destructive,
    open_world,
    require_annotations,
    enforce_annotations,
    scratch,
    sampling
});
layer!(ArgConstraint { tool, argument, max_length, pattern, one_of, under });
layer!(Filesystem { read, write, exec, private_tmp });
layer!(Network { connect, bind, udp, unix, deny, dns, dns_upstream, private_answers });
layer!(Process { user, group, max_processes, max_open_files, max_memory, max_file_size, max_cpu_time, pid_namespace });
layer!(Environment { pass, set });
layer!(Syscalls { allow, deny, on_violation });
layer!(Require { landlock, seccomp, limits, network, pid_namespace, fs_view, fs_hide, monitor, audit_log });

/// `deny` entries: networks in the profile syntax, each with its place.
fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Sourced<IpNet>>, D::Error> {
    let list = Vec::<Sourced<NetSyntax>>::deserialize(d)?;
    Ok(list.into_iter().map(|n| Sourced { value: n.value.0, origin: n.origin }).collect())
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
}
