//! `mcp-warden export`: the seccomp profile of every embedded profile lints clean against the
//! plan it came from; the Kubernetes objects are valid for every supported Kubernetes version
//! (kubernetes-validate, strict) and pass the `restricted` Pod Security Standard; mutations of
//! each are caught. (tests/tests/containers.rs runs the exported seccomp profile under runc.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use mcp_warden::cli::{Cli, Command as Sub};
use mcp_warden_tests::*;
use serde_json::{Value, json};

/// The Kubernetes versions the export is written for (k8s-openapi's `earliest` feature up).
const VERSIONS: [&str; 5] = ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];

fn embedded_profiles() -> Vec<String> {
    let mut c = Command::new(warden());
    c.args(["profiles", "list"]);
    let o = run(c, None, Duration::from_secs(30));
    o.stdout.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[test]
fn every_embedded_profile_exports_a_seccomp_profile_that_lints_clean() {
    use std::ffi::OsString;
    let s = Scratch::new(Who::current());
    // The memory profile's write grant is the directory of $MEMORY_FILE_PATH.
    let env: Vec<(OsString, OsString)> =
        std::env::vars_os().chain([("MEMORY_FILE_PATH".into(), s.join("memory.json").into_os_string())]).collect();
    let host = mcp_warden::host::HostFacts::probe();
    // What the git, sqlite and filesystem profiles read their grants from.
    let dir = s.mkdir("data", Who::current()).display().to_string();
    let db = format!("{dir}/x.db");
    let server = ["/bin/true", "--repository", &dir, "--db-path", &db, &dir];
    for name in embedded_profiles() {
        let cli = Cli::parse_from(["mcp-warden", "export", "--profile", &name, "--"].iter().chain(&server));
        let Sub::Export(args) = cli.command else { unreachable!() };
        let (grants, options) = args.run.grants.into_layer();
        let profile = mcp_warden::profile::load(&name).unwrap().overlay(grants);
        let inputs = mcp_warden::plan::Inputs::new(&env, std::env::current_dir().unwrap());
        let plan = mcp_warden::plan::Plan::resolve(&profile, &options, &args.run.command, &host, &inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let profile = mcp_warden::export::seccomp::profile(plan.syscalls(), plan.net().dns.is_some()).unwrap();
        assert_eq!(mcp_warden::export::seccomp::lint(&profile, plan.syscalls()), Vec::<String>::new(), "{name}");
        let text = serde_json::to_value(&profile).unwrap();
        assert_eq!(text["defaultAction"], "SCMP_ACT_ALLOW", "{name}");
    }
}

/// `export --format kubernetes` of `args`: its documents (the YAML stream is JSON documents
/// after `---` lines, headed by comments).
fn kubernetes(args: &[&str]) -> (String, Vec<Value>) {
    let mut c = Command::new(warden());
    c.args(["export", "--image", "python:3.12-slim"]).args(args);
    let o = run(c, None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let docs = o.stdout.split("\n---\n").skip(1).map(|d| serde_json::from_str(d).unwrap()).collect();
    (o.stdout, docs)
}

fn validator() -> PathBuf {
    need(test_env().join("venv/bin/kubernetes-validate"))
}

/// kubernetes-validate --strict of `docs` for `version`: `Err(output)` when it rejects them.
fn validate(docs: &[&Value], version: &str, dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join("objects.yaml");
    let stream: Vec<String> = docs.iter().map(|d| format!("---\n{d}\n")).collect();
    std::fs::write(&path, stream.concat()).unwrap();
    let mut c = Command::new(validator());
    c.args(["--strict", "--no-warn", "-k", version]).arg(&path);
    let o = run(c, None, Duration::from_secs(60));
    if o.code() == Some(0) { Ok(()) } else { Err(o.describe()) }
}

/// What the `restricted` Pod Security Standard (policy version latest) forbids in `pod`.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let spec = &pod["spec"];
    let mut out = Vec::new();
    let pod_sc = &spec["securityContext"];
    let containers = spec["containers"].as_array().into_iter().chain(spec["initContainers"].as_array()).flatten();
    for c in containers {
        let sc = &c["securityContext"];
        let name = c["name"].as_str().unwrap_or("?");
        if sc["allowPrivilegeEscalation"] != false {
            out.push(format!("{name}: allowPrivilegeEscalation must be false"));
        }
        if sc["privileged"] == true {
            out.push(format!("{name}: privileged"));
        }
        let drops = sc["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
        if !drops.contains(&json!("ALL")) {
            out.push(format!("{name}: capabilities must drop ALL"));
        }
        let adds = sc["capabilities"]["add"].as_array().cloned().unwrap_or_default();
        if adds.iter().any(|a| a != "NET_BIND_SERVICE") {
            out.push(format!("{name}: only NET_BIND_SERVICE may be added"));
        }
        if sc["runAsNonRoot"] != true && pod_sc["runAsNonRoot"] != true {
            out.push(format!("{name}: runAsNonRoot must be true"));
        }
        if sc["runAsUser"] == 0 || pod_sc["runAsUser"] == 0 {
            out.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = if sc["seccompProfile"].is_null() { &pod_sc["seccompProfile"] } else { &sc["seccompProfile"] };
        if seccomp["type"] != "RuntimeDefault" && seccomp["type"] != "Localhost" {
            out.push(format!("{name}: seccompProfile must be RuntimeDefault or Localhost"));
        }
    }
    let allowed = ["emptyDir", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim", "ephemeral"];
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = v.as_object().unwrap().keys().filter(|k| *k != "name").collect();
        if kinds.iter().any(|k| !allowed.contains(&k.as_str())) {
            out.push(format!("volume {}: {kinds:?} is not allowed", v["name"]));
        }
    }
    if spec["hostNetwork"] == true || spec["hostPID"] == true || spec["hostIPC"] == true {
        out.push("host namespaces".into());
    }
    out
}

#[test]
fn kubernetes_objects_are_valid_for_every_supported_version_and_restricted() {
    let s = Scratch::new(Who::current());
    let notes = s.mkdir("notes", Who::current());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("strict", vec!["--profile".into(), "strict".into(), "--".into(), "/bin/true".into()]),
        ("fetch", vec!["--profile".into(), "fetch".into(), "--".into(), "/bin/true".into()]),
        (
            "filesystem",
            vec!["--profile".into(), "strict".into(), "--allow-write".into(), notes.display().to_string()]
                .into_iter()
                .chain(["--max-memory".into(), "512M".into(), "--".into(), "/bin/true".into()])
                .collect(),
        ),
        ("github", vec!["--cilium".into(), "--profile".into(), "github".into(), "--".into(), "/bin/true".into()]),
    ];
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (text, docs) = kubernetes(&args);
        assert!(text.starts_with("# mcp-warden export"), "{what}: headed by what the entrypoint covers");
        let pod = docs.iter().find(|d| d["kind"] == "Pod").unwrap();
        let policy = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
        for version in VERSIONS {
            validate(&[pod, policy], version, s.path()).unwrap_or_else(|e| panic!("{what} for {version}: {e}"));
        }
        assert_eq!(restricted_violations(pod), Vec::<String>::new(), "{what}");
        let server = &pod["spec"]["containers"][0];
        assert_eq!(server["command"][1], "run", "{what}: the entrypoint runs the server");
        assert_eq!(server["securityContext"]["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(pod["spec"]["securityContext"]["seccompProfile"]["type"], "Localhost", "{what}");
    }
    let (_, filesystem) = kubernetes(&cases[2].1.iter().map(String::as_str).collect::<Vec<_>>());
    let server = &filesystem[0]["spec"]["containers"][0];
    assert_eq!(server["resources"]["limits"]["memory"], "536870912", "the memory limit becomes the Pod's");
    let mounts = server["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == notes.display().to_string() && m["readOnly"] == false));

    let (text, github) = kubernetes(&cases[3].1.iter().map(String::as_str).collect::<Vec<_>>());
    let cilium = github.iter().find(|d| d["kind"] == "CiliumNetworkPolicy").expect("--cilium");
    let egress = cilium["spec"]["egress"].to_string();
    assert!(egress.contains(r#"{"matchName":"api.github.com"}"#) && egress.contains(r#""port":"443""#), "{egress}");
    let env = github[0]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("GITHUB_PERSONAL_ACCESS_TOKEN") && env.contains("secretKeyRef"), "{env}");
    assert!(text.contains("host names:"), "what a NetworkPolicy cannot say is listed");
    let np = github.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap().to_string();
    assert!(np.contains("kube-dns") && !np.contains("api.github.com"), "{np}");
}

/// The NetworkPolicy of `args`, validated.
fn network_policy(args: &[&str], dir: &std::path::Path) -> Value {
    let (_, docs) = kubernetes(args);
    let np = docs.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap().clone();
    validate(&[&np], "1.37.0", dir).unwrap();
    np
}

#[test]
fn a_bare_port_reaches_no_denied_range_in_the_network_policy() {
    let s = Scratch::new(Who::current());
    // fetch denies loopback, private and metadata ranges; a bare UDP port too must keep out of them.
    let np = network_policy(&["--profile", "fetch", "--allow-connect", "udp:123", "--", "/bin/true"], s.path());
    let egress = np["spec"]["egress"].as_array().unwrap();
    for proto in ["TCP", "UDP"] {
        let rule = egress
            .iter()
            .find(|r| r["ports"].as_array().unwrap().iter().any(|p| p["protocol"] == proto && p["port"] != 53))
            .unwrap_or_else(|| panic!("a {proto} rule: {egress:?}"));
        let text = rule["to"].to_string();
        assert!(text.contains("169.254.0.0/16") && text.contains("10.0.0.0/8"), "{proto}: {text}");
    }
    // A range denying a whole family leaves that family out altogether.
    let profile = s.join("closed.toml");
    std::fs::write(
        &profile,
        "extends = [\"strict\"]\n[network]\nconnect = [443]\ndeny = [\"0.0.0.0/0\", \"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let np = network_policy(&["--profile", profile.to_str().unwrap(), "--", "/bin/true"], s.path());
    let text = np["spec"]["egress"].to_string();
    assert!(!text.contains("0.0.0.0/0") && text.contains("::/0"), "{text}");
}

#[test]
fn mutations_of_the_kubernetes_objects_are_caught() {
    let s = Scratch::new(Who::current());
    let (_, docs) = kubernetes(&["--profile", "fetch", "--", "/bin/true"]);
    let pod = &docs[0];
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut p = pod.clone();
        f(&mut p);
        p
    };
    let unsafe_cases: Vec<(&str, Value)> = vec![
        (
            "privilege escalation",
            mutate(&|p| p["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)),
        ),
        (
            "capabilities kept",
            mutate(&|p| {
                p["spec"]["initContainers"][0]["securityContext"]["capabilities"] = json!({"add": ["SYS_ADMIN"]})
            }),
        ),
        (
            "root",
            mutate(&|p| {
                p["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
                p["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
            }),
        ),
        ("unconfined", mutate(&|p| p["spec"]["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"}))),
        ("host path", mutate(&|p| p["spec"]["volumes"][0] = json!({"name": "h", "hostPath": {"path": "/"}}))),
    ];
    for (what, p) in &unsafe_cases {
        assert!(!restricted_violations(p).is_empty(), "{what}: the restricted check catches it");
    }
    let invalid_cases: Vec<(&str, Value)> = vec![
        ("unknown field", mutate(&|p| p["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = json!(true))),
        ("wrong type", mutate(&|p| p["spec"]["securityContext"]["runAsUser"] = json!("nobody"))),
        (
            "missing name",
            mutate(&|p| p["spec"]["containers"][0].as_object_mut().unwrap().remove("name").map(|_| ()).unwrap()),
        ),
    ];
    for (what, p) in &invalid_cases {
        assert!(validate(&[p], "1.37.0", s.path()).is_err(), "{what}: kubernetes-validate rejects it");
    }
}
