//! `mcp-warden score`: the exposure of a resolved plan (the same path as `explain`) with every
//! layer available and on this host, row by row or as JSON (stdout, the command's product); the
//! CI gates `--threshold` and `--baseline` (exit 1); and the summary `explain` and `wrap` print.

use std::ffi::OsString;
use std::io::{self, Write};

use serde::Serialize;

use crate::cli::{RunArgs, ScoreArgs};
use crate::error::{CommandError, Failure};
use crate::host::HostFacts;
use crate::plan::Plan;
use crate::score::baseline::{self, Entry};
use crate::score::{Data, HostView, Report, Row, Score, ScoreError, Weights, assess, reachable_sockets};

/// Both reports of a plan.
#[derive(Debug)]
pub struct Scored {
    /// Every layer available: what the profile allows.
    pub every_layer: Report,
    /// On this host: best-effort layers this host lacks count as not applied.
    pub this_host: Report,
    /// Why `run` would refuse to start the server here.
    pub refusal: Option<String>,
    /// The layers of the plan this host does not apply.
    pub missing: Vec<&'static str>,
}

/// Scores `plan` with `weights`: the profile's view and this host's.
pub fn score(plan: &Plan, data: &Data, weights: &Weights) -> Scored {
    let sockets = reachable_sockets(plan, data, &|k| std::env::var(k).ok());
    let every = HostView::every_layer(plan, sockets.clone());
    let here = HostView::this_host(plan, &HostFacts::probe(), sockets);
    Scored {
        every_layer: assess(plan, &every, data, weights),
        this_host: assess(plan, &here, data, weights),
        refusal: here.refusal().map(String::from),
        missing: every.applied().difference(here.applied()).map(|l| l.name()).collect(),
    }
}

/// Both numbers with the shipped weights, for `explain` and `wrap`.
pub fn summary(plan: &Plan) -> Result<Scored, ScoreError> {
    let data = Data::embedded()?;
    Ok(score(plan, data, &data.weights))
}

pub fn command(out: &mut dyn Write, args: ScoreArgs) -> Result<i32, Failure> {
    let data = Data::embedded()?;
    let weights = match &args.policy {
        Some(p) => data.weights.with_policy(p)?,
        None => data.weights.clone(),
    };
    let mut command = args.command.clone();
    if command.is_empty() {
        tracing::warn!(
            "no server command given: scored for `true`; grants derived from the server's arguments (${{args:dirs}}, ${{arg:...}}) are missing"
        );
        command.push(OsString::from("true"));
    }
    let profile = args.file.clone().unwrap_or_else(|| args.profile.clone());
    let plan = super::build_plan(RunArgs { profile, args_file: None, grants: args.grants, command })?;
    let scored = score(&plan, data, &weights);
    let written = match args.json {
        true => write_json(out, &plan, &scored),
        false => render(out, &plan, &scored),
    };
    written.map_err(CommandError::output)?;
    gate(&plan, &scored, &args.threshold, &args.baseline, args.max_increase, args.update_baseline)
}

/// Exit 1 when the score on this host is above the threshold, or the profile's score regressed
/// against the baseline; `--update-baseline` records it instead.
fn gate(
    plan: &Plan,
    scored: &Scored,
    threshold: &Option<Score>,
    baseline: &Option<std::path::PathBuf>,
    max_increase: Option<Score>,
    update: bool,
) -> Result<i32, Failure> {
    let mut failed = false;
    if let Some(t) = threshold
        && scored.this_host.score > *t
    {
        eprintln!(
            "mcp-warden: {}: score {} on this host is above the threshold {t}",
            plan.profile(),
            scored.this_host.score
        );
        failed = true;
    }
    let Some(path) = baseline else { return Ok(i32::from(failed)) };
    if update {
        baseline::update(path, plan.profile(), Entry::of(&scored.every_layer))?;
        eprintln!("mcp-warden: wrote the entry of `{}` into {}", plan.profile(), path.display());
        return Ok(i32::from(failed));
    }
    let recorded = baseline::read(path)?;
    let entry = recorded
        .get(plan.profile())
        .ok_or_else(|| ScoreError::NotInBaseline { path: path.clone(), profile: plan.profile().into() })?;
    for r in baseline::regressions(entry, &scored.every_layer, max_increase.unwrap_or_default()) {
        eprintln!("mcp-warden: {}: {r} (baseline {})", plan.profile(), path.display());
        failed = true;
    }
    Ok(i32::from(failed))
}

#[derive(Serialize)]
struct Json<'a> {
    profile: &'a str,
    chain: &'a [String],
    program: String,
    every_layer: &'a Report,
    this_host: &'a Report,
    refusal: Option<&'a str>,
    missing_layers: &'a [&'static str],
}

fn write_json(out: &mut dyn Write, plan: &Plan, s: &Scored) -> io::Result<()> {
    let doc = Json {
        profile: plan.profile(),
        chain: plan.chain(),
        program: plan.program().display().to_string(),
        every_layer: &s.every_layer,
        this_host: &s.this_host,
        refusal: s.refusal.as_deref(),
        missing_layers: &s.missing,
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}

/// The rows on this host, worst first, each with its hint; the floors; the sub-scores; both
/// numbers.
fn render(out: &mut dyn Write, plan: &Plan, s: &Scored) -> io::Result<()> {
    writeln!(
        out,
        "score of `{}` ({}), program {}\n",
        plan.profile(),
        plan.chain().join(" <- "),
        plan.program().display()
    )?;
    writeln!(out, "{:>8}  {:<26} {:<16} found", "exposure", "row", "grade")?;
    let mut rows: Vec<&Row> = s.this_host.rows.iter().collect();
    rows.sort_by(|a, b| b.exposure.cmp(&a.exposure).then(a.axis.cmp(&b.axis)));
    for r in rows {
        render_row(out, r, s.every_layer.row(r.id))?;
    }
    writeln!(out)?;
    for (i, f) in s.this_host.floors.iter().enumerate() {
        writeln!(out, "{:<10}{} (at least {}): {}", if i == 0 { "floors" } else { "" }, f.id, f.min, f.why)?;
    }
    if s.this_host.floors.is_empty() {
        writeln!(out, "{:<10}none", "floors")?;
    }
    let axes: Vec<String> = s
        .this_host
        .axes
        .iter()
        .map(|a| format!("{} {}", a.axis.name(), a.score.map_or_else(|| "-".into(), |s| s.to_string())))
        .collect();
    writeln!(out, "{:<10}{}", "axes", axes.join("  "))?;
    let e = &s.every_layer;
    writeln!(out, "{:<10}{} {:<9} every layer available", "profile", e.score, e.label)?;
    let h = &s.this_host;
    let how = match (&s.refusal, s.missing.is_empty()) {
        (Some(why), _) => format!("but `run` would refuse to start here: {why}"),
        (None, true) => "every layer applies here".into(),
        (None, false) => format!("without {} (best-effort, missing here)", s.missing.join(", ")),
    };
    writeln!(out, "{:<10}{} {:<9} {how}", "this host", h.score, h.label)
}

fn render_row(out: &mut dyn Write, r: &Row, every_layer: Option<&Row>) -> io::Result<()> {
    let (exposure, grade) = match (r.counts(), r.grade) {
        (true, Some(g)) => (r.exposure.to_string(), g.to_string()),
        (false, Some(_)) => ("-".into(), "(skipped)".into()),
        (_, None) => ("-".into(), "(n/a)".into()),
    };
    let differs = every_layer.and_then(|e| e.grade).filter(|g| Some(*g) != r.grade);
    let extra = differs.map(|g| format!(" [every layer: {g}]")).unwrap_or_default();
    writeln!(out, "{exposure:>8}  {:<26} {grade:<16} {}{extra}", r.id, r.found)?;
    if r.counts() && r.badness.unwrap_or(0) > 0 {
        writeln!(out, "{:>8}  {:<26} hint: {}", "", "", r.hint)?;
    }
    Ok(())
}

/// The score `wrap` prints for a wrapped server whose plan it resolved.
pub fn wrap_line(plan: &Plan) -> String {
    match summary(plan) {
        Ok(s) => format!("score {} {}", s.this_host.score, s.this_host.label),
        Err(why) => format!("no score: {why}"),
    }
}

/// The line `explain` ends with.
pub fn explain_line(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    match summary(plan) {
        Ok(s) => writeln!(
            out,
            "score     {} {} with every layer, {} {} on this host (`mcp-warden score` shows each row)",
            s.every_layer.score, s.every_layer.label, s.this_host.score, s.this_host.label
        ),
        Err(e) => writeln!(out, "score     unavailable: {e}"),
    }
}
