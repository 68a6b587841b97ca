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

/// Why a `${...}` cannot be expanded (or, at load time, is not a variable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error("unterminated `${{` in `{0}`")]
    Unterminated(String),
    #[error("unknown variable `{name}` in `{text}`")]
    Unknown { name: String, text: String },
    #[error("the server was not given `{0}`")]
    FlagNotGiven(String),
    #[error("`{0}` is not set in the environment")]
    EnvUnset(String),
    #[error("variable `${{{0}}}` has no value on this host")]
    NoValue(String),
}

impl crate::error::Diagnose for VarError {
    fn hint(&self) -> Option<String> {
        matches!(self, VarError::Unknown { .. } | VarError::Unterminated(_)).then(|| HINT.into())
    }
}

/// The values variables expand to, computed once per run: the user's directories, and the
/// server's own command line and environment (`${args:dirs}`, `${arg:--flag}`, `${env:NAME}`).
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<&'static str, String>, ServerArgs);

/// What server-derived variables expand from.
#[derive(Debug, Clone, Default)]
pub struct ServerArgs {
    /// The server's arguments (after the program).
    pub args: Vec<String>,
    /// The launcher's environment.
    pub env: BTreeMap<String, String>,
}

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
        Vars(m, ServerArgs::default())
    }

    /// Adds the server's command line and environment for `${args:dirs}`, `${arg:..}`, `${env:..}`.
    pub fn with_server(mut self, server: ServerArgs) -> Self {
        self.1 = server;
        self
    }

    /// Expands an entry that may name several paths: `${args:dirs}` stands for every server
    /// argument that is an existing directory (none is fine). `Ok(empty)` when it names none.
    pub fn expand_many(&self, s: &str) -> Result<Vec<String>, VarError> {
        if s.contains("${args:dirs}") {
            let dirs = self.1.args.iter().filter(|a| std::path::Path::new(a.as_str()).is_dir());
            return dirs.map(|d| self.expand(&s.replace("${args:dirs}", d))).collect();
        }
        self.expand(s).map(|one| vec![one])
    }

    /// Expands every `${NAME}`; `Err` names a variable that has no value on this host.
    pub fn expand(&self, s: &str) -> Result<String, VarError> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| VarError::Unterminated(s.into()))?;
            let name = &after[..end];
            let value = if let Some(flag) = name.strip_prefix("arg:") {
                self.flag_value(flag).ok_or_else(|| VarError::FlagNotGiven(flag.into()))?
            } else if let Some(flag) = name.strip_prefix("arg-dir:") {
                let v = self.flag_value(flag).ok_or_else(|| VarError::FlagNotGiven(flag.into()))?;
                let parent = std::path::Path::new(&v).parent().map(|p| p.display().to_string()).unwrap_or_default();
                if parent.is_empty() { self.0.get("CWD").cloned().unwrap_or_default() } else { parent }
            } else if let Some(var) = name.strip_prefix("env-dir:") {
                let v = self.1.env.get(var).cloned().ok_or_else(|| VarError::EnvUnset(var.into()))?;
                std::path::Path::new(&v).parent().map(|p| p.display().to_string()).unwrap_or_default()
            } else if let Some(var) = name.strip_prefix("env:") {
                self.1.env.get(var).cloned().ok_or_else(|| VarError::EnvUnset(var.into()))?
            } else {
                self.0.get(name).cloned().ok_or_else(|| VarError::NoValue(name.into()))?
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn xdg_runtime_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    env("XDG_RUNTIME_DIR").filter(|v| v.starts_with('/'))
}

impl Vars {
    /// The value of `--flag VALUE` or `--flag=VALUE` in the server's arguments.
    fn flag_value(&self, flag: &str) -> Option<String> {
        let args = &self.1.args;
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')).map(String::from)
            }
        })
    }
}

/// Syntax check at load time: every `${...}` is closed and names a known variable.
pub fn check(s: &str) -> Result<(), VarError> {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| VarError::Unterminated(s.into()))?;
        let name = &after[..end];
        let server_derived = name == "args:dirs"
            || name.strip_prefix("arg:").is_some_and(|f| f.starts_with('-'))
            || name.strip_prefix("arg-dir:").is_some_and(|f| f.starts_with('-'))
            || name.strip_prefix("env:").is_some_and(|v| !v.is_empty())
            || name.strip_prefix("env-dir:").is_some_and(|v| !v.is_empty());
        if !NAMES.contains(&name) && !server_derived {
            return Err(VarError::Unknown { name: name.into(), text: s.into() });
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
        assert!(v.expand("${XDG_RUNTIME_DIR}").unwrap_err().to_string().contains("no value"));
    }

    #[test]
    fn server_variables_expand_from_its_command_line_and_environment() {
        let dir = std::env::temp_dir().display().to_string();
        let server = ServerArgs {
            args: vec![
                "--repository".into(),
                "/srv/repo".into(),
                "--db-path=/data/x.db".into(),
                dir.clone(),
                "notadir".into(),
            ],
            env: [("MEMORY_FILE_PATH".to_string(), "/data/memory.jsonl".to_string())].into_iter().collect(),
        };
        let v = Vars::new("/home/u", "u", "/", &|_| None).with_server(server);
        assert_eq!(v.expand("${arg:--repository}").unwrap(), "/srv/repo");
        assert_eq!(v.expand("${arg:--db-path}").unwrap(), "/data/x.db");
        assert_eq!(v.expand("${arg-dir:--db-path}").unwrap(), "/data");
        assert_eq!(v.expand("${env:MEMORY_FILE_PATH}").unwrap(), "/data/memory.jsonl");
        assert_eq!(v.expand("${env-dir:MEMORY_FILE_PATH}").unwrap(), "/data");
        assert_eq!(v.expand_many("${args:dirs}").unwrap(), vec![dir]);
        assert!(v.expand("${arg:--missing}").unwrap_err().to_string().contains("not given `--missing`"));
        assert!(check("${arg:--repository}").is_ok() && check("${args:dirs}").is_ok() && check("${env:X}").is_ok());
        assert!(check("${arg:repository}").is_err());
    }

    #[test]
    fn check_rejects_unknown_and_unterminated() {
        assert!(check("${HOME}/a${CWD}").is_ok());
        assert!(check("${NOPE}").unwrap_err().to_string().contains("unknown variable `NOPE`"));
        assert!(check("${HOME").unwrap_err().to_string().contains("unterminated"));
    }
}
