//! `mcp-warden score` as a command: every shipped profile against the committed baseline
//! (`tests/score-baseline.json`), the calibration fixtures (no sandbox, `strict`, the servers,
//! open egress), the exit statuses of the CI gates, `--json`, `--policy`, and the lines `explain`
//! and `wrap` print. As root and as the unprivileged test user.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcp_warden_tests::*;

/// A scratch directory with what the shipped profiles' commands need.
struct Servers {
    s: Scratch,
    who: Who,
}

impl Servers {
    fn new(who: Who) -> Servers {
        let s = Scratch::new(who);
        s.mkdir("work", who);
        s.mkdir("home/.ssh", who);
        Servers { s, who }
    }

    fn work(&self) -> String {
        self.s.join("work").display().to_string()
    }

    /// The server command `profile` is scored with (its grants come from these arguments).
    fn command(&self, profile: &str) -> Vec<String> {
        let mut cmd = vec!["/bin/true".to_string()];
        match profile {
            "filesystem" => cmd.push(self.work()),
            "git" => cmd.extend(["--repository".into(), self.work()]),
            "sqlite" => cmd.extend(["--db-path".into(), format!("{}/x.db", self.work())]),
            _ => {}
        }
        cmd
    }

    /// `mcp-warden score ARGS -- <profile's command>` with the variables the profiles pass.
    fn score(&self, profile: &str, args: &[&str]) -> Output {
        let mut all: Vec<String> = vec!["score".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.push("--".into());
        all.extend(self.command(profile));
        let all: Vec<&OsStr> = all.iter().map(OsStr::new).collect();
        let mut c = warden_as(self.who, &all);
        c.env("MEMORY_FILE_PATH", format!("{}/memory.json", self.work()));
        c.env("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_0000000000000000000000000000000000000");
        run(c, None, Duration::from_secs(60))
    }

    /// The JSON report of `profile` under `args`.
    fn json(&self, profile: &str, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json", "--profile", profile];
        a.extend(args);
        let o = self.score(profile, &a);
        assert_eq!(o.code(), Some(0), "{}", o.describe());
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()))
    }
}

/// Both numbers of a JSON report.
fn numbers(v: &serde_json::Value) -> (f64, f64) {
    (v["every_layer"]["score"].as_f64().unwrap(), v["this_host"]["score"].as_f64().unwrap())
}

fn baseline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("score-baseline.json")
}

fn embedded_profiles() -> Vec<&'static str> {
    mcp_warden::profile::EMBEDDED.iter().map(|(n, _)| *n).collect()
}

per_identity!(every_shipped_profile_is_within_the_committed_baseline, |who: Who| {
    let servers = Servers::new(who);
    let file = baseline().display().to_string();
    for p in embedded_profiles() {
        let o = servers.score(p, &["--profile", p, "--baseline", &file]);
        assert_eq!(
            o.code(),
            Some(0),
            "{p} regressed against {file}; if the change is meant, record it with `mcp-warden score --profile {p} --baseline {file} --update-baseline -- {}` as root\n{}",
            servers.command(p).join(" "),
            o.describe()
        );
    }
});

per_identity!(calibration_strict_and_the_shipped_servers_score_low, |who: Who| {
    let servers = Servers::new(who);
    for p in embedded_profiles() {
        let (every, here) = numbers(&servers.json(p, &[]));
        let max = if p == "strict" { 0.5 } else { 2.0 };
        assert!(every <= max && here <= max, "{p}: {every} with every layer, {here} here: above {max}");
    }
});

per_identity!(calibration_no_sandbox_and_open_egress_score_high, |who: Who| {
    let servers = Servers::new(who);
    let no_sandbox =
        ["--require", "landlock=off", "--require", "seccomp=off", "--require", "fs-view=off", "--allow-connect", "443"];
    let udp = servers.s.file("fetch-udp.toml", "extends = [\"fetch\"]\n[network]\nudp = true\n", who);
    let udp = udp.to_str().unwrap();
    let cases: [(&str, &str, &[&str], f64); 5] = [
        ("no sandbox", "strict", &no_sandbox, 9.0),
        ("audit mode", "strict", &["--mode", "audit"], 9.0),
        ("fetch with open egress (udp = true)", udp, &[], 5.0),
        ("fetch without Landlock or eBPF", "fetch", &["--require", "landlock=off", "--require", "monitor=off"], 5.0),
        ("github token with open egress", "github", &["--allow-connect", "443"], 9.0),
    ];
    for (what, profile, args, min) in cases {
        let v = servers.json(profile, args);
        let (every, here) = numbers(&v);
        assert!(every >= min && here >= min, "{what}: {every} with every layer, {here} here: below {min}\n{v:#}");
    }
    let v = servers.json("github", &["--allow-connect", "443"]);
    let floors = v["every_layer"]["floors"].as_array().unwrap();
    assert!(floors.iter().any(|f| f["id"] == "floor.secrets-with-egress"), "{floors:?}");
});

per_identity!(both_numbers_agree_unless_this_host_lacks_a_layer, |who: Who| {
    let servers = Servers::new(who);
    for p in embedded_profiles() {
        let v = servers.json(p, &[]);
        let (every, here) = numbers(&v);
        let missing = v["missing_layers"].as_array().unwrap();
        assert!(here >= every, "{p}: a missing layer never lowers the score ({every} -> {here})");
        if missing.is_empty() && v["refusal"].is_null() {
            assert_eq!(every, here, "{p}: every layer applies here, so both numbers agree");
        }
    }
});

#[test]
fn the_report_names_every_row_with_a_hint_and_the_gates_set_the_exit_status() {
    let who = Who::current();
    let servers = Servers::new(who);
    let o = servers.score("fetch", &["--profile", "fetch"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    for needle in
        ["network.egress", "wildcard", "hint: name exact destinations", "axes      network", "profile   ", "this host "]
    {
        assert!(o.stdout.contains(needle), "`{needle}` in\n{}", o.describe());
    }
    let o = servers.score("fetch", &["--profile", "fetch", "--threshold", "0.1"]);
    assert_eq!(o.code(), Some(1), "above the threshold\n{}", o.describe());
    assert!(o.stderr.contains("above the threshold 0.1"), "{}", o.describe());
    assert_eq!(servers.score("fetch", &["--profile", "fetch", "--threshold", "9"]).code(), Some(0));
    let o = servers.score("fetch", &["--profile", "fetch", "--threshold", "eleven"]);
    assert_eq!(o.code(), Some(125), "a threshold that is not a number\n{}", o.describe());
}

#[test]
fn a_baseline_fails_on_an_increase_and_on_a_new_floor() {
    let who = Who::current();
    let servers = Servers::new(who);
    let file = servers.s.file("b.json", "{\"fetch\": {\"score\": 0.1}, \"strict\": {\"score\": 10}}\n", who);
    let file = file.to_str().unwrap();
    let o = servers.score("fetch", &["--profile", "fetch", "--baseline", file]);
    assert_eq!(o.code(), Some(1), "an increase fails\n{}", o.describe());
    assert!(o.stderr.contains("the score rose from 0.1 to"), "{}", o.describe());
    let o = servers.score("fetch", &["--profile", "fetch", "--baseline", file, "--max-increase", "5"]);
    assert_eq!(o.code(), Some(0), "within --max-increase\n{}", o.describe());
    let ssh = servers.s.join("home/.ssh");
    let o =
        servers.score("strict", &["--baseline", file, "--allow-read", ssh.to_str().unwrap(), "--allow-connect", "443"]);
    assert_eq!(o.code(), Some(1), "a new floor fails below the recorded score\n{}", o.describe());
    assert!(o.stderr.contains("new floor floor.secrets-with-egress"), "{}", o.describe());
    let o = servers.score("time", &["--profile", "time", "--baseline", file]);
    assert_eq!(o.code(), Some(125), "no entry\n{}", o.describe());
    assert!(o.stderr.contains("hint: add it with the same command and --update-baseline"), "{}", o.describe());
    let o = servers.score("time", &["--profile", "time", "--baseline", file, "--update-baseline"]);
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(written["time"]["score"].is_number() && written["fetch"]["score"] == 0.1, "{written:#}");
}

#[test]
fn a_policy_weight_of_zero_skips_a_row() {
    let who = Who::current();
    let servers = Servers::new(who);
    let policy = servers.s.file("p.toml", "[weights]\n\"network.egress\" = 0\n", who);
    let with = servers.json("fetch", &["--policy", policy.to_str().unwrap()]);
    let without = servers.json("fetch", &[]);
    let row = |v: &serde_json::Value| {
        v["every_layer"]["rows"].as_array().unwrap().iter().find(|r| r["id"] == "network.egress").unwrap().clone()
    };
    assert_eq!(row(&with)["weight"], 0);
    assert!(row(&with)["found"].as_str().unwrap().starts_with("skipped by the policy"));
    assert!(numbers(&with).0 < numbers(&without).0, "the row left the sums");
    let bad = servers.s.file("bad.toml", "[weights]\n\"network.egres\" = 0\n", who);
    let o = servers.score("fetch", &["--profile", "fetch", "--policy", bad.to_str().unwrap()]);
    assert_eq!(o.code(), Some(125), "{}", o.describe());
    assert!(o.stderr.contains("did you mean `network.egress`?"), "{}", o.describe());
}

#[test]
fn explain_ends_with_the_score_and_wrap_prints_one_line_per_server() {
    let who = Who::current();
    let servers = Servers::new(who);
    let args: Vec<&OsStr> = ["explain", "--profile", "fetch", "--", "/bin/true"].iter().map(OsStr::new).collect();
    let o = run(warden_as(who, &args), None, Duration::from_secs(60));
    let last = o.stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("score     ") && last.contains("with every layer"), "{}", o.describe());
    let config = servers.s.file(
        "claude.json",
        &format!(
            "{{\"mcpServers\": {{\"files\": {{\"command\": \"/bin/true\", \"args\": [\"server-filesystem\", \"{}\"]}}, \"web\": {{\"type\": \"http\", \"url\": \"http://x\"}}}}}}\n",
            servers.work()
        ),
        who,
    );
    let args: Vec<&OsStr> = vec![OsStr::new("wrap"), config.as_os_str()];
    let o = run(warden_as(who, &args), None, Duration::from_secs(60));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    let line = o.stderr.lines().find(|l| l.starts_with("mcp-warden: files: would start; score ")).unwrap_or("");
    let label = line.rsplit(' ').next().unwrap_or("");
    assert!(["PERFECT", "SAFE", "OK"].contains(&label), "one score line for the wrapped server\n{}", o.describe());
    assert!(!o.stderr.contains("web: score"), "no score for a server left as it is\n{}", o.describe());
    assert!(!o.stdout.contains("score"), "the score goes to stderr, stdout is the diff\n{}", o.describe());
}
