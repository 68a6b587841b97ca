//! A learning run's part of the plan (`run --learn NAME`): where its session goes, the base
//! profile's grants (so that the draft leaves them out), and the baseline laid over the profile
//! ([`crate::learn::baseline`]).

use std::path::PathBuf;

use crate::learn::baseline;
use crate::learn::session::{Grant, Header};
use crate::profile::vars::Vars;

use super::command::CommandPlan;
use super::error::PlanError;
use super::fs::FsPlan;

#[derive(Debug, Clone)]
pub struct LearnPlan {
    pub name: String,
    /// Where the session file is created.
    pub dir: PathBuf,
    pub header: Header,
}

/// What [`resolve`] starts from.
pub struct LearnInputs<'a> {
    pub name: &'a str,
    pub profile: &'a str,
    pub cmd: &'a CommandPlan,
    pub home: PathBuf,
    /// The invoking user's `$XDG_STATE_HOME`.
    pub state_home: Option<PathBuf>,
    /// Variables passed with `--pass-env` (the client config entry's `env`).
    pub passed: Vec<String>,
}

/// Lays the baseline over `fs` (which holds the profile's grants) and returns the learning plan
/// and the baseline's notes (for the run's warnings).
pub fn resolve(
    input: LearnInputs<'_>,
    fs: &mut FsPlan,
    vars: &Vars,
    cwd: &std::path::Path,
) -> Result<(LearnPlan, Vec<String>), PlanError> {
    let invalid = |why: &str| PlanError::Invalid { what: format!("--learn name `{}`", input.name), why: why.into() };
    if !crate::learn::valid_name(input.name) {
        return Err(invalid("use letters, digits, `-`, `_` and `.` (at most 64, not starting with `.`)"));
    }
    let state = input.state_home.ok_or_else(|| invalid("neither XDG_STATE_HOME nor HOME is set"))?;
    let base = fs
        .paths
        .iter()
        .map(|(path, (a, _))| Grant { path: path.clone(), read: a.read, write: a.write, exec: a.exec })
        .collect();
    let arguments: Vec<PathBuf> = input.cmd.argv.iter().skip(1).map(PathBuf::from).collect();
    let argument_paths = baseline::argument_paths(&arguments);
    let learned = baseline::baseline(&input.home, &arguments);
    fs.add_learned(&learned.layer.filesystem, vars, cwd)?;
    let header = Header {
        profile: input.profile.to_string(),
        argv: input.cmd.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        program: input.cmd.program.clone(),
        cwd: cwd.to_path_buf(),
        home: input.home,
        base,
        argument_paths,
        env: input.passed,
        started: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let plan = LearnPlan { name: input.name.to_string(), dir: crate::learn::sessions_dir(&state, input.name), header };
    Ok((plan, learned.notes))
}
