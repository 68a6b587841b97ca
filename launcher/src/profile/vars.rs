//! `${VAR}` variables in profile paths and values: the invoking user's directories.

use std::collections::BTreeMap;

pub const HINT: &str = "known variables: ${HOME} ${CWD} ${TMPDIR} ${USER} ${XDG_CONFIG_HOME} ${XDG_DATA_HOME} ${XDG_CACHE_HOME} ${XDG_STATE_HOME} ${XDG_RUNTIME_DIR}";

pub const NAMES: [&str; 9] = [
    "HOME",
    "CWD",
    "TMPDIR",
    "USER",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
];

/// The values variables expand to, computed once per run.
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    /// `home` and `user` describe the identity the server runs as; XDG dirs follow the XDG base
    /// directory defaults when the launcher's environment does not set them.
    pub fn new(home: &str, user: &str, cwd: &str, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let xdg = |name: &str, default: String| env(name).filter(|v| v.starts_with('/')).unwrap_or(default);
        let mut m = BTreeMap::new();
        m.insert("HOME", home.to_string());
        m.insert("USER", user.to_string());
        m.insert("CWD", cwd.to_string());
        m.insert("TMPDIR", env("TMPDIR").filter(|v| v.starts_with('/')).unwrap_or_else(|| "/tmp".into()));
        m.insert("XDG_CONFIG_HOME", xdg("XDG_CONFIG_HOME", format!("{home}/.config")));
        m.insert("XDG_DATA_HOME", xdg("XDG_DATA_HOME", format!("{home}/.local/share")));
        m.insert("XDG_CACHE_HOME", xdg("XDG_CACHE_HOME", format!("{home}/.cache")));
        m.insert("XDG_STATE_HOME", xdg("XDG_STATE_HOME", format!("{home}/.local/state")));
        if let Some(run) = xdg_runtime_dir(env) {
            m.insert("XDG_RUNTIME_DIR", run);
        }
        Vars(m)
    }

    /// Expands every `${NAME}`; `Err` names a variable that has no value on this host.
    pub fn expand(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| format!("unterminated `${{` in `{s}`"))?;
            let name = &after[..end];
            let value = self.0.get(name).ok_or_else(|| format!("variable `${{{name}}}` has no value on this host"))?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn xdg_runtime_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    env("XDG_RUNTIME_DIR").filter(|v| v.starts_with('/'))
}

/// Syntax check at load time: every `${...}` is closed and names a known variable.
pub fn check(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated `${{` in `{s}`"))?;
        let name = &after[..end];
        if !NAMES.contains(&name) {
            return Err(format!("unknown variable `{name}` in `{s}`"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_variables_and_xdg_defaults() {
        let env = |k: &str| (k == "XDG_CONFIG_HOME").then(|| "/cfg".to_string());
        let v = Vars::new("/home/u", "u", "/work", &env);
        assert_eq!(v.expand("${HOME}/notes").unwrap(), "/home/u/notes");
        assert_eq!(v.expand("${XDG_CONFIG_HOME}/x").unwrap(), "/cfg/x");
        assert_eq!(v.expand("${XDG_CACHE_HOME}").unwrap(), "/home/u/.cache");
        assert_eq!(v.expand("${CWD}:${TMPDIR}").unwrap(), "/work:/tmp");
        assert!(v.expand("${XDG_RUNTIME_DIR}").unwrap_err().contains("no value"));
    }

    #[test]
    fn check_rejects_unknown_and_unterminated() {
        assert!(check("${HOME}/a${CWD}").is_ok());
        assert!(check("${NOPE}").unwrap_err().contains("unknown variable `NOPE`"));
        assert!(check("${HOME").unwrap_err().contains("unterminated"));
    }
}
