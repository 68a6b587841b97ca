//! What Landlock does not see, route by route, and what closes each route in this plan on this
//! host (or that nothing does). `explain` prints it; docs/threat-model.md says the same in prose.

use syscalls::Sysno;

use super::{Enforcement, Layer, Plan};
use crate::profile::Level;

/// One route around Landlock and what closes it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindSpot {
    pub route: &'static str,
    /// `Some(mechanism)` when closed, `None` when open.
    pub closed_by: Option<&'static str>,
}

impl Plan {
    /// Every route Landlock does not see, in a fixed order.
    pub fn blind_spots(&self) -> Vec<BlindSpot> {
        let view = self.namespaces().mount;
        let seccomp = self.level(Layer::Seccomp) != Level::Off
            && !matches!(self.enforcement(Layer::Seccomp), Enforcement::Missing(_));
        let memfd_denied = seccomp && self.syscalls().deny.contains(&Sysno::memfd_create);
        let hidden = self.level(Layer::FsHide) != Level::Off && self.enforcement(Layer::FsHide) == &Enforcement::Full;
        let spot = |route, closed: bool, by| BlindSpot { route, closed_by: closed.then_some(by) };
        vec![
            spot(
                "metadata writes outside the write grants (chmod, chown, utimes, xattrs, inode flags)",
                view,
                "fs-view: every mount read-only (EROFS)",
            ),
            spot("setting S_ISUID or S_ISGID on any file", seccomp, "seccomp: mode-argument rules (EPERM)"),
            spot(
                "running a written file through the dynamic loader or /proc/self/fd",
                view,
                "fs-view: write grants mounted noexec",
            ),
            spot("running code from a memfd", memfd_denied, "seccomp: memfd_create denied (EPERM)"),
            spot(
                "stat, readlink, inotify, access, listxattr and O_PATH opens of paths outside the grants",
                hidden,
                "fs-hide: a root holding only the grants (ENOENT)",
            ),
            spot(
                "the host's System V shared memory, semaphores and message queues",
                self.namespaces().ipc,
                "an IPC namespace of its own",
            ),
            spot("an interpreter running a script it wrote (sh, python, node)", false, ""),
            spot("code a runtime writes into anonymous memory (JIT, ctypes)", false, ""),
        ]
    }
}
