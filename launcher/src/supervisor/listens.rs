//! `listen`, performed by the supervisor: on a socket never bound, the kernel binds a port of its
//! own choosing at `listen`, which neither Landlock's bind rule, the broker nor the eBPF bind
//! programs see. So a TCP socket is listened on only when it is bound to a `[network] bind` port;
//! a unix socket goes on. The call is made on the supervisor's duplicate of the socket it checked
//! (not let continue: a racing `dup2` could put another socket under the same number).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::BorrowedFd;

use nix::sys::socket::{AddressFamily, Backlog, SockaddrLike, SockaddrStorage, getsockname, listen};

use super::refusals::{Refusal, Refusals};
use crate::audit::record::DenyLayer;
use crate::sys::notify::{self, Notification};

/// Checks the socket the notified `listen` names, and listens on it if it may (or, with
/// `enforce` off, `--mode audit`, records what it would refuse and listens): the call's result.
pub fn perform(
    listener: BorrowedFd<'_>,
    n: &Notification,
    ports: &BTreeSet<u16>,
    refusals: &Refusals,
    enforce: bool,
) -> Result<i64, i32> {
    let sock = notify::caller_fd(listener, n, n.args[0])?;
    let local = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&sock)).map_err(|e| e as i32)?;
    let port = match local.family() {
        Some(AddressFamily::Inet) => local.as_sockaddr_in().map(|a| a.port()),
        Some(AddressFamily::Inet6) => local.as_sockaddr_in6().map(|a| a.port()),
        _ => None,
    };
    if let Some(port) = port.filter(|p| !ports.contains(p)) {
        refuse(n, port, refusals, enforce);
        if enforce {
            return Err(libc::EPERM);
        }
    }
    // the kernel caps the backlog at somaxconn: so does this
    let backlog = Backlog::new(n.args[1] as u32 as i32).unwrap_or(Backlog::MAXCONN);
    listen(&sock, backlog).map(|()| 0).map_err(|e| e as i32)
}

fn refuse(n: &Notification, port: u16, refusals: &Refusals, enforce: bool) {
    let reason = match port {
        0 => "listen on a socket never bound: the kernel would choose its port".to_string(),
        p => format!("TCP port {p} is not a [network] bind port"),
    };
    let mut args = BTreeMap::new();
    args.insert("fd".to_string(), (n.args[0] as u32 as i32).to_string());
    args.insert("port".to_string(), port.to_string());
    let refusal = Refusal {
        layer: DenyLayer::Seccomp,
        tid: n.pid,
        nr: n.nr,
        syscall: "listen".into(),
        args,
        path: None,
        reason,
        grant: "bind a [network] bind port before listening (--allow-bind PORT)".into(),
        errno: libc::EPERM,
    };
    refusals.record(refusal, enforce);
}
