//! Real MCP servers (official npm and PyPI packages) under the strict profile plus grants, driven
//! by the official MCP Python SDK client: initialize, tools/list and a tool call must work, and
//! what a prompt-injected tool could reach must not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mcp_warden_tests::*;

struct Session {
    server: String,
    tools: Vec<String>,
    is_error: bool,
    text: String,
}

fn need(path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{} is missing: run `cargo xtask setup` (or `cargo xtask test`)", path.display());
    path
}

fn node_dir() -> PathBuf {
    need(test_env().join("node"))
}

/// Runs the SDK client as `who` (as a desktop client would run) against `mcp-warden ARGS`.
fn session(who: Who, tool: &str, arguments: &str, warden_args: &[&str], env: &[(&str, &str)]) -> Session {
    let python = need(test_env().join("venv/bin/python"));
    let client = need(test_env().join("clients/mcp_session.py"));
    let mut c: Command = command_as(who, &python);
    c.arg(&client).args([tool, arguments, "--"]).arg(warden()).args(warden_args);
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C.UTF-8");
    c.env("XDG_STATE_HOME", test_env().join("state"));
    for (k, v) in env {
        c.env(k, v);
    }
    let o = run(c, None, Duration::from_secs(120));
    assert_eq!(o.code(), Some(0), "{who:?}: MCP session failed\n{}", o.describe());
    let v: serde_json::Value =
        serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
    Session {
        server: v["server"].as_str().unwrap().to_string(),
        tools: v["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        is_error: v["is_error"].as_bool().unwrap(),
        text: v["text"].as_str().unwrap().to_string(),
    }
}

#[test]
fn node_everything_server_works_and_cannot_leak_the_environment() {
    let server = need(node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
    let node = node_dir();
    for who in Who::all() {
        let args = [
            "run",
            "--profile",
            "strict",
            "--allow-read",
            node.to_str().unwrap(),
            "--",
            "node",
            server.to_str().unwrap(),
            "stdio",
        ];
        let s = session(who, "echo", r#"{"message": "hello from the sandbox"}"#, &args, &[]);
        assert_eq!(s.server, "mcp-servers/everything");
        assert!(s.tools.contains(&"echo".to_string()) && s.tools.contains(&"get-env".to_string()), "{:?}", s.tools);
        assert!(!s.is_error);
        assert_eq!(s.text, "Echo: hello from the sandbox");

        // The server's own get-env tool dumps its environment: a prompt-injected call gets
        // nothing the profile did not pass.
        let secrets = [("OPENAI_API_KEY", "sk-test-secret"), ("AWS_SECRET_ACCESS_KEY", "aws-test-secret")];
        let s = session(who, "get-env", "{}", &args, &secrets);
        assert!(!s.is_error, "{}", s.text);
        assert!(s.text.contains("\"PATH\""), "the tool works: {}", s.text);
        assert!(
            !s.text.contains("sk-test-secret") && !s.text.contains("aws-test-secret"),
            "secrets leaked: {}",
            s.text
        );
    }
}

#[test]
fn node_filesystem_server_works_on_its_directory_only() {
    let server = need(node_dir().join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
    let node = node_dir();
    for who in Who::all() {
        let s = Scratch::new(who);
        let notes = s.mkdir("notes", who);
        s.file("notes/todo.md", "- ship it\n", who);
        let args = [
            "run",
            "--profile",
            "strict",
            "--allow-read",
            node.to_str().unwrap(),
            "--allow-write",
            notes.to_str().unwrap(),
            "--",
            "node",
            server.to_str().unwrap(),
            notes.to_str().unwrap(),
        ];
        let path = notes.join("todo.md");
        let r = session(who, "read_text_file", &format!(r#"{{"path": "{}"}}"#, path.display()), &args, &[]);
        assert_eq!(r.server, "secure-filesystem-server");
        assert!(!r.is_error && r.text == "- ship it\n", "{}", r.text);
        let w = session(
            who,
            "write_file",
            &format!(r#"{{"path": "{}", "content": "written"}}"#, notes.join("new.md").display()),
            &args,
            &[],
        );
        assert!(!w.is_error, "{}", w.text);
        assert_eq!(std::fs::read_to_string(notes.join("new.md")).unwrap(), "written");
    }
}

#[test]
fn python_time_server_works() {
    for who in Who::all() {
        let venv = need(test_env().join("venv"));
        let python = venv.join("bin/python");
        let args = [
            "run",
            "--profile",
            "strict",
            "--allow-read",
            venv.to_str().unwrap(),
            "--",
            python.to_str().unwrap(),
            "-m",
            "mcp_server_time",
        ];
        let s = session(who, "get_current_time", r#"{"timezone": "Europe/Paris"}"#, &args, &[]);
        assert_eq!(s.server, "mcp-time");
        assert_eq!(s.tools, vec!["convert_time".to_string(), "get_current_time".to_string()]);
        assert!(!s.is_error, "{}", s.text);
        assert!(s.text.contains("\"timezone\": \"Europe/Paris\""), "{}", s.text);
    }
}

/// A deliberately malicious MCP server (tests/clients/malicious_server.py): every tool a
/// prompt injection could call, under `strict` plus what a real server needs. Nothing gets out,
/// and the server keeps answering.
#[test]
fn a_malicious_server_gets_nothing_out_and_keeps_answering() {
    let venv = need(test_env().join("venv"));
    let clients = need(test_env().join("clients"));
    let python = venv.join("bin/python");
    for who in Who::all() {
        let s = Scratch::new(who);
        let secret = s.file("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY----- s3cr3t-key-material", who);
        let bashrc = s.file("bashrc", "# rc\n", who);
        let drop = s.mkdir("drop", who);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let calls = serde_json::json!([
            ["ping", {}],
            ["read_secret", {"path": secret}],
            ["exfiltrate_tcp", {"host": "127.0.0.1", "port": port, "data": "stolen"}],
            ["exfiltrate_udp", {"host": "127.0.0.1", "port": port, "data": "stolen"}],
            ["spawn_shell", {"command": format!("cat {}", secret.display())}],
            ["drop_and_run", {"directory": drop}],
            ["open_io_uring", {}],
            ["make_user_namespace", {}],
            ["fork_bomb", {"limit": 200}],
            ["append_shell_rc", {"path": bashrc}],
            ["ping", {}],
        ]);
        let mut c = command_as(who, &python);
        c.arg(need(clients.join("mcp_calls.py"))).arg(calls.to_string()).arg("--").arg(warden());
        c.args(["run", "--profile", "strict", "--max-processes", "32", "--allow-read"]).arg(&venv);
        c.arg("--allow-read").arg(&clients).arg("--allow-write").arg(&drop).arg("--");
        c.arg(&python).arg(clients.join("malicious_server.py"));
        c.env_clear().env("PATH", format!("{}:/usr/bin:/bin", venv.join("bin").display())).env("LANG", "C.UTF-8");
        c.env("XDG_STATE_HOME", test_env().join("state"));
        let o = run(c, None, Duration::from_secs(120));
        assert_eq!(o.code(), Some(0), "{who:?}: session failed\n{}", o.describe());
        let v: serde_json::Value =
            serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
        let results = v["results"].as_array().unwrap();
        let text = |i: usize| results[i]["text"].as_str().unwrap().to_string();
        let expect = |i: usize, prefix: &str| {
            assert!(text(i).starts_with(prefix), "{who:?}: {} -> {:?}, expected {prefix}", results[i]["tool"], text(i));
        };
        expect(0, "pong");
        expect(1, "BLOCKED EACCES");
        expect(2, "BLOCKED EPERM");
        expect(3, "BLOCKED EPERM");
        assert!(
            !text(4).contains("s3cr3t") && text(4).contains("Permission denied"),
            "{who:?}: the shell read nothing: {}",
            text(4)
        );
        expect(5, "BLOCKED EACCES");
        expect(6, "BLOCKED EPERM");
        expect(7, "BLOCKED EPERM");
        assert!(text(8).starts_with("BLOCKED EAGAIN"), "{who:?}: fork bomb capped: {}", text(8));
        expect(9, "BLOCKED EACCES");
        expect(10, "pong");
        assert!(results.iter().all(|r| !r["text"].as_str().unwrap().contains("s3cr3t")), "the secret never left");
        assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# rc\n", "the shell rc is untouched");
        // control: the same tools work where granted
        let _ = tcp;
    }
}

/// The shipped profiles grant a server's own installation and its arguments by themselves: no
/// hand-written path on the command line.
#[test]
fn shipped_profiles_run_their_servers_without_hand_written_paths() {
    let node = node_dir();
    let everything = need(node.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
    let filesystem = need(node.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
    let python = need(test_env().join("venv/bin/python"));
    for who in Who::all() {
        let s = session(
            who,
            "echo",
            r#"{"message": "hi"}"#,
            &["run", "--profile", "everything", "--", "node", everything.to_str().unwrap(), "stdio"],
            &[],
        );
        assert_eq!((s.server.as_str(), s.text.as_str()), ("mcp-servers/everything", "Echo: hi"));

        let scratch = Scratch::new(who);
        let notes = scratch.mkdir("notes", who);
        scratch.file("notes/a.md", "from the notes\n", who);
        let outside = scratch.file("outside.md", "not granted\n", who);
        let args =
            ["run", "--profile", "filesystem", "--", "node", filesystem.to_str().unwrap(), notes.to_str().unwrap()];
        let r =
            session(who, "read_text_file", &format!(r#"{{"path": "{}"}}"#, notes.join("a.md").display()), &args, &[]);
        assert_eq!(r.text, "from the notes\n", "{}", r.text);
        let w = session(
            who,
            "write_file",
            &format!(r#"{{"path": "{}", "content": "new"}}"#, notes.join("b.md").display()),
            &args,
            &[],
        );
        assert!(!w.is_error, "{}", w.text);
        let o = session(who, "read_text_file", &format!(r#"{{"path": "{}"}}"#, outside.display()), &args, &[]);
        assert!(o.is_error && !o.text.contains("not granted"), "outside the directory argument: {}", o.text);

        let t = session(
            who,
            "get_current_time",
            r#"{"timezone": "UTC"}"#,
            &["run", "--profile", "time", "--", python.to_str().unwrap(), "-m", "mcp_server_time"],
            &[],
        );
        assert!(!t.is_error && t.text.contains("\"timezone\": \"UTC\""), "{}", t.text);
    }
}

/// The other shipped server profiles with their real servers, and one abuse each where the
/// server's tools give one: git pointed at a repository it was not given, SQLite attaching a
/// database file outside its directory.
#[test]
fn memory_sequential_thinking_git_and_sqlite_run_under_their_profiles() {
    let node = node_dir();
    let memory = need(node.join("node_modules/@modelcontextprotocol/server-memory/dist/index.js"));
    let thinking = need(node.join("node_modules/@modelcontextprotocol/server-sequential-thinking/dist/index.js"));
    let venv = need(test_env().join("venv"));
    for who in Who::all() {
        let s = Scratch::new(who);

        s.mkdir("memory", who);
        let graph = s.file("memory/graph.jsonl", "", who);
        let env = [("MEMORY_FILE_PATH", graph.to_str().unwrap())];
        let args = ["run", "--profile", "memory", "--", "node", memory.to_str().unwrap()];
        let entities =
            r#"{"entities": [{"name": "mcp-warden", "entityType": "project", "observations": ["sandboxes servers"]}]}"#;
        let r = session(who, "create_entities", entities, &args, &env);
        assert!(!r.is_error, "{who:?}: {}", r.text);
        assert!(std::fs::read_to_string(&graph).unwrap().contains("sandboxes servers"), "written to MEMORY_FILE_PATH");

        let step =
            r#"{"thought": "sandbox first", "nextThoughtNeeded": false, "thoughtNumber": 1, "totalThoughts": 1}"#;
        let args = ["run", "--profile", "sequential-thinking", "--", "node", thinking.to_str().unwrap()];
        let t = session(who, "sequentialthinking", step, &args, &[]);
        assert!(!t.is_error, "{who:?}: {}", t.text);

        let repo = s.mkdir("repo", who);
        let other = s.mkdir("other", who);
        for dir in [&repo, &other] {
            let mut init = command_as(who, "/usr/bin/git");
            init.args(["init", "-q"]).arg(dir).env("HOME", dir);
            assert!(run(init, None, Duration::from_secs(30)).status.success());
        }
        let git = venv.join("bin/mcp-server-git");
        let args = ["run", "--profile", "git", "--", git.to_str().unwrap(), "--repository", repo.to_str().unwrap()];
        let st = session(who, "git_status", &format!(r#"{{"repo_path": "{}"}}"#, repo.display()), &args, &[]);
        assert!(!st.is_error && st.text.contains("branch"), "{who:?}: {}", st.text);
        let abuse = session(who, "git_status", &format!(r#"{{"repo_path": "{}"}}"#, other.display()), &args, &[]);
        assert!(abuse.is_error, "{who:?}: a repository it was not given: {}", abuse.text);

        let dbdir = s.mkdir("db", who);
        let db = s.file("db/app.db", "", who);
        let outside = s.file("outside.db", "", who);
        let sqlite = need(test_env().join("venv-sqlite/bin/mcp-server-sqlite"));
        let args = ["run", "--profile", "sqlite", "--", sqlite.to_str().unwrap(), "--db-path", db.to_str().unwrap()];
        let create = session(who, "create_table", r#"{"query": "CREATE TABLE t (x TEXT)"}"#, &args, &[]);
        assert!(!create.is_error, "{who:?}: {}", create.text);
        let attach = format!(r#"{{"query": "ATTACH DATABASE '{}' AS o"}}"#, outside.display());
        let abuse = session(who, "write_query", &attach, &args, &[]);
        assert!(
            abuse.text.to_lowercase().contains("unable to open"),
            "{who:?}: a database outside its directory: {}",
            abuse.text
        );
        let _ = dbdir;
    }
}

/// `mcp-warden wrap`: preview, write with a backup, idempotence, undo; and the wrapped entry
/// starts its real server under the recognised profile.
#[test]
fn wrap_rewrites_a_client_config_that_then_runs() {
    let python = need(test_env().join("venv/bin/python"));
    let who = Who::current();
    let s = Scratch::new(who);
    let config = s.join("claude_desktop_config.json");
    let original = format!(
        "{{\n  \"theme\": \"dark\",\n  \"mcpServers\": {{\n    \"time\": {{ \"command\": \"{}\", \"args\": [\"-m\", \"mcp_server_time\"] }},\n    \"remote\": {{ \"url\": \"https://example.invalid/mcp\" }}\n  }}\n}}\n",
        python.display()
    );
    std::fs::write(&config, &original).unwrap();
    let wrap = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["wrap".as_ref(), config.as_os_str()];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        run(warden_as(who, &args), None, Duration::from_secs(30))
    };
    let preview = wrap(&[]);
    assert_eq!(preview.code(), Some(0), "{}", preview.describe());
    assert!(
        preview.stdout.contains("+      \"command\":") && preview.stdout.contains("\"--profile\""),
        "a diff: {}",
        preview.stdout
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "a preview changes nothing");

    let written = wrap(&["--write"]);
    assert_eq!(written.code(), Some(0), "{}", written.describe());
    assert!(
        written.stderr.contains("time: wrapped with profile `time`")
            && written.stderr.contains("remote: not a stdio server")
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(v["theme"], "dark");
    assert_eq!(v["mcpServers"]["remote"], serde_json::json!({"url": "https://example.invalid/mcp"}));
    let entry = &v["mcpServers"]["time"];
    let args: Vec<String> = entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args, ["run", "--profile", "time", "--", python.to_str().unwrap(), "-m", "mcp_server_time"]);
    let backup = s.join("claude_desktop_config.json.mcp-warden.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);

    // The wrapped entry is what a client would start: it must work.
    let command = entry["command"].as_str().unwrap();
    assert!(command.ends_with("mcp-warden"), "{command}");
    let session_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = session(who, "get_current_time", r#"{"timezone": "UTC"}"#, &session_args, &[]);
    assert!(!t.is_error && t.text.contains("UTC"), "{}", t.text);

    let again = wrap(&["--write"]);
    assert!(
        again.stderr.contains("already runs under mcp-warden") && again.stderr.contains("nothing to change"),
        "{}",
        again.describe()
    );
    let undone = wrap(&["--undo"]);
    assert_eq!(undone.code(), Some(0), "{}", undone.describe());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "the original bytes are back");
    assert!(!backup.exists());
}
