//! A draft profile from a name's learning sessions: exactly what the sessions used, generalised
//! in a fixed order, never a secret or a persistence location.
//!
//! Each file access becomes one grant, the first of these that applies:
//! 1. nothing, when the session's base profile already grants it (the runtime, the server's own
//!    installation, the system), or it is a process's own `/proc` entry (not grantable by path);
//! 2. the server's argument that contains it (a directory given on the command line);
//! 3. the application's directory under an XDG base (`~/.config/X`, `~/.cache/X`,
//!    `~/.local/share/X`, `~/.local/state/X`);
//! 4. the home's dot-directory that contains it (`~/.npm`, a tool's cache);
//! 5. the file itself (read, exec), or the directory it was written in.
//!
//! Writes need the directory (files are created and renamed there); reads of paths that did not
//! exist need nothing. Network destinations are kept as the session saw them: the host name the
//! server looked up, else the address; DNS becomes `dns = true` only when a name was looked up that
//! no entry names (mcp-warden otherwise answers the entries' names alone). Limits are the peaks
//! seen, with headroom (twice, rounded up).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::sensitive::{self, Sensitive};
use super::session::{Access, Header, Record};

/// XDG bases, relative to the home: a path beneath one is granted as its first component there.
const XDG: &[&str] = &[".config", ".cache", ".local/share", ".local/state"];

/// What the sessions add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub extends: String,
    pub sessions: usize,
    /// Grant -> the tools whose calls used it (empty: outside any single tool call).
    pub read: Grants,
    pub write: Grants,
    pub exec: Grants,
    pub connect: BTreeSet<String>,
    /// `dns = true`: a name was looked up that no `connect` entry names (or a lookup whose name
    /// was not recorded). Otherwise mcp-warden answers the entries' names only.
    pub dns: bool,
    /// The names the server looked up.
    pub looked_up: BTreeSet<String>,
    pub pass: BTreeSet<String>,
    /// (processes, open files, memory bytes), with headroom.
    pub limits: Option<(u64, u64, u64)>,
    pub sensitive: BTreeSet<(Sensitive, Access, PathBuf)>,
    /// Accesses outside the session's grants (refused then): not granted, listed.
    pub refused: BTreeSet<(Access, PathBuf, PathBuf)>,
    /// Sessions that reached their cap (what the server did after is not in the draft).
    pub cut_short: usize,
}

impl Draft {
    pub fn from_sessions(name: &str, sessions: &[(Header, Vec<Record>)]) -> Draft {
        let mut d = Draft { name: name.into(), sessions: sessions.len(), ..Default::default() };
        let mut peaks = None;
        for (header, records) in sessions {
            d.extends.clone_from(&header.profile);
            d.pass.extend(header.env.iter().cloned());
            let closed = sensitive::Closed::new(&header.home);
            for record in records {
                d.add(header, &closed, record, &mut peaks);
            }
        }
        let named = |n: &String| d.connect.iter().any(|c| c.rsplit_once(':').is_some_and(|(h, _)| h == n));
        d.dns = d.dns || d.looked_up.iter().any(|n| !named(n));
        d.limits = peaks.map(|(p, f, m): (u64, u64, u64)| {
            (headroom(p, 16), headroom(f, 256), headroom(m, 256 << 20).next_multiple_of(64 << 20))
        });
        d
    }

    fn add(
        &mut self,
        header: &Header,
        closed: &sensitive::Closed,
        record: &Record,
        peaks: &mut Option<(u64, u64, u64)>,
    ) {
        match record {
            Record::File { access, path, exists, refused, tool } => {
                let closed_here =
                    closed.classify(path).filter(|what| sensitive::closes(*what, *access == Access::Write));
                if let Some(what) = closed_here {
                    self.sensitive.insert((what, *access, path.clone()));
                } else if *refused {
                    self.refused.insert((*access, path.clone(), header.home.clone()));
                } else if let Some(grant) = generalise(header, closed, *access, path, *exists) {
                    let list = match access {
                        Access::Read => &mut self.read,
                        Access::Write => &mut self.write,
                        Access::Exec => &mut self.exec,
                    };
                    list.entry(grant).or_default().extend(tool.iter().cloned());
                }
            }
            Record::Sensitive { what, access, path } => {
                self.sensitive.insert((*what, *access, path.clone()));
            }
            Record::Connect { port: 53, host, .. } => match host {
                Some(name) => {
                    self.looked_up.insert(name.clone());
                }
                None => self.dns = true,
            },
            Record::Connect { proto, addr, port, host } => {
                let dest = host.clone().unwrap_or_else(|| bracketed(addr));
                let prefix = if proto == "udp" { "udp:" } else { "" };
                self.connect.insert(format!("{prefix}{dest}:{port}"));
            }
            Record::Limits { processes, open_files, memory } => {
                let (p, f, m) = peaks.get_or_insert((0, 0, 0));
                (*p, *f, *m) = ((*p).max(*processes), (*f).max(*open_files), (*m).max(*memory));
            }
            Record::CutShort { .. } => self.cut_short += 1,
            Record::Session(_) => {}
        }
    }

    /// Drops grants beneath another grant of the same kind, and read grants that a write or exec
    /// grant covers (both read too); their tools go to the grant that covers them.
    fn tidy(&mut self) {
        for list in [&mut self.read, &mut self.write, &mut self.exec] {
            absorb(list, None);
        }
        let mut wider = std::mem::take(&mut self.write);
        absorb(&mut self.read, Some(&mut wider));
        self.write = wider;
        let mut wider = std::mem::take(&mut self.exec);
        absorb(&mut self.read, Some(&mut wider));
        self.exec = wider;
    }

    /// Git's metadata inside each write grant, granted read (the view binds it read-only: hooks
    /// and config run code later); a write grant too large to search becomes a read grant.
    fn protect_repositories(&mut self) {
        let marker = PROTECTED.to_string();
        for dir in self.write.keys().cloned().collect::<Vec<_>>() {
            if !dir.is_dir() {
                continue;
            }
            match super::baseline::git_persistence(&dir).map(|found| super::baseline::inside(found, &dir)) {
                Some(found) => {
                    for path in found {
                        self.read.entry(path).or_default().insert(marker.clone());
                    }
                }
                None => {
                    let tools = self.write.remove(&dir).unwrap_or_default();
                    self.read.entry(dir).or_default().extend(tools);
                }
            }
        }
    }

    /// The draft as a profile file, with a comment on every grant.
    pub fn render(&self) -> String {
        let mut d = self.clone();
        d.tidy();
        d.protect_repositories();
        let mut out = String::new();
        let _ = writeln!(out, "# Drafted by `mcp-warden learn` from {} session(s) of `{}`.", d.sessions, d.name);
        let _ = writeln!(out, "# Review it: it grants what the sessions used, nothing else.");
        let _ = writeln!(out, "description = {}", quoted(&format!("learned: {}", d.name)));
        let _ = writeln!(out, "extends = [{}]", quoted(&d.extends));
        out.push_str("\n[filesystem]\n");
        for (key, list) in [("read", &d.read), ("write", &d.write), ("exec", &d.exec)] {
            let _ = write!(out, "{key} = [");
            if !list.is_empty() {
                out.push('\n');
            }
            for (path, tools) in list {
                let why = match tools.iter().next() {
                    None => String::new(),
                    Some(t) if t == PROTECTED => format!("  # {PROTECTED}"),
                    Some(_) => format!("  # tools: {}", join(tools)),
                };
                let _ = writeln!(out, "    {},{why}", quoted(&path.to_string_lossy()));
            }
            out.push_str("]\n");
        }
        out.push_str("\n[network]\n");
        let connect: Vec<String> = d.connect.iter().map(|c| quoted(c)).collect();
        let _ = writeln!(out, "connect = [{}]", connect.join(", "));
        let _ = writeln!(out, "dns = {}", d.dns);
        if d.connect.iter().any(|c| c.starts_with("udp:")) {
            out.push_str("udp = true\n");
        }
        out.push_str("\n[environment]\n");
        let pass: Vec<String> = d.pass.iter().map(|k| quoted(k)).collect();
        let _ = writeln!(out, "pass = [{}]", pass.join(", "));
        if let Some((processes, files, memory)) = d.limits {
            out.push_str("\n# peaks seen while learning, doubled\n[process]\n");
            let _ = writeln!(out, "max-processes = {processes}\nmax-open-files = {files}");
            let _ = writeln!(out, "max-memory = \"{}M\"", memory >> 20);
        }
        out
    }

    /// What the sessions touched and the draft does not grant, one line each, for `learn show`.
    pub fn left_out(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.cut_short > 0 {
            lines.push(format!(
                "{} session(s) reached the recording cap: what the server did after is NOT in this draft or this list",
                self.cut_short
            ));
        }
        for (what, access, path) in &self.sensitive {
            let what = if *what == Sensitive::Secret { "secret" } else { "persistence location" };
            lines.push(format!("{access:?} of {} ({what}): never granted", sensitive::shown(path)));
        }
        for (access, path, home) in self.refused.iter().filter(|(_, p, _)| !own_proc_entry(p)) {
            let hint = super::grant_hint(*access, path, home);
            lines.push(crate::logging::printable(&format!(
                "{access:?} of {}: refused while learning (outside the baseline); to grant it: {hint}",
                path.display()
            )));
        }
        lines
    }
}

type Grants = BTreeMap<PathBuf, BTreeSet<String>>;

/// The comment of a read grant that keeps git's metadata read-only inside a write grant, kept in
/// the place of the tools (a tool of that very name prints this same constant, nothing else).
const PROTECTED: &str = "read-only: git metadata inside a write grant";

/// Removes from `list` each grant at or beneath a grant of `wider` (beneath another grant of
/// `list` itself when `None`), moving its tools there.
fn absorb(list: &mut Grants, wider: Option<&mut Grants>) {
    let keys: Vec<PathBuf> = list.keys().cloned().collect();
    match wider {
        None => {
            for p in &keys {
                if let Some(k) = keys.iter().find(|k| *k != p && p.starts_with(k)) {
                    let tools = list.remove(p).unwrap_or_default();
                    list.entry(k.clone()).or_default().extend(tools);
                }
            }
        }
        Some(into) => {
            for p in keys {
                if let Some(k) = into.keys().find(|k| p.starts_with(k)).cloned() {
                    let tools = list.remove(&p).unwrap_or_default();
                    into.entry(k).or_default().extend(tools);
                }
            }
        }
    }
}

/// The grant that covers one access, by the module's order; `None` when none is needed.
fn generalise(
    header: &Header,
    closed: &sensitive::Closed,
    access: Access,
    path: &Path,
    exists: bool,
) -> Option<PathBuf> {
    if (access == Access::Read && !exists) || own_proc_entry(path) {
        return None;
    }
    let covered = |p: &Path| {
        header.base.iter().any(|g| {
            p.starts_with(&g.path)
                && match access {
                    Access::Read => g.read,
                    Access::Write => g.write,
                    Access::Exec => g.exec,
                }
        })
    };
    let target = if access == Access::Write && !path.is_dir() { path.parent()? } else { path };
    if covered(target) {
        return None;
    }
    let wide = widest(header, target);
    // Never a grant that reaches a secret (a persistence location, for a write), a `.env` file or
    // the home: narrowed towards the path one level at a time, down to the path itself (whose own
    // sensitivity was checked).
    let mut grant = wide;
    let write = access == Access::Write;
    while !grantable(closed, &grant, write) && grant != path {
        let rest = path.strip_prefix(&grant).ok()?;
        grant = grant.join(rest.components().next()?);
    }
    (!header.home.starts_with(&grant)).then_some(grant)
}

/// [`sensitive::Closed::grantable`], remembered per directory (it scans for `.env` files, and a
/// draft asks about the same directories for every record).
fn grantable(closed: &sensitive::Closed, dir: &Path, write: bool) -> bool {
    type Seen = BTreeMap<(PathBuf, PathBuf, bool), bool>;
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = const { std::cell::RefCell::new(BTreeMap::new()) };
    }
    let key = (closed.home().to_path_buf(), dir.to_path_buf(), write);
    if let Some(known) = SEEN.with(|s| s.borrow().get(&key).copied()) {
        return known;
    }
    let answer = closed.grantable(dir, write);
    SEEN.with(|s| s.borrow_mut().insert(key, answer));
    answer
}

/// The widest grant the order allows for `target`: the argument that contains it, the
/// application's XDG directory, the home's dot-directory, or `target` itself.
fn widest(header: &Header, target: &Path) -> PathBuf {
    if let Some(arg) = header.argument_paths.iter().find(|a| target.starts_with(a)) {
        return arg.clone();
    }
    let home = &header.home;
    if let Ok(rel) = target.strip_prefix(home) {
        for base in XDG {
            if let Ok(inner) = rel.strip_prefix(base)
                && let Some(app) = inner.components().next()
            {
                return home.join(base).join(app);
            }
        }
        if let Some(first) = rel.components().next()
            && first.as_os_str().to_string_lossy().starts_with('.')
            && rel.components().count() > 1
        {
            return home.join(first);
        }
    }
    target.to_path_buf()
}

/// `/proc/<pid>/...`: a process's own entries, whose pid changes every run.
pub fn own_proc_entry(path: &Path) -> bool {
    let mut parts = path.components().skip(1);
    parts.next().is_some_and(|c| c.as_os_str() == "proc")
        && parts.next().is_some_and(|c| c.as_os_str().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
}

fn headroom(peak: u64, floor: u64) -> u64 {
    (peak * 2).max(floor)
}

fn bracketed(addr: &str) -> String {
    if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Tool names as a comment: a name is the server's (or client's) text, so anything but
/// `[A-Za-z0-9_.:/-]` becomes `?` (no line break, quote or escape reaches the profile file).
fn join(tools: &BTreeSet<String>) -> String {
    let safe = |t: &String| -> String {
        t.chars().map(|c| if c.is_ascii_alphanumeric() || "_.:/-".contains(c) { c } else { '?' }).collect()
    };
    tools.iter().map(safe).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::session::Grant;

    fn header(home: &Path) -> Header {
        Header {
            profile: "node".into(),
            argv: vec!["node".into()],
            program: "/usr/bin/node".into(),
            cwd: home.into(),
            home: home.into(),
            base: vec![Grant { path: "/usr".into(), read: true, write: false, exec: true }],
            argument_paths: vec![home.join("notes")],
            env: vec!["API_KEY".into()],
            started: 0,
        }
    }

    fn file(access: Access, path: &str, tool: Option<&str>) -> Record {
        Record::File { access, path: path.into(), exists: true, refused: false, tool: tool.map(Into::into) }
    }

    #[test]
    fn accesses_generalise_in_the_documented_order() {
        let home = Path::new("/home/me");
        let records = vec![
            file(Access::Exec, "/usr/bin/node", None),
            file(Access::Read, "/home/me/notes/a/b.md", Some("read_note")),
            file(Access::Write, "/home/me/notes/c.md", Some("write_note")),
            file(Access::Read, "/home/me/.config/app/settings.json", None),
            file(Access::Write, "/home/me/.cache/app/x/y.bin", None),
            file(Access::Read, "/home/me/.npm/_cacache/index", None),
            file(Access::Read, "/etc/app.conf", None),
            file(Access::Read, "/proc/4242/status", None),
            file(Access::Read, "/home/me/.ssh/id_rsa", None),
            Record::File { access: Access::Read, path: "/nope".into(), exists: false, refused: false, tool: None },
            Record::File {
                access: Access::Read,
                path: "/home/me/Documents/x".into(),
                exists: true,
                refused: true,
                tool: None,
            },
            Record::Connect {
                proto: "tcp".into(),
                addr: "140.82.112.3".into(),
                port: 443,
                host: Some("api.github.com".into()),
            },
            Record::Connect {
                proto: "udp".into(),
                addr: "127.0.0.53".into(),
                port: 53,
                host: Some("api.github.com".into()),
            },
            Record::Limits { processes: 3, open_files: 40, memory: 90 << 20 },
        ];
        let d = Draft::from_sessions("notes", &[(header(home), records)]);
        let keys = |m: &Grants| m.keys().map(|p| p.display().to_string()).collect::<Vec<_>>();
        assert_eq!(keys(&d.exec), Vec::<String>::new(), "the base covers /usr");
        assert_eq!(keys(&d.write), ["/home/me/.cache/app", "/home/me/notes"]);
        assert_eq!(keys(&d.read), ["/etc/app.conf", "/home/me/.config/app", "/home/me/.npm", "/home/me/notes"]);
        assert_eq!(d.read[Path::new("/home/me/notes")], BTreeSet::from(["read_note".to_string()]));
        assert_eq!(d.connect, BTreeSet::from(["api.github.com:443".to_string()]));
        assert!(!d.dns, "the one name looked up is a connect entry: mcp-warden answers it alone");
        assert_eq!(d.sensitive.len(), 1);
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.limits, Some((16, 256, 256 << 20)));
        let text = d.render();
        let parsed: toml::Table = toml::from_str(&text).expect("the draft is TOML");
        assert_eq!(parsed["extends"][0].as_str(), Some("node"));
        assert!(!text.contains(".ssh"), "{text}");
        assert!(text.contains("\"/home/me/notes\",  # tools: read_note, write_note"), "{text}");
        assert!(!text.contains("\"/home/me/notes\",\n    \"/home/me/notes\""), "tidy: one grant: {text}");
        assert!(d.left_out().iter().any(|l| l.contains("--allow-read /home/me/Documents/x")));
    }

    #[test]
    fn a_written_directory_keeps_its_repositories_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        let repo = home.join("proj/repo");
        std::fs::create_dir_all(repo.join(".git/hooks")).unwrap();
        let mut h = header(&home);
        h.argument_paths = vec![home.join("proj")];
        let written = repo.join("file.txt");
        let records = vec![file(Access::Write, written.to_str().unwrap(), None)];
        let text = Draft::from_sessions("x", &[(h, records)]).render();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let read: Vec<&str> =
            parsed["filesystem"]["read"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(read.contains(&repo.join(".git").to_str().unwrap()), "{text}");
    }

    #[test]
    fn a_draft_never_grants_a_directory_holding_a_dot_env() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(home.join(".config/app")).unwrap();
        std::fs::write(home.join(".config/app/.env"), "K=V").unwrap();
        std::fs::write(home.join(".config/app/settings.json"), "{}").unwrap();
        let settings = home.join(".config/app/settings.json");
        let records = vec![file(Access::Read, settings.to_str().unwrap(), None)];
        let d = Draft::from_sessions("x", &[(header(&home), records)]);
        assert_eq!(d.read.keys().collect::<Vec<_>>(), [&settings], "the file, not its directory");
    }

    #[test]
    fn a_draft_never_reaches_the_home_or_a_secret_and_tool_names_cannot_inject() {
        let home = Path::new("/home/me");
        let mut h = header(home);
        h.argument_paths = vec![home.to_path_buf()];
        let records = vec![
            file(Access::Read, "/home/me/.config/rclone-free/x.conf", None),
            file(Access::Read, "/home/me/.cargo/registry/index/x", None),
            file(Access::Read, "/home/me/.local/lib/python3/site.py", None),
            file(Access::Write, "/home/me/.config/app.json", Some("lookup\n    \"/home/me/.config\",  #")),
            file(Access::Read, "/home/me/notes.txt", None),
        ];
        let d = Draft::from_sessions("x", &[(h, records)]);
        let all: Vec<String> = d.read.keys().chain(d.write.keys()).map(|p| p.display().to_string()).collect();
        for wide in ["/home/me", "/home/me/.cargo", "/home/me/.local", "/home/me/.config"] {
            assert!(!all.iter().any(|p| p == wide), "{wide} granted: {all:?}");
        }
        assert!(all.iter().any(|p| p == "/home/me/.cargo/registry"), "narrowed, not dropped: {all:?}");
        assert!(all.iter().any(|p| p == "/home/me/.config/app.json"), "{all:?}");
        let text = d.render();
        let parsed: toml::Table = toml::from_str(&text).expect("still one profile");
        let write = parsed["filesystem"]["write"].as_array().unwrap();
        assert_eq!(write.len(), 1, "no injected grant: {text}");
    }
}
