//! The kernel axis: whether the seccomp filter runs and refuses, and each dangerous family of
//! system calls it closes (user namespaces, io_uring, bpf and perf, ptrace, the mount API,
//! keyrings, TTY injection, the rest of the default deny-set).

use syscalls::Sysno;

use crate::layers::seccomp::DEFAULT_DENY;
use crate::plan::Layer;
use crate::profile::Violation;

use super::{Assessor, Axis, Ctx, Finding, Grade, graded, list};

/// The system calls of each family row; the clone namespace flags and TIOCSTI are argument
/// rules every filter has.
pub const FAMILIES: &[(&str, &[&str])] = &[
    ("kernel.userns", &["unshare"]),
    ("kernel.io-uring", &["io_uring_setup", "io_uring_enter", "io_uring_register"]),
    ("kernel.bpf-perf", &["bpf", "perf_event_open"]),
    ("kernel.ptrace", &["ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp"]),
    (
        "kernel.mount",
        &[
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "mount_setattr",
        ],
    ),
    ("kernel.keyctl", &["keyctl", "add_key", "request_key"]),
];

/// Counted by `files.exec-writable`, not by `kernel.other-surface`.
const COUNTED_ELSEWHERE: &[&str] = &["memfd_create"];

const fn family(id: &'static str, title: &'static str, assess: fn(&Ctx<'_>) -> Finding) -> Assessor {
    Assessor {
        id,
        axis: Axis::Kernel,
        title,
        layers: &[Layer::Seccomp],
        grades: &[CLOSED, OPEN],
        hint: "remove these names from [syscalls] allow; keep the seccomp layer on with on-violation = \"errno\" or \"kill\"",
        assess,
    }
}

pub const ASSESSORS: &[Assessor] = &[
    Assessor {
        id: "kernel.seccomp",
        axis: Axis::Kernel,
        title: "the seccomp filter",
        layers: &[Layer::Seccomp],
        grades: &[FILTER_ENFORCED, FILTER_LOG, FILTER_NONE],
        hint: "keep the seccomp layer on (--require seccomp=required) and [syscalls] on-violation = \"errno\" or \"kill\"; do not run with --mode audit",
        assess: filter,
    },
    family("kernel.userns", "user namespaces: kernel code normally reserved for root", |c| closed(c, 0)),
    family("kernel.io-uring", "io_uring: a second syscall interface with a long CVE history", |c| closed(c, 1)),
    family("kernel.bpf-perf", "eBPF programs and performance counters", |c| closed(c, 2)),
    family("kernel.ptrace", "reading and writing other processes", |c| closed(c, 3)),
    family("kernel.mount", "the mount table and the root directory", |c| closed(c, 4)),
    family("kernel.keyctl", "kernel keyrings", |c| closed(c, 5)),
    Assessor {
        id: "kernel.tiocsti",
        axis: Axis::Kernel,
        title: "typing into the user's terminal (TIOCSTI, TIOCLINUX)",
        layers: &[Layer::Seccomp],
        grades: &[CLOSED, TIOCSTI_SETSID],
        hint: "keep the seccomp layer on",
        assess: tiocsti,
    },
    Assessor {
        id: "kernel.other-surface",
        axis: Axis::Kernel,
        title: "the rest of the default deny-set (modules, kexec, userfaultfd, handles, clocks, ...)",
        layers: &[Layer::Seccomp],
        grades: &[CLOSED, PARTLY_OPEN, OPEN],
        hint: "remove these names from [syscalls] allow; keep the seccomp layer on",
        assess: other_surface,
    },
];

const FILTER_ENFORCED: Grade = Grade { name: "enforced", badness: 0, means: "installed, refusing what it denies" };
const FILTER_LOG: Grade =
    Grade { name: "log", badness: 100, means: "installed but only logging (on-violation = \"log\", audit mode)" };
const FILTER_NONE: Grade = Grade { name: "none", badness: 100, means: "no filter" };
pub const CLOSED: Grade = Grade { name: "closed", badness: 0, means: "every call of the family denied" };
pub const OPEN: Grade = Grade { name: "open", badness: 100, means: "some call of the family reachable" };
const PARTLY_OPEN: Grade = Grade { name: "partly-open", badness: 50, means: "some of the rest allowed" };
const TIOCSTI_SETSID: Grade = Grade {
    name: "setsid",
    badness: 20,
    means: "no filter, but the server has no controlling terminal (new session) to inject into",
};

fn filter(c: &Ctx<'_>) -> Finding {
    let on = c.plan.level(Layer::Seccomp) != crate::profile::Level::Off;
    match (c.mech.seccomp, on, c.plan.syscalls().action) {
        (true, _, a) => graded(&FILTER_ENFORCED, format!("{} calls denied ({a:?})", c.plan.syscalls().deny.len())),
        (false, true, _) if c.plan.audit_mode() => {
            graded(&FILTER_LOG, "audit mode: denied calls are logged, not refused")
        }
        (false, true, Violation::Log) => graded(&FILTER_LOG, "[syscalls] on-violation = \"log\""),
        (false, _, _) => graded(&FILTER_NONE, "the seccomp layer is off or missing on this host"),
    }
}

/// The names of `names` the view leaves reachable.
fn reachable<'a>(c: &Ctx<'_>, names: &[&'a str]) -> Vec<&'a str> {
    let deny = &c.plan.syscalls().deny;
    names.iter().filter(|n| n.parse::<Sysno>().is_ok_and(|s| !c.mech.seccomp || !deny.contains(&s))).copied().collect()
}

fn closed(c: &Ctx<'_>, family: usize) -> Finding {
    let names = FAMILIES[family].1;
    let open = reachable(c, names);
    match (open.is_empty(), c.mech.seccomp) {
        (true, _) => graded(&CLOSED, format!("{} denied", list(names, 3))),
        (false, false) => graded(&OPEN, "no refusing seccomp filter"),
        (false, true) => graded(&OPEN, format!("allowed: {}", list(open, 4))),
    }
}

fn tiocsti(c: &Ctx<'_>) -> Finding {
    match c.mech.seccomp {
        true => graded(&CLOSED, "ioctl TIOCSTI and TIOCLINUX denied; no controlling terminal"),
        false => graded(&TIOCSTI_SETSID, "no filter; the server runs in a new session, without a controlling terminal"),
    }
}

/// The default deny-set minus the families above.
fn rest() -> Vec<&'static str> {
    let in_family = |n: &str| FAMILIES.iter().any(|(_, f)| f.contains(&n)) || COUNTED_ELSEWHERE.contains(&n);
    DEFAULT_DENY.iter().map(|(n, _)| *n).filter(|n| !in_family(n) && n.parse::<Sysno>().is_ok()).collect()
}

fn other_surface(c: &Ctx<'_>) -> Finding {
    let all = rest();
    let open = reachable(c, &all);
    if open.is_empty() {
        graded(&CLOSED, format!("{} calls denied", all.len()))
    } else if open.len() == all.len() {
        graded(
            &OPEN,
            if c.mech.seccomp { format!("allowed: {}", list(open, 4)) } else { "no refusing seccomp filter".into() },
        )
    } else {
        graded(&PARTLY_OPEN, format!("allowed: {}", list(open, 4)))
    }
}
