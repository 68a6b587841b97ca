//! The floors: combinations so dangerous that no average may hide them. Each raises the score to
//! at least its minimum whatever the other rows say (a server perfect in every row but one that
//! reads `~/.ssh` and reaches any address still exfiltrates the key).

use serde::Serialize;

use super::{Row, Score, files, kernel, network, privilege};

/// A floor: its id, its minimum and when it holds.
#[derive(Debug)]
pub struct Floor {
    pub id: &'static str,
    pub min: Score,
    pub when: &'static str,
}

/// Every floor, strongest first.
pub const FLOORS: &[Floor] = &[
    Floor { id: "floor.audit-mode", min: Score::tenths(100), when: "--mode audit: nothing is enforced" },
    Floor {
        id: "floor.secrets-with-egress",
        min: Score::tenths(90),
        when: "readable secrets or secrets passed in the environment, with egress to any address (wildcard or unrestricted) or DNS to any server",
    },
    Floor {
        id: "floor.root-equivalent",
        min: Score::tenths(90),
        when: "uid 0 writing / or a system location (no Landlock, no filesystem view), or a container engine's socket reachable",
    },
    Floor {
        id: "floor.persistence",
        min: Score::tenths(75),
        when: "a start-up file, autostart entry, unit, crontab, PATH directory or /etc is writable",
    },
    Floor {
        id: "floor.kernel-surface",
        min: Score::tenths(75),
        when: "user namespaces or io_uring reachable: no refusing seccomp filter, or one that allows them",
    },
    Floor { id: "floor.unrestricted-egress", min: Score::tenths(50), when: "any port of any address is reachable" },
];

/// A floor that holds, and the rows that made it.
#[derive(Debug, Clone, Serialize)]
pub struct FloorHit {
    pub id: &'static str,
    pub min: Score,
    pub why: String,
}

/// The grade of row `id`, when it counts in the sums (a row the policy skips triggers nothing).
fn grade<'a>(rows: &'a [Row], id: &str) -> Option<(&'static str, &'a str)> {
    rows.iter().find(|r| r.id == id && r.counts()).and_then(|r| Some((r.grade?, r.found.as_str())))
}

fn is(rows: &[Row], id: &str, names: &[&str]) -> Option<String> {
    grade(rows, id).filter(|(g, _)| names.contains(g)).map(|(g, found)| format!("{id} {g}: {found}"))
}

/// The floors that hold for these rows.
pub fn hits(rows: &[Row]) -> Vec<FloorHit> {
    let readable = files::SECRET_READABLE.name;
    let secrets: Vec<String> = rows
        .iter()
        .filter(|r| r.id.starts_with("files.secrets."))
        .filter_map(|r| is(rows, r.id, &[readable]))
        .chain(is(rows, "privilege.env-secrets", &[privilege::ENV_ONE.name, privilege::ENV_SEVERAL.name]))
        .collect();
    let open = is(rows, "network.egress", &[network::EGRESS_WILDCARD.name, network::EGRESS_UNRESTRICTED.name])
        .or_else(|| is(rows, "network.dns", &[network::DNS_ANY.name]));
    let root = is(rows, "privilege.identity", &[privilege::ROOT.name])
        .zip(is(rows, "files.write-breadth", &[files::WRITE_SYSTEM.name]))
        .map(|(a, b)| format!("{a}; {b}"))
        .or_else(|| is(rows, "network.unix-sockets", &[network::UNIX_ENGINE.name]));
    let kernel =
        is(rows, "kernel.userns", &[kernel::OPEN.name]).or_else(|| is(rows, "kernel.io-uring", &[kernel::OPEN.name]));
    let why = |id: &str| -> Option<String> {
        match id {
            "floor.audit-mode" => is(rows, "privilege.mode", &[privilege::MODE_AUDIT.name]),
            "floor.secrets-with-egress" => {
                open.clone().filter(|_| !secrets.is_empty()).map(|o| format!("{}; {o}", secrets[0]))
            }
            "floor.root-equivalent" => root.clone(),
            "floor.persistence" => is(rows, "files.persistence", &[files::PERSIST_LOGIN.name]),
            "floor.kernel-surface" => kernel.clone(),
            "floor.unrestricted-egress" => is(rows, "network.egress", &[network::EGRESS_UNRESTRICTED.name]),
            _ => None,
        }
    };
    FLOORS.iter().filter_map(|f| Some(FloorHit { id: f.id, min: f.min, why: why(f.id)? })).collect()
}
