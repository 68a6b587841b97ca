//! The server's private `TMPDIR`: created at start (mode 0700, owned by the server's user), swept
//! when a killed launcher left one behind, and removed with its contents at exit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Names are `<PREFIX><launcher pid>.<random>`.
const PREFIX: &str = "mcp-warden-tmp.";

/// The server's private `TMPDIR`, removed with its contents when dropped. Its name carries the
/// launcher's pid, so that a directory left behind by a killed launcher is removed by the next one.
#[derive(Debug)]
pub struct PrivateTmp(PathBuf);

impl PrivateTmp {
    /// Sweeps the directories of launchers that are gone, then creates this launcher's under the
    /// system temporary directory; `owner` (uid, gid) is the user the server will run as.
    pub fn create(owner: Option<(u32, u32)>) -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        sweep(&base);
        let template = base.join(format!("{PREFIX}{}.XXXXXX", std::process::id()));
        let dir = nix::unistd::mkdtemp(&template)?; // mode 0700
        let tmp = PrivateTmp(dir);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&tmp.0, Some(uid), Some(gid))?;
        }
        Ok(tmp)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Passes the directory to the server as `TMPDIR`, in place of any `TMPDIR` in `env`.
    pub fn export(&self, env: &mut Vec<(OsString, OsString)>) {
        env.retain(|(k, _)| k != "TMPDIR");
        env.push(("TMPDIR".into(), self.0.clone().into_os_string()));
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("could not remove the private temporary directory {}: {e}", self.0.display());
        }
    }
}

/// Removes the directories of launchers that are gone (and that are ours to remove).
fn sweep(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else { return };
    let euid = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && (euid == 0 || m.uid() == euid));
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_only_the_directories_of_launchers_that_are_gone() {
        let base = tempfile::tempdir().expect("create a temporary directory");
        // No pid is above pid_max (at most 2^22), so this launcher is gone.
        let gone = base.path().join(format!("{PREFIX}{}.abcdef", u32::MAX));
        let alive = base.path().join(format!("{PREFIX}{}.abcdef", std::process::id()));
        let other = base.path().join("unrelated.1");
        for dir in [&gone, &alive, &other] {
            std::fs::create_dir(dir).expect("create a directory");
        }
        std::fs::write(gone.join("file"), b"left behind").expect("write a file");
        sweep(base.path());
        assert!(!gone.exists(), "the directory of a launcher that is gone is removed");
        assert!(alive.exists(), "a running launcher's directory stays");
        assert!(other.exists(), "a directory that is not ours stays");
    }

    #[test]
    fn export_replaces_tmpdir() {
        let tmp = PrivateTmp(PathBuf::from("/nonexistent/mcp-warden-tmp.1.x"));
        let mut env = vec![("TMPDIR".into(), "/tmp".into()), ("HOME".into(), "/root".into())];
        tmp.export(&mut env);
        std::mem::forget(tmp); // nothing to remove
        let expected: Vec<(OsString, OsString)> =
            vec![("HOME".into(), "/root".into()), ("TMPDIR".into(), "/nonexistent/mcp-warden-tmp.1.x".into())];
        assert_eq!(env, expected);
    }
}
