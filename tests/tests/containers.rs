//! mcp-warden inside real containers: runc (tests/containers/ctr.py) as an unprivileged user with
//! no capabilities, under moby's and containers-common's default seccomp profiles and under the
//! profile `mcp-warden export --format seccomp` writes.
//!
//! - the exported profile alone gives every seccomp row of the escape suite the launcher's own
//!   verdict and errno (the rows whose call the launcher itself needs: the entrypoint's);
//! - the entrypoint under the exported profile blocks every row of the escape suite;
//! - real servers through the official client under each profile: full protection under the
//!   export and containers-common's; under moby's a refusal that names the layer, or with the
//!   layer made best-effort a degraded run that says so; never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::escape_suite::{self, Escape, Targets};
use mcp_warden_tests::*;

/// Rows whose call the launcher needs inside the container, so the exported profile allows it
/// (mcp_warden::export::seccomp::LAUNCHER_NEEDS): the entrypoint's own filter denies it.
const LAUNCHER_NEEDS: &[(&str, &str)] = &[
    ("process-vm-readv", "process_vm_readv"),
    ("openat2-setuid-file", "openat2"),
    ("clone-newuser", "clone with CLONE_NEWUSER"),
];

/// runc needs root; as root (CI) nothing here is skipped.
fn ready(test: &str) -> bool {
    if !is_root() {
        skip(test, "runc needs root to create containers: CI runs this as root");
        return false;
    }
    need(PathBuf::from("/usr/sbin/runc"));
    true
}

fn ctr_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("containers/ctr.py")
}

/// `cmd` in a container as the test user, under `seccomp` (moby, containers-common or a file),
/// with the host's network namespace (the suite's listeners are on its loopback), the test
/// binaries and environment read-only and `rw` read-write.
fn in_container(seccomp: &OsStr, rw: &[&Path], cmd: &[&OsStr]) -> Command {
    let (uid, gid) = test_user();
    let mut c = Command::new("python3");
    c.arg(ctr_py()).arg("run").arg("--seccomp").arg(seccomp);
    c.args(["--net", "host", "--user", &format!("{uid}:{gid}")]);
    for dir in [probe_dir(), test_env()] {
        c.arg("--bind").arg(dir);
    }
    for dir in rw {
        c.arg("--bind").arg(format!("{}:rw", dir.display()));
    }
    c.arg("--").args(cmd);
    c
}

/// The exported seccomp profile of `strict` plus `grants`, in a file of `dir`.
fn export_seccomp(grants: &[String], dir: &Path) -> PathBuf {
    let mut args = vec!["--profile".to_string(), "strict".into()];
    args.extend_from_slice(grants);
    args.extend(["--".into(), probe().display().to_string()]);
    export_to(&args, &dir.join(format!("seccomp-{}.json", grants.join("_").replace('/', "_"))))
}

/// `mcp-warden export --format seccomp RUN_ARGS` written to `path`.
fn export_to(run_args: &[String], path: &Path) -> PathBuf {
    let mut c = Command::new(warden());
    c.args(["export", "--format", "seccomp"]).args(run_args);
    let o = run(c, None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(0), "export failed\n{}", o.describe());
    std::fs::write(path, o.stdout).unwrap();
    path.to_path_buf()
}

/// The errno a probe run ended with (`EPERM`), or its whole verdict when it was not refused.
fn outcome(o: &Output) -> String {
    let v = o.verdict();
    v.strip_prefix("ERR ").or_else(|| v.rsplit_once(" then ").map(|(_, e)| e)).unwrap_or(v).to_string()
}

/// The row's action and grants with its placeholders filled; the grants start with the probe's
/// directory, as [`Sandbox`]'s do.
fn filled(e: &Escape, t: &Targets) -> (Vec<String>, Vec<String>) {
    let mut grants = vec!["--allow-exec".to_string(), probe_dir().display().to_string()];
    grants.extend(e.grants.iter().map(|g| t.fill(g)));
    (e.action.iter().map(|a| t.fill(a)).collect(), grants)
}

/// The entrypoint in the container under `seccomp`: `mcp-warden run --profile strict GRANTS --
/// probe ACTION`.
fn entrypoint(seccomp: &OsStr, rw: &Path, grants: &[String], action: &[String]) -> Output {
    let warden = warden();
    let probe = probe();
    let mut cmd: Vec<&OsStr> = vec![warden.as_os_str(), "run".as_ref(), "--profile".as_ref(), "strict".as_ref()];
    cmd.extend(grants.iter().map(OsStr::new));
    cmd.extend(["--".as_ref(), probe.as_os_str()]);
    cmd.extend(action.iter().map(OsStr::new));
    run(in_container(seccomp, &[rw], &cmd), None, Duration::from_secs(60))
}

#[test]
fn the_exported_profile_alone_gives_the_launchers_verdicts() {
    if !ready(module_path!()) {
        return;
    }
    let (suite, t, scratch) = suite_as_user();
    let mut failures = Vec::new();
    let mut compared = 0;
    for e in suite.escape.iter().filter(|e| e.layer.starts_with("seccomp")) {
        let (action, grants) = filled(e, &t);
        let mut sb = Sandbox::new(Who::User);
        for pair in grants[2..].chunks(2) {
            sb = sb.grant(&pair[0], &pair[1]);
        }
        let args: Vec<&str> = action.iter().map(String::as_str).collect();
        let launcher = outcome(&sb.probe(&args));
        let profile = export_seccomp(&grants, &scratch);
        let needed = LAUNCHER_NEEDS.iter().find(|(id, _)| *id == e.id);
        let o = match needed {
            None => {
                let probe = probe();
                let cmd: Vec<&OsStr> =
                    std::iter::once(probe.as_os_str()).chain(action.iter().map(OsStr::new)).collect();
                run(in_container(profile.as_os_str(), &[&scratch], &cmd), None, Duration::from_secs(60))
            }
            Some((_, call)) => {
                eprintln!("{}: the launcher needs {call}: compared through the entrypoint", e.id);
                entrypoint(profile.as_os_str(), &scratch, &grants, &action)
            }
        };
        compared += 1;
        if outcome(&o) != launcher {
            failures.push(format!("{}: launcher `{launcher}`, container `{}`\n{}", e.id, outcome(&o), o.describe()));
        }
    }
    assert!(compared >= 20, "only {compared} seccomp rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_entrypoint_blocks_the_escape_suite_under_the_exported_profile_and_containers_common() {
    if !ready(module_path!()) {
        return;
    }
    let (suite, t, scratch) = suite_as_user();
    let mut failures = Vec::new();
    for e in &suite.escape {
        let (action, grants) = filled(e, &t);
        let profile = export_seccomp(&grants, &scratch);
        for seccomp in [profile.as_os_str(), OsStr::new("containers-common")] {
            let o = entrypoint(seccomp, &scratch, &grants, &action);
            let got = outcome(&o);
            // containers-common's own default action (ENOSYS) answers a call outside its
            // allow-list before mcp-warden's filter can: refused all the same.
            let by_the_runtime = seccomp == "containers-common" && got == "ENOSYS";
            if !e.expect.contains(&got) && !by_the_runtime {
                failures.push(format!(
                    "{} under {seccomp:?}: expected one of {:?}, got `{got}`\n{}",
                    e.id,
                    e.expect,
                    o.describe()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The rows only the filesystem view and the hidden root block: what moby's profile, which
/// refuses their namespaces, leaves open once fs-view is made best-effort (docs/deploy.md).
const VIEW_ONLY: &[&str] = &["fs-view", "fs-hide"];

#[test]
fn under_mobys_profile_the_degraded_entrypoint_blocks_all_but_the_views_rows() {
    if !ready(module_path!()) {
        return;
    }
    let (suite, t, scratch) = suite_as_user();
    let mut failures = Vec::new();
    let mut open = Vec::new();
    for e in &suite.escape {
        let (action, mut grants) = filled(e, &t);
        grants.extend(["--require".into(), "fs-view=best-effort".into()]);
        let o = entrypoint(OsStr::new("moby"), &scratch, &grants, &action);
        let got = outcome(&o);
        if e.expect.contains(&got) || (got.starts_with('E') && !got.contains(' ')) {
            continue; // refused, by another layer's errno at worst (Landlock's EACCES for ENOENT)
        }
        if o.code() == Some(125) && o.stderr.contains("is required but cannot be enforced") {
            continue; // the row's grants need the broker, which moby's profile refuses: no start
        }
        let layers: Vec<&str> = e.layer.split(';').map(|l| l.trim().split(' ').next().unwrap_or("")).collect();
        match layers.iter().all(|l| VIEW_ONLY.contains(l) || *l == "Landlock")
            && layers.iter().any(|l| VIEW_ONLY.contains(l))
        {
            true => open.push(e.id.as_str()),
            false => failures.push(format!("{}: expected a refusal, got `{got}`\n{}", e.id, o.describe())),
        }
    }
    eprintln!("open under moby's profile without the view: {open:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The escape suite, its placeholders' targets for the test user, and the directory holding them.
fn suite_as_user() -> (escape_suite::Suite, Targets, PathBuf) {
    let t = Targets::new(Who::User);
    let scratch = scratch_root(&t);
    (escape_suite::load(), t, scratch)
}

/// The directory holding every placeholder's file (bound read-write into the container).
fn scratch_root(t: &Targets) -> PathBuf {
    let secret = t.values.iter().find(|(k, _)| *k == "{secret}").unwrap();
    Path::new(&secret.1).parent().unwrap().to_path_buf()
}

/// One MCP session of the official Python client with `mcp-warden WARDEN_ARGS` in a container
/// under `seccomp`: the client's exit, the session's JSON and everything said on stderr.
fn session(seccomp: &OsStr, rw: &[&Path], warden_args: &[&str], tool: &str, arguments: &str) -> Output {
    let client = need(test_env().join("clients/mcp_session.py"));
    let warden = warden();
    let mut cmd: Vec<&OsStr> = vec![warden.as_os_str()];
    cmd.extend(warden_args.iter().map(OsStr::new));
    let container = in_container(seccomp, rw, &cmd);
    let mut c = Command::new(venv_python());
    c.arg(client).args([tool, arguments, "--"]).arg(container.get_program()).args(container.get_args());
    run(c, None, Duration::from_secs(120))
}

/// The session's `(server, text)`, after asserting it ran.
fn answered(o: &Output, what: &str) -> (String, String) {
    assert_eq!(o.code(), Some(0), "{what}: the MCP session failed\n{}", o.describe());
    let v: serde_json::Value =
        serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
    assert_eq!(v["is_error"], false, "{what}: {}", o.describe());
    (v["server"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string())
}

/// Layers a run said it could not enforce, on stderr (`mcp-warden: warning: X is best-effort and
/// not fully enforced`), but the eBPF layer, which needs root.
fn degraded(o: &Output) -> Vec<String> {
    o.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("mcp-warden: warning: ")?.split_once(" is best-effort and not fully enforced"))
        .map(|(layer, _)| layer.to_string())
        .filter(|l| l != "monitor")
        .collect()
}

/// A scratch directory with `notes/todo.md`, for the filesystem server.
fn notes() -> (Scratch, PathBuf) {
    let s = Scratch::new(Who::User);
    let notes = s.mkdir("notes", Who::User);
    s.file("notes/todo.md", "- ship it\n", Who::User);
    (s, notes)
}

/// The three servers of the brief, each as `(what, warden arguments, tool, arguments, expected)`.
fn servers(notes: &Path) -> Vec<(&'static str, Vec<String>, &'static str, String, &'static str)> {
    let node = need(test_env().join("node"));
    let venv = need(test_env().join("venv"));
    let module = |m: &str| need(node.join("node_modules/@modelcontextprotocol").join(m).join("dist/index.js"));
    let s = |p: &Path| p.display().to_string();
    let strict = |extra: &[String], cmd: &[String]| {
        let mut a: Vec<String> = ["run", "--profile", "strict"].map(String::from).to_vec();
        a.extend_from_slice(extra);
        a.push("--".into());
        a.extend_from_slice(cmd);
        a
    };
    vec![
        (
            "everything (Node)",
            strict(
                &["--allow-read".into(), s(&node)],
                &["node".into(), s(&module("server-everything")), "stdio".into()],
            ),
            "echo",
            r#"{"message": "hello from the container"}"#.into(),
            "Echo: hello from the container",
        ),
        (
            "filesystem (Node)",
            strict(
                &["--allow-read".into(), s(&node), "--allow-write".into(), s(notes)],
                &["node".into(), s(&module("server-filesystem")), s(notes)],
            ),
            "read_text_file",
            format!(r#"{{"path": "{}"}}"#, notes.join("todo.md").display()),
            "- ship it",
        ),
        (
            "time (Python)",
            strict(
                &["--allow-read".into(), s(&venv)],
                &[s(&venv.join("bin/python")), "-m".into(), "mcp_server_time".into()],
            ),
            "get_current_time",
            r#"{"timezone": "UTC"}"#.into(),
            "\"timezone\": \"UTC\"",
        ),
    ]
}

#[test]
fn servers_run_with_every_layer_under_the_exported_profile_and_containers_common() {
    if !ready(module_path!()) {
        return;
    }
    let (s, notes) = notes();
    for (what, args, tool, arguments, expected) in servers(&notes) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let profile = export_to(&args[1..], &s.join(&format!("{}.json", what.split(' ').next().unwrap())));
        for seccomp in [profile.as_os_str(), OsStr::new("containers-common")] {
            let o = session(seccomp, &[&notes], &argv, tool, &arguments);
            let (_, text) = answered(&o, what);
            assert!(text.contains(expected), "{what} under {seccomp:?}: {text}");
            assert_eq!(degraded(&o), Vec::<String>::new(), "{what} under {seccomp:?}: every layer\n{}", o.describe());
            assert!(!o.stderr.contains("not recorded"), "{what} under {seccomp:?}: refusals are recorded");
        }
    }
}

#[test]
fn under_mobys_profile_a_required_layer_refuses_at_once_and_best_effort_degrades_aloud() {
    if !ready(module_path!()) {
        return;
    }
    let (_scratch, notes) = notes();
    let moby = OsStr::new("moby");
    for (what, args, tool, arguments, expected) in servers(&notes) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // strict requires the filesystem view, whose namespaces moby's profile refuses.
        let started = std::time::Instant::now();
        let o = session(moby, &[&notes], &argv, tool, &arguments);
        eprintln!("{what}: refused after {:?}", started.elapsed());
        assert_ne!(o.code(), Some(0), "{what}: {}", o.describe());
        assert!(
            o.stderr.contains("fs-view is required but cannot be enforced")
                && o.stderr.contains("refuses clone into new namespaces")
                && o.stderr.contains("--require fs-view=best-effort"),
            "{what}: the refusal names the layer, the reason and the way out\n{}",
            o.describe()
        );
        let mut best_effort = argv.clone();
        best_effort.splice(3..3, ["--require", "fs-view=best-effort"]);
        let o = session(moby, &[&notes], &best_effort, tool, &arguments);
        let (_, text) = answered(&o, what);
        assert!(text.contains(expected), "{what}: {text}");
        assert_eq!(degraded(&o), ["pid-namespace", "fs-view", "fs-hide"], "{what}\n{}", o.describe());
        assert!(o.stderr.contains("seccomp refusals are enforced but not recorded"), "{what}\n{}", o.describe());
    }
}

#[test]
fn under_mobys_profile_the_network_broker_refuses_instead_of_hanging() {
    if !ready(module_path!()) {
        return;
    }
    let warden = warden();
    let cmd: Vec<&OsStr> = [
        warden.as_os_str(),
        "run".as_ref(),
        "--profile".as_ref(),
        "fetch".as_ref(),
        "--require".as_ref(),
        "fs-view=best-effort".as_ref(),
        "--".as_ref(),
        "/bin/true".as_ref(),
    ]
    .to_vec();
    let o = run(in_container(OsStr::new("moby"), &[], &cmd), None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(
        o.stderr.contains("network is required but cannot be enforced")
            && o.stderr.contains("refuses pidfd_getfd")
            && o.stderr.contains("--require network=best-effort"),
        "{}",
        o.describe()
    );
    let doctor: Vec<&OsStr> = vec![warden.as_os_str(), "doctor".as_ref()];
    let d = run(in_container(OsStr::new("moby"), &[], &doctor), None, Duration::from_secs(30));
    for line in
        ["seccomp notify  no: a seccomp filter", "pid namespace   no: a seccomp filter", "refused to this process"]
    {
        assert!(d.stdout.contains(line), "doctor tells the truth in the container: {line}\n{}", d.describe());
    }
}

#[test]
fn the_init_containers_install_gives_a_copy_that_runs_the_server() {
    if !ready(module_path!()) {
        return;
    }
    let s = Scratch::new(Who::User);
    let bin = s.mkdir("bin", Who::User);
    let installed = bin.join("mcp-warden");
    let warden = warden();
    let install: Vec<&OsStr> = vec![warden.as_os_str(), "install".as_ref(), installed.as_os_str()];
    let o = run(in_container(OsStr::new("containers-common"), &[&bin], &install), None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let echo: Vec<&OsStr> =
        vec![installed.as_os_str(), "run".as_ref(), "--profile".as_ref(), "strict".as_ref(), "--".as_ref()];
    let echo: Vec<&OsStr> = echo.into_iter().chain(["/bin/echo".as_ref(), "installed".as_ref()]).collect();
    let o = run(in_container(OsStr::new("containers-common"), &[&bin], &echo), None, Duration::from_secs(30));
    assert_eq!((o.code(), o.stdout.as_str()), (Some(0), "installed\n"), "{}", o.describe());
}

#[test]
fn a_plan_whose_dns_mcp_warden_answers_runs_as_the_containers_pid_1() {
    if !ready(module_path!()) {
        return;
    }
    let s = Scratch::new(Who::User);
    // A name outside the profile: mcp-warden's resolver answers NXDOMAIN, from inside the
    // container, with mcp-warden as PID 1 (a Pod's entrypoint) and its DNS namespace running.
    let grants = ["--allow-exec".to_string(), probe_dir().display().to_string()]
        .into_iter()
        .chain(["--allow-connect".into(), "allowed.warden.example:443".into()])
        .collect::<Vec<String>>();
    let profile = export_seccomp(&grants, s.path());
    let action = ["resolve".to_string(), "other.warden.example".to_string()];
    for seccomp in [profile.as_os_str(), OsStr::new("containers-common")] {
        let o = entrypoint(seccomp, s.path(), &grants, &action);
        assert!(
            o.verdict().contains("ERR") && !o.stderr.contains("DNS namespace failed"),
            "{seccomp:?}: the resolver runs and refuses the name\n{}",
            o.describe()
        );
        assert!(o.stderr.contains("other.warden.example"), "{seccomp:?}: the refusal is told\n{}", o.describe());
    }
}
