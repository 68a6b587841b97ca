//! The exposure score of a plan: 0 (the server can do nothing) to 10 (it can do anything), on
//! systemd-analyze security's scale and labels, with floors that an average cannot hide.
//!
//! Every assessor grades one row (one module per axis: network, files, kernel, privilege, limits,
//! mcp) from a resolved [`Plan`] and a [`HostView`] (which layers apply). The rows are averaged by
//! their weights (`launcher/data/score/weights.toml`), then raised to the highest floor a
//! dangerous combination triggers ([`floors`]). docs/score.md describes every row.

pub mod baseline;
mod data;
mod files;
mod floors;
mod kernel;
mod limits;
mod mcp;
mod network;
mod privilege;
mod view;

use std::fmt;

use serde::{Serialize, Serializer};

use crate::plan::{Layer, Plan};

pub use data::{Data, ScoreError, SocketKind, Weights};
pub use floors::{FLOORS, Floor, FloorHit};
pub use view::{HostView, Mechanisms, Socket, reachable_sockets};

/// An exposure on the 0-10 scale, held in tenths; like systemd, averages round up to a tenth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score(u32);

impl Score {
    pub const MAX: Score = Score(100);

    pub const fn tenths(t: u32) -> Score {
        Score(if t > 100 { 100 } else { t })
    }

    pub fn as_tenths(self) -> u32 {
        self.0
    }

    pub fn value(self) -> f64 {
        f64::from(self.0) / 10.0
    }

    /// systemd-analyze security's label for this exposure.
    pub fn label(self) -> &'static str {
        match self.0 {
            100.. => "DANGEROUS",
            90.. => "UNSAFE",
            75.. => "EXPOSED",
            50.. => "MEDIUM",
            10.. => "OK",
            1.. => "SAFE",
            0 => "PERFECT",
        }
    }

    /// `N` or `N.N` between 0 and 10 (a threshold, an increase).
    pub fn parse(s: &str) -> Result<Score, String> {
        let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
        if !(0.0..=10.0).contains(&v) {
            return Err(format!("`{s}` is not between 0 and 10"));
        }
        Ok(Score((v * 10.0).round() as u32))
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.value())
    }
}

/// The part of the sandbox a row is about; each gets a sub-score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Axis {
    Network,
    Files,
    Kernel,
    Privilege,
    Limits,
    Mcp,
}

impl Axis {
    pub const ALL: [Axis; 6] = [Axis::Network, Axis::Files, Axis::Kernel, Axis::Privilege, Axis::Limits, Axis::Mcp];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Network => "network",
            Axis::Files => "files",
            Axis::Kernel => "kernel",
            Axis::Privilege => "privilege",
            Axis::Limits => "limits",
            Axis::Mcp => "mcp",
        }
    }
}

/// One level of a row: its name and its badness, in percent (0: as good as it gets).
#[derive(Debug, PartialEq, Eq)]
pub struct Grade {
    pub name: &'static str,
    pub badness: u32,
    pub means: &'static str,
}

/// What an assessor found: a grade and the facts behind it, or why the row does not apply.
#[derive(Debug)]
pub enum Finding {
    Graded(&'static Grade, String),
    NotApplicable(String),
}

/// Everything an assessor reads.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub mech: Mechanisms,
    pub view: &'a HostView,
    pub data: &'a Data,
}

/// One row of the score: a stable id, the layers whose absence can raise it, its grades.
#[derive(Debug)]
pub struct Assessor {
    pub id: &'static str,
    pub axis: Axis,
    /// What the row is about.
    pub title: &'static str,
    /// The layers whose absence on a host can raise this row (a unit test holds the code to it).
    pub layers: &'static [Layer],
    pub grades: &'static [Grade],
    /// The profile key or flag that lowers the row.
    pub hint: &'static str,
    pub assess: fn(&Ctx<'_>) -> Finding,
}

/// Every assessor, by axis.
pub fn assessors() -> impl Iterator<Item = &'static Assessor> {
    [network::ASSESSORS, files::ASSESSORS, kernel::ASSESSORS, privilege::ASSESSORS, limits::ASSESSORS, mcp::ASSESSORS]
        .into_iter()
        .flatten()
}

/// A graded row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub axis: Axis,
    pub weight: u32,
    /// `None`: the row does not apply, or the policy skips it (weight 0); it leaves the sums.
    pub grade: Option<&'static str>,
    /// Percent.
    pub badness: Option<u32>,
    /// What this row adds to the average.
    pub exposure: Score,
    pub found: String,
    pub hint: &'static str,
}

impl Row {
    /// Counted in the sums: it applies and its weight is not 0.
    pub fn counts(&self) -> bool {
        self.badness.is_some() && self.weight > 0
    }
}

/// A sub-score: the weighted average of one axis's rows.
#[derive(Debug, Clone, Serialize)]
pub struct AxisScore {
    pub axis: Axis,
    /// `None` when no row of the axis counts.
    pub score: Option<Score>,
}

/// The score of a plan under a view.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The weighted average raised to the highest floor triggered.
    pub score: Score,
    pub label: &'static str,
    pub average: Score,
    pub floors: Vec<FloorHit>,
    pub axes: Vec<AxisScore>,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// The grade of row `id`, when it counts.
    pub fn grade(&self, id: &str) -> Option<&'static str> {
        self.row(id).filter(|r| r.counts()).and_then(|r| r.grade)
    }
}

/// Grades every row of `plan` under `view`, with `weights` (the data's, or a policy's).
pub fn assess(plan: &Plan, view: &HostView, data: &Data, weights: &Weights) -> Report {
    let ctx = Ctx { plan, mech: Mechanisms::of(plan, view), view, data };
    let mut rows: Vec<Row> = assessors().map(|a| grade_row(a, &ctx, weights)).collect();
    let total_weight: u32 = rows.iter().filter(|r| r.counts()).map(|r| r.weight).sum();
    for r in rows.iter_mut().filter(|r| r.counts()) {
        r.exposure = average(r.weight * r.badness.unwrap_or(0), total_weight);
    }
    let average = weighted(rows.iter());
    let axes = Axis::ALL
        .iter()
        .map(|a| AxisScore {
            axis: *a,
            score: rows
                .iter()
                .any(|r| r.axis == *a && r.counts())
                .then(|| weighted(rows.iter().filter(|r| r.axis == *a))),
        })
        .collect();
    let floors = floors::hits(&rows);
    let score = floors.iter().map(|f| f.min).fold(average, Score::max);
    Report { score, label: score.label(), average, floors, axes, rows }
}

fn grade_row(a: &'static Assessor, ctx: &Ctx<'_>, weights: &Weights) -> Row {
    let weight = weights.get(a.id);
    let (grade, found) = match (a.assess)(ctx) {
        Finding::Graded(g, found) => (Some(g), found),
        Finding::NotApplicable(why) => (None, why),
    };
    let found =
        if weight == 0 && grade.is_some() { format!("skipped by the policy (weight 0); {found}") } else { found };
    Row {
        id: a.id,
        axis: a.axis,
        weight,
        grade: grade.map(|g| g.name),
        badness: grade.map(|g| g.badness),
        exposure: Score::default(),
        found,
        hint: a.hint,
    }
}

/// sum(weight * badness) / sum(weight), in tenths of the 0-10 scale (badness in percent).
fn weighted<'a>(rows: impl Iterator<Item = &'a Row>) -> Score {
    let (num, den) =
        rows.filter(|r| r.counts()).fold((0, 0), |(n, d), r| (n + r.weight * r.badness.unwrap_or(0), d + r.weight));
    average(num, den)
}

/// `num / den` rounded up, as a score in tenths.
fn average(num: u32, den: u32) -> Score {
    if den == 0 { Score::default() } else { Score::tenths(num.div_ceil(den)) }
}

/// `Finding::Graded`, shorter.
fn graded(grade: &'static Grade, found: impl Into<String>) -> Finding {
    Finding::Graded(grade, found.into())
}

/// A list of items for a finding: `a, b, c` (at most `n`, then `and K more`).
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>, n: usize) -> String {
    let all: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    match all.len() {
        len if len > n => format!("{} and {} more", all[..n].join(", "), len - n),
        _ => all.join(", "),
    }
}

#[cfg(test)]
mod tests;
