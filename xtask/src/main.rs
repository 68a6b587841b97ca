//! cargo xtask: the project's own set-up, test, demo and benchmark tasks.
//!
//! - `setup`: everything the tests need on a fresh machine (test user, pinned real MCP servers
//!   and the official Python SDK client in a world-readable directory).
//! - `test`: setup, build every binary, run the whole test suite (the README's test command).
//! - `demo`: the main job: a real MCP server under mcp-warden's embedded `strict` profile, driven
//!   by the official MCP client, and an attack it blocks.
//! - `bench startup`: start-up cost against bare exec and bubblewrap, written to
//!   docs/benchmarks.md.
#![allow(clippy::print_stdout)] // xtask output is for the person running it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Versions of the real servers and SDK the tests run against (bump deliberately).
const PY_PACKAGES: &[&str] = &["mcp==2.3.0", "mcp-server-time==2026.10.19"];
const NPM_PACKAGES: &[&str] =
    &["@modelcontextprotocol/server-everything@2026.8.31", "@modelcontextprotocol/server-filesystem@2026.8.31"];
const TEST_USER: &str = "mcpw-test";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("bench") => bench(args.get(1).map(String::as_str).unwrap_or("startup"), &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup | test [cargo test args] | demo | bench startup [--rounds N]>");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn step(msg: &str) {
    eprintln!("\x1b[1m==> {msg}\x1b[0m");
}

fn test_env() -> PathBuf {
    std::env::var_os("MCP_WARDEN_TEST_ENV").map_or_else(|| PathBuf::from("/var/tmp/mcp-warden-test-env"), PathBuf::from)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).map(|s| s.trim() == "0").unwrap_or(false)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    if !is_root() {
        bail!("missing Debian packages {packages:?}: install them (apt-get install {})", packages.join(" "));
    }
    step(&format!("installing Debian packages: {}", packages.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn setup() -> Result<()> {
    let env = test_env();
    step(&format!("test environment in {}", env.display()));
    std::fs::create_dir_all(&env)?;
    run(Command::new("chmod").arg("755").arg(&env))?;

    if is_root() {
        if Command::new("id").arg(TEST_USER).output()?.status.success() {
            step(&format!("unprivileged test user `{TEST_USER}` exists"));
        } else {
            step(&format!("creating the unprivileged test user `{TEST_USER}` (no home, no login shell)"));
            run(Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ]))?;
        }
    } else {
        step("not root: tests run as the current user only (CI runs as root and covers both)");
    }

    ebpf_toolchain()?;

    let mut missing = Vec::new();
    if !Path::new("/usr/bin/python3").exists()
        || Command::new("/usr/bin/python3")
            .args(["-c", "import ensurepip, venv"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    {
        missing.extend(["python3", "python3-venv"]);
    }
    if !have("node") || !have("npm") {
        missing.extend(["nodejs", "npm"]);
    }
    if !Path::new("/usr/sbin/runuser").exists() {
        missing.push("util-linux");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }

    // Debian's Python (not a per-user build under /root, which other users cannot read), so the
    // unprivileged test user can run the servers and the client.
    let venv = env.join("venv");
    let stamp = env.join("venv.stamp");
    let want = PY_PACKAGES.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        step(&format!("Python venv from /usr/bin/python3 with {want}"));
        if !venv.join("bin/python").exists() {
            run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(PY_PACKAGES))?;
        std::fs::write(&stamp, &want)?;
    } else {
        step(&format!("Python venv up to date ({want})"));
    }

    let node = env.join("node");
    let stamp = env.join("node.stamp");
    let want = NPM_PACKAGES.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        step(&format!("npm servers: {want}"));
        std::fs::create_dir_all(&node)?;
        if !node.join("package.json").exists() {
            std::fs::write(node.join("package.json"), "{\"name\":\"mcp-warden-test-servers\",\"private\":true}\n")?;
        }
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&node)
            .args(NPM_PACKAGES))?;
        std::fs::write(&stamp, &want)?;
    } else {
        step(&format!("npm servers up to date ({want})"));
    }

    let clients = env.join("clients");
    std::fs::create_dir_all(&clients)?;
    std::fs::copy("tests/clients/mcp_session.py", clients.join("mcp_session.py"))?;
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&env))?;
    step("set-up done");
    Ok(())
}

/// What building the eBPF probes needs (docs/design notes section 4): the `rust-src` component
/// (for `-Z build-std=core`) and `bpf-linker` built against Debian's LLVM 22.
fn ebpf_toolchain() -> Result<()> {
    let components = output(Command::new("rustup").args(["component", "list", "--installed"])).unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        step("eBPF toolchain: rust-src is installed");
    } else {
        step("eBPF toolchain: installing the rust-src component (the probes are built with -Z build-std=core)");
        run(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    if have("bpf-linker") {
        step("eBPF toolchain: bpf-linker is installed");
        return Ok(());
    }
    step("eBPF toolchain: installing LLVM 22 development packages for bpf-linker");
    apt_install(&["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"])?;
    step("eBPF toolchain: building bpf-linker 0.13.0 against LLVM 22 (about 3 minutes)");
    let path = format!("/usr/lib/llvm-22/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", "0.13.0", "--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .env("PATH", path))
}

fn test(extra: &[String]) -> Result<()> {
    setup()?;
    step("building every binary (launcher, attack probe)");
    run(Command::new("cargo").args(["build", "--workspace", "--bins", "--locked"]))?;
    step("running the test suite");
    run(Command::new("cargo")
        .args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("MCP_WARDEN_TEST_ENV", test_env()))
}

fn demo() -> Result<()> {
    setup()?;
    step("building mcp-warden");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = workspace_root().join("target/release/mcp-warden");
    let env = test_env();
    // The server is told to serve all of `demo/` (too broad: it includes a private key), while
    // mcp-warden grants only `demo/notes`. The server's own path check allows the key; the kernel
    // does not.
    let demo = env.join("demo");
    let notes = demo.join("notes");
    std::fs::create_dir_all(&notes)?;
    std::fs::create_dir_all(demo.join("ssh"))?;
    std::fs::write(notes.join("todo.md"), "- ship mcp-warden\n")?;
    std::fs::write(demo.join("ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\n(demo key)\n")?;
    let server = env.join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let python = env.join("venv/bin/python");
    let client = env.join("clients/mcp_session.py");
    let launcher_args = |c: &mut Command| {
        c.args(["--profile", "strict", "--allow-read"]).arg(env.join("node")).arg("--allow-write").arg(&notes);
        c.args(["--", "node"]).arg(&server).arg(&demo);
    };
    let session = |tool: &str, path: &Path| -> Result<String> {
        let mut c = Command::new(&python);
        c.arg(&client).args([tool, &format!("{{\"path\": \"{}\"}}", path.display()), "--"]).arg(&warden).arg("run");
        launcher_args(&mut c);
        output(&mut c)
    };
    step(
        "the official filesystem MCP server under mcp-warden's embedded `strict` profile, driven by the official Python MCP client:",
    );
    eprintln!(
        "    mcp-warden run --profile strict --allow-read {} --allow-write {} -- node .../server-filesystem/dist/index.js {}",
        env.join("node").display(),
        notes.display(),
        demo.display()
    );
    println!("{}", summarize(&session("read_text_file", &notes.join("todo.md"))?)?);
    step("a prompt-injected call for the private key: inside the server's own root, outside mcp-warden's grant:");
    println!("{}", summarize(&session("read_text_file", &demo.join("ssh/id_ed25519"))?)?);
    step("what this host enforces for that server (`mcp-warden explain`, excerpt):");
    let mut c = Command::new(&warden);
    c.arg("explain");
    launcher_args(&mut c);
    let explain = output(&mut c)?;
    for line in explain.lines().skip_while(|l| !l.starts_with("layers")).take(11) {
        println!("{line}");
    }
    Ok(())
}

/// One line for a client session's JSON summary.
fn summarize(json: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).context("client output is not JSON")?;
    let tools = v["tools"].as_array().map_or(0, Vec::len);
    let verdict = if v["is_error"].as_bool() == Some(true) { "tool error" } else { "ok" };
    Ok(format!(
        "    server {:?}, {tools} tools listed; read_text_file -> {verdict}: {:?}",
        v["server"].as_str().unwrap_or("?"),
        v["text"].as_str().unwrap_or("").trim()
    ))
}

/// Start-up benchmark: each variant run once per round, in rotating order, after a warm-up.
fn bench(which: &str, args: &[String]) -> Result<()> {
    if which != "startup" {
        bail!("unknown benchmark `{which}` (available: startup)");
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    if !have("bwrap") {
        apt_install(&["bubblewrap"])?;
    }
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = workspace_root().join("target/release/mcp-warden");
    let w = warden.to_str().unwrap_or_default().to_string();
    let bwrap_args = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--tmpfs",
        "/",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        "/bin/true",
    ];
    let warden_run = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![w.clone(), "run".to_string(), "--profile".to_string(), "strict".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["--".to_string(), "/bin/true".to_string()]);
        v
    };
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("bare /bin/true", vec!["/bin/true".into()]),
        ("mcp-warden strict", warden_run(&[])),
        ("strict, no PID namespace", warden_run(&["--require", "pid-namespace=off"])),
        ("strict, no cgroups (rlimits only)", warden_run(&["--require", "limits=off"])),
        (
            "mcp-warden, every layer off",
            warden_run(&[
                "--require",
                "landlock=off",
                "--require",
                "seccomp=off",
                "--require",
                "network=off",
                "--require",
                "limits=off",
                "--require",
                "pid-namespace=off",
            ]),
        ),
        ("bubblewrap, empty root", bwrap_args.iter().map(|s| s.to_string()).collect()),
    ];
    let bwrap_index = variants.len() - 1;
    for (name, argv) in &variants {
        let status = Command::new(&argv[0]).args(&argv[1..]).stderr(std::process::Stdio::null()).status()?;
        if !status.success() {
            bail!("variant `{name}` does not run here: {argv:?} -> {status}");
        }
    }
    step(&format!("start-up: {} variants x {rounds} rounds (rotating order, 20 warm-up rounds)", variants.len()));
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..(rounds + 20) {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let argv = &variants[i].1;
            let t = Instant::now();
            let status = Command::new(&argv[0]).args(&argv[1..]).stderr(std::process::Stdio::null()).status()?;
            let dt = t.elapsed();
            if !status.success() {
                bail!("{argv:?} failed: {status}");
            }
            if round >= 20 {
                samples[i].push(dt);
            }
        }
    }
    let stats: Vec<(Duration, Duration, Duration)> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            (s[s.len() / 2], s[0], s[s.len() - 1])
        })
        .collect();
    let bwrap_median = stats[bwrap_index].0.as_secs_f64();
    let bare_median = stats[0].0.as_secs_f64();
    let mut table =
        String::from("| variant | median | min | max | vs bare | vs bubblewrap |\n|---|---:|---:|---:|---:|---:|\n");
    for ((name, _), (med, min, max)) in variants.iter().zip(&stats) {
        table.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x | {:.2}x |\n",
            ms(*med),
            ms(*min),
            ms(*max),
            med.as_secs_f64() / bare_median,
            med.as_secs_f64() / bwrap_median
        ));
    }
    let machine = machine_facts()?;
    let command = format!("cargo xtask bench startup --rounds {rounds}");
    let section = format!(
        "<!-- startup:begin (generated by `{command}`) -->\n\
         Command: `{command}` (as root; release build).\n\n\
         Machine: {machine}\n\n\
         Each round runs every variant once, in rotating order; {rounds} rounds after 20 warm-up rounds. \
         Wall time from spawn to exit, measured by the harness.\n\n{table}\n\
         bubblewrap command: `{}`\n\
         <!-- startup:end -->",
        bwrap_args.join(" ")
    );
    println!("{table}");
    let path = Path::new("docs/benchmarks.md");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (doc.find("<!-- startup:begin"), doc.find("<!-- startup:end -->")) {
        (Some(a), Some(b)) => format!("{}{section}{}", &doc[..a], &doc[b + "<!-- startup:end -->".len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, updated)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn machine_facts() -> Result<String> {
    let kernel = output(Command::new("uname").arg("-r"))?.trim().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let bwrap = output(Command::new("bwrap").arg("--version")).unwrap_or_default().trim().to_string();
    Ok(format!("Linux {kernel}, {cpu}, {cores} cores; {bwrap}"))
}
