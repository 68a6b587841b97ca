//! Test harness for mcp-warden's integration tests: finds the real binaries, runs them as root or
//! as the unprivileged test user, and gives each test a scratch directory.
//!
//! The binaries and test servers are prepared by `cargo xtask test` (the README's test command);
//! a test that finds something missing panics with the command that prepares it, it never skips.

// Test support: a failed set-up must panic with a message, so expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod dns_standin;
pub mod dns_wire;
pub mod escape_suite;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `path`, which `cargo xtask setup` installs: a missing one fails the test with the command to run.
pub fn need(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `cargo xtask setup` (or `cargo xtask test`)", path.display());
    path
}

/// The Python of the test environment's virtualenv (the official SDK and the Python servers).
pub fn venv_python() -> PathBuf {
    need(test_env().join("venv/bin/python"))
}

/// The unprivileged account the tests run sandboxes as (created by `cargo xtask setup`).
pub const TEST_USER: &str = "mcpw-test";

/// Where `cargo xtask setup` installs the real MCP servers and the Python SDK client.
pub fn test_env() -> PathBuf {
    std::env::var_os("MCP_WARDEN_TEST_ENV").map_or_else(|| PathBuf::from("/var/tmp/mcp-warden-test-env"), PathBuf::from)
}

/// Who runs the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Root,
    User,
}

/// One test per identity: the attack as root and as the unprivileged user are separate tests, so
/// a failure as one of them does not hide how the other one fares (ripgrep's `rgtest!` pattern).
///
/// ```ignore
/// per_identity!(secret_outside_the_allow_list_cannot_be_read, |who: Who| {
///     let s = Scratch::new(who);
///     // ...
/// });
/// ```
///
/// makes the module `secret_outside_the_allow_list_cannot_be_read` (attributes and doc comments
/// before the name go on it) holding the body as a function of `who`, and two tests calling it:
/// `as_root` with [`Who::Root`], and `as_user` with [`Who::User`] (the test user when the tests run
/// as root, whoever runs them otherwise). `as_root` says on stderr that it is skipped, and why,
/// when the tests do not run as root. The body sees the test file's items through `use super::*`;
/// `return` ends the run for this identity.
#[macro_export]
macro_rules! per_identity {
    ($(#[$attr:meta])* $name:ident, |$who:ident: Who| $body:block $(,)?) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($who: $crate::Who) $body

            #[test]
            fn as_root() {
                if !$crate::is_root() {
                    $crate::skip(
                        concat!(module_path!(), "::as_root"),
                        "running the launcher as root needs the tests to run as root (CI does)",
                    );
                    return;
                }
                body($crate::Who::Root)
            }

            #[test]
            fn as_user() {
                body($crate::Who::User)
            }
        }
    };
}

impl Who {
    /// Both, when the tests run as root (CI does); only the current user otherwise. For a test
    /// that needs both identities in one run (a table with a column each); a test that only
    /// repeats itself per identity is written with [`per_identity!`].
    pub fn all() -> Vec<Who> {
        if is_root() { vec![Who::Root, Who::User] } else { vec![Who::User] }
    }

    /// Whoever runs the tests.
    pub fn current() -> Who {
        if is_root() { Who::Root } else { Who::User }
    }

    pub fn uid(self) -> u32 {
        match self {
            Who::Root => 0,
            Who::User => test_user().0,
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// (uid, gid) of the test user; panics with the set-up command if it does not exist.
pub fn test_user() -> (u32, u32) {
    if !is_root() {
        return (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    }
    static USER: OnceLock<(u32, u32)> = OnceLock::new();
    *USER.get_or_init(|| {
        let u = nix::unistd::User::from_name(TEST_USER).ok().flatten().unwrap_or_else(|| {
            panic!("test user `{TEST_USER}` is missing: run `cargo xtask setup` (or `cargo xtask test`)")
        });
        (u.uid.as_raw(), u.gid.as_raw())
    })
}

fn target_bin_dir() -> PathBuf {
    // target/debug/deps/<test-binary> -> target/debug
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_path_buf()
}

/// Can the test user read and run `path` (every ancestor traversable by others)?
fn others_can_run(path: &Path) -> bool {
    let file_ok = path.metadata().map(|m| m.mode() & 0o005 == 0o005).unwrap_or(false);
    file_ok && path.ancestors().skip(1).all(|d| d.metadata().map(|m| m.mode() & 0o001 != 0).unwrap_or(false))
}

/// A binary of this workspace, copied to a world-readable place if the checkout is not readable
/// by the test user (e.g. a clone under /root).
fn binary(name: &str) -> PathBuf {
    let built = target_bin_dir().join(name);
    assert!(built.exists(), "{} is not built: run `cargo xtask test` (it builds every binary first)", built.display());
    if others_can_run(&built) {
        return built;
    }
    static STAGE: OnceLock<PathBuf> = OnceLock::new();
    let stage = STAGE.get_or_init(|| {
        let dir = test_env().join(format!("bin.{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create staging dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod staging dir");
        dir
    });
    let staged = stage.join(name);
    if !staged.exists() {
        std::fs::copy(&built, &staged).expect("stage binary");
    }
    staged
}

/// The mcp-warden binary under test.
pub fn warden() -> PathBuf {
    binary("mcp-warden")
}

/// The attack probe.
pub fn probe() -> PathBuf {
    binary("warden-probe")
}

/// The directory holding the probe: granted `--allow-exec` in tests.
pub fn probe_dir() -> PathBuf {
    probe().parent().expect("probe dir").to_path_buf()
}

/// A per-test scratch directory, owned by whoever runs the sandbox and removed afterwards.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(who: Who) -> Scratch {
        let dir = tempfile::Builder::new().prefix("mcpw-").tempdir_in(scratch_root()).expect("create scratch dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        if who == Who::User && is_root() {
            let (uid, gid) = test_user();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown scratch");
        }
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A subdirectory (owned by `who`).
    pub fn mkdir(&self, p: &str, who: Who) -> PathBuf {
        let d = self.join(p);
        std::fs::create_dir_all(&d).expect("mkdir");
        chown_to(&d, who);
        d
    }

    /// A file with `content`, owned by `who`, mode 0644.
    pub fn file(&self, p: &str, content: &str, who: Who) -> PathBuf {
        let f = self.join(p);
        std::fs::write(&f, content).expect("write file");
        chown_to(&f, who);
        f
    }
}

fn scratch_root() -> PathBuf {
    // /tmp may be mounted nosuid/noexec on some hosts; tests that need exec use target dirs.
    let root = test_env().join("scratch");
    std::fs::create_dir_all(&root).expect("create scratch root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).expect("chmod scratch root");
    root
}

pub fn chown_to(path: &Path, who: Who) {
    if who == Who::User && is_root() {
        let (uid, gid) = test_user();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// The result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The probe's verdict line (`OK ...` / `ERR EACCES`).
    pub fn verdict(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    pub fn describe(&self) -> String {
        format!("status: {}\nstdout:\n{}\nstderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// A command prefix that runs as `who`: `runuser -u mcpw-test --` for the test user when root.
pub fn command_as(who: Who, program: impl AsRef<OsStr>) -> Command {
    if who == Who::User && is_root() {
        let mut c = Command::new("/usr/sbin/runuser");
        c.args(["-u", TEST_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// `program` as `who` with exactly `env` (and a minimal PATH and LANG), through env(1): runuser
/// resets HOME to the user's own, so a test's home must be set on the far side.
pub fn command_with_env(who: Who, env: &[(&str, String)], program: impl AsRef<OsStr>) -> Command {
    let mut c = command_as(who, "/usr/bin/env");
    c.env_clear();
    c.arg("PATH=/usr/local/bin:/usr/bin:/bin").arg("LANG=C.UTF-8");
    c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
    c.arg(program);
    c
}

/// `mcp-warden ARGS` as `who`, with a minimal, known environment.
pub fn warden_as(who: Who, args: &[&OsStr]) -> Command {
    let mut c = command_as(who, warden());
    c.args(args);
    c.env_clear();
    c.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c.env("HOME", if who == Who::Root { "/root" } else { "/nonexistent" });
    c.env("LANG", "C.UTF-8");
    c.env("XDG_STATE_HOME", state_home(who));
    c
}

/// `XDG_STATE_HOME` for `who`: default audit logs go to the test environment, not `$HOME`, and
/// each identity has its own (as each user has on a real host: the log directory is mode 0700).
pub fn state_home(who: Who) -> PathBuf {
    scratch_root().join(format!("state-{}", who.uid()))
}

/// Runs a command to completion with a deadline; stdin is empty unless given.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("failed to spawn {cmd:?}: {e}"));
    let mut sin = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        let _ = sin.write_all(data);
    }
    drop(sin);
    wait_output(child, timeout)
}

/// Waits for a spawned child (stdout/stderr piped) with a deadline, killing it on timeout.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
            panic!("command timed out after {timeout:?} ({status}); stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// Builds `mcp-warden run --profile strict --allow-exec <probe dir> [extra] -- warden-probe ACTION...`.
#[derive(Debug)]
pub struct Sandbox {
    pub who: Who,
    pub profile: std::ffi::OsString,
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(who: Who) -> Sandbox {
        let args = vec!["--allow-exec".into(), probe_dir().into()];
        Sandbox { who, profile: "strict".into(), args, env: Vec::new() }
    }

    /// Uses another profile than `strict`.
    pub fn profile(mut self, p: impl AsRef<OsStr>) -> Sandbox {
        self.profile = p.as_ref().to_os_string();
        self
    }

    /// Adds launcher arguments (before `--`).
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Sandbox {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn grant(self, flag: &str, value: impl AsRef<OsStr>) -> Sandbox {
        self.arg(flag).arg(value)
    }

    pub fn env(mut self, k: &str, v: &str) -> Sandbox {
        self.env.push((k.into(), v.into()));
        self
    }

    fn command(&self, tail: &[&OsStr]) -> Command {
        let mut all: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new("--profile"), self.profile.as_os_str()];
        all.extend(self.args.iter().map(|a| a.as_os_str()));
        all.extend_from_slice(tail);
        let mut c = warden_as(self.who, &all);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs the probe with `action` inside the sandbox.
    pub fn probe(&self, action: &[&str]) -> Output {
        let p = probe();
        let mut tail: Vec<&OsStr> = vec![OsStr::new("--"), p.as_os_str()];
        tail.extend(action.iter().map(OsStr::new));
        run(self.command(&tail), None, Duration::from_secs(60))
    }

    /// Runs an arbitrary command inside the sandbox.
    pub fn exec(&self, cmd: &[&OsStr]) -> Output {
        let mut tail: Vec<&OsStr> = vec![OsStr::new("--")];
        tail.extend_from_slice(cmd);
        run(self.command(&tail), None, Duration::from_secs(120))
    }

    /// A spawned (not awaited) command, for signal tests.
    pub fn spawn(&self, cmd: &[&OsStr]) -> Child {
        let mut tail: Vec<&OsStr> = vec![OsStr::new("--")];
        tail.extend_from_slice(cmd);
        let mut c = self.command(&tail);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn sandbox")
    }
}

/// Runs the probe directly (no sandbox) as `who`: the control that proves an attack is real.
pub fn unsandboxed(who: Who, action: &[&str]) -> Output {
    let mut c = command_as(who, probe());
    c.args(action);
    run(c, None, Duration::from_secs(60))
}

/// Asserts the probe's action succeeded.
#[track_caller]
pub fn assert_ok(o: &Output, what: &str) {
    assert!(o.verdict().starts_with("OK"), "{what}: expected success\n{}", o.describe());
}

/// Asserts the probe's action was refused with one of `errnos`.
#[track_caller]
pub fn assert_denied(o: &Output, errnos: &[&str], what: &str) {
    let v = o.verdict();
    assert!(errnos.iter().any(|e| v == format!("ERR {e}")), "{what}: expected one of {errnos:?}\n{}", o.describe());
}

/// A process outside the sandbox, running as `who`, with a secret in its environment; killed on
/// drop.
#[derive(Debug)]
pub struct Victim {
    pub child: Child,
}

pub const VICTIM_SECRET: &str = "MCPW_VICTIM_SECRET=hunter2";

impl Victim {
    pub fn start(who: Who) -> Victim {
        let mut c = command_as(who, "/bin/sleep");
        c.arg("300").env_clear().env("MCPW_VICTIM_SECRET", "hunter2").stdin(Stdio::null());
        let child = c.spawn().expect("start victim");
        let v = Victim { child };
        // runuser forks: wait until the sleep itself (not runuser) is running, and use its pid.
        let deadline = Instant::now() + Duration::from_secs(5);
        while v.pid_of_sleep().is_none() {
            assert!(Instant::now() < deadline, "victim did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        v
    }

    /// The pid of the `sleep` process (a child of runuser when run as the test user).
    pub fn pid(&self) -> u32 {
        self.pid_of_sleep().expect("victim running")
    }

    fn pid_of_sleep(&self) -> Option<u32> {
        let me = self.child.id();
        if std::fs::read_to_string(format!("/proc/{me}/comm")).ok()?.trim() == "sleep" {
            return Some(me);
        }
        let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
        let pid: u32 = children.split_whitespace().next()?.parse().ok()?;
        (std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim() == "sleep").then_some(pid)
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if let Some(pid) = self.pid_of_sleep() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says why a test (or part of one) is skipped. Written to the stderr handle directly: libtest
/// captures `eprintln!` of passing tests, and a skip must be seen.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Pids of server-side processes whose command line contains `marker` (the launcher and runuser,
/// which carry the server's argv too, are not counted).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim(), "mcp-warden" | "runuser") {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

/// The launcher's pid for a spawned sandbox (runuser stands in between for the test user).
pub fn launcher_pid(child: &Child) -> u32 {
    let me = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default();
        if comm.trim() == "mcp-warden" {
            return me;
        }
        let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "launcher did not start under runuser");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw JSON-RPC peer on a child's stdio (the launcher in front of a server): bytes go out exactly
/// as given, answers are matched by id, everything else the server says is skipped.
#[derive(Debug)]
pub struct RawPeer {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl RawPeer {
    /// Spawns `c` with piped stdin and stdout.
    pub fn spawn(mut c: Command) -> RawPeer {
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn the launcher");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        RawPeer { child, stdin, stdout }
    }

    /// Writes `bytes` as they are (no newline added).
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to the launcher");
        stdin.flush().expect("flush");
    }

    /// Writes one line.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// The next message whose `id` is `id`.
    pub fn answer(&mut self, id: impl Into<serde_json::Value>) -> serde_json::Value {
        self.answer_after(id).0
    }

    /// The next message whose `id` is `id`, and the lines before it.
    pub fn answer_after(&mut self, id: impl Into<serde_json::Value>) -> (serde_json::Value, Vec<String>) {
        use std::io::BufRead;
        let id = id.into();
        let mut before = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).expect("read") > 0, "stream closed while waiting for id {id}");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            if v["id"] == id {
                return (v, before);
            }
            before.push(line);
        }
    }

    /// The next notification of `method`, and the lines before it.
    pub fn notification(&mut self, method: &str) -> (serde_json::Value, Vec<String>) {
        use std::io::BufRead;
        let mut before = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).expect("read") > 0, "stream closed while waiting for {method}");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
            if v["method"] == method && v.get("id").is_none() {
                return (v, before);
            }
            before.push(line);
        }
    }

    /// Closes the server's stdin (the client's EOF).
    pub fn close(&mut self) {
        self.stdin = None;
    }

    /// Everything the launcher still writes, until it closes its stdout.
    pub fn rest(&mut self) -> String {
        use std::io::Read;
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        rest
    }
}
