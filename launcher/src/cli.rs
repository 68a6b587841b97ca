//! The command line: `run`, `explain`, `score`, `check`, `doctor`, `wrap`, `connect`,
//! `systemd-unit`, `export`, `install`, `pins`, `profiles`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::plan::limits::LIMITS;
use crate::plan::{Layer, RunOptions, UnknownLayer};
use crate::profile::{
    Endpoint, Environment, Filesystem, Level, Mcp, Network, Process, Profile, Require, Size, Sourced,
};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden",
    version,
    about = "Run an MCP server under a least-privilege profile: Landlock, seccomp, no capabilities, limits",
    long_about = None,
    after_help = "stdout is never written by mcp-warden run: it belongs to the server's JSON-RPC stream.\nDocs: docs/profiles.md, docs/syscalls.md, docs/threat-model.md"
)]
pub struct Cli {
    /// More diagnostics on stderr (-v debug, -vv trace); also MCP_WARDEN_LOG=debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server command under a profile: mcp-warden run --profile P [grants] -- CMD ARGS...
    Run(RunArgs),
    /// Print the resolved plan for a command without running it: every path, port, syscall rule,
    /// limit, and what this host will enforce, layer by layer.
    Explain(RunArgs),
    /// Score how exposed a server is under a profile, 0 (nothing) to 10 (everything), on
    /// systemd-analyze security's scale: the profile with every layer available, and the plan on
    /// this host. Each row says what lowers it (docs/score.md).
    Score(ScoreArgs),
    /// Validate profile files or embedded profile names.
    Check {
        #[arg(required = true, value_name = "PROFILE")]
        profiles: Vec<String>,
    },
    /// What this host supports: Landlock ABI, seccomp, namespaces, cgroups, BTF, privileges.
    Doctor,
    /// Rewrite an MCP client config (Claude Desktop/Code, Cursor `mcpServers`; VS Code `servers`)
    /// so every stdio server runs under mcp-warden with a matching profile. Shows a diff unless
    /// --write; --undo restores the original.
    Wrap {
        /// The client's configuration file; without one, every config of the clients this user
        /// has (Claude Desktop, Claude Code, Cursor, VS Code, Codex, Zed) that exists.
        config: Option<PathBuf>,
        /// Apply the change (the original bytes are kept in mcp-warden's state directory).
        #[arg(long, conflicts_with = "undo")]
        write: bool,
        /// Restore the original bytes that --write kept.
        #[arg(long)]
        undo: bool,
        /// Start unknown servers in learning mode (`run --learn NAME`, NAME from the entry's
        /// name): use them as usual, then `mcp-warden learn show NAME` and `learn accept NAME`.
        #[arg(long, conflicts_with = "undo")]
        learn: bool,
    },
    /// Learning mode's drafts: `list` the names with sessions, `show NAME` the drafted profile
    /// (and what was refused), `accept NAME` writes it and points client configs at it.
    Learn {
        #[command(subcommand)]
        command: LearnCommand,
    },
    /// Bridge this process's stdin/stdout to a socket-activated server (its systemd socket unit
    /// starts one sandboxed server per connection): NAME (/run/mcp-warden/NAME.sock) or a path.
    /// Use it as the command in a client config.
    Connect {
        #[arg(value_name = "NAME|SOCKET")]
        target: String,
    },
    /// Write systemd units for one server: mcp-warden systemd-unit --name NAME [options] --
    /// [run arguments: --profile P, grants] -- CMD ARGS...
    SystemdUnit(UnitArgs),
    /// What the container runtime and the kubelet can enforce of a plan, in their formats: the
    /// Localhost seccomp profile (--format seccomp), or a restricted Pod running the server under
    /// mcp-warden with its NetworkPolicy (--format kubernetes). docs/deploy.md#kubernetes
    Export(ExportArgs),
    /// Copy this mcp-warden binary to PATH (the exported Pod's initContainer).
    Install {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Print the man page (roff) or a shell completion script (for packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_parser = ["man", "bash", "zsh", "fish", "audit-schema"])]
        what: String,
    },
    /// Tool pins of the MCP layer: list servers with changed tools, accept changes.
    Pins {
        #[command(subcommand)]
        command: PinsCommand,
    },
    /// The embedded profiles.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
}

#[derive(Debug, Args)]
pub struct UnitArgs {
    /// The server's name: units mcp-warden-NAME.socket and mcp-warden-NAME@.service (or
    /// mcp-warden-NAME.service with --listen), arguments in CONFIG_DIR/NAME.args.
    #[arg(long)]
    pub name: String,
    /// Where to write the files.
    #[arg(long, default_value = ".")]
    pub output: PathBuf,
    /// The mcp-warden binary the units run.
    #[arg(long, default_value = "/usr/bin/mcp-warden")]
    pub binary: PathBuf,
    /// Where the installed argument and environment files live.
    #[arg(long, default_value = "/etc/mcp-warden")]
    pub config_dir: PathBuf,
    /// The user the server runs as (added as --user unless the arguments name one).
    #[arg(long, default_value = "mcp-warden")]
    pub server_user: String,
    /// The user who may connect to the socket (the desktop user running the client).
    #[arg(long, default_value = "root")]
    pub socket_user: String,
    /// An HTTP-transport server listening on PORT: a long-running service allowed to bind that
    /// port only, instead of a socket-activated stdio server.
    #[arg(long, value_name = "PORT")]
    pub listen: Option<u16>,
    /// The `run` arguments: profile, grants, `--`, the server command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "RUN ARGS")]
    pub run_args: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum LearnCommand {
    /// The names with recorded sessions.
    List,
    /// The profile drafted from NAME's sessions, what they touched that it does not grant, and the
    /// difference from the profile accepted before.
    Show { name: String },
    /// Write the drafted profile to $XDG_CONFIG_HOME/mcp-warden/profiles/NAME.toml and point the
    /// client configs' entries learning as NAME at it (the CONFIGs given, or every config of the
    /// clients this user has).
    Accept {
        name: String,
        #[arg(value_name = "CONFIG")]
        configs: Vec<PathBuf>,
    },
    /// Delete NAME's recorded sessions.
    Forget { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PinsCommand {
    /// Every pinned server, with the tools whose definition changed.
    List,
    /// Accept the changed definitions of SERVER's tools (all of them, or the TOOLs named).
    Accept {
        /// The server, as `pins list` names it.
        server: String,
        tools: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the embedded profiles.
    List,
    /// Print an embedded profile's TOML.
    Show { name: String },
    /// Print the JSON Schema of profile files (for editors; also docs/profile.schema.json).
    Schema,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Embedded profile name or path to a TOML profile.
    #[arg(short, long, default_value = "strict", value_name = "NAME|PATH")]
    pub profile: String,
    /// Read every other argument (profile, grants, `--`, the command) from FILE, one per line;
    /// empty lines and `#` comments are skipped. For systemd units.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "command"])]
    pub args_file: Option<PathBuf>,
    #[command(flatten)]
    pub grants: GrantArgs,
    /// The server command and its arguments (after `--`).
    #[arg(last = true, required_unless_present = "args_file", value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A Pod and its NetworkPolicy (and CiliumNetworkPolicy with --cilium), as a YAML stream.
    Kubernetes,
    /// The OCI / Kubernetes Localhost seccomp profile (JSON).
    Seccomp,
}

/// `export`: `run`'s profile, grants and command, and where the Pod gets its pieces.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "kubernetes")]
    pub format: ExportFormat,
    /// The Pod's and the policies' name.
    #[arg(long, default_value = "mcp-server")]
    pub name: String,
    /// The image holding the server (its command as given after `--`).
    #[arg(long, default_value = "IMAGE-WITH-THE-SERVER")]
    pub image: String,
    /// The image holding a static mcp-warden at /mcp-warden, which the initContainer installs.
    #[arg(long, default_value = concat!("mcp-warden:", env!("CARGO_PKG_VERSION")))]
    pub warden_image: String,
    /// The seccomp profile's path under the kubelet's seccomp directory [default: mcp-warden/NAME.json]
    #[arg(long)]
    pub seccomp_path: Option<String>,
    /// Also write a CiliumNetworkPolicy that allows the profile's host names (toFQDNs).
    #[arg(long)]
    pub cilium: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `score`: `run`'s profile, grants and command (optional), and the options of a CI gate.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A profile file, instead of --profile.
    #[arg(value_name = "PROFILE.toml", conflicts_with = "profile")]
    pub file: Option<String>,
    /// Embedded profile name or path to a TOML profile.
    #[arg(short, long, default_value = "strict", value_name = "NAME|PATH")]
    pub profile: String,
    #[command(flatten)]
    pub grants: GrantArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the score on this host is above N (0-10).
    #[arg(long, value_name = "N", value_parser = crate::score::Score::parse)]
    pub threshold: Option<crate::score::Score>,
    /// Exit 1 when the profile's score rose above its entry in FILE, or triggers a floor the entry
    /// does not list (a JSON object: profile -> {"score": N, "floors": [ids]}).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: the increase allowed (default 0).
    #[arg(long, value_name = "N", requires = "baseline", value_parser = crate::score::Score::parse)]
    pub max_increase: Option<crate::score::Score>,
    /// With --baseline: write this profile's entry into FILE instead of comparing.
    #[arg(long, requires = "baseline", conflicts_with = "max_increase")]
    pub update_baseline: bool,
    /// Weights that replace the shipped ones: a TOML file with a [weights] table of row ids (0
    /// skips a row).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The server command and its arguments (after `--`); without one the plan is resolved for
    /// `true`, and grants derived from the server's arguments are missing.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Grants (on top of the profile; repeatable)")]
pub struct GrantArgs {
    /// Allow reading files and listing directories beneath PATH.
    #[arg(long, value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,
    /// Allow reading and writing beneath PATH (not executing).
    #[arg(long, value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Allow reading and executing beneath PATH.
    #[arg(long, value_name = "PATH")]
    pub allow_exec: Vec<PathBuf>,
    /// Allow TCP connections to PORT (any address outside the profile's `deny`), ADDR:PORT or HOST:PORT
    /// (addresses and names are checked by the network broker); `udp:` for UDP.
    #[arg(long, value_name = "[ADDR|HOST:]PORT")]
    pub allow_connect: Vec<Endpoint>,
    /// Allow binding (listening on) TCP PORT.
    #[arg(long, value_name = "PORT")]
    pub allow_bind: Vec<u16>,
    /// Pass the launcher's NAME (or PREFIX_*) environment variable to the server.
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Set an environment variable for the server.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub set_env: Vec<(String, String)>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Run the server as USER (when started as root).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run the server with GROUP (default: the user's primary group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Override a layer's requirement: LAYER=required|best-effort|off
    /// (layers: landlock, seccomp, limits, network, pid-namespace, monitor).
    #[arg(long, value_name = "LAYER=LEVEL", value_parser = parse_requirement)]
    pub require: Vec<(Layer, Level)>,
    /// enforce (default), or audit: log what would be denied and deny nothing (network and
    /// syscall rules log instead of refusing; Landlock is off and every open is logged with the
    /// verdict the allow-list would give). For trying a profile out.
    #[arg(long, value_name = "MODE", default_value = "enforce", value_parser = ["enforce", "audit"])]
    pub mode: String,
    /// Where the audit log goes: a file (appended), `-` for stderr, `journal` for the systemd
    /// journal (structured fields), `journal,PATH` for both [default: the journal under systemd,
    /// else $XDG_STATE_HOME/mcp-warden/audit/<profile>-<program>.jsonl].
    #[arg(long, value_name = "PATH|-|journal")]
    pub audit_log: Option<String>,
    /// Size of the eBPF ring buffer events pass through (a power of two, at least 4K); events that
    /// do not fit are counted as dropped [default: 4M].
    #[arg(long, value_name = "SIZE")]
    pub audit_buffer: Option<Size>,
    /// What the eBPF layer records. `tree` (default): the process tree (exec, fork, exit) and every
    /// network operation its socket programs decide, at no cost per syscall. `full`: also every
    /// open, failed exec, per-process syscall counts and the file calls Landlock or the filesystem
    /// view refused; it attaches the per-syscall tracepoints, which slow every process of the
    /// host while a `full` server runs (see docs/benchmarks.md).
    #[arg(long, value_name = "LEVEL", default_value = "tree", value_parser = ["tree", "full"])]
    pub monitor_level: String,
    /// Seconds the server has to exit after SIGTERM/SIGINT/SIGHUP was forwarded to it, or after its
    /// client went away, before its whole process tree is killed [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Turn on the MCP-aware layer (proxy the JSON-RPC stream and police tool calls); also on with
    /// an [mcp] profile section or any of the flags below.
    #[arg(long)]
    pub mcp: bool,
    /// MCP layer: only these tools (name or glob) are shown and callable.
    #[arg(long, value_name = "TOOL")]
    pub allow_tool: Vec<String>,
    /// MCP layer: hide and refuse these tools (name or glob).
    #[arg(long, value_name = "TOOL")]
    pub deny_tool: Vec<String>,
    /// MCP layer: at most N calls per period for TOOL (name, glob, or `*` for all calls together),
    /// e.g. `read_file=30/min`.
    #[arg(long, value_name = "TOOL=N/PERIOD", value_parser = parse_rate_limit)]
    pub rate_limit: Vec<(String, String)>,
    /// MCP layer: do not redact secrets from tool results.
    #[arg(long)]
    pub no_redact: bool,
    /// MCP layer: replace server errors sent to the client with a generic message (the full text
    /// goes to the audit log).
    #[arg(long)]
    pub hide_errors: bool,
    /// MCP layer: let the server ask the client's model for completions (sampling) during a
    /// client request.
    #[arg(long)]
    pub allow_sampling: bool,
    /// Learning mode: run on the profile plus a safe baseline (the home's configuration and caches
    /// readable, the server's path arguments writable, any network destination; never a secret or
    /// a persistence location) and record what the server uses under NAME; `mcp-warden learn show
    /// NAME` drafts the profile.
    #[arg(long, value_name = "NAME")]
    pub learn: Option<String>,
    /// Explain file and exec refusals without privileges too: every file call the server makes
    /// is handed to the supervisor, which tells each one the grants refuse (stderr, audit log, the
    /// tool call's result with the MCP layer) and lets the rest go on. Costs a round trip per
    /// open (docs/benchmarks.md); as root the eBPF layer explains them at no such cost.
    #[arg(long)]
    pub explain_denials: bool,
}

/// The resource limits, one flag per row of [`LIMITS`] (`--max-memory 512M`).
#[derive(Debug, Clone, Default)]
pub struct LimitArgs {
    /// `(profile key, value)` of each limit given.
    pub given: Vec<(&'static str, u64)>,
}

impl FromArgMatches for LimitArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = LIMITS.iter().filter_map(|l| Some((l.key, *m.get_one::<u64>(l.key)?))).collect();
        Ok(LimitArgs { given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for LimitArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for l in &LIMITS {
            let unit = l.unit;
            cmd = cmd.arg(
                Arg::new(l.key)
                    .long(l.key)
                    .value_name(unit.value_name())
                    .help(l.help)
                    .value_parser(move |s: &str| unit.parse(s)),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// A command-line value that is not what its flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("expected {expected}, got `{got}`")]
    Form { expected: &'static str, got: String },
    #[error("unknown level `{0}` (required, best-effort or off)")]
    Level(String),
    #[error(transparent)]
    Layer(#[from] UnknownLayer),
    /// The MCP layer's own message for a rate it cannot read.
    #[error("{0}")]
    Rate(String),
}

impl crate::error::Diagnose for ArgError {}

fn split_pair<'a>(s: &'a str, expected: &'static str) -> Result<(&'a str, &'a str), ArgError> {
    s.split_once('=').ok_or_else(|| ArgError::Form { expected, got: s.into() })
}

/// `TOOL=N/PERIOD`, checked here and kept as written (the profile's `rate-limits` syntax).
fn parse_rate_limit(s: &str) -> Result<(String, String), ArgError> {
    let (tool, rate) = s.rsplit_once('=').ok_or_else(|| ArgError::Form { expected: "TOOL=N/PERIOD", got: s.into() })?;
    rate.parse::<crate::mcp::policy::Rate>().map_err(|e| ArgError::Rate(e.to_string()))?;
    Ok((tool.to_string(), rate.to_string()))
}

impl GrantArgs {
    /// The grants as a profile layer (each value's origin is its flag), to lay over the profile
    /// with [`crate::profile::LoadedProfile::overlay`]; and the options that are not profile keys.
    pub fn into_layer(self) -> (Profile, RunOptions) {
        let paths = |flag: &'static str, list: Vec<PathBuf>| list.into_iter().map(|p| Sourced::flag(flag, p)).collect();
        let mut process = Process { user: self.user, group: self.group, ..Default::default() };
        for (key, value) in self.limits.given {
            if let Some(l) = LIMITS.iter().find(|l| l.key == key) {
                (l.set)(&mut process, value);
            }
        }
        let mut require = Require::default();
        for (layer, level) in self.require {
            *layer.requirement(&mut require) = Some(level);
        }
        let layer = Profile {
            filesystem: Filesystem {
                read: paths("--allow-read", self.allow_read),
                write: paths("--allow-write", self.allow_write),
                exec: paths("--allow-exec", self.allow_exec),
                private_tmp: None,
            },
            network: Network {
                connect: self.allow_connect.into_iter().map(|e| Sourced::flag("--allow-connect", e)).collect(),
                bind: self.allow_bind,
                ..Default::default()
            },
            process,
            environment: Environment {
                pass: self.pass_env.into_iter().map(|n| Sourced::flag("--pass-env", n)).collect(),
                set: self.set_env.into_iter().map(|(k, v)| (k, Sourced::flag("--set-env", v))).collect(),
            },
            mcp: (self.mcp
                || !self.allow_tool.is_empty()
                || !self.deny_tool.is_empty()
                || !self.rate_limit.is_empty()
                || self.no_redact
                || self.hide_errors
                || self.allow_sampling)
                .then(|| Mcp {
                    allow_tools: self.allow_tool,
                    deny_tools: self.deny_tool,
                    rate_limits: self.rate_limit.into_iter().collect(),
                    redact: self.no_redact.then_some(false),
                    hide_errors: self.hide_errors.then_some(true),
                    sampling: self.allow_sampling.then_some(true),
                    ..Default::default()
                }),
            require,
            ..Default::default()
        };
        let options = RunOptions {
            audit_mode: self.mode == "audit",
            audit_log: self.audit_log,
            audit_buffer: self.audit_buffer,
            monitor_full: self.monitor_level == "full",
            stop_timeout: self.stop_timeout,
            learn: self.learn,
            explain_denials: self.explain_denials,
            args_file: None,
        };
        (layer, options)
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), ArgError> {
    split_pair(s, "NAME=VALUE").map(|(k, v)| (k.to_string(), v.to_string()))
}

fn parse_requirement(s: &str) -> Result<(Layer, Level), ArgError> {
    let (layer, level) = split_pair(s, "LAYER=LEVEL")?;
    let level = match level {
        "required" => Level::Required,
        "best-effort" => Level::BestEffort,
        "off" => Level::Off,
        other => return Err(ArgError::Level(other.into())),
    };
    Ok((layer.parse()?, level))
}
