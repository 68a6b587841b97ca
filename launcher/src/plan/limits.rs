//! Resource limits: one table row per limit (its flag and profile key, rlimit, cgroup file and how
//! it prints), and the limits of a plan resolved from it: rlimits for stage 2, cgroup files for
//! the supervisor, the report for `explain`.
//!
//! Adding a limit is one row in [`LIMITS`] and its field in the profile's `[process]` section.

use nix::sys::resource::Resource;

use crate::host::HostFacts;
use crate::layers::cgroup::{Backend, LimitWrite};
use crate::profile::{Process, Size};

use super::report::Enforcement;

/// How a limit's value is written and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    Count,
    /// Bytes: `512M` (a [`Size`]).
    Bytes,
    /// Seconds: printed `30s`.
    Seconds,
}

impl Unit {
    /// The command line's placeholder.
    pub fn value_name(self) -> &'static str {
        match self {
            Unit::Count => "N",
            Unit::Bytes => "SIZE",
            Unit::Seconds => "SECONDS",
        }
    }

    /// Parses a command-line value.
    pub fn parse(self, s: &str) -> Result<u64, LimitValueError> {
        match self {
            Unit::Bytes => Ok(s.parse::<Size>()?.0),
            Unit::Count | Unit::Seconds => Ok(s.parse::<u64>()?),
        }
    }

    pub fn show(self, v: u64) -> String {
        match self {
            Unit::Count => v.to_string(),
            Unit::Bytes => Size(v).to_string(),
            Unit::Seconds => format!("{v}s"),
        }
    }
}

/// A command-line value that is not a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitValueError {
    #[error(transparent)]
    Size(#[from] crate::profile::SizeError),
    #[error(transparent)]
    Number(#[from] std::num::ParseIntError),
}

impl crate::error::Diagnose for LimitValueError {}

/// A cgroup controller that enforces a limit for the whole server tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupFile {
    pub controller: &'static str,
    /// The limit's file under cgroup v2.
    pub v2: &'static str,
    /// The limit's file under a cgroup v1 hierarchy of the controller.
    pub v1: &'static str,
}

/// One resource limit: every place it appears.
#[derive(Debug, Clone, Copy)]
pub struct LimitSpec {
    /// The key under `[process]`, and the command-line flag (`--max-memory`).
    pub key: &'static str,
    /// The command line's help.
    pub help: &'static str,
    pub unit: Unit,
    /// The rlimit stage 2 sets, and its name in reports (`NOFILE`).
    pub rlimit: Resource,
    pub rlimit_name: &'static str,
    /// The cgroup file that also enforces it, when a controller is available.
    pub cgroup: Option<CgroupFile>,
    /// Its name in `explain`'s limits.
    pub label: &'static str,
    /// Its field in the profile's `[process]` section.
    pub get: fn(&Process) -> Option<u64>,
    pub set: fn(&mut Process, u64),
}

/// Every limit, in the order reports list them.
pub const LIMITS: [LimitSpec; 5] = [
    LimitSpec {
        key: "max-processes",
        help: "Most processes/threads of the server tree",
        unit: Unit::Count,
        rlimit: Resource::RLIMIT_NPROC,
        rlimit_name: "NPROC",
        cgroup: Some(CgroupFile { controller: "pids", v2: "pids.max", v1: "pids.max" }),
        label: "processes",
        get: |p| p.max_processes,
        set: |p, v| p.max_processes = Some(v),
    },
    LimitSpec {
        key: "max-open-files",
        help: "Most open file descriptors per process",
        unit: Unit::Count,
        rlimit: Resource::RLIMIT_NOFILE,
        rlimit_name: "NOFILE",
        cgroup: None,
        label: "open files",
        get: |p| p.max_open_files,
        set: |p, v| p.max_open_files = Some(v),
    },
    LimitSpec {
        key: "max-memory",
        help: "Most memory, e.g. 512M or 2G",
        unit: Unit::Bytes,
        rlimit: Resource::RLIMIT_DATA,
        rlimit_name: "DATA",
        cgroup: Some(CgroupFile { controller: "memory", v2: "memory.max", v1: "memory.limit_in_bytes" }),
        label: "memory",
        get: |p| p.max_memory.map(|s| s.0),
        set: |p, v| p.max_memory = Some(Size(v)),
    },
    LimitSpec {
        key: "max-file-size",
        help: "Largest file the server may write, e.g. 64M",
        unit: Unit::Bytes,
        rlimit: Resource::RLIMIT_FSIZE,
        rlimit_name: "FSIZE",
        cgroup: None,
        label: "file size",
        get: |p| p.max_file_size.map(|s| s.0),
        set: |p, v| p.max_file_size = Some(Size(v)),
    },
    LimitSpec {
        key: "max-cpu-time",
        help: "CPU seconds per process",
        unit: Unit::Seconds,
        rlimit: Resource::RLIMIT_CPU,
        rlimit_name: "CPU",
        cgroup: None,
        label: "cpu time",
        get: |p| p.max_cpu_time,
        set: |p, v| p.max_cpu_time = Some(v),
    },
];

/// The row of `key` (`max-memory`).
pub fn spec(key: &str) -> Option<&'static LimitSpec> {
    LIMITS.iter().find(|l| l.key == key)
}

/// The limits of a plan: the value of each limit set, and the cgroup files that enforce some.
#[derive(Debug, Clone, Default)]
pub struct LimitsPlan {
    /// `(row, value)` in table order, for the limits set (core dumps are always off).
    pub values: Vec<(&'static LimitSpec, u64)>,
    /// Limits a cgroup enforces too (empty when the `limits` layer is off).
    pub cgroup: Vec<LimitWrite>,
    /// Limits lowered to the hard limit this launcher inherited (a container's `ulimit`), which
    /// it cannot raise without `CAP_SYS_RESOURCE`: `(row, the profile's value)`. Lower is
    /// stricter, so the layer still holds; the server may run short of what the profile grants.
    pub clamped: Vec<(&'static LimitSpec, u64)>,
}

impl LimitsPlan {
    /// The profile's limits (the command line's already merged in), and the cgroup controllers
    /// of this host that can enforce them for the whole tree.
    pub fn resolve(process: &Process, layer_on: bool, host: &HostFacts) -> Self {
        let mut values: Vec<_> = LIMITS.iter().filter_map(|l| Some((l, (l.get)(process)?))).collect();
        let mut clamped = Vec::new();
        if !host.has_cap(caps::Capability::CAP_SYS_RESOURCE) {
            for (l, v) in &mut values {
                let hard = nix::sys::resource::getrlimit(l.rlimit).map_or(u64::MAX, |(_, hard)| hard);
                if hard < *v {
                    clamped.push((*l, *v));
                    *v = hard;
                }
            }
        }
        let cgroup = if layer_on { cgroup_writes(&values, host) } else { Vec::new() };
        LimitsPlan { values, cgroup, clamped }
    }

    /// One line per clamped limit, for the run's warnings.
    pub fn clamp_notes(&self) -> impl Iterator<Item = String> + '_ {
        self.clamped.iter().map(|(l, wanted)| {
            let now = self.get(l.key).unwrap_or_default();
            format!(
                "{}: {} instead of the profile's {}: the hard limit this launcher inherited (RLIMIT_{}) is lower and only CAP_SYS_RESOURCE could raise it",
                l.key,
                l.unit.show(now),
                l.unit.show(*wanted),
                l.rlimit_name
            )
        })
    }

    /// The value of the limit `key` (`max-memory`), if set.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.values.iter().find(|(l, _)| l.key == key).map(|(_, v)| *v)
    }

    /// The rlimits stage 2 sets, after `RLIMIT_CORE = 0`.
    pub fn rlimits(&self) -> impl Iterator<Item = (Resource, u64)> + '_ {
        self.values.iter().map(|(l, v)| (l.rlimit, *v))
    }

    /// Enforced in full, or why not; and the mechanism, for the report.
    pub fn report(&self, uid: u32) -> (Enforcement, String) {
        let mut mech = vec!["rlimits (CORE=0".to_string()];
        mech.extend(self.values.iter().map(|(l, v)| {
            let clamped = if self.clamped.iter().any(|(c, _)| c.key == l.key) { " (inherited hard limit)" } else { "" };
            format!("{}={}{clamped}", l.rlimit_name, l.unit.show(*v))
        }));
        let mut mech = mech.join(", ") + ")";
        for w in &self.cgroup {
            mech.push_str(&format!("; {}={} in {}", w.file, w.value, w.backend));
        }
        let has_pids_cgroup = self.cgroup.iter().any(|w| w.file == "pids.max");
        if self.get("max-processes").is_some() && uid == 0 && !has_pids_cgroup {
            return (
                Enforcement::Partial(
                    "max-processes: RLIMIT_NPROC does not bind uid 0 and no pids cgroup is available (run the server as another user, or delegate the pids controller)".into(),
                ),
                mech,
            );
        }
        (Enforcement::Full, mech)
    }
}

/// The cgroup files to write for the limits a controller of this host can enforce.
fn cgroup_writes(values: &[(&'static LimitSpec, u64)], host: &HostFacts) -> Vec<LimitWrite> {
    let mut out = Vec::new();
    for (spec, value) in values {
        let Some(cg) = spec.cgroup else { continue };
        let Some(backend) = host.cgroups.backend_for(cg.controller) else { continue };
        let file = match backend {
            Backend::V2 { .. } => cg.v2,
            Backend::V1 { .. } => cg.v1,
        };
        out.push(LimitWrite { backend, file, value: value.to_string() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_a_process_key_with_a_distinct_rlimit() {
        let schema = crate::profile::json_schema();
        for (i, l) in LIMITS.iter().enumerate() {
            assert!(schema.contains(&format!("\"{}\"", l.key)), "{} is not a profile key", l.key);
            assert!(LIMITS[..i].iter().all(|o| o.rlimit != l.rlimit && o.key != l.key), "{} twice", l.key);
            let mut p = Process::default();
            (l.set)(&mut p, 4096);
            assert_eq!((l.get)(&p), Some(4096), "{}: set and get name the same field", l.key);
        }
    }

    #[test]
    fn values_print_in_their_unit() {
        assert_eq!(spec("max-memory").unwrap().unit.show(1 << 20), "1M");
        assert_eq!(spec("max-cpu-time").unwrap().unit.show(30), "30s");
        assert_eq!(Unit::Bytes.parse("2G").unwrap(), 2 << 30);
        assert!(Unit::Count.parse("lots").is_err());
    }
}
