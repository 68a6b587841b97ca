//! The limits axis: one row per resource limit of `plan::limits::LIMITS`, graded set, loose (above
//! the data's threshold) or unset; max-processes also by whether it binds (RLIMIT_NPROC does not
//! bind uid 0 without a pids cgroup).

use crate::plan::Layer;
use crate::plan::limits;

use super::{Assessor, Axis, Ctx, Finding, Grade, graded};

const fn row(
    id: &'static str,
    title: &'static str,
    grades: &'static [Grade],
    assess: fn(&Ctx<'_>) -> Finding,
) -> Assessor {
    Assessor {
        id,
        axis: Axis::Limits,
        title,
        layers: &[Layer::Limits],
        grades,
        hint: "set it in [process] (or with its flag, e.g. --max-memory 2G) at what the server needs",
        assess,
    }
}

/// One row per limit, in the table's order (a unit test keeps them in step).
pub const ASSESSORS: &[Assessor] = &[
    row("limits.max-processes", "processes and threads (fork bombs)", &[SET, LOOSE, NOT_BINDING, UNSET], |c| {
        limit(c, "max-processes")
    }),
    row("limits.max-open-files", "open file descriptors", GRADES, |c| limit(c, "max-open-files")),
    row("limits.max-memory", "memory", GRADES, |c| limit(c, "max-memory")),
    row("limits.max-file-size", "the largest file written (filling the disk)", GRADES, |c| limit(c, "max-file-size")),
    row("limits.max-cpu-time", "CPU seconds per process", GRADES, |c| limit(c, "max-cpu-time")),
];

/// The grades of every limit but max-processes.
const GRADES: &[Grade] = &[SET, LOOSE, UNSET];

const SET: Grade = Grade { name: "set", badness: 0, means: "set at or below the data's threshold" };
const LOOSE: Grade = Grade { name: "loose", badness: 50, means: "set above the data's threshold" };
const NOT_BINDING: Grade = Grade {
    name: "not-binding",
    badness: 100,
    means: "set, but RLIMIT_NPROC does not bind uid 0 and no pids cgroup does",
};
const UNSET: Grade = Grade { name: "unset", badness: 100, means: "no limit" };

fn limit(c: &Ctx<'_>, key: &str) -> Finding {
    let Some(spec) = limits::spec(key) else {
        return Finding::NotApplicable(format!("no limit `{key}`"));
    };
    let Some(value) = c.plan.limits().get(key) else {
        return graded(&UNSET, "unlimited");
    };
    let shown = spec.unit.show(value);
    if key == "max-processes" && c.plan.identity().uid == 0 && !c.mech.pids_cgroup {
        return graded(&NOT_BINDING, format!("{shown}, but uid 0 without a pids cgroup"));
    }
    match c.data.loose_limits.get(key) {
        Some(loose) if value > *loose => graded(&LOOSE, format!("{shown} (above {})", spec.unit.show(*loose))),
        _ => graded(&SET, shown),
    }
}
