//! Score baselines for CI: a JSON object mapping each profile to its score and the floors it
//! triggers; a run fails on any increase beyond `--max-increase` and on any floor the baseline
//! does not list. `--update-baseline` writes this run's entry instead.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Report, Score, ScoreError};

/// One profile's recorded score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub score: f64,
    #[serde(default)]
    pub floors: Vec<String>,
}

impl Entry {
    pub fn of(report: &Report) -> Entry {
        Entry { score: report.score.value(), floors: report.floors.iter().map(|f| f.id.to_string()).collect() }
    }
}

/// Profile name -> entry.
pub type Baseline = BTreeMap<String, Entry>;

pub fn read(path: &Path) -> Result<Baseline, ScoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ScoreError::BaselineRead { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| ScoreError::Baseline { path: path.to_path_buf(), why: e.to_string() })
}

/// Sets `profile`'s entry in the baseline at `path` (created if missing), keeping the others.
pub fn update(path: &Path, profile: &str, entry: Entry) -> Result<(), ScoreError> {
    let mut baseline = match path.exists() {
        true => read(path)?,
        false => Baseline::new(),
    };
    baseline.insert(profile.to_string(), entry);
    let mut text = serde_json::to_string_pretty(&baseline).unwrap_or_default();
    text.push('\n');
    std::fs::write(path, text).map_err(|source| ScoreError::BaselineWrite { path: path.to_path_buf(), source })
}

/// What makes `report` fail against `entry`: a score above the recorded one plus `max_increase`,
/// and each floor the entry does not list.
pub fn regressions(entry: &Entry, report: &Report, max_increase: Score) -> Vec<String> {
    let recorded = Score::tenths((entry.score * 10.0).round() as u32);
    let mut out = Vec::new();
    if report.score.as_tenths() > recorded.as_tenths() + max_increase.as_tenths() {
        out.push(format!("the score rose from {recorded} to {} (at most +{max_increase} allowed)", report.score));
    }
    for f in report.floors.iter().filter(|f| !entry.floors.iter().any(|e| e == f.id)) {
        out.push(format!("new floor {} ({}): {}", f.id, f.min, f.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::FloorHit;

    fn report(tenths: u32, floors: &[&'static str]) -> Report {
        let floors = floors.iter().map(|id| FloorHit { id, min: Score::tenths(50), why: "x".into() }).collect();
        Report {
            score: Score::tenths(tenths),
            label: "",
            average: Score::tenths(tenths),
            floors,
            axes: vec![],
            rows: vec![],
        }
    }

    #[test]
    fn an_increase_beyond_the_allowance_and_a_new_floor_fail() {
        let entry = Entry { score: 1.2, floors: vec!["floor.persistence".into()] };
        assert!(regressions(&entry, &report(12, &["floor.persistence"]), Score::default()).is_empty());
        assert!(regressions(&entry, &report(9, &[]), Score::default()).is_empty(), "a decrease passes");
        assert_eq!(regressions(&entry, &report(13, &[]), Score::default()).len(), 1);
        assert!(regressions(&entry, &report(13, &[]), Score::tenths(1)).is_empty(), "within --max-increase");
        let new_floor = regressions(&entry, &report(12, &["floor.persistence", "floor.kernel-surface"]), Score::MAX);
        assert_eq!(new_floor.len(), 1, "a new floor fails whatever the allowance: {new_floor:?}");
    }

    #[test]
    fn update_keeps_the_other_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.json");
        update(&file, "a", Entry { score: 1.0, floors: vec![] }).unwrap();
        update(&file, "b", Entry { score: 2.0, floors: vec![] }).unwrap();
        update(&file, "a", Entry { score: 0.5, floors: vec![] }).unwrap();
        let b = read(&file).unwrap();
        assert_eq!((b["a"].score, b["b"].score), (0.5, 2.0));
    }
}
