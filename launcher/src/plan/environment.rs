//! The server's environment, built from scratch: only the launcher's variables the profile
//! passes by name (or `PREFIX_*`), then the values it sets. Everything else (API keys, tokens, the
//! client's own variables) never reaches the server.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::profile::Environment;
use crate::profile::load::valid_env_pattern;
use crate::profile::vars::Vars;

use super::Inputs;
use super::error::PlanError;
use super::identity::Identity;

/// The launcher's variables that `pass` names, then `set` (a profile's values expanded, the
/// command line's taken as written).
pub fn resolve(
    section: &Environment,
    inputs: &Inputs<'_>,
    vars: &Vars,
    identity: &Identity,
) -> Result<Vec<(OsString, OsString)>, PlanError> {
    for name in &section.pass {
        if let Some(flag) = name.origin.flag()
            && !valid_env_pattern(&name.value)
        {
            return Err(PlanError::Invalid {
                what: format!("{flag} {}", name.value),
                why: "not a variable name".into(),
            });
        }
    }
    let mut env: BTreeMap<OsString, OsString> =
        inputs.env.iter().filter(|(k, _)| section.pass.iter().any(|p| matches_pattern(&p.value, k))).cloned().collect();
    if identity.switch {
        // The invoking user's HOME and names are wrong for the target user.
        for (k, v) in [
            ("HOME", identity.home.as_os_str()),
            ("USER", OsStr::new(&identity.name)),
            ("LOGNAME", OsStr::new(&identity.name)),
        ] {
            if let Some(slot) = env.get_mut(OsStr::new(k)) {
                *slot = v.to_os_string();
            }
        }
    }
    for (k, v) in &section.set {
        let value = match v.origin.flag() {
            Some(flag) if !valid_env_pattern(k) || k.ends_with('*') => {
                let what = format!("{flag} {k}={}", v.value);
                return Err(PlanError::Invalid { what, why: "not a variable name".into() });
            }
            Some(_) => v.value.clone(),
            None => vars.expand(&v.value).map_err(|source| PlanError::BadVariable {
                what: format!("environment.set.{k} ({})", v.origin),
                source,
            })?,
        };
        env.insert(k.into(), value.into());
    }
    Ok(env.into_iter().collect())
}

fn matches_pattern(pattern: &str, name: &OsStr) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.as_bytes().starts_with(prefix.as_bytes()),
        None => name.as_bytes() == pattern.as_bytes(),
    }
}
