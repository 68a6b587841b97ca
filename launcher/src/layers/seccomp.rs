//! The seccomp layer: the default deny-set as data, argument rules (clone namespace flags, TTY
//! injection ioctls, personality, socket families), compiled once by seccompiler before the fork.
//!
//! The filter is a deny-list over an allow-all default: MCP servers are arbitrary Node, Python or
//! native programs, so an allow-list would break them on every runtime upgrade; what they never
//! need is the kernel attack surface below. docs/syscalls.md gives the reason for each entry.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule, TargetArch,
};
use syscalls::Sysno;

use crate::profile::Violation;

/// The default deny-set: `(syscall, reason)`. Names missing on an architecture are skipped.
pub const DEFAULT_DENY: &[(&str, &str)] = &[
    (
        "io_uring_setup",
        "io_uring: a second syscall interface that bypasses seccomp argument checks; frequent kernel CVEs",
    ),
    ("io_uring_enter", "io_uring"),
    ("io_uring_register", "io_uring"),
    ("bpf", "loading eBPF programs and maps: kernel attack surface, reads kernel memory with privileges"),
    ("perf_event_open", "performance counters: side channels and a long CVE history"),
    ("ptrace", "debugging other processes: read their memory, inject code"),
    ("process_vm_readv", "reads another process's memory directly"),
    ("process_vm_writev", "writes another process's memory directly"),
    ("pidfd_getfd", "steals a file descriptor from another process"),
    ("kcmp", "compares kernel objects of other processes (an information leak used in exploits)"),
    ("keyctl", "kernel keyrings hold other sessions' secrets; frequent CVEs"),
    ("add_key", "kernel keyrings"),
    ("request_key", "kernel keyrings"),
    ("userfaultfd", "stalls kernel page faults at will: the classic race-exploit primitive"),
    ("kexec_load", "replaces the running kernel"),
    ("kexec_file_load", "replaces the running kernel"),
    ("init_module", "loads kernel modules"),
    ("finit_module", "loads kernel modules"),
    ("delete_module", "unloads kernel modules"),
    ("mount", "changes the mount table (escapes Landlock's view of the filesystem)"),
    ("umount2", "changes the mount table"),
    ("pivot_root", "changes the root filesystem"),
    ("chroot", "changes the root directory (a confused-deputy tool with setuid programs)"),
    ("move_mount", "new mount API"),
    ("open_tree", "new mount API"),
    ("fsopen", "new mount API: filesystem contexts parse attacker-controlled options in the kernel"),
    ("fsmount", "new mount API"),
    ("fsconfig", "new mount API"),
    ("fspick", "new mount API"),
    ("mount_setattr", "new mount API"),
    ("unshare", "new namespaces: user namespaces expose kernel code normally reserved for root"),
    ("setns", "joins other namespaces"),
    ("swapon", "system administration"),
    ("swapoff", "system administration"),
    ("reboot", "system administration"),
    ("acct", "system administration"),
    ("quotactl", "system administration"),
    ("quotactl_fd", "system administration"),
    ("settimeofday", "changes the system clock"),
    ("clock_settime", "changes the system clock"),
    ("clock_adjtime", "changes the system clock"),
    ("adjtimex", "changes the system clock"),
    ("syslog", "reads the kernel log (kernel addresses)"),
    ("vhangup", "hangs up the terminal"),
    ("lookup_dcookie", "obsolete profiling interface"),
    ("uselib", "obsolete a.out loader"),
    ("nfsservctl", "obsolete"),
    ("modify_ldt", "16-bit segments: old exploit primitive, unused by modern programs"),
    ("iopl", "raw I/O port access"),
    ("ioperm", "raw I/O port access"),
    ("open_by_handle_at", "opens files by handle, bypassing path checks (the Shocker container escape)"),
    ("name_to_handle_at", "the other half of open_by_handle_at"),
    ("fanotify_init", "watches the whole filesystem"),
    ("process_madvise", "acts on another process's memory"),
    (
        "memfd_create",
        "anonymous files: code written into one runs through /proc/self/fd or the dynamic loader, where Landlock's exec rights and noexec mounts never look (Node and CPython do not use it)",
    ),
];

/// Calls that set a file's mode, and which argument holds it: setting S_ISUID or S_ISGID is
/// refused on every path, granted or not (a root server without a user switch could otherwise
/// make any file it may write a setuid-root program; Landlock has no right for modes).
const MODE_ARGUMENT: &[(Sysno, u8)] = &[
    (Sysno::chmod, 1),
    (Sysno::fchmod, 1),
    (Sysno::fchmodat, 2),
    (Sysno::fchmodat2, 2),
    (Sysno::creat, 1),
    (Sysno::mknod, 1),
    (Sysno::mknodat, 2),
];

/// Calls that create a file with a mode when their flags say so: `(syscall, flags arg, mode arg)`.
const CREATE_MODE_ARGUMENT: &[(Sysno, u8, u8)] = &[(Sysno::open, 1, 2), (Sysno::openat, 2, 3)];

/// The mode bits no server may set.
const PRIVILEGE_BITS: &[u64] = &[libc::S_ISUID as u64, libc::S_ISGID as u64];

/// The flags that make `open` use its mode argument: `O_CREAT`, and `O_TMPFILE` without the
/// `O_DIRECTORY` bit it shares.
const CREATE_FLAGS: &[u64] = &[libc::O_CREAT as u64, (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64];

/// Answered ENOSYS (the caller falls back to a call the filter can read): `clone3` (its flags are
/// in memory) and `openat2` (its mode is in memory, `struct open_how`).
pub(crate) const ENOSYS: &[Sysno] = &[Sysno::clone3, Sysno::openat2];

/// `clone` flags that create namespaces (`CLONE_NEWTIME` is a clone3/unshare-only flag: in
/// `clone`'s first argument that bit is part of the exit signal).
pub(crate) const CLONE_NS_FLAGS: &[(u64, &str)] = &[
    (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
    (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
    (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
    (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
    (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
    (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
    (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
];

/// TTY ioctls that push input into the terminal (command injection into the user's shell).
#[allow(clippy::unnecessary_cast)] // an int on musl, an unsigned long on glibc
pub(crate) const DENIED_IOCTLS: &[(u64, &str)] =
    &[(libc::TIOCSTI as u64, "TIOCSTI"), (libc::TIOCLINUX as u64, "TIOCLINUX")];

/// The personality values a program may set: the default and the query value.
const ALLOWED_PERSONALITIES: &[u64] = &[0, 0xffff_ffff];

/// One comparison of a syscall argument: the data both the compiled filter and the exported
/// profile are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCmp {
    pub arg: u8,
    /// Only the low 32 bits are compared (the argument is an `int` to the kernel).
    pub dword: bool,
    pub op: CmpOp,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// A rule: every comparison holds. A call is denied when any of its rules holds.
pub type Rule = Vec<ArgCmp>;

impl ArgCmp {
    pub fn dword(arg: u8, op: CmpOp, value: u64) -> ArgCmp {
        ArgCmp { arg, dword: true, op, value }
    }

    pub fn qword(arg: u8, op: CmpOp, value: u64) -> ArgCmp {
        ArgCmp { arg, dword: false, op, value }
    }

    fn condition(&self) -> Result<Cond, seccompiler::BackendError> {
        let op = match self.op {
            CmpOp::Eq => Op::Eq,
            CmpOp::Ne => Op::Ne,
            CmpOp::Ge => Op::Ge,
            CmpOp::MaskedEq(mask) => Op::MaskedEq(mask),
        };
        Cond::new(self.arg, if self.dword { Len::Dword } else { Len::Qword }, op, self.value)
    }
}

/// S_ISUID and S_ISGID in a mode argument deny the call; for `open`/`openat` only when the flags
/// make the kernel use the mode (without them the argument is whatever the caller's register held).
fn privilege_bit_rules() -> impl Iterator<Item = (Sysno, Vec<Rule>)> {
    let bit = |arg: u8, b: u64| ArgCmp::dword(arg, CmpOp::MaskedEq(b), b);
    let modes = MODE_ARGUMENT
        .iter()
        .map(move |(sys, mode)| (*sys, PRIVILEGE_BITS.iter().map(|b| vec![bit(*mode, *b)]).collect()));
    let creates = CREATE_MODE_ARGUMENT.iter().map(move |(sys, flags, mode)| {
        let pairs = CREATE_FLAGS.iter().flat_map(|c| PRIVILEGE_BITS.iter().map(move |b| (c, b)));
        (*sys, pairs.map(|(c, b)| vec![bit(*flags, *c), bit(*mode, *b)]).collect())
    });
    modes.chain(creates)
}

/// The name of a `setsockopt` option the filter refuses, if `(level, option)` is one.
pub fn denied_sockopt(level: u64, option: u64) -> Option<&'static str> {
    let (level, option) = (level as u32 as u64, option as u32 as u64);
    DENIED_SOCKOPTS.iter().find(|(l, o, _)| *l == level && *o == option).map(|(_, _, n)| *n)
}

/// What the network section allows at the socket level (ports are Landlock's business).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketPolicy {
    pub tcp: bool,
    pub udp: bool,
    pub unix: bool,
    /// `listen` (TCP bind ports, or AF_UNIX sockets). Without it `listen` is refused: on a
    /// socket nothing bound, it binds a port of the kernel's choosing, which no `bind` rule sees.
    pub listen: bool,
}

/// `setsockopt` options that choose where traffic goes or which port a socket gets, past the
/// checks on `connect`, `send*` and `bind`: (level, option, name).
const DENIED_SOCKOPTS: &[(u64, u64, &str)] = &[
    // an IPv6 routing header (segment routing): packets go to its segments first, not to the
    // destination the broker and the cgroup programs checked
    (libc::IPPROTO_IPV6 as u64, 57, "IPV6_RTHDR"),
    // RFC 2292 sticky options, a routing header among them (24, once listed here as
    // IPV6_2292RTHDR, is IPV6_MTU; IPV6_2292RTHDR itself, 5, only asks to receive headers)
    (libc::IPPROTO_IPV6 as u64, 6, "IPV6_2292PKTOPTIONS"),
    // the range a port-0 bind (or a listen's automatic bind) picks from: a port of its choosing
    (libc::IPPROTO_IP as u64, 51, "IP_LOCAL_PORT_RANGE"),
];

/// The resolved syscall policy of a plan.
#[derive(Debug, Clone)]
pub struct SyscallPolicy {
    pub deny: BTreeSet<Sysno>,
    pub action: Violation,
    pub sockets: SocketPolicy,
}

impl SyscallPolicy {
    /// The default deny-set, minus `allow`, plus `deny`.
    pub fn new(
        allow: impl IntoIterator<Item = Sysno>,
        deny: impl IntoIterator<Item = Sysno>,
        action: Violation,
        sockets: SocketPolicy,
    ) -> Self {
        let mut set: BTreeSet<Sysno> = DEFAULT_DENY.iter().filter_map(|(n, _)| n.parse().ok()).collect();
        for s in allow {
            set.remove(&s);
        }
        set.extend(deny);
        SyscallPolicy { deny: set, action, sockets }
    }

    /// Argument-level rules, described for `explain`.
    pub fn conditional_rules(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "clone: denied with any of {}",
                CLONE_NS_FLAGS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join("|")
            ),
            "clone3: answers ENOSYS (libc falls back to clone, whose flags a filter can see)".into(),
            "openat2: answers ENOSYS (callers fall back to openat, whose mode a filter can see)".into(),
            "chmod, fchmod, fchmodat, fchmodat2, creat, mknod, mknodat, and open/openat with O_CREAT or O_TMPFILE: denied with S_ISUID or S_ISGID in the mode".into(),
            format!("ioctl: {} denied", DENIED_IOCTLS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")),
            "personality: only the default (0) and queries".into(),
            "fcntl: F_SETLEASE denied (a lease stalls other processes' opens of the file)".into(),
            format!("setsockopt: {} denied", DENIED_SOCKOPTS.iter().map(|(_, _, n)| *n).collect::<Vec<_>>().join(", ")),
        ];
        if !self.sockets.listen {
            out.push("listen: denied (no [network] bind port, no AF_UNIX sockets)".into());
        }
        let s = self.sockets;
        let mut families = Vec::new();
        if s.unix {
            families.push("AF_UNIX");
        }
        if s.tcp || s.udp {
            let kinds = match (s.tcp, s.udp) {
                (true, true) => "TCP and UDP",
                (true, false) => "TCP",
                _ => "UDP",
            };
            families.push(if s.tcp && s.udp { "AF_INET/AF_INET6 (TCP and UDP)" } else { kinds });
        }
        out.push(if families.is_empty() {
            "socket: every family denied (socketpair(AF_UNIX) allowed)".into()
        } else {
            format!("socket: only {} (socketpair(AF_UNIX) allowed)", families.join(", "))
        });
        out
    }

    fn deny_action(&self) -> SeccompAction {
        match self.action {
            Violation::Errno => SeccompAction::Errno(libc::EPERM as u32),
            Violation::Kill => SeccompAction::KillProcess,
            Violation::Log => SeccompAction::Log,
        }
    }

    /// The rules of the main filter, as data: syscall -> rules (any matching rule denies; an empty
    /// list denies unconditionally). The compiled filter and `mcp-warden export` are built from it.
    pub fn deny_rules(&self) -> BTreeMap<Sysno, Vec<Rule>> {
        let mut rules: BTreeMap<Sysno, Vec<Rule>> = self.deny.iter().map(|s| (*s, Vec::new())).collect();
        let mut add = |sys: Sysno, list: Vec<Rule>| {
            if !self.deny.contains(&sys) {
                rules.insert(sys, list);
            }
        };
        add(
            Sysno::clone,
            CLONE_NS_FLAGS.iter().map(|(flag, _)| vec![ArgCmp::qword(0, CmpOp::MaskedEq(*flag), *flag)]).collect(),
        );
        add(Sysno::ioctl, DENIED_IOCTLS.iter().map(|(req, _)| vec![ArgCmp::dword(1, CmpOp::Eq, *req)]).collect());
        // A lease makes every other process's open of the file wait for the server (up to
        // lease-break-time, 45 s by default), even on a file it may only read.
        add(Sysno::fcntl, vec![vec![ArgCmp::dword(1, CmpOp::Eq, libc::F_SETLEASE as u64)]]);
        add(Sysno::personality, vec![ALLOWED_PERSONALITIES.iter().map(|p| ArgCmp::dword(0, CmpOp::Ne, *p)).collect()]);
        add(Sysno::socket, self.socket_rules());
        add(
            Sysno::setsockopt,
            DENIED_SOCKOPTS
                .iter()
                .map(|(level, name, _)| vec![ArgCmp::dword(1, CmpOp::Eq, *level), ArgCmp::dword(2, CmpOp::Eq, *name)])
                .collect(),
        );
        if !self.sockets.listen {
            add(Sysno::listen, Vec::new());
        }
        for (sys, list) in privilege_bit_rules() {
            add(sys, list);
        }
        // TCP Fast Open connects inside a send: neither Landlock's connect rule nor the broker
        // (which mediates `connect`) would see the destination
        for (sys, flags) in FAST_OPEN_FLAGS {
            add(sys, vec![vec![ArgCmp::dword(flags, CmpOp::MaskedEq(MSG_FASTOPEN), MSG_FASTOPEN)]]);
        }
        rules
    }

    /// [`SyscallPolicy::deny_rules`] for seccompiler.
    fn rules(&self) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
        let mut out = BTreeMap::new();
        for (sys, list) in self.deny_rules() {
            let list = list
                .iter()
                .map(|rule| SeccompRule::new(rule.iter().map(|c| c.condition()).collect::<Result<_, _>>()?))
                .collect::<Result<_, _>>()?;
            out.insert(sys.id() as i64, list);
        }
        Ok(out)
    }

    /// `socket(domain, type, protocol)` is denied unless the (domain, type, protocol) is one the
    /// network section allows. Conditions within a rule are ANDed, rules ORed, and seccompiler has
    /// no masked-not-equal, so "any other type" is spelled out over the 4-bit type field.
    fn socket_rules(&self) -> Vec<Rule> {
        const TYPE_MASK: u64 = 0xf; // the low bits of `type`; the rest are SOCK_CLOEXEC/NONBLOCK
        let s = self.sockets;
        let dom = |op: CmpOp, v: i32| ArgCmp::dword(0, op, v as u64);
        let ty = |t: u64| ArgCmp::dword(1, CmpOp::MaskedEq(TYPE_MASK), t);
        let mut families = Vec::new();
        if s.unix {
            families.push(libc::AF_UNIX);
        }
        if s.tcp || s.udp {
            families.extend([libc::AF_INET, libc::AF_INET6]);
        }
        // Any family not listed. With no family allowed, a trivially true condition denies all.
        let mut rules = vec![match families.is_empty() {
            true => vec![ArgCmp::qword(0, CmpOp::Ge, 0)],
            false => families.iter().map(|f| dom(CmpOp::Ne, *f)).collect(),
        }];
        // Inet families: only the allowed socket types, and TCP only as protocol 0 or IPPROTO_TCP
        // (MPTCP or SCTP streams would slip past Landlock's TCP port rules on older kernels).
        let mut allowed = Vec::new();
        if s.tcp {
            allowed.push((libc::SOCK_STREAM as u64, libc::IPPROTO_TCP as u64));
        }
        if s.udp {
            allowed.push((libc::SOCK_DGRAM as u64, libc::IPPROTO_UDP as u64));
        }
        for family in [libc::AF_INET, libc::AF_INET6].into_iter().filter(|_| !allowed.is_empty()) {
            for t in (0..=TYPE_MASK).filter(|t| allowed.iter().all(|(a, _)| a != t)) {
                rules.push(vec![dom(CmpOp::Eq, family), ty(t)]);
            }
            for (t, protocol) in &allowed {
                let other_protocol = [0, *protocol].map(|p| ArgCmp::dword(2, CmpOp::Ne, p));
                rules.push([dom(CmpOp::Eq, family), ty(*t)].into_iter().chain(other_protocol).collect());
            }
        }
        rules
    }

    /// Compiles the filters to install, in order. Several filters because seccompiler gives one
    /// action per filter: the deny-set's action, ENOSYS for clone3 and openat2, and (on kernels
    /// that run x32 syscalls) the x32 guard. Each filter costs at install time (the kernel emulates
    /// it for every syscall number to build its action cache), so none is installed that has
    /// nothing to do.
    ///
    /// With `refusals_to_supervisor` (the `errno` violation action on a kernel with user
    /// notification), the deny-set and the argument rules hand each refused call to the supervisor,
    /// which records it and answers EPERM: nothing is refused unseen. `mediated` adds the calls the
    /// network broker decides. Both go into the one filter that carries the listener (a process may
    /// have only one), installed last because it may refuse `seccomp()` itself; a listener that
    /// only mediates the network is installed first, before a deny filter that may refuse it.
    pub fn compile(
        &self,
        x32_abi: bool,
        refusals_to_supervisor: bool,
        listened: Listened,
    ) -> Result<Vec<Filter>, seccompiler::BackendError> {
        let arch = target_arch();
        let enosys: BTreeMap<i64, Vec<SeccompRule>> = ENOSYS.iter().map(|s| (s.id() as i64, Vec::new())).collect();
        let enosys = SeccompFilter::new(enosys, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)?;
        let mut filters = vec![Filter::Plain(enosys.try_into()?)];
        #[cfg(target_arch = "x86_64")]
        if x32_abi {
            filters.push(Filter::Plain(crate::sys::x32::guard()));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = x32_abi;
        let mediated = listened.rules()?;
        if refusals_to_supervisor {
            filters.push(Filter::Listener(notifying(union(self.rules()?, mediated), arch)?));
            return Ok(filters);
        }
        if !mediated.is_empty() {
            filters.insert(0, Filter::Listener(notifying(mediated, arch)?));
        }
        filters.push(Filter::Plain(
            SeccompFilter::new(self.rules()?, SeccompAction::Allow, self.deny_action(), arch)?.try_into()?,
        ));
        Ok(filters)
    }
}

/// One seccomp filter of stage 2, in install order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Plain(BpfProgram),
    /// Installed with a user-notification listener, which stage 2 hands to the supervisor.
    Listener(BpfProgram),
}

/// The calls the network broker performs for the server: `connect`, `sendto` with an address,
/// and with UDP `sendmsg` and `sendmmsg` (whose destination may be in memory BPF cannot read) and
/// `bind` (Landlock's bind rule covers TCP only: a UDP socket could otherwise take any port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mediated {
    pub datagrams: bool,
    /// A learning run: every `sendto`, with an address or not, so that the broker sees the DNS
    /// queries sent on connected sockets and can name the hosts looked up.
    pub every_send: bool,
}

impl Mediated {
    fn rules(self) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
        let mut rules = BTreeMap::new();
        rules.insert(Sysno::connect.id() as i64, Vec::new());
        let with_address = vec![SeccompRule::new(vec![Cond::new(4, Len::Qword, Op::Ne, 0)?])?];
        rules.insert(Sysno::sendto.id() as i64, if self.every_send { Vec::new() } else { with_address });
        if self.datagrams {
            rules.insert(Sysno::sendmsg.id() as i64, Vec::new());
            rules.insert(Sysno::sendmmsg.id() as i64, Vec::new());
            rules.insert(Sysno::bind.id() as i64, Vec::new());
        }
        Ok(rules)
    }

    /// Is this notified call one the broker performs (rather than one a rule refused)?
    pub fn covers(self, nr: i64, args: &[u64; 6]) -> bool {
        match Sysno::new(nr as usize) {
            Some(Sysno::connect) => true,
            Some(Sysno::sendto) => self.every_send || args[4] != 0,
            Some(Sysno::sendmsg | Sysno::sendmmsg | Sysno::bind) => self.datagrams,
            _ => false,
        }
    }
}

/// The calls the listener gets besides refusals: the broker's, a learning run's traced file
/// calls, and the calls the MCP layer's annotations guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listened {
    pub mediated: Option<Mediated>,
    pub traced: bool,
    pub guarded: Option<Guarded>,
    /// Every `listen`, which the supervisor performs only on a socket bound to a `[network] bind`
    /// port (or a unix one): on a socket never bound, `listen` takes a port of the kernel's choosing.
    pub listens: bool,
}

impl Listened {
    pub fn is_empty(self) -> bool {
        self.mediated.is_none() && !self.traced && self.guarded.is_none() && !self.listens
    }

    fn rules(self) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
        let mut mediated = self.mediated.map(Mediated::rules).transpose()?.unwrap_or_default();
        if self.listens {
            mediated.insert(Sysno::listen.id() as i64, Vec::new());
        }
        let traced =
            if self.traced { traced_calls().map(|s| (s.id() as i64, Vec::new())).collect() } else { BTreeMap::new() };
        let guarded = self.guarded.map(Guarded::rules).transpose()?.unwrap_or_default();
        Ok(union(union(mediated, traced), guarded))
    }

    /// The filter of a run without the seccomp layer: only these calls, to the listener.
    pub fn filter(self) -> Result<Filter, seccompiler::BackendError> {
        Ok(Filter::Listener(notifying(self.rules()?, target_arch())?))
    }
}

/// The calls the MCP layer's annotations guard: every call that changes the filesystem (opens
/// for writing or creating included), and every call that opens a connection or sends to an
/// address. While no guarded tool call is in flight the supervisor lets them continue at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guarded {
    /// UDP is allowed: `sendmsg` and `sendmmsg` may carry an address.
    pub datagrams: bool,
}

/// Open flags that make an open a write: `O_WRONLY`, `O_RDWR`, `O_CREAT`, `O_TRUNC` (`O_TMPFILE`
/// needs one of the first two).
const WRITE_FLAGS: [u64; 4] = [libc::O_WRONLY as u64, libc::O_RDWR as u64, libc::O_CREAT as u64, libc::O_TRUNC as u64];

/// The calls that change the filesystem whatever their arguments (names missing on an
/// architecture are skipped). `openat2` carries its flags in memory BPF cannot read: every one.
const WRITES: &[&str] = &[
    "creat",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "truncate",
    "ftruncate",
    "fallocate",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "mknod",
    "mknodat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "setxattrat",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "removexattrat",
    "openat2",
    // a Unix socket bound to a path is a new file (`bind` is refused whatever the family: the
    // family could change under a racing `dup2` between a check and the call)
    "bind",
];

/// Calls newer than the `syscalls` crate's tables, by number (the same on every architecture
/// since Linux 5.1's unified numbering): `file_setattr` (Linux 6.17) sets inode flags by path.
const WRITES_BY_NUMBER: &[i64] = &[469];

/// The ioctl types of filesystem requests that may change a file through a descriptor opened for
/// reading: `'f'` (inode flags, versions, verity, ext4's), `'v'` (`FS_IOC_SETVERSION`), `'X'`
/// (`FS_IOC_FSSETXATTR`, freeze, trim), 0x94 (btrfs, `FICLONE`, dedupe). A request of these types
/// that only reads (`_IOR`) goes on.
const FS_IOCTL_TYPES: [u64; 4] = [0x66, 0x76, 0x58, 0x94];

/// The direction bits of an ioctl request, and the value of a read-only one (`_IOR`).
const IOC_DIR_MASK: u64 = 0xc000_0000;
const IOC_READ_ONLY: u64 = 0x8000_0000;

/// What a guarded call would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guards {
    Write,
    Connect,
}

impl Guarded {
    fn rules(self) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
        let mut rules = Mediated { datagrams: self.datagrams, every_send: false }.rules()?;
        for (name, flags_arg) in [("open", 1), ("openat", 2)] {
            let Ok(nr) = name.parse::<Sysno>() else { continue };
            let per_flag = WRITE_FLAGS
                .iter()
                .map(|f| SeccompRule::new(vec![Cond::new(flags_arg, Len::Dword, Op::MaskedEq(*f), *f)?]))
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(nr.id() as i64, per_flag);
        }
        for nr in writes() {
            rules.insert(nr.id() as i64, Vec::new());
        }
        for nr in WRITES_BY_NUMBER {
            rules.insert(*nr, Vec::new());
        }
        let by_type = |t: &u64| SeccompRule::new(vec![Cond::new(1, Len::Dword, Op::MaskedEq(0xff00), t << 8)?]);
        rules.insert(Sysno::ioctl.id() as i64, FS_IOCTL_TYPES.iter().map(by_type).collect::<Result<_, _>>()?);
        Ok(rules)
    }

    /// What a notified call would do, if it is one of the guarded (the filter's own test).
    pub fn covers(self, nr: i64, args: &[u64; 6]) -> Option<Guards> {
        let is_write = |flags: u64| WRITE_FLAGS.iter().any(|f| flags & f != 0);
        if WRITES_BY_NUMBER.contains(&nr) {
            return Some(Guards::Write);
        }
        let sysno = Sysno::new(nr as usize)?;
        match sysno {
            Sysno::openat => is_write(args[2] & 0xffff_ffff).then_some(Guards::Write),
            #[cfg(target_arch = "x86_64")]
            Sysno::open => is_write(args[1] & 0xffff_ffff).then_some(Guards::Write),
            Sysno::ioctl => {
                let request = args[1] & 0xffff_ffff;
                let fs = FS_IOCTL_TYPES.contains(&((request >> 8) & 0xff));
                (fs && request & IOC_DIR_MASK != IOC_READ_ONLY).then_some(Guards::Write)
            }
            _ if writes().any(|w| w == sysno) => Some(Guards::Write),
            _ => Mediated { datagrams: self.datagrams, every_send: false }.covers(nr, args).then_some(Guards::Connect),
        }
    }
}

/// The [`WRITES`] this architecture has, looked up by name once.
fn writes() -> impl Iterator<Item = Sysno> {
    static CALLS: std::sync::OnceLock<Vec<Sysno>> = std::sync::OnceLock::new();
    known(&CALLS, WRITES)
}

/// The calls of `names` this architecture has, looked up once into `cell`.
fn known(cell: &'static std::sync::OnceLock<Vec<Sysno>>, names: &[&str]) -> impl Iterator<Item = Sysno> {
    cell.get_or_init(|| names.iter().filter_map(|name| name.parse::<Sysno>().ok()).collect()).iter().copied()
}

/// The file calls a learning run (`mcp-warden run --learn`) hands to the supervisor, which records
/// the path they name and lets them continue: Landlock and the view still decide them.
const TRACED: &[&str] = &[
    "open",
    "openat",
    "creat",
    "execve",
    "execveat",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "truncate",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
];

/// The traced calls this architecture has (`open`, `creat` and friends are x86-only), looked up
/// by name once.
pub fn traced_calls() -> impl Iterator<Item = Sysno> {
    static CALLS: std::sync::OnceLock<Vec<Sysno>> = std::sync::OnceLock::new();
    known(&CALLS, TRACED)
}

/// Is `nr` one of the traced calls? (Asked for every notification of a learning run.)
pub fn is_traced(nr: i64) -> bool {
    traced_calls().any(|s| s.id() as i64 == nr)
}

impl SyscallPolicy {
    /// Would an argument rule refuse this traced call? Mirrors [`SyscallPolicy::rules`]'s
    /// privilege-bit rules, the only ones on traced calls: a traced call that matches them is a
    /// refusal, not a call to let through.
    /// A call an argument rule refuses that the broker or the guard would otherwise take: a
    /// mode with privilege bits, a send with `MSG_FASTOPEN`.
    pub fn refuses_arguments(&self, nr: i64, a: &[u64; 6]) -> bool {
        self.sets_privilege_bits(nr, a) || fast_open(nr, a)
    }

    pub fn sets_privilege_bits(&self, nr: i64, a: &[u64; 6]) -> bool {
        let bits = (libc::S_ISUID | libc::S_ISGID) as u64;
        let Some(sys) = Sysno::new(nr as usize) else { return false };
        if let Some((_, mode)) = MODE_ARGUMENT.iter().find(|(s, _)| *s == sys) {
            return a[*mode as usize] & bits != 0;
        }
        let Some((_, flags, mode)) = CREATE_MODE_ARGUMENT.iter().find(|(s, _, _)| *s == sys) else { return false };
        let creates = CREATE_FLAGS.iter().any(|c| a[*flags as usize] & c == *c);
        creates && a[*mode as usize] & bits != 0
    }
}

/// `MSG_FASTOPEN` (libc does not export it for every target).
const MSG_FASTOPEN: u64 = 0x2000_0000;

/// The sends that take flags, and which argument holds them.
const FAST_OPEN_FLAGS: [(Sysno, u8); 3] = [(Sysno::sendto, 3), (Sysno::sendmsg, 2), (Sysno::sendmmsg, 3)];

/// A send with `MSG_FASTOPEN`.
pub fn fast_open(nr: i64, a: &[u64; 6]) -> bool {
    FAST_OPEN_FLAGS.iter().any(|(s, flags)| s.id() as i64 == nr && a[*flags as usize] & MSG_FASTOPEN != 0)
}

/// Two rule maps as one: a call matches when it matches either (an empty list matches always).
fn union(
    mut a: BTreeMap<i64, Vec<SeccompRule>>,
    b: BTreeMap<i64, Vec<SeccompRule>>,
) -> BTreeMap<i64, Vec<SeccompRule>> {
    for (nr, rules) in b {
        match a.get_mut(&nr) {
            None => {
                a.insert(nr, rules);
            }
            Some(existing) if existing.is_empty() => {}
            Some(_) if rules.is_empty() => {
                a.insert(nr, rules);
            }
            Some(existing) => existing.extend(rules),
        }
    }
    a
}

/// seccompiler has no `SECCOMP_RET_USER_NOTIF` action: the filter is compiled with a marker
/// action, and exactly the return instructions that carry it are rewritten.
fn notifying(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    arch: TargetArch,
) -> Result<BpfProgram, seccompiler::BackendError> {
    const MARKER: u32 = libc::EPERM as u32;
    const BPF_RET_K: u16 = 0x06;
    let marked: u32 = SeccompAction::Errno(MARKER).into();
    let mut program: BpfProgram =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(MARKER), arch)?.try_into()?;
    for insn in program.iter_mut().filter(|i| i.code == BPF_RET_K && i.k == marked) {
        insn.k = libc::SECCOMP_RET_USER_NOTIF;
    }
    Ok(program)
}

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    return TargetArch::riscv64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(sockets: SocketPolicy) -> SyscallPolicy {
        SyscallPolicy::new([], [], Violation::Errno, sockets)
    }

    #[test]
    fn default_deny_set_names_are_real_syscalls() {
        for (name, reason) in DEFAULT_DENY {
            assert!(name.parse::<Sysno>().is_ok(), "{name} is not a syscall on this architecture");
            assert!(!reason.is_empty());
        }
        let p = policy(SocketPolicy::default());
        for must in ["io_uring_setup", "bpf", "perf_event_open", "ptrace", "userfaultfd", "unshare", "add_key"] {
            assert!(p.deny.contains(&must.parse().unwrap()), "{must} must be denied by default");
        }
    }

    #[test]
    fn docs_list_every_default_denied_syscall() {
        let doc = include_str!("../../../docs/syscalls.md");
        for (name, _) in DEFAULT_DENY {
            assert!(doc.contains(&format!("| `{name}` |")), "docs/syscalls.md lacks a row for {name}");
        }
    }

    #[test]
    fn allow_and_deny_adjust_the_set() {
        let p = SyscallPolicy::new([Sysno::ptrace], [Sysno::chdir], Violation::Kill, SocketPolicy::default());
        assert!(!p.deny.contains(&Sysno::ptrace));
        assert!(p.deny.contains(&Sysno::chdir));
        assert_eq!(p.deny_action(), SeccompAction::KillProcess);
    }

    #[test]
    fn filters_compile_for_every_socket_policy() {
        for tcp in [false, true] {
            for udp in [false, true] {
                for unix in [false, true] {
                    let m = Some(Mediated { datagrams: udp, every_send: false });
                    let cases = [
                        (false, Listened::default()),
                        (true, Listened::default()),
                        (true, Listened { mediated: m, traced: false, guarded: None, listens: false }),
                        (
                            true,
                            Listened {
                                mediated: m,
                                traced: true,
                                guarded: Some(Guarded { datagrams: true }),
                                listens: true,
                            },
                        ),
                    ];
                    for (notify, listened) in cases {
                        let filters = policy(SocketPolicy { tcp, udp, unix, listen: unix })
                            .compile(true, notify, listened)
                            .unwrap();
                        assert!(filters.len() >= 2);
                        assert!(filters.iter().all(
                            |f| matches!(f, Filter::Plain(p) | Filter::Listener(p) if !p.is_empty() && p.len() < 4096)
                        ));
                    }
                }
            }
        }
    }

    fn listened(m: Mediated) -> Listened {
        Listened { mediated: Some(m), traced: false, guarded: None, listens: false }
    }

    #[test]
    fn the_guard_takes_writes_and_connections_and_lets_reads_go() {
        let g = Guarded { datagrams: false };
        let args = |a1: u64, a2: u64| [3, a1, a2, 0, 0, 0];
        let nr = |s: Sysno| s.id() as i64;
        assert_eq!(g.covers(nr(Sysno::openat), &args(0, libc::O_RDONLY as u64)), None);
        assert_eq!(
            g.covers(nr(Sysno::openat), &args(0, (libc::O_WRONLY | libc::O_APPEND) as u64)),
            Some(Guards::Write)
        );
        assert_eq!(g.covers(nr(Sysno::openat), &args(0, libc::O_CREAT as u64)), Some(Guards::Write));
        assert_eq!(g.covers(nr(Sysno::ioctl), &args(0x4008_6602, 0)), Some(Guards::Write), "FS_IOC_SETFLAGS");
        assert_eq!(g.covers(nr(Sysno::ioctl), &args(0x4008_7602, 0)), Some(Guards::Write), "FS_IOC_SETVERSION");
        assert_eq!(g.covers(nr(Sysno::ioctl), &args(0x8008_6601, 0)), None, "FS_IOC_GETFLAGS reads");
        assert_eq!(g.covers(nr(Sysno::ioctl), &args(0x5421, 0)), None, "FIONBIO is no filesystem request");
        assert_eq!(g.covers(469, &args(0, 0)), Some(Guards::Write), "file_setattr");
        assert_eq!(g.covers(nr(Sysno::bind), &args(0, 0)), Some(Guards::Write));
        assert_eq!(g.covers(nr(Sysno::connect), &args(0, 0)), Some(Guards::Connect));
        assert_eq!(g.covers(nr(Sysno::sendto), &args(0, 0)), None, "a send on a connected socket");
        assert_eq!(g.covers(nr(Sysno::read), &args(0, 0)), None);
        let filter = Listened { mediated: None, traced: false, guarded: Some(g), listens: false }.filter();
        assert!(filter.is_ok(), "{filter:?}");
    }

    #[test]
    fn traced_calls_with_privilege_bits_are_refusals() {
        let p = policy(SocketPolicy::default());
        let mut a = [0u64; 6];
        a[2] = libc::O_CREAT as u64;
        a[3] = 0o4755;
        assert!(p.sets_privilege_bits(libc::SYS_openat, &a));
        a[2] = libc::O_RDONLY as u64;
        assert!(!p.sets_privilege_bits(libc::SYS_openat, &a), "the mode is unused without O_CREAT");
        assert!(!p.sets_privilege_bits(libc::SYS_execve, &a));
        assert!(traced_calls().any(|s| s == Sysno::openat) && traced_calls().any(|s| s == Sysno::execve));
    }

    fn returns(p: &BpfProgram) -> Vec<u32> {
        p.iter().filter(|i| i.code == 0x06).map(|i| i.k).collect()
    }

    #[test]
    fn refusals_go_to_the_listener_installed_last() {
        let filters = policy(SocketPolicy::default())
            .compile(false, true, listened(Mediated { datagrams: false, every_send: false }))
            .unwrap();
        let Some(Filter::Listener(listener)) = filters.last() else {
            panic!("the listener filter is last: {filters:?}")
        };
        let rets = returns(listener);
        assert!(rets.contains(&libc::SECCOMP_RET_USER_NOTIF));
        let errno_eperm: u32 = SeccompAction::Errno(libc::EPERM as u32).into();
        assert!(!rets.contains(&errno_eperm), "every refusal notifies");
        assert_eq!(filters.iter().filter(|f| matches!(f, Filter::Listener(_))).count(), 1, "one listener per process");
    }

    #[test]
    fn a_listener_that_only_mediates_goes_before_a_killing_deny_filter() {
        let p = SyscallPolicy::new([], [Sysno::seccomp], Violation::Kill, SocketPolicy::default());
        let filters = p.compile(false, false, listened(Mediated { datagrams: true, every_send: false })).unwrap();
        assert!(matches!(filters.first(), Some(Filter::Listener(_))), "{filters:?}");
        let Some(Filter::Plain(deny)) = filters.last() else { panic!("the deny filter is last") };
        assert!(returns(deny).contains(&libc::SECCOMP_RET_KILL_PROCESS));
        let filters = p.compile(false, false, Listened::default()).unwrap();
        assert!(filters.iter().all(|f| matches!(f, Filter::Plain(_))));
    }

    #[test]
    fn mediated_calls_are_told_apart_from_refusals() {
        let m = Mediated { datagrams: false, every_send: false };
        let mut args = [0u64; 6];
        assert!(m.covers(libc::SYS_connect, &args));
        assert!(!m.covers(libc::SYS_sendto, &args), "sendto without an address is not mediated");
        args[4] = 0x1000;
        assert!(m.covers(libc::SYS_sendto, &args));
        assert!(!m.covers(libc::SYS_sendmsg, &args));
        assert!(Mediated { datagrams: true, every_send: false }.covers(libc::SYS_sendmsg, &args));
        assert!(!m.covers(libc::SYS_socket, &args));
    }

    #[test]
    fn socket_rules_deny_everything_when_nothing_is_allowed() {
        let rules = policy(SocketPolicy::default()).socket_rules();
        assert_eq!(rules.len(), 1, "one catch-all rule");
        let rules = policy(SocketPolicy { tcp: true, ..Default::default() }).socket_rules();
        // other families + 15 other types and 1 protocol rule per inet family
        assert_eq!(rules.len(), 1 + 2 * (15 + 1));
    }
}
