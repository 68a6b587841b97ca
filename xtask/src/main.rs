//! cargo xtask: the project's own set-up, test, demo and benchmark tasks.
//!
//! - `setup`: everything the tests need on a fresh machine (test user, pinned real MCP servers
//!   and the official Python SDK client in a world-readable directory).
//! - `test`: setup, build every binary, run the whole test suite (the README's test command).
//! - `demo`: the main job: a real MCP server under mcp-warden's embedded `strict` profile, driven
//!   by the official MCP client, and an attack it blocks.
//! - `bench startup|monitor|mcp`: start-up cost against bare exec and bubblewrap, the eBPF layer's
//!   costs, the MCP layer's added latency; written to docs/benchmarks.md.
//! - `soak`: 50 concurrent servers x 20 rounds, nothing may be left behind (docs/reliability.md).
//! - `dist [--out DIR]`: the Debian package (binary, profiles, systemd units, man page,
//!   completions), built with dpkg-deb.
//! - `fuzz`: the parsers and the MCP message handling under libFuzzer, for a bounded time each.
#![allow(clippy::print_stdout)] // xtask output is for the person running it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Versions of the real servers and SDK the tests run against (bump deliberately).
const PY_PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "mcp-server-time==2026.10.19",
    "mcp-server-git==2026.10.19",
    "mcp-server-fetch==2026.10.24",
    "uv==0.13.9",
];
/// mcp-server-sqlite 2025.4.25 is written against the 1.x SDK: a venv of its own.
const PY_SQLITE_PACKAGES: &[&str] = &["mcp-server-sqlite==2025.4.25", "mcp==1.26.0"];
const NPM_PACKAGES: &[&str] = &[
    "@modelcontextprotocol/server-everything@2026.8.31",
    "@modelcontextprotocol/server-filesystem@2026.8.31",
    "@modelcontextprotocol/server-memory@2026.8.31",
    "@modelcontextprotocol/server-sequential-thinking@2026.8.31",
    "@modelcontextprotocol/server-github@2025.4.8",
];
/// What the npx/uvx tests run from the launchers' caches (installed there once, as a user would).
const NPX_PACKAGE: &str = "@modelcontextprotocol/server-sequential-thinking@2026.8.31";
const UVX_PACKAGE: &str = "mcp-server-time==2026.10.19";
const TEST_USER: &str = "mcpw-test";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("schema") => schema(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("dist") => dist(&args[1..]),
        Some("bench") => bench(args.get(1).map(String::as_str).unwrap_or("startup"), &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | test [cargo test args] | demo | schema | fuzz [TARGET] [--seconds N] | bench startup [--rounds N] | bench monitor [--rounds N] [--iterations N]>"
            );
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
    // The soak test counts the host's BPF programs and links before and after.
    if !have("bpftool") {
        missing.push("bpftool");
    }
    // The service tests: `systemd-analyze verify` and `systemd-socket-activate`; packaging.
    if !have("systemd-analyze") || !have("systemd-socket-activate") {
        missing.push("systemd");
    }
    if !have("dpkg-deb") {
        missing.push("dpkg");
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }

    // Debian's Python (not a per-user build under /root, which other users cannot read), so the
    // unprivileged test user can run the servers and the client.
    for (dir, packages) in [("venv", PY_PACKAGES), ("venv-sqlite", PY_SQLITE_PACKAGES)] {
        python_venv(&env.join(dir), packages)?;
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

    // mcp-server-fetch extracts pages with readabilipy, which installs its Node.js helper with npm
    // on first use: do that here, as the install phase, since the hardened run cannot.
    let readability = glob_one(&env.join("venv/lib"), "site-packages/readabilipy/javascript")?;
    if readability.join("node_modules").is_dir() {
        step("readabilipy's Node.js helper is installed");
    } else {
        step("readabilipy's Node.js helper: npm install (mcp-server-fetch's page extraction)");
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&readability))?;
    }

    // The install phase of `npx -y` and `uvx`: fetch once into caches of the test environment
    // (readable by the test user); the hardened runs in tests/servers.rs use these copies.
    step(&format!("npx cache: {NPX_PACKAGE}"));
    run(Command::new("npx")
        .args(["-y", NPX_PACKAGE])
        .env("npm_config_cache", env.join("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null()))?;
    step(&format!("uvx cache: {UVX_PACKAGE}"));
    run(Command::new(env.join("venv/bin/uvx"))
        .args([UVX_PACKAGE, "--help"])
        .env("UV_CACHE_DIR", env.join("uv-cache"))
        .env("UV_PYTHON", "/usr/bin/python3")
        .stdout(std::process::Stdio::null()))?;

    let clients = env.join("clients");
    std::fs::create_dir_all(&clients)?;
    for entry in std::fs::read_dir("tests/clients")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(&path, clients.join(path.file_name().context("file name")?))?;
        }
    }
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&env))?;
    step("set-up done");
    Ok(())
}

/// The one `lib/pythonX.Y/<rest>` under a virtualenv's `lib`.
fn glob_one(lib: &Path, rest: &str) -> Result<PathBuf> {
    for entry in std::fs::read_dir(lib)? {
        let candidate = entry?.path().join(rest);
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!("no {rest} under {}", lib.display())
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

/// A venv from /usr/bin/python3 with `packages`, reinstalled only when the list changes.
fn python_venv(venv: &Path, packages: &[&str]) -> Result<()> {
    let stamp = venv.with_extension("stamp");
    let want = packages.join(" ");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        step(&format!("Python venv {} up to date ({want})", venv.display()));
        return Ok(());
    }
    step(&format!("Python venv {} from /usr/bin/python3 with {want}", venv.display()));
    if !venv.join("bin/python").exists() {
        run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "--disable-pip-version-check"]).args(packages))?;
    std::fs::write(&stamp, &want)?;
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    setup()?;
    step("building every binary (launcher, attack probe)");
    run(Command::new("cargo").args(["build", "--workspace", "--bins", "--locked"]))?;
    step("running the test suite");
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("MCP_WARDEN_TEST_ENV", test_env())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("failed to start cargo test")?;
    // Pass the output through and add up libtest's per-binary results for one closing line.
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += libtest_count(rest, "passed");
            failed += libtest_count(rest, "failed");
        }
    }
    let status = child.wait()?;
    println!("{passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

/// `ok. 17 passed; 0 failed; ...` -> the number before `word`.
fn libtest_count(result: &str, word: &str) -> u64 {
    result
        .split(';')
        .filter_map(|part| {
            part.split_whitespace().collect::<Vec<_>>().windows(2).find(|w| w[1] == word).map(|w| w[0].to_string())
        })
        .find_map(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Fuzzes the parsers for a bounded time each (libFuzzer through cargo-fuzz, installed when
/// missing), starting from the corpus in fuzz/corpus/. Not part of CI: `cargo xtask fuzz` is run
/// by hand; a crash leaves its input in fuzz/artifacts/ and becomes a regression test.
fn fuzz(args: &[String]) -> Result<()> {
    const TARGETS: [&str; 4] = ["profile", "grants", "wrap", "mcp"];
    let seconds: u64 = flag(args, "--seconds").unwrap_or(60);
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| TARGETS.contains(a)).collect();
    ebpf_toolchain()?; // the fuzz targets link the launcher, whose build compiles the probes
    if !have("cargo-fuzz") {
        step("installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in TARGETS.iter().filter(|t| only.is_empty() || only.contains(t)) {
        step(&format!("fuzzing `{target}` for {seconds} s (corpus fuzz/corpus/{target})"));
        // libFuzzer needs -Z sanitizer flags: allowed on the stable toolchain for this build only.
        run(Command::new("cargo")
            .args([
                "fuzz",
                "run",
                target,
                &format!("fuzz/corpus/{target}"),
                "--",
                &format!("-max_total_time={seconds}"),
                "-max_len=4096",
            ])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}

/// Regenerates docs/profile.schema.json from the profile types (a unit test checks it is current).
fn schema() -> Result<()> {
    step("writing docs/profile.schema.json (mcp-warden profiles schema)");
    let text = output(Command::new("cargo").args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "mcp-warden",
        "--",
        "profiles",
        "schema",
    ]))?;
    std::fs::write("docs/profile.schema.json", text)?;
    Ok(())
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
    for line in explain.lines().skip_while(|l| !l.starts_with("layers")).take(13) {
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
    match which {
        "startup" => {}
        "monitor" => return bench_monitor(args),
        "mcp" => return bench_mcp(args),
        "session" => return bench_session(args),
        other => bail!("unknown benchmark `{other}` (available: startup, monitor, mcp, session)"),
    }
    let rounds: usize = flag(args, "--rounds").unwrap_or(200);
    peers()?;
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = workspace_root().join("target/release/mcp-warden");
    let w = warden.to_str().unwrap_or_default().to_string();
    let bwrap_args: Vec<&str> = BWRAP.iter().copied().chain(["--", "/bin/true"]).collect();
    // The eBPF monitor (on by default as root) has its own benchmark: `bench monitor`.
    let warden_run = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![w.clone(), "run".to_string(), "--profile".to_string(), "strict".to_string()];
        v.extend(["--require".to_string(), "monitor=off".to_string()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["--".to_string(), "/bin/true".to_string()]);
        v
    };
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("bare /bin/true", vec!["/bin/true".into()]),
        ("mcp-warden strict (monitor off)", warden_run(&[])),
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
    // firejail in a block of its own, like the eBPF variant: its teardown (mounts, its helper
    // processes) slows the cgroup migration of the run that follows it by about 10 ms.
    let firejail: Vec<(&str, Vec<String>)> = vec![(
        "firejail, closest policy (own block)",
        FIREJAIL.iter().chain(&["/bin/true"]).map(|s| s.to_string()).collect(),
    )];
    let bwrap_index = variants.iter().position(|(n, _)| n.starts_with("bubblewrap")).unwrap_or(0);
    // With the eBPF layer: loading and attaching the probes is part of the start. Measured in a
    // block of its own: detaching its cgroup programs (RCU grace periods) slows the cgroup
    // creation of whatever runs next, which would charge the others for it.
    let with_probes = is_root().then(|| {
        let mut v = warden_run(&[]);
        v.retain(|a| a != "monitor=off" && a != "--require");
        v.splice(4..4, ["--audit-log".to_string(), "/dev/null".to_string()]);
        vec![("mcp-warden strict, monitor on (own block)", v)]
    });
    for (name, argv) in &variants {
        let status = Command::new(&argv[0]).args(&argv[1..]).stderr(std::process::Stdio::null()).status()?;
        if !status.success() {
            bail!("variant `{name}` does not run here: {argv:?} -> {status}");
        }
    }
    step(&format!("start-up: {} variants x {rounds} rounds (rotating order, 20 warm-up rounds)", variants.len()));
    let mut stats = rotating_runs(&variants, rounds, 20)?;
    let mut variants = variants;
    step(&format!("start-up of firejail: {} runs in a block of its own (5 warm-up)", rounds.min(50)));
    stats.extend(rotating_runs(&firejail, rounds.min(50), 5)?);
    variants.extend(firejail);
    if let Some(probes) = with_probes {
        let probe_rounds = rounds.min(50);
        step(&format!("start-up with the eBPF layer: {probe_rounds} runs in a block of its own (5 warm-up)"));
        stats.extend(rotating_runs(&probes, probe_rounds, 5)?);
        variants.extend(probes);
    }
    let bwrap_median = stats[bwrap_index].0.as_secs_f64();
    let bare_median = stats[0].0.as_secs_f64();
    step("CPU time and peak RSS: 15 runs of each variant under GNU time");
    let mut table = String::from(
        "| variant | median | min | max | vs bare | vs bubblewrap | CPU (user+sys) | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((name, argv), (med, min, max)) in variants.iter().zip(&stats) {
        let (cpu, rss) = cpu_and_rss(argv, 15)?;
        table.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}x | {:.2}x | {cpu:.1} ms | {rss} KiB |\n",
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
         Wall time from spawn to exit, measured by the harness. firejail and the variant with the eBPF layer run in blocks \
         of their own (at most 50 runs after 5 warm-up runs): firejail's teardown and the detaching of the eBPF cgroup \
         programs (RCU grace periods) slow the cgroup migration of whatever runs next, which would charge the others \
         for it. CPU time (user+sys of the whole run, from the rusage of waited-for \
         children) and peak RSS (GNU `time`: the largest process of the run, the launcher or the server) are medians of \
         15 runs.\n\n{table}\n\
         bubblewrap command: `{}`\n\n\
         firejail command: `{} /bin/true`. firejail cannot express the same policy: it has no Landlock-style allow-list \
         of the whole filesystem (its closest, `--private` and whitelists, work on home and temporary directories), and \
         its seccomp list, capability drop and `--net=none` are its own; this is its strictest generic set.\n\
         <!-- startup:end -->",
        bwrap_args.join(" "),
        FIREJAIL.join(" ")
    );
    println!("{table}");
    replace_section(Path::new("docs/benchmarks.md"), "startup", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// The eBPF layer's costs: (a) a syscall-heavy workload bare, sandboxed, and sandboxed with the
/// probes; (b) events per second through the ring buffer, with drops; (c) start-up with probes.
fn bench_monitor(args: &[String]) -> Result<()> {
    let arg = |name: &str, default: usize| flag(args, name).unwrap_or(default);
    let rounds = arg("--rounds", 5);
    let iterations = arg("--iterations", 300_000);
    if !is_root() {
        bail!("the monitor benchmark loads eBPF programs: run it as root");
    }
    step("building mcp-warden and the workload probe (release)");
    run(Command::new("cargo").args(["build", "--release", "--locked", "-p", "mcp-warden", "-p", "mcp-warden-tests"]))?;
    let release = workspace_root().join("target/release");
    let warden = release.join("mcp-warden").display().to_string();
    let probe = release.join("warden-probe").display().to_string();
    let scratch = std::env::temp_dir().join(format!("mcp-warden-bench.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let file = scratch.join("small-file");
    std::fs::write(&file, "hello\n")?;
    let log = scratch.join("audit.jsonl");
    let f = file.display().to_string();
    let l = log.display().to_string();
    let exec_dir = release.display().to_string();
    let sandboxed = |monitor: bool, tail: &[&str]| -> Vec<String> {
        let mut v = vec![warden.clone(), "run".into(), "--profile".into(), "strict".into()];
        if monitor {
            v.extend(["--audit-log".into(), l.clone()]);
        } else {
            v.extend(["--require".into(), "monitor=off".into()]);
        }
        v.extend(["--allow-read".into(), f.clone(), "--allow-exec".into(), exec_dir.clone(), "--".into()]);
        v.extend(tail.iter().map(|s| s.to_string()));
        v
    };
    let n = iterations.to_string();
    let workload = [probe.as_str(), "open-read-close", f.as_str(), n.as_str()];
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("bare", workload.iter().map(|s| s.to_string()).collect()),
        ("mcp-warden strict, monitor off", sandboxed(false, &workload)),
        ("mcp-warden strict, monitor on", sandboxed(true, &workload)),
    ];
    step(&format!("(a) {iterations} x open+read+close: {} variants x {rounds} rounds, rotating order", variants.len()));
    let stats = rotating_runs(&variants, rounds, 1)?;
    let mut table_a =
        String::from("| variant | median | min | max | vs bare | vs monitor off |\n|---|---:|---:|---:|---:|---:|\n");
    for ((name, _), (m, lo, hi)) in variants.iter().zip(&stats) {
        table_a.push_str(&format!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2}x | {:.2}x |\n",
            ms(*m),
            ms(*lo),
            ms(*hi),
            m.as_secs_f64() / stats[0].0.as_secs_f64(),
            m.as_secs_f64() / stats[1].0.as_secs_f64()
        ));
    }
    println!("{table_a}");

    step("(b) events per second: bursts of distinct opens (each one an event), 4M ring buffer");
    let mut table_b = String::from(
        "| opens in the burst | wall | events logged | dropped | logged events/s |\n|---|---:|---:|---:|---:|\n",
    );
    for burst in [10_000usize, 100_000, 300_000] {
        let _ = std::fs::remove_file(&log);
        let b = burst.to_string();
        let argv = sandboxed(true, &[probe.as_str(), "open-burst", "/nonexistent/mcpw-bench-", b.as_str()]);
        let wall = timed_run(&argv)?;
        let text = std::fs::read_to_string(&log)?;
        let logged = text.lines().filter(|l| l.contains("\"kind\":\"open\"") && l.contains("mcpw-bench-")).count();
        let summary: serde_json::Value = text
            .lines()
            .rev()
            .find(|l| l.contains("\"kind\":\"summary\""))
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default();
        let dropped = summary["dropped"].as_u64().unwrap_or(0);
        table_b.push_str(&format!(
            "| {burst} | {:.0} ms | {logged} | {dropped} | {:.0} |\n",
            ms(wall),
            logged as f64 / wall.as_secs_f64()
        ));
    }
    println!("{table_b}");

    step(&format!("(c) start-up: time to the server's first output byte, and to exit ({} runs each)", rounds * 8));
    let echo = ["/bin/echo", "x"];
    let starts: Vec<(&str, Vec<String>)> = vec![
        ("bare /bin/echo", echo.iter().map(|s| s.to_string()).collect()),
        ("strict, monitor off", sandboxed(false, &echo)),
        ("strict, monitor on", sandboxed(true, &echo)),
    ];
    let mut table_c = String::from("| variant | first byte (median) | exit (median) |\n|---|---:|---:|\n");
    for (name, argv) in &starts {
        let mut first = Vec::new();
        let mut exit = Vec::new();
        for _ in 0..rounds * 8 {
            let t = Instant::now();
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let mut out = child.stdout.take().context("stdout")?;
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut out, &mut byte)?;
            first.push(t.elapsed());
            child.wait()?;
            exit.push(t.elapsed());
        }
        table_c.push_str(&format!(
            "| {name} | {:.1} ms | {:.1} ms |\n",
            ms(median_min_max(&mut first).0),
            ms(median_min_max(&mut exit).0)
        ));
    }
    println!("{table_c}");
    let _ = std::fs::remove_dir_all(&scratch);

    let command = format!("cargo xtask bench monitor --rounds {rounds} --iterations {iterations}");
    let section = format!(
        "<!-- monitor:begin (generated by `{command}`) -->\n\
         Command: `{command}` (as root; release build). Machine: {}\n\n\
         (a) Syscall-heavy workload: {iterations} x (open, read, close) of one small file by `warden-probe open-read-close`. \
         Each round runs every variant once in rotating order; medians of {rounds} rounds after one warm-up round.\n\n{table_a}\n\
         (b) Events through the ring buffer: `warden-probe open-burst` opens that many distinct paths as fast as it can \
         (every open is an event: distinct paths are never folded).\n\n{table_b}\n\
         (c) Start-up of `/bin/echo x`: spawn to the first byte on stdout (the server is running), and to the launcher's exit \
         (which includes detaching the probes).\n\n{table_c}\n\
         <!-- monitor:end -->",
        machine_facts()?
    );
    replace_section(Path::new("docs/benchmarks.md"), "monitor", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// Builds `mcp-warden_<version>_<arch>.deb` into `--out` (default target/dist) with dpkg-deb:
/// the release binary, the shipped profiles, the systemd template, the man page and the bash,
/// zsh and fish completions; its postinst creates the `mcp-warden` system user the generated
/// units run servers as.
fn dist(args: &[String]) -> Result<()> {
    let out: PathBuf = flag(args, "--out").unwrap_or_else(|| workspace_root().join("target/dist"));
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "--locked", "-p", "mcp-warden"]))?;
    let root = workspace_root();
    let binary = root.join("target/release/mcp-warden");
    let version =
        output(Command::new(&binary).arg("--version"))?.split_whitespace().nth(1).context("version")?.to_string();
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_string();
    let stage = std::env::temp_dir().join(format!("mcp-warden-deb.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = stage.join(rel);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    step(&format!("staging mcp-warden {version} ({arch})"));
    put("usr/bin/mcp-warden", &std::fs::read(&binary)?, 0o755)?;
    for entry in std::fs::read_dir(root.join("profiles"))? {
        let p = entry?.path();
        let name = p.file_name().context("name")?.to_string_lossy().into_owned();
        put(&format!("usr/share/mcp-warden/profiles/{name}"), &std::fs::read(&p)?, 0o644)?;
    }
    put(
        "lib/systemd/system/mcp-warden@.service",
        &std::fs::read(root.join("dist/systemd/mcp-warden@.service"))?,
        0o644,
    )?;
    let generated = |what: &str| -> Result<Vec<u8>> {
        let o = Command::new(&binary).args(["generate", what]).output()?;
        if !o.status.success() {
            bail!("mcp-warden generate {what} failed");
        }
        Ok(o.stdout)
    };
    let man = generated("man")?;
    let mut gz = Command::new("gzip")
        .args(["-9n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        gz.stdin.take().context("gzip stdin")?.write_all(&man)?;
    }
    put("usr/share/man/man1/mcp-warden.1.gz", &gz.wait_with_output()?.stdout, 0o644)?;
    put("usr/share/bash-completion/completions/mcp-warden", &generated("bash")?, 0o644)?;
    put("usr/share/zsh/vendor-completions/_mcp-warden", &generated("zsh")?, 0o644)?;
    put("usr/share/fish/vendor_completions.d/mcp-warden.fish", &generated("fish")?, 0o644)?;
    for doc in ["README.md", "docs/deploy.md", "docs/profiles.md", "docs/mcp.md", "docs/threat-model.md"] {
        let name = Path::new(doc).file_name().context("name")?.to_string_lossy().into_owned();
        put(&format!("usr/share/doc/mcp-warden/{name}"), &std::fs::read(root.join(doc))?, 0o644)?;
    }
    std::fs::create_dir_all(stage.join("etc/mcp-warden"))?;
    let size_kib = dir_size(&stage)? / 1024;
    put(
        "DEBIAN/control",
        format!(
            "Package: mcp-warden\nVersion: {version}\nArchitecture: {arch}\nMaintainer: mcp-warden developers <mcp-warden@localhost>\n\
             Installed-Size: {size_kib}\nDepends: libc6\nSection: admin\nPriority: optional\n\
             Description: run MCP servers under least privilege\n \
             A launcher put in front of any MCP server command: Landlock, seccomp, no capabilities,\n \
             resource limits, a clean environment, eBPF audit, and an MCP-aware proxy layer.\n"
        )
        .as_bytes(),
        0o644,
    )?;
    put(
        "DEBIAN/postinst",
        b"#!/bin/sh\nset -e\nif [ \"$1\" = configure ] && ! getent passwd mcp-warden >/dev/null; then\n    adduser --system --group --no-create-home --home /nonexistent --quiet mcp-warden\nfi\n",
        0o755,
    )?;
    std::fs::create_dir_all(&out)?;
    let deb = out.join(format!("mcp-warden_{version}_{arch}.deb"));
    step(&format!("dpkg-deb --build -> {}", deb.display()));
    run(Command::new("dpkg-deb").args(["--build", "--root-owner-group", "-Zxz"]).arg(&stage).arg(&deb))?;
    let _ = std::fs::remove_dir_all(&stage);
    println!("{}", deb.display());
    Ok(())
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let e = entry?;
        let m = e.metadata()?;
        total += if m.is_dir() { dir_size(&e.path())? } else { m.len() };
    }
    Ok(total)
}

/// The full soak: tests/tests/soak.rs with 50 servers x 20 rounds (or --servers/--rounds), its
/// report written to docs/reliability.md.
fn soak(args: &[String]) -> Result<()> {
    let arg = |name: &str, default: usize| flag(args, name).unwrap_or(default);
    let (servers, rounds) = (arg("--servers", 50), arg("--rounds", 20));
    setup()?;
    step(&format!("soak: {servers} concurrent servers x {rounds} rounds (tests/tests/soak.rs)"));
    let out = Command::new("cargo")
        .args(["test", "--locked", "-p", "mcp-warden-tests", "--test", "soak", "--", "--nocapture"])
        .env("MCPW_SOAK_SERVERS", servers.to_string())
        .env("MCPW_SOAK_ROUNDS", rounds.to_string())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the soak failed:\n{stdout}\n{stderr}");
    }
    let report =
        stderr.lines().chain(stdout.lines()).find(|l| l.starts_with("SOAK-REPORT:")).context("no SOAK-REPORT line")?;
    println!("{report}");
    let command = format!("cargo xtask soak --servers {servers} --rounds {rounds}");
    let fields: Vec<(&str, &str)> =
        report.trim_start_matches("SOAK-REPORT: ").split(' ').filter_map(|kv| kv.split_once('=')).collect();
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map_or("?", |(_, v)| *v);
    let section = format!(
        "<!-- soak:begin (generated by `{command}`) -->\n\
         Command: `{command}`. Machine: {}\n\n\
         | servers at once | rounds | runs | as | wall time | largest launcher peak RSS, round 1 | largest over all rounds | left behind |\n\
         |---:|---:|---:|---|---:|---:|---:|---|\n\
         | {servers} | {rounds} | {} | {} | {} s | {} KiB | {} KiB | nothing |\n\n\
         Each run is `mcp-warden run --profile strict -- /bin/sh -c 'sleep 0.3'` (half of them with `--mcp`), \
         with the eBPF layer when run as root. After the last round the test finds no server process, launcher, zombie, \
         `mcp-warden.<pid>` cgroup, new BPF program or link (`bpftool`), new pinned object, private temporary directory \
         or stray file.\n\
         <!-- soak:end -->",
        machine_facts()?,
        get("runs"),
        get("as").replace('_', " "),
        get("elapsed_s"),
        get("peak_rss_kib_round1"),
        get("peak_rss_kib_all"),
    );
    replace_section(Path::new("docs/reliability.md"), "soak", &section)?;
    step("docs/reliability.md updated");
    Ok(())
}

/// `--name VALUE` from a command's arguments, parsed.
fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

/// An MCP server spawned with piped stdio, spoken to in newline-delimited JSON-RPC: what the
/// session benchmarks need of a client, without the cost of one.
struct McpPeer {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    output: std::io::BufReader<std::process::ChildStdout>,
    line: String,
}

impl McpPeer {
    fn spawn(argv: &[String], env: &[(&str, &Path)]) -> Result<McpPeer> {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        c.stderr(std::process::Stdio::null()).envs(env.iter().copied());
        let mut child = c.spawn().with_context(|| format!("{argv:?}"))?;
        let input = child.stdin.take().context("stdin")?;
        let output = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        Ok(McpPeer { child, input: Some(input), output, line: String::new() })
    }

    fn send(&mut self, message: &str) -> Result<()> {
        use std::io::Write;
        let input = self.input.as_mut().context("stdin already closed")?;
        writeln!(input, "{message}")?;
        input.flush()?;
        Ok(())
    }

    /// Reads until the response with `id` (other lines are skipped).
    fn wait_for(&mut self, id: u64) -> Result<()> {
        use std::io::BufRead;
        let (a, b) = (format!("\"id\":{id},"), format!("\"id\":{id}}}"));
        loop {
            self.line.clear();
            if self.output.read_line(&mut self.line)? == 0 {
                bail!("the server closed its output before answering {id}");
            }
            if self.line.contains(&a) || self.line.contains(&b) {
                return Ok(());
            }
        }
    }

    /// initialize (id 1), the initialized notification, tools/list (id 2).
    fn initialize(&mut self) -> Result<()> {
        self.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#)?;
        self.wait_for(1)?;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        self.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)?;
        self.wait_for(2)
    }

    /// Closes the server's stdin and waits for it to exit.
    fn finish(mut self) -> Result<()> {
        drop(self.input.take());
        self.child.wait()?;
        Ok(())
    }
}

/// bubblewrap's closest equivalent of `strict`: every namespace, no capability, an empty root with
/// /usr read-only, /proc and /dev; the command follows (after any binds of the benchmark).
const BWRAP: &[&str] = &[
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
];

/// firejail's closest equivalent of `strict`: no profile file, no network, every capability
/// dropped, no_new_privs, its default seccomp filter, a private /tmp, no new root.
const FIREJAIL: &[&str] = &[
    "firejail",
    "--quiet",
    "--noprofile",
    "--net=none",
    "--caps.drop=all",
    "--nonewprivs",
    "--seccomp",
    "--private-tmp",
];

/// The peers the benchmarks compare against, and GNU time, from Debian.
fn peers() -> Result<()> {
    let mut missing = Vec::new();
    if !have("bwrap") {
        missing.push("bubblewrap");
    }
    if !have("firejail") {
        missing.push("firejail");
    }
    if !Path::new("/usr/bin/time").exists() {
        missing.push("time");
    }
    if !missing.is_empty() {
        step(&format!("installing the benchmark peers: {}", missing.join(", ")));
        apt_install(&missing)?;
    }
    Ok(())
}

/// Median CPU time (user+sys, ms, from the rusage of waited-for children, microsecond
/// resolution) and peak RSS (KiB, from GNU time) of `runs` runs of `argv`.
fn cpu_and_rss(argv: &[String], runs: usize) -> Result<(f64, u64)> {
    use nix::sys::resource::{UsageWho, getrusage};
    let children_cpu = || -> f64 {
        getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1000.0 + tv.tv_usec() as f64 / 1000.0;
            t(u.user_time()) + t(u.system_time())
        })
    };
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let before = children_cpu();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "MCPW-TIME %M %U %S"])
            .args(argv)
            .stdout(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().find(|l| l.starts_with("MCPW-TIME ")).context("no GNU time line")?;
        let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        if let Some(kib) = f.first() {
            rss.push(*kib as u64);
            cpu.push(children_cpu() - before);
        }
    }
    cpu.sort_by(f64::total_cmp);
    rss.sort();
    Ok((cpu.get(cpu.len() / 2).copied().unwrap_or(0.0), rss.get(rss.len() / 2).copied().unwrap_or(0)))
}

/// A real MCP session, bare and under each sandbox: the official filesystem server started,
/// initialize, tools/list, one call, stdin closed, exit; wall time spawn to exit.
fn bench_session(args: &[String]) -> Result<()> {
    let rounds: usize = flag(args, "--rounds").unwrap_or(20);
    peers()?;
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "mcp-warden", "--locked"]))?;
    let warden = workspace_root().join("target/release/mcp-warden").display().to_string();
    let installed = test_env().join("node");
    if !installed.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js").exists() {
        bail!("the filesystem server is missing: run `cargo xtask setup`");
    }
    // A copy under /opt for every variant: firejail always replaces /tmp and /var/tmp (where the
    // test environment lives) with its own.
    let base = PathBuf::from(format!("/opt/mcp-warden-bench.{}", std::process::id()));
    let node_dir = base.join("node");
    std::fs::create_dir_all(&base)?;
    run(Command::new("cp").arg("-a").arg(&installed).arg(&node_dir))?;
    let server = node_dir.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let notes = base.join("notes");
    std::fs::create_dir_all(&notes)?;
    std::fs::write(notes.join("a.md"), "hello\n")?;
    let (server, notes_s, node_s) =
        (server.display().to_string(), notes.display().to_string(), node_dir.display().to_string());
    let tail = ["node".to_string(), server.clone(), notes_s.clone()];
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut warden_argv = owned(&[&warden, "run", "--profile", "filesystem", "--require", "monitor=off", "--"]);
    warden_argv.extend(tail.iter().cloned());
    let mut warden_probes = owned(&[&warden, "run", "--profile", "filesystem", "--audit-log", "/dev/null", "--"]);
    warden_probes.extend(tail.iter().cloned());
    let mut bwrap = owned(BWRAP);
    bwrap.extend(owned(&["--ro-bind", &node_s, &node_s, "--bind", &notes_s, &notes_s, "--"]));
    bwrap.extend(tail.iter().cloned());
    let mut firejail: Vec<String> = FIREJAIL.iter().map(|s| s.to_string()).collect();
    firejail.extend([format!("--read-only={node_s}"), format!("--read-write={notes_s}")]);
    firejail.extend(tail.iter().cloned());
    let mut variants: Vec<(&str, Vec<String>)> = vec![
        ("bare node", tail.to_vec()),
        ("mcp-warden filesystem (monitor off)", warden_argv),
        ("bubblewrap", bwrap),
        ("firejail", firejail),
    ];
    if is_root() {
        variants.insert(2, ("mcp-warden filesystem, monitor on", warden_probes));
    }
    let session = |argv: &[String]| -> Result<Duration> {
        let t = Instant::now();
        let mut peer = McpPeer::spawn(argv, &[])?;
        peer.initialize()?;
        peer.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_allowed_directories","arguments":{}}}"#)?;
        peer.wait_for(3)?;
        peer.finish()?;
        Ok(t.elapsed())
    };
    step(&format!("MCP session: {} variants x {rounds} rounds (+2 warm-up), rotating order", variants.len()));
    let mut samples = rotating(variants.len(), rounds, 2, |i| session(&variants[i].1))?;
    let bare = median_min_max(&mut samples[0]).0.as_secs_f64();
    let mut table = String::from("| variant | median | min | max | vs bare |\n|---|---:|---:|---:|---:|\n");
    for ((name, _), s) in variants.iter().zip(samples.iter_mut()) {
        let (m, lo, hi) = median_min_max(s);
        table.push_str(&format!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2}x |\n",
            ms(m),
            ms(lo),
            ms(hi),
            m.as_secs_f64() / bare
        ));
    }
    println!("{table}");
    let _ = std::fs::remove_dir_all(&base);
    let command = format!("cargo xtask bench session --rounds {rounds}");
    let section = format!(
        "<!-- session:begin (generated by `{command}`) -->\n\
         Command: `{command}`. Machine: {}\n\n\
         A real MCP session: the official filesystem server started on one directory, initialize, tools/list, one \
         `tools/call` (`list_allowed_directories`), stdin closed, exit; wall time from spawn to exit, medians of {rounds} \
         rounds in rotating order after 2 warm-up rounds. bubblewrap gets an empty root with /usr, the server's \
         node_modules (read-only) and the directory (read-write); firejail gets its strict generic set with the \
         node_modules read-only and the directory read-write (it cannot hide the rest of the filesystem).\n\n{table}\n\
         <!-- session:end -->",
        machine_facts()?
    );
    replace_section(Path::new("docs/benchmarks.md"), "session", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// The MCP layer's cost per `tools/call` round trip: the official everything server's `echo`
/// under mcp-warden without and with the layer (and bare, for reference), one session per
/// variant and round, rotating order; latency percentiles over every call, and pipelined
/// throughput.
fn bench_mcp(args: &[String]) -> Result<()> {
    let arg = |name: &str, default: usize| flag(args, name).unwrap_or(default);
    let rounds = arg("--rounds", 5);
    let calls = arg("--calls", 2000);
    step("building mcp-warden (release)");
    run(Command::new("cargo").args(["build", "--release", "--locked", "-p", "mcp-warden"]))?;
    let warden = workspace_root().join("target/release/mcp-warden").display().to_string();
    let server = test_env().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !server.exists() {
        bail!("{} is missing: run `cargo xtask setup`", server.display());
    }
    let server = server.display().to_string();
    let scratch = std::env::temp_dir().join(format!("mcp-warden-bench-mcp.{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let log = scratch.join("audit.jsonl").display().to_string();
    let sandboxed = |mcp: bool| -> Vec<String> {
        let mut v: Vec<String> =
            [warden.as_str(), "run", "--profile", "everything", "--require", "monitor=off"].map(String::from).to_vec();
        if mcp {
            v.extend(["--mcp".into(), "--audit-log".into(), log.clone()]);
        }
        v.extend(["--".into(), "node".into(), server.clone(), "stdio".into()]);
        v
    };
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("bare node", vec!["node".into(), server.clone(), "stdio".into()]),
        ("mcp-warden, layer off", sandboxed(false)),
        ("mcp-warden, layer on", sandboxed(true)),
    ];
    // One session: initialize, tools/list, `calls` sequential round trips, then `calls` pipelined.
    let session = |argv: &[String]| -> Result<(Vec<Duration>, Duration)> {
        let mut peer = McpPeer::spawn(argv, &[("XDG_STATE_HOME", &scratch)])?;
        peer.initialize()?;
        let call = |id: u64| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"round trip {id}"}}}}}}"#
            )
        };
        let mut latencies = Vec::with_capacity(calls);
        for id in 10..10 + calls as u64 {
            let t = Instant::now();
            peer.send(&call(id))?;
            peer.wait_for(id)?;
            latencies.push(t.elapsed());
        }
        // Pipelined: a writer thread sends every call while this one reads the answers.
        let first = 10 + calls as u64;
        let t = Instant::now();
        let mut input = peer.input.take().context("stdin")?;
        let writer = std::thread::spawn(move || -> std::io::Result<std::process::ChildStdin> {
            use std::io::Write;
            for id in first..first + calls as u64 {
                writeln!(input, "{}", call(id))?;
            }
            input.flush()?;
            Ok(input)
        });
        peer.wait_for(first + calls as u64 - 1)?;
        let pipelined = t.elapsed();
        drop(writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??);
        peer.finish()?;
        Ok((latencies, pipelined))
    };
    step(&format!("{} variants x {rounds} rounds x {calls} calls (+1 warm-up round), rotating order", variants.len()));
    let results = rotating(variants.len(), rounds, 1, |i| session(&variants[i].1))?;
    let (mut lat, mut thr): (Vec<Vec<Duration>>, Vec<Vec<Duration>>) = results
        .into_iter()
        .map(|runs| {
            runs.into_iter().fold((Vec::new(), Vec::new()), |(mut l, mut t), (ls, p)| {
                l.extend(ls);
                t.push(p);
                (l, t)
            })
        })
        .unzip();
    let pct = |s: &mut Vec<Duration>, p: f64| -> Duration {
        s.sort();
        s[((s.len() as f64 - 1.0) * p).round() as usize]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut rows = Vec::new();
    for (i, (name, _)) in variants.iter().enumerate() {
        let p50 = pct(&mut lat[i], 0.50);
        let p99 = pct(&mut lat[i], 0.99);
        let (m, _, _) = median_min_max(&mut thr[i]);
        rows.push((name.to_string(), p50, p99, calls as f64 / m.as_secs_f64()));
    }
    let mut table =
        String::from("| variant | p50 round trip | p99 round trip | pipelined throughput |\n|---|---:|---:|---:|\n");
    for (name, p50, p99, tput) in &rows {
        table.push_str(&format!("| {name} | {:.0} µs | {:.0} µs | {:.0} calls/s |\n", us(*p50), us(*p99), tput));
    }
    let added50 = us(rows[2].1) - us(rows[1].1);
    let added99 = us(rows[2].2) - us(rows[1].2);
    table.push_str(&format!(
        "\nAdded by the MCP layer (layer on − layer off): **{added50:.0} µs at p50**, {added99:.0} µs at p99 (target: at most 100 µs at p50).\n"
    ));
    println!("{table}");
    let _ = std::fs::remove_dir_all(&scratch);
    let command = format!("cargo xtask bench mcp --rounds {rounds} --calls {calls}");
    let section = format!(
        "<!-- mcp:begin (generated by `{command}`) -->\n\
         Command: `{command}` (release build; the eBPF layer off in every variant so that only the MCP layer differs). Machine: {}\n\n\
         The official everything server's `echo` tool, one session per variant and round: initialize, tools/list (the \
         layer then validates every call against the tool's schema, pins the tools, redacts results and writes two audit \
         lines per call), {calls} sequential `tools/call` round trips timed one by one, then {calls} calls pipelined. \
         Percentiles over all {} timed calls per variant; throughput is the median of {rounds} rounds.\n\n{table}\n\
         <!-- mcp:end -->",
        machine_facts()?,
        calls * rounds
    );
    replace_section(Path::new("docs/benchmarks.md"), "mcp", &section)?;
    step("docs/benchmarks.md updated");
    Ok(())
}

/// Runs `run(i)` for each of `variants` once per round, in an order that rotates each round (so
/// no variant always follows the same one), after `warmup` rounds that are not counted; returns
/// the counted results per variant.
fn rotating<T>(
    variants: usize,
    rounds: usize,
    warmup: usize,
    mut run: impl FnMut(usize) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    let mut samples: Vec<Vec<T>> = (0..variants).map(|_| Vec::new()).collect();
    for round in 0..rounds + warmup {
        for k in 0..variants {
            let i = (round + k) % variants;
            let result = run(i)?;
            if round >= warmup {
                samples[i].push(result);
            }
        }
    }
    Ok(samples)
}

/// Wall time of every variant's command, output discarded: (median, min, max) per variant.
fn rotating_runs(
    variants: &[(&str, Vec<String>)],
    rounds: usize,
    warmup: usize,
) -> Result<Vec<(Duration, Duration, Duration)>> {
    let mut samples = rotating(variants.len(), rounds, warmup, |i| timed_run(&variants[i].1))?;
    Ok(samples.iter_mut().map(|s| median_min_max(s)).collect())
}

/// Wall time of one run of `argv` from spawn to exit, output discarded; a failure is an error.
fn timed_run(argv: &[String]) -> Result<Duration> {
    let t = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    let dt = t.elapsed();
    if !status.success() {
        bail!("{argv:?} failed: {status}");
    }
    Ok(dt)
}

fn median_min_max(s: &mut [Duration]) -> (Duration, Duration, Duration) {
    s.sort();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// Replaces `<!-- NAME:begin ... NAME:end -->` in a doc, or appends the section.
fn replace_section(path: &Path, name: &str, section: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) = (format!("<!-- {name}:begin"), format!("<!-- {name}:end -->"));
    let updated = match (doc.find(&begin), doc.find(&end)) {
        (Some(a), Some(b)) => format!("{}{section}{}", &doc[..a], &doc[b + end.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, updated)?;
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
    let firejail = output(Command::new("firejail").arg("--version"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(format!("Linux {kernel}, {cpu}, {cores} cores; {bwrap}; {firejail}"))
}
