//! The privilege axis: who the server runs as, its capabilities and no_new_privs, whether it sees
//! other processes, the secrets its environment carries, and whether anything is enforced at all
//! (`--mode audit`).

use crate::plan::Layer;

use super::{Assessor, Axis, Ctx, Finding, Grade, graded, list};

pub const ASSESSORS: &[Assessor] = &[
    Assessor {
        id: "privilege.identity",
        axis: Axis::Privilege,
        title: "the user the server runs as",
        layers: &[],
        grades: &[DEDICATED, INVOKING, ROOT],
        hint: "start mcp-warden as root with a dedicated user ([process] user, --user); at least never run the server as root",
        assess: identity,
    },
    Assessor {
        id: "privilege.capabilities",
        axis: Axis::Privilege,
        title: "capabilities",
        layers: &[],
        grades: &[DROPPED],
        hint: "nothing to do: stage 2 always drops every capability",
        assess: |_| graded(&DROPPED, "every set emptied: bounding, ambient, inheritable, permitted, effective"),
    },
    Assessor {
        id: "privilege.no-new-privs",
        axis: Axis::Privilege,
        title: "no_new_privs: setuid and file-capability programs gain nothing",
        layers: &[],
        grades: &[NNP_SET],
        hint: "nothing to do: stage 2 always sets it",
        assess: |_| graded(&NNP_SET, "set before Landlock and seccomp"),
    },
    Assessor {
        id: "privilege.pid-namespace",
        axis: Axis::Privilege,
        title: "other processes visible and signalable",
        layers: &[Layer::PidNamespace],
        grades: &[PID_OWN, PID_SHARED],
        hint: "keep [process] pid-namespace = true (the default); it needs root or unprivileged user namespaces",
        assess: pid_namespace,
    },
    Assessor {
        id: "privilege.env-secrets",
        axis: Axis::Privilege,
        title: "secrets passed in the server's environment",
        layers: &[],
        grades: &[ENV_NONE, ENV_ONE, ENV_SEVERAL],
        hint: "pass only the one token the server needs ([environment] pass, --pass-env NAME), never a PREFIX_* glob of secrets",
        assess: env_secrets,
    },
    Assessor {
        id: "privilege.mode",
        axis: Axis::Privilege,
        title: "the enforcement mode",
        layers: &[],
        grades: &[MODE_ENFORCE, MODE_AUDIT],
        hint: "drop --mode audit once the profile is tried out",
        assess: mode,
    },
];

const DEDICATED: Grade = Grade { name: "dedicated", badness: 0, means: "a user switch to a non-root user" };
const INVOKING: Grade =
    Grade { name: "invoking-user", badness: 20, means: "the invoking user: every file of theirs by mode" };
pub const ROOT: Grade =
    Grade { name: "root", badness: 40, means: "uid 0 (no capabilities): every root-owned file by mode" };
const DROPPED: Grade = Grade { name: "dropped", badness: 0, means: "every capability dropped" };
const NNP_SET: Grade = Grade { name: "set", badness: 0, means: "no_new_privs set" };
const PID_OWN: Grade = Grade { name: "own", badness: 0, means: "its own PID namespace" };
const PID_SHARED: Grade = Grade { name: "shared", badness: 100, means: "the host's PID namespace" };
const ENV_NONE: Grade = Grade { name: "none", badness: 0, means: "no variable looks like a secret" };
pub const ENV_ONE: Grade = Grade { name: "one", badness: 60, means: "one secret variable" };
pub const ENV_SEVERAL: Grade = Grade { name: "several", badness: 100, means: "several secret variables" };
const MODE_ENFORCE: Grade = Grade { name: "enforce", badness: 0, means: "denials refuse" };
pub const MODE_AUDIT: Grade = Grade { name: "audit", badness: 100, means: "--mode audit: denials are only logged" };

fn identity(c: &Ctx<'_>) -> Finding {
    let id = c.plan.identity();
    if id.uid == 0 {
        graded(&ROOT, if id.switch { "switched to uid 0" } else { "uid 0, no user switch" })
    } else if id.switch {
        graded(&DEDICATED, format!("{} (uid {})", id.name, id.uid))
    } else {
        graded(&INVOKING, format!("{} (uid {}), unchanged", id.name, id.uid))
    }
}

fn pid_namespace(c: &Ctx<'_>) -> Finding {
    match c.mech.pid_ns {
        true => graded(&PID_OWN, "the server tree has its own PID namespace"),
        false => graded(&PID_SHARED, "the server sees (and Landlock before ABI 6 lets it signal) other processes"),
    }
}

fn env_secrets(c: &Ctx<'_>) -> Finding {
    let d = c.data;
    let secret: Vec<String> = c
        .plan
        .env()
        .iter()
        .filter(|(k, v)| {
            let value = v.to_string_lossy();
            d.env_names.is_match(k.to_string_lossy().as_ref())
                || d.env_value_prefixes.iter().any(|p| value.starts_with(p.as_str()))
        })
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    match secret.len() {
        0 => graded(&ENV_NONE, "no variable looks like a secret"),
        1 => graded(&ENV_ONE, list(secret, 1)),
        _ => graded(&ENV_SEVERAL, list(secret, 4)),
    }
}

fn mode(c: &Ctx<'_>) -> Finding {
    match c.plan.audit_mode() {
        true => graded(&MODE_AUDIT, "--mode audit: Landlock and the view off, seccomp and the network rules only log"),
        false => graded(&MODE_ENFORCE, "enforce"),
    }
}
