//! The score's data files (`launcher/data/score/*.toml`, compiled in): the weights, the sensitive
//! paths, sockets and environment names, the private and metadata ranges, the multi-tenant
//! domains; and a `--policy` file's weights laid over the shipped ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde::Deserialize;

use crate::plan::limits;

const WEIGHTS: (&str, &str) = ("weights.toml", include_str!("../../data/score/weights.toml"));
const PATHS: (&str, &str) = ("sensitive-paths.toml", include_str!("../../data/score/sensitive-paths.toml"));
const ENV: (&str, &str) = ("secret-env.toml", include_str!("../../data/score/secret-env.toml"));
const NETWORKS: (&str, &str) = ("networks.toml", include_str!("../../data/score/networks.toml"));
const DOMAINS: (&str, &str) = ("multi-tenant-domains.toml", include_str!("../../data/score/multi-tenant-domains.toml"));

/// Why the score cannot be computed as asked.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// A compiled-in data file does not parse (a bug: the unit tests parse every file).
    #[error("the score's data file {file} is invalid: {why}")]
    Data { file: &'static str, why: String },
    #[error("failed to read the score policy {}: {source}", path.display())]
    PolicyRead { path: PathBuf, source: std::io::Error },
    #[error("invalid score policy {}: {why}", path.display())]
    Policy { path: PathBuf, why: String },
    #[error("the score policy {} names no row `{id}`", path.display())]
    UnknownRow { path: PathBuf, id: String, suggestion: Option<String> },
    #[error("failed to read the score baseline {}: {source}", path.display())]
    BaselineRead { path: PathBuf, source: std::io::Error },
    #[error("invalid score baseline {}: {why}", path.display())]
    Baseline { path: PathBuf, why: String },
    #[error("the score baseline {} has no entry for profile `{profile}`", path.display())]
    NotInBaseline { path: PathBuf, profile: String },
    #[error("failed to write the score baseline {}: {source}", path.display())]
    BaselineWrite { path: PathBuf, source: std::io::Error },
}

impl crate::error::Diagnose for ScoreError {
    fn hint(&self) -> Option<String> {
        match self {
            ScoreError::UnknownRow { suggestion: Some(s), .. } => Some(format!("did you mean `{s}`?")),
            ScoreError::UnknownRow { .. } | ScoreError::Policy { .. } => Some(
                "a policy is a [weights] table of row ids (mcp-warden score --json lists them) and whole numbers, e.g. \"mcp.redaction\" = 0".into(),
            ),
            ScoreError::NotInBaseline { .. } => {
                Some("add it with the same command and --update-baseline, and commit the file".into())
            }
            ScoreError::Baseline { .. } => Some(
                "a baseline maps each profile to {\"score\": N, \"floors\": [ids]}; --update-baseline writes one".into(),
            ),
            _ => None,
        }
    }
}

/// Row id -> weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights(BTreeMap<String, u32>);

impl Weights {
    pub fn get(&self, id: &str) -> u32 {
        self.0.get(id).copied().unwrap_or(0)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// These weights with the `[weights]` of the policy file at `path` laid over them.
    pub fn with_policy(&self, path: &Path) -> Result<Weights, ScoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScoreError::PolicyRead { path: path.to_path_buf(), source })?;
        let policy: WeightsFile = toml::from_str(&text)
            .map_err(|e| ScoreError::Policy { path: path.to_path_buf(), why: e.message().to_string() })?;
        let mut out = self.clone();
        for (id, weight) in policy.weights {
            let Some(slot) = out.0.get_mut(&id) else {
                let suggestion = self.ids().max_by(|a, b| similarity(&id, a).total_cmp(&similarity(&id, b)));
                let suggestion = suggestion.filter(|s| similarity(&id, s) > 0.8).map(String::from);
                return Err(ScoreError::UnknownRow { path: path.to_path_buf(), id, suggestion });
            };
            *slot = weight;
        }
        Ok(out)
    }
}

fn similarity(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsFile {
    weights: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WeightsData {
    weights: BTreeMap<String, u32>,
    loose_limits: BTreeMap<String, String>,
}

/// One readable secret class (`files.secrets.CLASS`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretClass {
    pub class: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub root_only: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Persistence {
    pub login: Vec<String>,
    pub not_repositories: Vec<PathBuf>,
}

/// A kind of powerful unix socket and where it lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketClass {
    pub kind: SocketKind,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketKind {
    AgentOrBus,
    ContainerEngine,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathList {
    paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Devices {
    harmless: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsData {
    secret: Vec<SecretClass>,
    persistence: Persistence,
    socket: Vec<SocketClass>,
    system: PathList,
    devices: Devices,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EnvData {
    names: Vec<String>,
    value_prefixes: Vec<String>,
}

/// The ranges `network.private-ranges` looks for, and what `network.egress` calls exact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Networks {
    pub private: Vec<IpNet>,
    pub metadata: Vec<IpNet>,
    pub exact_at_most: usize,
    pub narrow_prefix_v4: u8,
    pub narrow_prefix_v6: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainsData {
    domains: Vec<String>,
}

/// Every data file, parsed.
#[derive(Debug, Clone)]
pub struct Data {
    pub weights: Weights,
    /// Limit key -> the value above which it is graded `loose`.
    pub loose_limits: BTreeMap<String, u64>,
    pub secrets: Vec<SecretClass>,
    pub persistence: Persistence,
    pub sockets: Vec<SocketClass>,
    pub system: Vec<PathBuf>,
    pub harmless_devices: Vec<PathBuf>,
    /// Secret variable names (case-insensitive globs).
    pub env_names: GlobSet,
    pub env_value_prefixes: Vec<String>,
    pub networks: Networks,
    pub multi_tenant: Vec<String>,
}

fn parse<T: serde::de::DeserializeOwned>((file, text): (&'static str, &str)) -> Result<T, ScoreError> {
    toml::from_str(text).map_err(|e| ScoreError::Data { file, why: e.to_string() })
}

impl Data {
    /// The compiled-in data, parsed once.
    pub fn embedded() -> Result<&'static Data, ScoreError> {
        static DATA: OnceLock<Result<Data, (&'static str, String)>> = OnceLock::new();
        DATA.get_or_init(|| {
            Data::parse().map_err(|e| match e {
                ScoreError::Data { file, why } => (file, why),
                other => ("(data)", other.to_string()),
            })
        })
        .as_ref()
        .map_err(|(file, why)| ScoreError::Data { file, why: why.clone() })
    }

    fn parse() -> Result<Data, ScoreError> {
        let weights: WeightsData = parse(WEIGHTS)?;
        let paths: PathsData = parse(PATHS)?;
        let env: EnvData = parse(ENV)?;
        let bad = |file, why: String| ScoreError::Data { file, why };
        let mut loose_limits = BTreeMap::new();
        for (key, value) in weights.loose_limits {
            let spec = limits::spec(&key).ok_or_else(|| bad(WEIGHTS.0, format!("no limit `{key}`")))?;
            let v = spec.unit.parse(&value).map_err(|e| bad(WEIGHTS.0, format!("{key}: {e}")))?;
            loose_limits.insert(key, v);
        }
        let mut names = GlobSetBuilder::new();
        for n in &env.names {
            let glob = GlobBuilder::new(n).case_insensitive(true).build();
            names.add(glob.map_err(|e| bad(ENV.0, e.to_string()))?);
        }
        Ok(Data {
            weights: Weights(weights.weights),
            loose_limits,
            secrets: paths.secret,
            persistence: paths.persistence,
            sockets: paths.socket,
            system: paths.system.paths,
            harmless_devices: paths.devices.harmless,
            env_names: names.build().map_err(|e| bad(ENV.0, e.to_string()))?,
            env_value_prefixes: env.value_prefixes,
            networks: parse(NETWORKS)?,
            multi_tenant: parse::<DomainsData>(DOMAINS)?.domains,
        })
    }

    /// The secret class named `class`.
    pub fn secret(&self, class: &str) -> Option<&SecretClass> {
        self.secrets.iter().find(|s| s.class == class)
    }

    /// Is `host` one of the multi-tenant domains, or beneath one?
    pub fn multi_tenant(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.multi_tenant.iter().any(|d| host == *d || host.ends_with(&format!(".{d}")))
    }

    /// Is `path` in a system location?
    pub fn is_system(&self, path: &Path) -> bool {
        self.system.iter().any(|s| path.starts_with(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_file_parses() {
        let d = Data::embedded().unwrap();
        assert!(d.weights.get("network.egress") > 0);
        assert_eq!(d.loose_limits["max-memory"], 16 << 30);
        assert!(d.secret("ssh-gpg").is_some_and(|s| s.paths.iter().any(|p| p == "~/.ssh")));
        assert!(d.env_names.is_match("github_personal_access_token"), "names match case-insensitively");
        assert!(!d.env_names.is_match("GIT_AUTHOR_NAME"));
        assert!(d.multi_tenant("my-bucket.s3.amazonaws.com") && !d.multi_tenant("api.github.com"));
        assert!(d.is_system(Path::new("/usr/lib/x")) && !d.is_system(Path::new("/home/me")));
    }

    #[test]
    fn a_policy_replaces_the_weights_it_names_and_refuses_unknown_rows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "[weights]\n\"mcp.redaction\" = 0\n\"network.egress\" = 20\n").unwrap();
        let w = Data::embedded().unwrap().weights.with_policy(&file).unwrap();
        assert_eq!((w.get("mcp.redaction"), w.get("network.egress")), (0, 20));
        std::fs::write(&file, "[weights]\n\"network.egres\" = 1\n").unwrap();
        let e = Data::embedded().unwrap().weights.with_policy(&file).unwrap_err();
        assert!(matches!(&e, ScoreError::UnknownRow { suggestion: Some(s), .. } if s == "network.egress"), "{e}");
    }
}
