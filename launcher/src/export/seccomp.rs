//! The seccomp half of `mcp-warden export`: the plan's deny-set and argument rules as an OCI
//! runtime / Kubernetes `Localhost` profile, for the container runtime to enforce on the whole
//! container, mcp-warden included.
//!
//! Two things differ from the launcher's own filter:
//! - what the launcher itself needs to build the sandbox inside the container ([`LAUNCHER_NEEDS`]:
//!   the filesystem view's mounts, its namespaces, the broker's descriptor and memory reads) stays
//!   allowed here; the launcher's filter denies it to the server a moment later;
//! - every rule compares each argument at most once. A rule that compares one argument twice
//!   (`personality != 0 && personality != 0xffffffff`) is split by runtimes into ORed rules,
//!   which would deny `personality(0)`; such a set is written as the masked comparisons that
//!   cover exactly its complement ([`complement`]).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator as Op, LinuxSyscall, LinuxSyscallBuilder,
};
use syscalls::Sysno;

use crate::layers::seccomp::{ArgCmp, CmpOp, ENOSYS, Rule, SyscallPolicy};
use crate::profile::Violation;

use super::ExportError;

/// Calls of the deny-set the launcher makes itself inside the container, and why. The profile
/// leaves them allowed; the launcher's own filter denies them to the server.
pub const LAUNCHER_NEEDS: &[(&str, &str)] = &[
    ("mount", "the filesystem view: read-only binds, the hidden root's tmpfs"),
    ("umount2", "the hidden root: the old root detached"),
    ("pivot_root", "the hidden root"),
    ("open_tree", "the hidden root: the grants cloned"),
    ("move_mount", "the hidden root: the clones attached"),
    ("mount_setattr", "the filesystem view: read-only, nosuid, noexec"),
    ("pidfd_getfd", "the network broker and the refusal log: the seccomp listener and the server's sockets"),
    ("process_vm_readv", "the network broker and the refusal log: the addresses and paths a refused call names"),
    ("openat2", "the MCP layer's scratch directories: opens that cannot leave them (RESOLVE_BENEATH)"),
];
// And, for a plan whose DNS mcp-warden answers, `socket(AF_NETLINK, _, NETLINK_ROUTE)` (see
// `allow_route_netlink`) and `listen` (the resolver's TCP sockets).

/// The `clone` namespace flags the launcher uses: the server's user, PID, mount and IPC
/// namespaces and the DNS resolver's network namespace.
const LAUNCHER_CLONE_FLAGS: u64 =
    (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET) as u64;

/// The profile: allow by default, the deny-set and argument rules with the launcher's errno.
/// `answers_dns`: the plan's DNS is answered by mcp-warden, whose resolver sets up its network
/// namespace over rtnetlink.
pub fn profile(policy: &SyscallPolicy, answers_dns: bool) -> Result<LinuxSeccomp, ExportError> {
    let (action, errno) = deny_action(policy.action);
    let mut unconditional = Vec::new();
    let mut syscalls = Vec::new();
    for (sys, rules) in exported_rules(policy, answers_dns) {
        if rules.is_empty() {
            unconditional.push(sys.name().to_string());
            continue;
        }
        for rule in rules {
            for args in one_per_argument(sys, &rule)? {
                syscalls.push(entry(vec![sys.name().to_string()], action, errno, Some(args))?);
            }
        }
    }
    syscalls.insert(0, entry(unconditional, action, errno, None)?);
    let enosys: Vec<String> = ENOSYS.iter().filter(|s| !needed(**s)).map(|s| s.name().to_string()).collect();
    if !enosys.is_empty() {
        syscalls.push(entry(enosys, Action::ScmpActErrno, Some(libc::ENOSYS as u32), None)?);
    }
    Ok(LinuxSeccompBuilder::default()
        .default_action(Action::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()?)
}

/// The launcher's action on a denied call, and its errno.
fn deny_action(v: Violation) -> (Action, Option<u32>) {
    match v {
        Violation::Errno => (Action::ScmpActErrno, Some(libc::EPERM as u32)),
        Violation::Kill => (Action::ScmpActKillProcess, None),
        Violation::Log => (Action::ScmpActLog, None),
    }
}

/// The plan's rules minus [`LAUNCHER_NEEDS`], and `clone` denied only for the namespace flags
/// the launcher does not use.
fn exported_rules(policy: &SyscallPolicy, answers_dns: bool) -> BTreeMap<Sysno, Vec<Rule>> {
    let mut rules = policy.deny_rules();
    rules.retain(|sys, _| !needed(*sys));
    if let Some(clone) = rules.get_mut(&Sysno::clone) {
        clone.retain(|rule| {
            !rule.iter().any(|c| matches!(c.op, CmpOp::MaskedEq(flag) if flag & LAUNCHER_CLONE_FLAGS != 0))
        });
    }
    if answers_dns && let Some(socket) = rules.get_mut(&Sysno::socket) {
        allow_route_netlink(socket);
    }
    if answers_dns {
        rules.remove(&Sysno::listen);
    }
    rules
}

/// The DNS namespace's helper brings its loopback up and routes every address to it over an
/// `AF_NETLINK`/`NETLINK_ROUTE` socket: the "any other family" rule lets that family through,
/// and a rule of its own keeps every other netlink protocol denied.
fn allow_route_netlink(socket: &mut Vec<Rule>) {
    let netlink = libc::AF_NETLINK as u64;
    for rule in socket.iter_mut().filter(|r| r.iter().all(|c| c.arg == 0 && c.op == CmpOp::Ne)) {
        rule.push(ArgCmp::dword(0, CmpOp::Ne, netlink));
    }
    socket.push(vec![ArgCmp::dword(0, CmpOp::Eq, netlink), ArgCmp::dword(2, CmpOp::Ne, libc::NETLINK_ROUTE as u64)]);
}

fn needed(sys: Sysno) -> bool {
    LAUNCHER_NEEDS.iter().any(|(name, _)| *name == sys.name())
}

fn entry(
    names: Vec<String>,
    action: Action,
    errno: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> Result<LinuxSyscall, ExportError> {
    let mut b = LinuxSyscallBuilder::default().names(names).action(action);
    if let Some(errno) = errno {
        b = b.errno_ret(errno);
    }
    if let Some(args) = args {
        b = b.args(args);
    }
    Ok(b.build()?)
}

/// The architectures whose calls the profile decides; a call of any other gets the runtime's
/// bad-architecture action, which kills, as the launcher's own filter does. On x86-64, x32 is
/// listed (with the same rules by name) because the launcher probes whether the kernel runs x32
/// calls, and then guards that number space itself; 32-bit x86 (`int 0x80`, with `socketcall`
/// in place of `socket`) is not.
fn architectures() -> Vec<Arch> {
    #[cfg(target_arch = "x86_64")]
    return vec![Arch::ScmpArchX86_64, Arch::ScmpArchX32];
    #[cfg(target_arch = "aarch64")]
    return vec![Arch::ScmpArchAarch64];
    #[cfg(target_arch = "riscv64")]
    return vec![Arch::ScmpArchRiscv64];
}

/// The rule as ORed rules that each compare an argument at most once: every argument's
/// comparisons become alternatives of single comparisons, and the rules are their cross product.
fn one_per_argument(sys: Sysno, rule: &Rule) -> Result<Vec<Vec<LinuxSeccompArg>>, ExportError> {
    let mut by_arg: BTreeMap<u8, Vec<ArgCmp>> = BTreeMap::new();
    for c in rule {
        by_arg.entry(c.arg).or_default().push(*c);
    }
    let mut out: Vec<Vec<LinuxSeccompArg>> = vec![Vec::new()];
    for (arg, cmps) in by_arg {
        let unexportable = || ExportError::Unexportable { syscall: sys.name(), arg, cmps: format!("{cmps:?}") };
        let alternatives = match alternatives(&cmps).ok_or_else(unexportable)? {
            Alternatives::Always => continue,
            Alternatives::AnyOf(list) => list.into_iter().map(|a| arg_of(arg, a)).collect::<Result<Vec<_>, _>>()?,
        };
        out = out
            .iter()
            .flat_map(|rule| alternatives.iter().map(move |a| rule.iter().copied().chain([*a]).collect()))
            .collect();
    }
    Ok(out)
}

/// One comparison as OCI writes it: `(op, value, value_two)` (`MASKED_EQ`: mask, then value).
type Comparison = (Op, u64, Option<u64>);

/// One argument's comparisons, as ORed single comparisons.
enum Alternatives {
    /// They always hold: no comparison is needed.
    Always,
    AnyOf(Vec<Comparison>),
}

/// `None` when the comparisons cannot be written one at a time (no rule of the launcher's).
fn alternatives(cmps: &[ArgCmp]) -> Option<Alternatives> {
    const LOW: u64 = 0xffff_ffff;
    let masked = |mask: u64, value: u64| (Op::ScmpCmpMaskedEq, mask, Some(value));
    let none_of = |values: Vec<u32>| complement(&values).into_iter().map(|(m, v)| masked(m, v)).collect();
    if let [c] = cmps {
        return Some(Alternatives::AnyOf(match (c.op, c.dword) {
            (CmpOp::Ge, false) if c.value == 0 => return Some(Alternatives::Always),
            (CmpOp::Eq, false) => vec![(Op::ScmpCmpEq, c.value, None)],
            (CmpOp::MaskedEq(mask), false) => vec![masked(mask, c.value)],
            (CmpOp::Eq, true) => vec![masked(LOW, c.value & LOW)],
            (CmpOp::MaskedEq(mask), true) => vec![masked(mask & LOW, c.value & LOW)],
            (CmpOp::Ne, true) => none_of(vec![c.value as u32]),
            _ => return None,
        }));
    }
    // Several comparisons of one 32-bit argument: only "none of these values" is used.
    if !cmps.iter().all(|c| c.op == CmpOp::Ne && c.dword) {
        return None;
    }
    Some(Alternatives::AnyOf(none_of(cmps.iter().map(|c| c.value as u32).collect())))
}

fn arg_of(index: u8, (op, value, value_two): Comparison) -> Result<LinuxSeccompArg, ExportError> {
    let b = LinuxSeccompArgBuilder::default().index(index as usize).op(op).value(value);
    let b = match value_two {
        Some(two) => b.value_two(two),
        None => b,
    };
    Ok(b.build()?)
}

/// Masked comparisons `(mask, value)` on the low 32 bits of an argument that hold exactly for the
/// values not in `set`: the subtrees of the binary trie of 32-bit values (most significant bit
/// first) that hold no member of `set`, each a fixed prefix. At most 32 per member.
pub fn complement(set: &[u32]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    subtrees_without(set, 0, 0, &mut out);
    out
}

/// The subtree of the values whose top `depth` bits are `prefix`.
fn subtrees_without(set: &[u32], prefix: u32, depth: u32, out: &mut Vec<(u64, u64)>) {
    let mask = if depth == 0 { 0 } else { u32::MAX << (32 - depth) };
    let inside: Vec<u32> = set.iter().copied().filter(|v| v & mask == prefix).collect();
    if inside.is_empty() {
        out.push((mask as u64, prefix as u64));
        return;
    }
    if depth == 32 {
        return; // a member itself
    }
    let bit = 1u32 << (31 - depth);
    subtrees_without(&inside, prefix, depth + 1, out);
    subtrees_without(&inside, prefix | bit, depth + 1, out);
}

/// What is wrong with an exported profile, checked against the policy it came from: a rule that
/// compares an argument twice, a name this architecture does not know, a call of the deny-set
/// (minus [`LAUNCHER_NEEDS`]) that no unconditional rule denies with the launcher's action.
pub fn lint(profile: &LinuxSeccomp, policy: &SyscallPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    let entries = profile.syscalls().as_deref().unwrap_or_default();
    for e in entries {
        for name in e.names() {
            if name.parse::<Sysno>().is_err() {
                problems.push(format!("`{name}` is not a syscall of this architecture"));
            }
        }
        let args = e.args().as_deref().unwrap_or_default();
        for (i, a) in args.iter().enumerate() {
            if args[..i].iter().any(|b| b.index() == a.index()) {
                problems.push(format!("a rule for {:?} compares argument {} twice", e.names(), a.index()));
            }
        }
    }
    let (action, _) = deny_action(policy.action);
    for sys in policy.deny.iter().filter(|s| !needed(**s)) {
        let denied = entries
            .iter()
            .any(|e| e.action() == action && e.args().is_none() && e.names().iter().any(|n| n == sys.name()));
        if !denied {
            problems.push(format!("{} of the deny-set is not denied", sys.name()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::seccomp::SocketPolicy;

    /// Does `(mask, value)` hold for `v` (the low 32 bits)?
    fn holds(cubes: &[(u64, u64)], v: u32) -> bool {
        cubes.iter().any(|(m, x)| (v as u64) & m == *x)
    }

    #[test]
    fn the_complement_holds_for_every_value_but_the_members() {
        for set in [vec![], vec![0], vec![0, u32::MAX], vec![1, 2, 10], vec![0, 6], vec![0, 17], vec![7]] {
            let cubes = complement(&set);
            assert!(cubes.len() <= 32 * set.len().max(1), "{set:?}: {} comparisons", cubes.len());
            for v in set.iter().copied().chain([0, 1, 2, 3, 5, 6, 10, 17, 255, 1 << 31, u32::MAX - 1, u32::MAX]) {
                assert_eq!(holds(&cubes, v), !set.contains(&v), "{set:?} at {v:#x}");
            }
        }
    }

    #[test]
    fn the_complement_of_a_small_set_is_exact_over_16_bits() {
        let set = [0u32, 6, 0xffff];
        let cubes = complement(&set);
        for v in 0..=0x1_0000u32 {
            assert_eq!(holds(&cubes, v), !set.contains(&v), "{v:#x}");
        }
    }

    fn policy(sockets: SocketPolicy) -> SyscallPolicy {
        SyscallPolicy::new([], [], Violation::Errno, sockets)
    }

    #[test]
    fn the_export_lints_clean_and_keeps_what_the_launcher_needs() {
        for sockets in [SocketPolicy::default(), SocketPolicy { tcp: true, udp: true, unix: false, listen: false }] {
            let p = policy(sockets);
            let profile = profile(&p, false).unwrap();
            assert_eq!(lint(&profile, &p), Vec::<String>::new());
            let names: Vec<&String> = profile.syscalls().as_ref().unwrap().iter().flat_map(|e| e.names()).collect();
            assert!(names.iter().any(|n| *n == "bpf"));
            assert!(!names.iter().any(|n| *n == "mount" || *n == "pidfd_getfd"), "the launcher needs them");
        }
    }

    #[test]
    fn the_lint_catches_a_missing_deny_and_a_twice_compared_argument() {
        let p = policy(SocketPolicy::default());
        let mut profile = profile(&p, false).unwrap();
        let mut entries = profile.syscalls().clone().unwrap();
        let names = entries[0].names().iter().filter(|n| *n != "bpf").cloned().collect();
        entries[0].set_names(names);
        let twice = arg_of(0, (Op::ScmpCmpNe, 0, None)).unwrap();
        entries
            .push(entry(vec!["personality".into()], Action::ScmpActErrno, Some(1), Some(vec![twice, twice])).unwrap());
        entries.push(entry(vec!["no_such_call".into()], Action::ScmpActErrno, Some(1), None).unwrap());
        profile.set_syscalls(Some(entries));
        let problems = lint(&profile, &p).join("\n");
        assert!(problems.contains("bpf of the deny-set is not denied"), "{problems}");
        assert!(problems.contains("compares argument 0 twice"), "{problems}");
        assert!(problems.contains("`no_such_call`"), "{problems}");
    }
}
