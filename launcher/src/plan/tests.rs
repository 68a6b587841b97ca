//! Plan resolution end to end: a profile text and command-line flags in, the plan out.

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::error::Diagnose;
use crate::profile::load_source;

fn env() -> Vec<(OsString, OsString)> {
    [("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("AWS_SECRET_ACCESS_KEY", "x"), ("LC_ALL", "C")]
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// Resolves `text` under the command line `flags` (grants and options) for `cmd`.
fn resolve_with(text: &str, flags: &[&str], cmd: &[&str]) -> Result<Plan, PlanError> {
    let argv = ["mcp-warden", "explain"].iter().chain(flags).chain(&["--"]).chain(cmd);
    let Command::Explain(args) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
    let (layer, options) = args.grants.into_layer();
    let profile = load_source("t.toml", text).unwrap().overlay(layer);
    let env = env();
    let cmd: Vec<OsString> = cmd.iter().map(OsString::from).collect();
    let inputs = Inputs { env: &env, cwd: "/".into(), resolvers: || vec!["192.0.2.53".parse().unwrap()] };
    Plan::resolve(&profile, &options, &cmd, &HostFacts::probe(), &inputs)
}

fn resolve(text: &str, cmd: &[&str]) -> Result<Plan, PlanError> {
    resolve_with(text, &[], cmd)
}

#[test]
fn environment_is_built_from_the_allow_list() {
    let plan = resolve("extends = [\"strict\"]\n[environment]\nset = { A = \"${HOME}/a\" }\n", &["true"]).unwrap();
    let names: Vec<_> = plan.env().iter().map(|(k, _)| k.to_str().unwrap()).collect();
    assert!(names.contains(&"PATH") && names.contains(&"LC_ALL") && names.contains(&"A"));
    assert!(!names.contains(&"AWS_SECRET_ACCESS_KEY"), "secrets are dropped: {names:?}");
    assert_eq!(plan.program(), Path::new("/usr/bin/true"));
}

#[test]
fn command_line_values_are_taken_as_written() {
    let flags = ["--set-env", "B=${HOME}", "--pass-env", "AWS_*"];
    let plan = resolve_with("extends = [\"strict\"]\n", &flags, &["true"]).unwrap();
    let b = plan.env().iter().find(|(k, _)| k == "B").map(|(_, v)| v.clone());
    assert_eq!(b, Some("${HOME}".into()), "a flag's value is not a template");
    assert!(plan.env().iter().any(|(k, _)| k == "AWS_SECRET_ACCESS_KEY"));
    let e = resolve_with("extends = [\"strict\"]\n", &["--pass-env", "1X"], &["true"]).unwrap_err();
    assert_eq!(e.to_string(), "invalid --pass-env 1X: not a variable name");
}

#[test]
fn missing_paths_fail_unless_optional() {
    let e = resolve("[filesystem]\nread = [\"/nonexistent/x\"]\n", &["/bin/true"]).unwrap_err();
    assert!(e.to_string().starts_with("filesystem.read path `/nonexistent/x` (t.toml:2:9): No such file"), "{e}");
    assert!(e.hint().unwrap().contains("trailing `?`"), "the hint follows the error's kind");
    let e = resolve_with("", &["--allow-read", "/nonexistent/y"], &["/bin/true"]).unwrap_err();
    assert!(e.to_string().starts_with("--allow-read path `/nonexistent/y` (command line): No such file"), "{e}");
    let plan =
        resolve("[filesystem]\nread = [\"/nonexistent/x?\"]\nexec = [\"/usr\", \"/bin\"]\n", &["/bin/true"]).unwrap();
    assert_eq!(plan.fs().skipped.len(), 1);
}

#[test]
fn a_path_names_the_first_place_that_granted_it() {
    let own = tempfile::tempdir().unwrap();
    let dir = own.path().to_str().unwrap();
    let plan =
        resolve_with("extends = [\"strict\"]\n", &["--allow-read", "/usr", "--allow-write", dir], &["true"]).unwrap();
    let usr = &plan.paths()[Path::new("/usr")];
    assert!(usr.1.to_string().starts_with("strict (embedded):"), "the profile's grant comes first: {}", usr.1);
    let tmp = &plan.paths()[&own.path().canonicalize().unwrap()];
    assert_eq!(tmp.1.to_string(), "--allow-write");
}

#[test]
fn a_root_server_may_not_own_a_shared_directory() {
    let e = resolve_with("extends = [\"strict\"]\n", &["--allow-write", "/tmp"], &["true"]);
    if nix::unistd::geteuid().is_root() {
        assert!(matches!(e, Err(PlanError::SharedDirForRoot { .. })), "{e:?}");
    }
}

#[test]
fn program_outside_exec_list_is_refused_with_a_hint() {
    let e = resolve("[filesystem]\nread = [\"/usr\"]\n", &["/usr/bin/true"]).unwrap_err();
    assert!(matches!(e, PlanError::ExecNotAllowed { .. }), "{e}");
    assert!(e.hint().unwrap().contains("--allow-exec /usr/bin"));
}

#[test]
fn not_found_and_not_executable_have_their_exit_codes() {
    let e = resolve("extends = [\"strict\"]\n", &["no-such-program-xyz"]).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
    let e = resolve("extends = [\"strict\"]\n", &["/etc/passwd"]).unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
}

#[test]
fn address_rules_are_enforced_by_the_broker_without_the_monitor() {
    let flags =
        ["--allow-connect", "127.0.0.1:5432", "--allow-connect", "api.example.com:443", "--require", "monitor=off"];
    let text = "extends = [\"strict\"]\n[network]\ndeny = [\"10.0.0.0/8\"]\n";
    let mut plan = resolve_with(text, &flags, &["true"]).unwrap();
    assert!(plan.ports().connect.contains(&5432) && plan.ports().connect.contains(&53));
    plan.check_requirements().unwrap();
    let b = plan.net().broker.as_ref().expect("address rules need the broker");
    assert_eq!(b.hosts, vec![(crate::layers::broker::Proto::Tcp, "api.example.com".to_string(), 443)]);
    let dns = b.dns.as_ref().expect("a host name implies DNS answered by mcp-warden");
    assert_eq!(dns.upstream.servers, vec!["192.0.2.53:53".parse::<std::net::SocketAddr>().unwrap()]);
    assert_eq!(dns.names.lookup("api.example.com"), Some(vec![(crate::layers::broker::Proto::Tcp, 443)]));
    assert_eq!(dns.names.lookup("other.example.com"), None, "only the profile's names");
    assert!(b.tcp_ports.is_empty(), "no bare port: 5432 is for 127.0.0.1 only");
    // A host name never lands among the any-address ports.
    assert!(!plan.net().connect_any.contains(&443));
    // Bare ports alone keep Landlock's port rules and need no broker.
    assert!(
        resolve_with("extends = [\"strict\"]\n", &["--allow-connect", "443"], &["true"])
            .unwrap()
            .net()
            .broker
            .is_none()
    );
    // The broker mediates IPv4/IPv6 only.
    let e = resolve("extends = [\"strict\"]\n[network]\nunix = true\ndns = true\n", &["true"]);
    assert!(e.unwrap_err().to_string().contains("`unix = true` cannot be combined"));
}

#[test]
fn cli_limits_override_the_profile() {
    let plan =
        resolve_with("extends = [\"strict\"]\n", &["--max-processes", "9", "--max-memory", "1M"], &["true"]).unwrap();
    assert_eq!(plan.limits().get("max-processes"), Some(9));
    assert_eq!(plan.limits().get("max-memory"), Some(1 << 20));
    assert_eq!(plan.limits().get("max-open-files"), Some(4096));
}

#[test]
fn require_flags_and_audit_mode_set_the_levels() {
    let plan =
        resolve_with("extends = [\"strict\"]\n", &["--require", "seccomp=off", "--mode", "audit"], &["true"]).unwrap();
    assert_eq!(plan.level(Layer::Seccomp), Level::Off);
    assert_eq!(plan.level(Layer::Landlock), Level::Off, "Landlock has no log-only mode");
    assert_eq!(plan.syscalls().action, Violation::Log);
    assert!(plan.audit_mode());
}

#[test]
fn mcp_flags_turn_the_layer_on_and_merge_with_the_section() {
    let text = "extends = [\"strict\"]\n[mcp]\ndeny-tools = [\"a\"]\nrate-limits = { b = \"5/min\" }\n";
    let plan = resolve_with(text, &["--deny-tool", "c", "--no-redact", "--rate-limit", "d=1/s"], &["true"]).unwrap();
    let m = plan.mcp().expect("on");
    assert!(m.redactor.is_none() && !m.hide_errors);
    assert_eq!(m.rates.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    assert!(resolve_with("extends = [\"strict\"]\n", &["--hide-errors"], &["true"]).unwrap().mcp().is_some());
    assert!(resolve("extends = [\"strict\"]\n", &["true"]).unwrap().mcp().is_none());
}

/// Resolves `strict` with `flags` for /bin/true on a host changed by `host`.
fn resolve_on(host: impl FnOnce(&mut HostFacts), flags: &[&str]) -> Plan {
    let argv = ["mcp-warden", "explain"].iter().chain(flags).chain(&["--", "/bin/true"]);
    let Command::Explain(args) = Cli::try_parse_from(argv).unwrap().command else { unreachable!() };
    let (layer, options) = args.grants.into_layer();
    let profile = load_source("t.toml", "extends = [\"strict\"]\n").unwrap().overlay(layer);
    let env = env();
    let inputs = Inputs { env: &env, cwd: "/".into(), resolvers: Vec::new };
    let mut facts = HostFacts::probe();
    host(&mut facts);
    Plan::resolve(&profile, &options, &[OsString::from("/bin/true")], &facts, &inputs).unwrap()
}

/// An unprivileged launcher on a host that refuses user namespaces (Ubuntu 24.04's AppArmor
/// setting): no filesystem view, so the required layer refuses the run with a hint, and
/// best-effort runs with a warning that says what stays open.
fn unprivileged_without_user_namespaces(h: &mut HostFacts) {
    h.euid = 1000;
    h.effective_caps.clear();
    h.user_namespaces = Err(crate::host::UserNsUnavailable::AppArmor);
}

#[test]
fn a_required_view_that_this_host_cannot_build_refuses_the_run() {
    let mut plan = resolve_on(unprivileged_without_user_namespaces, &[]);
    assert!(!plan.namespaces().mount && !plan.namespaces().user);
    assert!(plan.blind_spots().iter().any(|s| s.route.starts_with("metadata writes") && s.closed_by.is_none()));
    let e = plan.check_requirements().unwrap_err();
    assert!(
        e.to_string().starts_with(
            "fs-view is required but cannot be enforced on this host: not root and no user namespaces: AppArmor"
        ),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("--require fs-view=best-effort"), "{:?}", e.hint());

    let mut plan = resolve_on(unprivileged_without_user_namespaces, &["--require", "fs-view=best-effort"]);
    plan.check_requirements().expect("best-effort runs");
    assert!(
        plan.warnings().iter().any(|w| w.starts_with("fs-view is best-effort and not fully enforced")),
        "{:?}",
        plan.warnings()
    );
}

#[test]
fn root_gets_a_plain_mount_namespace_for_the_view() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped root_gets_a_plain_mount_namespace_for_the_view: needs root (CI runs as root)");
        return;
    }
    let plan = resolve_on(|_| {}, &[]);
    assert_eq!(
        plan.namespaces(),
        crate::layers::namespaces::Namespaces { user: false, pid: true, mount: true, ipc: true }
    );
    assert_eq!(plan.view().binds.len(), 1, "strict writes /dev/null only: {:?}", plan.view());
}

#[test]
fn the_hidden_root_is_best_effort_a_warning_where_there_is_no_mount_namespace_and_a_refusal_when_required() {
    let hide_spot =
        |plan: &Plan| plan.blind_spots().into_iter().find(|s| s.route.starts_with("stat, readlink")).unwrap();
    let mut plan = resolve_on(unprivileged_without_user_namespaces, &["--require", "fs-view=best-effort"]);
    assert!(plan.hide().is_none());
    assert_eq!(hide_spot(&plan).closed_by, None, "explain says OPEN");
    plan.check_requirements().expect("best-effort runs");
    let warned = plan.warnings().iter().any(|w| w.starts_with("fs-hide is best-effort and not fully enforced"));
    assert!(warned, "{:?}", plan.warnings());

    let args = ["--require", "fs-view=best-effort", "--require", "fs-hide=required"];
    let e = resolve_on(unprivileged_without_user_namespaces, &args).check_requirements().unwrap_err();
    assert!(e.to_string().starts_with("fs-hide is required but cannot be enforced on this host"), "{e}");
    assert!(e.hint().unwrap().contains("--require fs-hide=best-effort"), "{:?}", e.hint());

    let plan = resolve_on(|_| {}, &["--require", "fs-view=off"]);
    assert!(plan.hide().is_none(), "the hidden root builds on the view");
    assert_eq!(
        plan.enforcement(Layer::FsHide),
        &Enforcement::Missing("it builds on the fs-view layer, which is off".into())
    );
}

#[test]
fn where_namespaces_work_the_hidden_root_closes_the_lookup_route() {
    let plan = resolve_on(|_| {}, &[]);
    if !plan.namespaces().mount {
        eprintln!("skipped where_namespaces_work_the_hidden_root_closes_the_lookup_route: no mount namespace here");
        return;
    }
    let hide = plan.hide().expect("a hidden root");
    assert!(hide.view.binds.iter().any(|b| b.path == std::path::Path::new("/proc")));
    let spot = plan.blind_spots().into_iter().find(|s| s.route.starts_with("stat, readlink")).unwrap();
    assert_eq!(spot.closed_by, Some("fs-hide: a root holding only the grants (ENOENT)"));
}

#[test]
fn explain_knows_when_a_server_could_not_read_its_own_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("server.py");
    std::fs::write(&script, "print('hi')\n").unwrap();
    let cmd = ["/usr/bin/python3", script.to_str().unwrap()];
    let fails = |plan: &Plan| plan.warnings().iter().any(|w| w.contains("would start and fail at once"));
    let plan = resolve_with("extends = [\"strict\"]\n", &[], &cmd).unwrap();
    assert!(fails(&plan), "{:?}", plan.warnings());
    let granted =
        resolve_with("extends = [\"strict\"]\n", &["--allow-read", dir.path().to_str().unwrap()], &cmd).unwrap();
    assert!(!fails(&granted), "{:?}", granted.warnings());
    let module = resolve_with("extends = [\"strict\"]\n", &[], &["/usr/bin/python3", "-m", "json.tool"]).unwrap();
    assert!(!fails(&module), "a module is not a script");
}
