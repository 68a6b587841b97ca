//! Types shared by the eBPF probes (`no_std`, BPF target) and the launcher's loader: the events the
//! probes put on the ring buffer, the network rules the loader puts in maps, and their constants.
//! Every type is `#[repr(C)]` with explicit padding so both sides agree on the layout.
#![no_std]

/// Longest path copied from user memory (longer ones are truncated, and flagged).
pub const PATH_LEN: usize = 256;
/// Arguments of an exec recorded, and bytes of each.
pub const ARGV_COUNT: usize = 4;
pub const ARG_LEN: usize = 64;
/// Most network rules the loader may install.
pub const MAX_RULES: u32 = 64;

/// Event kinds (the first field of every event).
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const OPEN: u32 = 4;
    pub const NET: u32 = 5;
    // 6 was SYSCALL: seccomp refusals are recorded by the supervisor now.
    pub const SOCKET: u32 = 7;
    pub const LSM: u32 = 8;
    pub const REFUSED: u32 = 9;
}

/// BPF LSM hooks (optional layer).
pub mod hook {
    pub const PTRACE_ACCESS_CHECK: u32 = 1;
    pub const TASK_KILL: u32 = 2;
    pub const SOCKET_CONNECT: u32 = 3;
    pub const BPRM_CHECK_SECURITY: u32 = 4;
}

/// Network operations seen by the cgroup socket programs.
pub mod op {
    pub const CONNECT: u32 = 1;
    pub const BIND: u32 = 2;
    pub const SEND: u32 = 3;
}

/// Verdicts: what the program decided (in audit mode a `DENY` is logged but not enforced).
pub mod verdict {
    pub const ALLOW: u32 = 0;
    pub const DENY: u32 = 1;
}

/// Indexes of the per-CPU counters array.
pub mod counter {
    /// Events that did not fit in the ring buffer.
    pub const DROPPED: u32 = 0;
    /// Opens folded into an earlier identical one (same process, path, flags and outcome).
    pub const OPENS_FOLDED: u32 = 1;
    /// `file_open` LSM hook calls of the server (the optional LSM layer).
    pub const LSM_FILE_OPENS: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Common header of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    /// Thread-group id (the process id in the initial PID namespace).
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub hdr: Header,
    /// The syscall's return value (0 on success, -errno on failure).
    pub ret: i64,
    pub argc: u32,
    /// Bit i set: argument i was longer than `ARG_LEN - 1` bytes and is cut.
    pub truncated: u32,
    pub path: [u8; PATH_LEN],
    pub argv: [[u8; ARG_LEN]; ARGV_COUNT],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub hdr: Header,
    pub child_pid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub hdr: Header,
    /// `exit_group` status when the process exited by itself; -1 when it did not.
    pub code: i32,
    /// The signal that killed it (default action), or 0.
    pub signal: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenEvent {
    pub hdr: Header,
    /// The fd, or -errno.
    pub ret: i64,
    /// FNV-1a of the path bytes: the key later identical opens are folded under.
    pub path_hash: u64,
    pub flags: u32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

/// Key of the open-folding map: the same process opening the same path with the same flags again
/// is counted there instead of producing another event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpenKey {
    /// The server's cgroup: pids are reused, and another server's process may get this one.
    pub cgroup_id: u64,
    pub tgid: u32,
    pub flags: u32,
    pub path_hash: u64,
}

/// FNV-1a over the first `len` bytes of `buf` (a bounded loop the verifier accepts).
#[inline(always)]
pub fn fnv1a(buf: &[u8; PATH_LEN], len: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < PATH_LEN {
        if i >= len {
            break;
        }
        h ^= buf[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetEvent {
    pub hdr: Header,
    pub op: u32,
    /// AF_INET or AF_INET6.
    pub family: u32,
    /// SOCK_STREAM / SOCK_DGRAM.
    pub sock_type: u32,
    pub protocol: u32,
    pub verdict: u32,
    /// Host byte order.
    pub port: u16,
    pub _pad: u16,
    /// IPv4 in the first 4 bytes, network order.
    pub addr: [u8; 16],
    /// The syscall's return value (-errno on failure); set at its exit.
    pub ret: i64,
}

/// A call of the server that names a file (or a port, or a signal target) and failed with an
/// errno a sandbox layer refuses with (EACCES, EPERM, EROFS, EXDEV, and ENOENT for a path the
/// hidden root leaves out). The probes report the call;
/// the decoder decides which layer refused it (the filesystem view, Landlock) or that none did.
/// `open` and `execve` are not among them: their own events carry the verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RefusedEvent {
    pub hdr: Header,
    pub nr: u32,
    pub _pad: u32,
    /// -errno.
    pub ret: i64,
    /// The descriptor of an fd-form call (`fchmod`, `fchown`...), or the directory a `*at` call's
    /// path is relative to (`AT_FDCWD`: -100), or -1.
    pub fd: i64,
    /// The path the call names (empty when none), and its second path (rename, link).
    pub path: [u8; PATH_LEN],
    pub path2: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SocketEvent {
    pub hdr: Header,
    pub family: u32,
    pub sock_type: u32,
    pub protocol: u32,
    pub verdict: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LsmEvent {
    pub hdr: Header,
    pub hook: u32,
    pub verdict: u32,
}

/// One network allow-rule. A destination matches when family, operation and protocol match, the
/// port matches (0 = any), and the address is inside `addr/prefix`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetRule {
    /// Bit set of `op` values this rule allows (1 << op).
    pub ops: u32,
    pub family: u32,
    /// SOCK_STREAM, SOCK_DGRAM, or 0 for both.
    pub sock_type: u32,
    pub prefix: u32,
    pub port: u16,
    pub _pad: u16,
    pub _pad2: u32,
    pub addr: [u8; 16],
}

impl NetRule {
    /// Does `addr` (4 or 16 significant bytes) fall inside this rule's network? Written so the
    /// verifier sees every index below 16.
    #[inline(always)]
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        let prefix = if self.prefix > 128 { 128 } else { self.prefix as i32 };
        let mut i = 0usize;
        while i < 16 {
            let bits = prefix - (i as i32) * 8;
            if bits <= 0 {
                break;
            }
            let mask: u8 = if bits >= 8 { 0xff } else { 0xffu8 << (8 - bits) };
            if (self.addr[i] ^ addr[i]) & mask != 0 {
                return false;
            }
            i += 1;
        }
        true
    }
}

/// How much the probes record for one server.
pub mod level {
    /// The process tree (exec, fork, exit) and the network operations the cgroup programs decide:
    /// scheduler and signal tracepoints, no per-syscall program.
    pub const TREE: u32 = 0;
    /// Also every open, failed exec, per-process syscall counts and the file, port and signal
    /// calls refused by Landlock or the filesystem view. Needs the `sys_enter`/`sys_exit`
    /// tracepoints, which put every process of the host on the traced syscall path while any
    /// `full` server runs.
    pub const FULL: u32 = 1;
}

/// One monitored server's settings, the value of `SERVERS` under its cgroup id. The programs
/// are shared by every server of the host; this is what tells them apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Server {
    /// 1 = audit mode: log what would be denied, deny nothing.
    pub audit: u32,
    pub rule_count: u32,
    /// 1 = allow raw inet sockets.
    pub allow_raw: u32,
    /// [`level::TREE`] or [`level::FULL`].
    pub level: u32,
    /// The launcher that owns the entry: a later launcher removes entries whose owner is gone.
    pub owner_pid: u32,
    /// The server's ring buffer: `RINGS[slot]` (rings are reused by later servers).
    pub slot: u32,
    /// The owner's start time (clock ticks after boot, `/proc/PID/stat` field 22), so that a
    /// reused pid is not taken for the owner.
    pub owner_start: u64,
    /// The ports of mcp-warden's resolver on the loopback, one per slot of `DnsQueries` (all 0:
    /// DNS is not routed here): a connect or send to port 53 of any address is sent to the port
    /// of the slot that keeps where it was going, so the answer can seem to come from there.
    pub dns_ports: [u16; DNS_SLOTS],
    /// The mark the server's packets to those ports carry (`egress`): the resolver's sockets
    /// take no other, so no other process of the host can fill their queues. 0: none.
    pub dns_mark: u32,
    pub _pad: u32,
}

/// The DNS destinations one socket of a server can have asked at once (musl asks up to three
/// nameservers in parallel from one socket); a fifth takes the oldest slot.
pub const DNS_SLOTS: usize = 4;

/// Where a socket's DNS queries were going before the socket programs sent them to the
/// resolver: per socket (`DNS_QUERIES`, socket storage, gone with the socket), by slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsQueries {
    pub dst: [DnsDst; DNS_SLOTS],
    /// The slot a fifth destination takes (modulo `DNS_SLOTS`).
    pub next: u32,
    pub _pad: u32,
}

/// One destination, as `bpf_sock_addr` holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsDst {
    /// `user_ip4` in `ip[0]` (AF_INET), or `user_ip6` (AF_INET6, an IPv4-mapped address included).
    pub ip: [u32; 4],
    /// Network byte order, as `user_port` holds it.
    pub port: u32,
    /// AF_INET or AF_INET6; 0: the slot is free.
    pub family: u32,
}

/// Key of `RULES`: the server's cgroup id and the rule's index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleKey {
    pub cgroup_id: u64,
    pub index: u32,
    pub _pad: u32,
}

/// Key of `SYSCALLS`: calls of syscall `nr` by process `tgid` of the server in `cgroup_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallKey {
    pub cgroup_id: u64,
    pub tgid: u32,
    pub nr: u32,
}

/// One server's counters (per CPU), the value of `COUNTERS` under its cgroup id; indexed by the
/// [`counter`] constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub values: [u64; counter::COUNT as usize],
}

/// `NetEvent::ret` when the result is not known: the cgroup programs decide before the call
/// completes, and only the `full` level follows it to its exit.
pub const NO_RESULT: i64 = i64::MIN;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all impls): plain #[repr(C)] data with explicit padding and no pointers; every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for NetRule {}
    unsafe impl aya::Pod for Server {}
    unsafe impl aya::Pod for RuleKey {}
    unsafe impl aya::Pod for CallKey {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for OpenKey {}
    unsafe impl aya::Pod for Header {}
    unsafe impl aya::Pod for ExecEvent {}
    unsafe impl aya::Pod for ForkEvent {}
    unsafe impl aya::Pod for ExitEvent {}
    unsafe impl aya::Pod for OpenEvent {}
    unsafe impl aya::Pod for NetEvent {}
    unsafe impl aya::Pod for SocketEvent {}
    unsafe impl aya::Pod for RefusedEvent {}
    unsafe impl aya::Pod for LsmEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(addr: [u8; 4], prefix: u32) -> NetRule {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        NetRule { prefix, addr: a, ..Default::default() }
    }

    fn v4(b: [u8; 4]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&b);
        a
    }

    #[test]
    fn prefixes_match_like_cidr() {
        assert!(rule([10, 0, 0, 0], 8).contains(&v4([10, 1, 2, 3])));
        assert!(!rule([10, 0, 0, 0], 8).contains(&v4([11, 1, 2, 3])));
        assert!(rule([127, 0, 0, 1], 32).contains(&v4([127, 0, 0, 1])));
        assert!(!rule([127, 0, 0, 1], 32).contains(&v4([127, 0, 0, 2])));
        assert!(rule([172, 16, 0, 0], 12).contains(&v4([172, 31, 255, 255])));
        assert!(!rule([172, 16, 0, 0], 12).contains(&v4([172, 32, 0, 0])));
        assert!(rule([0, 0, 0, 0], 0).contains(&v4([8, 8, 8, 8])));
    }
}
