//! What a call the seccomp filter refused was: the arguments that decided it, by name, the path it
//! names (where its memory must be read), the rule in words, and the profile key that would grant
//! it. Pure: the supervisor reads the memory and writes the record (layers/refusals.rs).

use std::collections::BTreeMap;

use syscalls::Sysno;

use super::seccomp::{CLONE_NS_FLAGS, DEFAULT_DENY, DENIED_IOCTLS, SyscallPolicy};

/// Where a refused call names a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathArg {
    /// A string pointer in this argument, relative to the caller's working directory.
    Path(usize),
    /// A string pointer relative to the directory fd in the first argument (`*at` calls).
    At(usize),
    /// A file descriptor in this argument.
    Fd(usize),
}

/// One refused call, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCall {
    pub syscall: String,
    pub args: BTreeMap<String, String>,
    pub path: Option<PathArg>,
    pub reason: String,
    /// What would allow it, for the line on stderr.
    pub grant: String,
}

/// Describes a call that `policy`'s filter refused.
pub fn describe(policy: &SyscallPolicy, nr: i64, a: &[u64; 6]) -> RefusedCall {
    let sys = Sysno::new(nr as usize);
    let syscall = sys.map_or_else(|| format!("syscall_{nr}"), |s| s.name().to_string());
    if let Some(s) = sys.filter(|s| policy.deny.contains(s)) {
        return whole(s, syscall);
    }
    let mut args = BTreeMap::new();
    let (path, reason, grant) = match sys {
        Some(Sysno::socket) => {
            args.insert("family".into(), family(a[0]));
            args.insert("type".into(), sock_type(a[1]));
            args.insert("protocol".into(), a[2].to_string());
            (
                None,
                "this socket family, type or protocol is not in the profile's network section",
                socket_grant(a[0], a[1]),
            )
        }
        Some(Sysno::ioctl) => {
            args.insert("request".into(), named(a[1] as u32 as u64, DENIED_IOCTLS));
            (
                Some(PathArg::Fd(0)),
                "a TTY ioctl that injects input into the terminal",
                "no profile key (always refused)",
            )
        }
        Some(Sysno::sendto | Sysno::sendmsg | Sysno::sendmmsg) if crate::layers::seccomp::fast_open(nr, a) => {
            args.insert("flags".into(), "MSG_FASTOPEN".into());
            (
                Some(PathArg::Fd(0)),
                "TCP Fast Open connects inside a send, out of the network rules' sight",
                "no profile key (always refused; a plain connect works)",
            )
        }
        Some(Sysno::clone) => {
            args.insert("flags".into(), flags(a[0], CLONE_NS_FLAGS));
            (None, "clone with a namespace flag", "no profile key (always refused)")
        }
        Some(Sysno::fcntl) => {
            args.insert("cmd".into(), "F_SETLEASE".into());
            (
                Some(PathArg::Fd(0)),
                "a lease would stall other processes' opens of the file",
                "no profile key (always refused)",
            )
        }
        Some(Sysno::personality) => {
            args.insert("persona".into(), format!("{:#x}", a[0] as u32));
            (None, "a personality other than the default", "no profile key (always refused)")
        }
        Some(Sysno::setsockopt) => {
            args.insert("level".into(), a[1].to_string());
            let option = crate::layers::seccomp::denied_sockopt(a[1], a[2]).unwrap_or("?");
            args.insert("option".into(), option.into());
            (
                Some(PathArg::Fd(0)),
                "a socket option that would send traffic past the network rules (an IPv6 routing header) or choose the socket's port",
                "no profile key (always refused)",
            )
        }
        Some(Sysno::listen) => (
            Some(PathArg::Fd(0)),
            "listen on a socket: with no [network] bind port granted, it would listen on a port of the kernel's choosing",
            "[network] bind = [PORT], and bind that port before listening",
        ),
        Some(s) => return mode_bits(s, syscall, a),
        None => (None, "an unknown system call number", "no profile key"),
    };
    RefusedCall { syscall, args, path, reason: reason.into(), grant: grant.into() }
}

/// A call of the deny-set: the whole call is refused.
fn whole(s: Sysno, syscall: String) -> RefusedCall {
    let why = DEFAULT_DENY.iter().find(|(n, _)| *n == s.name()).map(|(_, why)| *why);
    RefusedCall {
        reason: why
            .map_or_else(|| "in the profile's syscalls.deny".into(), |w| format!("in the default deny-set: {w}")),
        grant: format!("syscalls.allow = [\"{}\"]", s.name()),
        syscall,
        args: BTreeMap::new(),
        path: whole_path(s),
    }
}

/// The path of a deny-set call that names one (for the record: `mount`'s target, ...).
fn whole_path(s: Sysno) -> Option<PathArg> {
    match s {
        Sysno::chroot | Sysno::umount2 | Sysno::swapon | Sysno::swapoff | Sysno::acct => Some(PathArg::Path(0)),
        Sysno::mount => Some(PathArg::Path(1)),
        Sysno::pivot_root => Some(PathArg::Path(0)),
        Sysno::open_by_handle_at => Some(PathArg::Fd(0)),
        Sysno::name_to_handle_at => Some(PathArg::At(1)),
        _ => None,
    }
}

/// The mode-bit rules: S_ISUID or S_ISGID in a mode argument.
fn mode_bits(s: Sysno, syscall: String, a: &[u64; 6]) -> RefusedCall {
    let (mode, path, open_flags) = match s {
        Sysno::chmod | Sysno::creat | Sysno::mknod => (a[1], Some(PathArg::Path(0)), None),
        Sysno::fchmod => (a[1], Some(PathArg::Fd(0)), None),
        Sysno::fchmodat | Sysno::fchmodat2 | Sysno::mknodat => (a[2], Some(PathArg::At(1)), None),
        Sysno::open => (a[2], Some(PathArg::Path(0)), Some(a[1])),
        Sysno::openat => (a[3], Some(PathArg::At(1)), Some(a[2])),
        _ => {
            return RefusedCall {
                syscall,
                args: BTreeMap::new(),
                path: None,
                reason: "refused by a rule of the seccomp filter".into(),
                grant: "no profile key".into(),
            };
        }
    };
    let mut args = BTreeMap::from([("mode".to_string(), format!("0{:o}", mode as u32 & 0o7777))]);
    if let Some(f) = open_flags {
        args.insert("flags".into(), format!("0{:o}", f as u32));
    }
    RefusedCall {
        syscall,
        args,
        path,
        reason: "sets S_ISUID or S_ISGID (a setuid or setgid program)".into(),
        grant: "no profile key (always refused)".into(),
    }
}

/// The profile key that allows a socket of this family and type, if any does.
fn socket_grant(family: u64, ty: u64) -> &'static str {
    let inet = [libc::AF_INET, libc::AF_INET6].contains(&(family as i32));
    match (family as i32, ty as i32 & 0xf) {
        (libc::AF_UNIX, _) => "[network] unix = true",
        (_, libc::SOCK_DGRAM) if inet => "[network] udp = true",
        (_, libc::SOCK_STREAM) if inet => "a [network] connect or bind entry (TCP, protocol 0 or IPPROTO_TCP)",
        _ => "no profile key (this family or type is always refused)",
    }
}

fn family(f: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (libc::AF_UNIX as u64, "AF_UNIX"),
        (libc::AF_INET as u64, "AF_INET"),
        (libc::AF_INET6 as u64, "AF_INET6"),
        (libc::AF_NETLINK as u64, "AF_NETLINK"),
        (libc::AF_PACKET as u64, "AF_PACKET"),
        (libc::AF_BLUETOOTH as u64, "AF_BLUETOOTH"),
        (libc::AF_ALG as u64, "AF_ALG"),
        (libc::AF_VSOCK as u64, "AF_VSOCK"),
        (libc::AF_XDP as u64, "AF_XDP"),
    ];
    named(f as u32 as u64, NAMES)
}

fn sock_type(t: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (libc::SOCK_STREAM as u64, "SOCK_STREAM"),
        (libc::SOCK_DGRAM as u64, "SOCK_DGRAM"),
        (libc::SOCK_RAW as u64, "SOCK_RAW"),
        (libc::SOCK_RDM as u64, "SOCK_RDM"),
        (libc::SOCK_SEQPACKET as u64, "SOCK_SEQPACKET"),
        (10, "SOCK_PACKET"), // libc deprecates the constant, not the value
    ];
    named(t & 0xf, NAMES)
}

/// The name of `v` in `names`, or its number.
fn named(v: u64, names: &[(u64, &str)]) -> String {
    names.iter().find(|(n, _)| *n == v).map_or_else(|| format!("{v:#x}"), |(_, name)| (*name).to_string())
}

/// The names of the flags of `names` set in `v`, joined with `|`.
fn flags(v: u64, names: &[(u64, &str)]) -> String {
    let set: Vec<&str> = names.iter().filter(|(f, _)| v & f == *f).map(|(_, n)| *n).collect();
    if set.is_empty() { format!("{v:#x}") } else { set.join("|") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::seccomp::SocketPolicy;
    use crate::profile::Violation;

    fn policy() -> SyscallPolicy {
        SyscallPolicy::new([], [], Violation::Errno, SocketPolicy { tcp: true, udp: false, unix: false, listen: false })
    }

    #[test]
    fn a_refused_socket_names_family_and_type() {
        let r = describe(&policy(), libc::SYS_socket, &[2, 2 | 0o2000000, 0, 0, 0, 0]);
        assert_eq!((r.args["family"].as_str(), r.args["type"].as_str()), ("AF_INET", "SOCK_DGRAM"));
        assert_eq!(r.grant, "[network] udp = true");
        let r = describe(&policy(), libc::SYS_socket, &[libc::AF_PACKET as u64, 3, 0, 0, 0, 0]);
        assert_eq!((r.args["family"].as_str(), r.args["type"].as_str()), ("AF_PACKET", "SOCK_RAW"));
        assert!(r.grant.starts_with("no profile key"), "{r:?}");
    }

    #[test]
    fn a_deny_set_call_gives_its_reason_and_the_key_that_allows_it() {
        let r = describe(&policy(), libc::SYS_io_uring_setup, &[0; 6]);
        assert!(r.reason.contains("io_uring"), "{r:?}");
        assert_eq!(r.grant, "syscalls.allow = [\"io_uring_setup\"]");
    }

    #[test]
    fn mode_bits_are_named_with_the_path_argument() {
        let r = describe(&policy(), libc::SYS_fchmodat, &[libc::AT_FDCWD as u64, 0x1000, 0o4755, 0, 0, 0]);
        assert_eq!(r.args["mode"], "04755");
        assert_eq!(r.path, Some(PathArg::At(1)));
        let r = describe(&policy(), libc::SYS_clone, &[libc::CLONE_NEWUSER as u64 | 17, 0, 0, 0, 0, 0]);
        assert_eq!(r.args["flags"], "CLONE_NEWUSER");
        let r = describe(&policy(), libc::SYS_ioctl, &[0, libc::TIOCSTI, 0, 0, 0, 0]);
        assert_eq!(r.args["request"], "TIOCSTI");
    }
}
