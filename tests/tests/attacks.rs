//! Every protection of the launcher core: an attack that must be blocked, next to a control that
//! must succeed, run both as root and as an unprivileged user.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use std::os::unix::fs::PermissionsExt;

use mcp_warden_tests::*;

const DENIED_FS: &[&str] = &["EACCES", "EPERM"];

per_identity!(secret_outside_the_allow_list_cannot_be_read, |who: Who| {
    let s = Scratch::new(who);
    let secret = s.file("secret.key", "PRIVATE KEY", who);
    let granted = s.mkdir("granted", who);
    let ok = s.file("granted/notes.txt", "hello", who);
    let sb = Sandbox::new(who).grant("--allow-read", &granted);
    assert_ok(&sb.probe(&["read", ok.to_str().unwrap()]), "read a granted file");
    assert_ok(&unsandboxed(who, &["read", secret.to_str().unwrap()]), "control: secret readable unsandboxed");
    assert_denied(&sb.probe(&["read", secret.to_str().unwrap()]), DENIED_FS, &format!("{who:?}: read secret"));
    assert_denied(&sb.probe(&["read", "/etc/shadow"]), DENIED_FS, "read /etc/shadow");
    assert_denied(&sb.probe(&["list", "/root"]), DENIED_FS, "list /root");
});

per_identity!(writes_outside_the_allow_list_are_refused, |who: Who| {
    let s = Scratch::new(who);
    let writable = s.mkdir("out", who);
    let readonly = s.mkdir("ro", who);
    let bashrc = s.file("bashrc", "# shell rc\n", who);
    let sb = Sandbox::new(who).grant("--allow-write", &writable).grant("--allow-read", &readonly);
    assert_ok(&sb.probe(&["write", writable.join("f").to_str().unwrap()]), "write into a writable dir");
    assert_denied(&sb.probe(&["write", readonly.join("f").to_str().unwrap()]), DENIED_FS, "write into read-only");
    assert_denied(&sb.probe(&["append", bashrc.to_str().unwrap()]), DENIED_FS, "append to a shell rc");
    assert_denied(&sb.probe(&["write", s.join("x").to_str().unwrap()]), DENIED_FS, "write outside");
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# shell rc\n", "rc file unchanged");
});

per_identity!(dotdot_symlink_and_hardlink_escapes_fail, |who: Who| {
    let s = Scratch::new(who);
    let secret = s.file("secret", "s3cr3t", who);
    let dir = s.mkdir("dir", who);
    std::os::unix::fs::symlink(&secret, dir.join("link")).unwrap();
    chown_to(&dir.join("link"), who);
    let sb = Sandbox::new(who).grant("--allow-write", &dir);
    let dotdot = format!("{}/../secret", dir.display());
    assert_denied(&sb.probe(&["read", &dotdot]), DENIED_FS, "read via ..");
    assert_denied(&sb.probe(&["read", dir.join("link").to_str().unwrap()]), DENIED_FS, "read via symlink");
    let hl = dir.join("hardlink");
    let o = sb.probe(&["hardlink", secret.to_str().unwrap(), hl.to_str().unwrap()]);
    assert_denied(&o, &["EACCES", "EPERM", "EXDEV"], "hardlink a secret into a writable dir");
    assert!(!hl.exists());
    // control: links and renames inside the writable directory work
    s.file("dir/own", "mine", who);
    assert_ok(
        &sb.probe(&["hardlink", dir.join("own").to_str().unwrap(), dir.join("own2").to_str().unwrap()]),
        "hardlink inside",
    );
    assert_ok(
        &sb.probe(&["rename", dir.join("own2").to_str().unwrap(), dir.join("own3").to_str().unwrap()]),
        "rename inside",
    );
});

per_identity!(other_processes_proc_files_are_out_of_reach_even_with_proc_readable, |who: Who| {
    let victim = Victim::start(who);
    let pid = victim.pid().to_string();
    let environ = format!("/proc/{pid}/environ");
    let ctl = unsandboxed(who, &["read", &environ]);
    assert_ok(&ctl, "control: the victim's environ is readable unsandboxed");
    let sb = Sandbox::new(who).grant("--allow-read", "/proc");
    assert_ok(&sb.probe(&["read", "/proc/self/status"]), "own /proc is readable");
    assert_denied(&sb.probe(&["read", &environ]), DENIED_FS, "read another process's environ");
    assert_denied(&sb.probe(&["read", &format!("/proc/{pid}/mem")]), DENIED_FS, "read /proc/PID/mem");
    assert_denied(&sb.probe(&["readlink", &format!("/proc/{pid}/cwd")]), DENIED_FS, "readlink /proc/PID/cwd");
    // Without the /proc grant, nothing of /proc beyond the strict basics is visible.
    let strict = Sandbox::new(who);
    assert_denied(&strict.probe(&["read", &environ]), DENIED_FS, "environ without /proc grant");
});

per_identity!(programs_written_into_writable_dirs_cannot_be_executed, |who: Who| {
    let s = Scratch::new(who);
    let dir = s.mkdir("drop", who);
    let sb = Sandbox::new(who).grant("--allow-write", &dir);
    assert_ok(&sb.probe(&["exec", "/bin/true"]), "control: system binaries run");
    let o = sb.probe(&["drop-exec", dir.to_str().unwrap(), "/bin/true"]);
    assert_denied(&o, &["EACCES"], "exec a dropped payload");
    assert!(dir.join("payload").exists(), "the write itself was allowed");
    // control: the same drop-and-run works when the directory is also executable
    let sbx = Sandbox::new(who).grant("--allow-write", &dir).grant("--allow-exec", &dir);
    assert_ok(&sbx.probe(&["drop-exec", dir.to_str().unwrap(), "/bin/true"]), "exec granted explicitly");
});

#[test]
fn setuid_binaries_gain_nothing() {
    if !is_root() {
        skip(module_path!(), "creating a setuid-root binary needs root");
        return;
    }
    // A setuid-root copy of the probe in a directory the test user can execute from.
    let s = Scratch::new(Who::User);
    let dir = s.mkdir("suid", Who::Root);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = dir.join("probe-suid");
    std::fs::copy(probe(), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let ctl = run_as_user(&suid, &["ids"]);
    assert!(ctl.verdict().contains("euid=0"), "control: setuid works outside the sandbox\n{}", ctl.describe());
    let sb = Sandbox::new(Who::User).grant("--allow-exec", &dir);
    let o = sb.exec(&[suid.as_os_str(), "ids".as_ref()]);
    assert_ok(&o, "setuid probe runs");
    let uid = test_user().0;
    assert!(o.verdict().contains(&format!("euid={uid}")), "no_new_privs: euid stays the user's\n{}", o.describe());
}

fn run_as_user(program: &std::path::Path, args: &[&str]) -> Output {
    let mut c = command_as(Who::User, program);
    c.args(args);
    run(c, None, std::time::Duration::from_secs(30))
}

per_identity!(tcp_connect_only_to_granted_ports, |who: Who| {
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pf) = (allowed.local_addr().unwrap().port(), forbidden.local_addr().unwrap().port());
    let sb = Sandbox::new(who).grant("--allow-connect", pa.to_string());
    assert_ok(&sb.probe(&["tcp-connect", "127.0.0.1", &pa.to_string()]), "connect to the granted port");
    assert_ok(&unsandboxed(who, &["tcp-connect", "127.0.0.1", &pf.to_string()]), "control: port reachable");
    assert_denied(
        &sb.probe(&["tcp-connect", "127.0.0.1", &pf.to_string()]),
        &["EACCES"],
        "connect to a forbidden port",
    );
    // With no network grant at all, not even a socket can be made.
    let none = Sandbox::new(who);
    assert_denied(&none.probe(&["tcp-connect", "127.0.0.1", &pa.to_string()]), &["EPERM"], "no network");
});

per_identity!(
    /// Address rules without privileges (the network broker): a denied range, the IPv4-mapped form
    /// of it, a UDP datagram to a destination that is not granted, and the classic race against
    /// user-notification sandboxes: a second thread rewriting the checked address while the connect is
    /// in flight. The broker performs the call with the address it checked, so across 2,000 connects
    /// through a sockaddr that flips between an allowed and a denied address, none reaches the denied
    /// one.
    address_rules_hold_against_mapped_addresses_udp_and_a_racing_thread,
    |who: Who| {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        // Accept (and drop) everything, so the backlog never fills.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acceptor = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if listener.accept().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            })
        };
        let s = Scratch::new(who);
        let profile = s.file(
            "deny.toml",
            &format!("extends = [\"strict\"]\n[network]\nconnect = [{port}, \"udp:127.0.0.1:9\"]\ndeny = [\"127.0.0.2/32\"]\n"),
            who,
        );
        let sb = Sandbox::new(who).profile(&profile);
        assert_ok(&unsandboxed(who, &["tcp-connect", "127.0.0.2", &port]), "control: 127.0.0.2 reachable unsandboxed");
        assert_ok(&sb.probe(&["tcp-connect", "127.0.0.1", &port]), "the allowed address");
        assert_denied(&sb.probe(&["tcp-connect", "127.0.0.2", &port]), &["EACCES"], "a denied address");
        assert_denied(&sb.probe(&["tcp-connect", "::ffff:127.0.0.2", &port]), &["EACCES"], "its IPv4-mapped form");
        assert_denied(&sb.probe(&["udp-send", "127.0.0.1", "10"]), &["EPERM"], "UDP to a port not granted");
        let race = sb.probe(&["connect-race", &port, "2000"]);
        assert!(race.code() == Some(0), "{who:?}: {}", race.describe());
        let verdict = race.verdict();
        assert!(verdict.contains(" denied 0 "), "{who:?}: a racing thread got a denied address through: {verdict}");
        assert!(!verdict.contains("allowed 0 "), "{who:?}: control: the allowed address must still work: {verdict}");
        assert!(
            race.stderr.contains("127.0.0.2 is in the denied range"),
            "{who:?}: the broker saw the flipped address"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        acceptor.join().unwrap();
    }
);

per_identity!(udp_is_refused_unless_the_profile_allows_it, |who: Who| {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port().to_string();
    assert_ok(&unsandboxed(who, &["udp-send", "127.0.0.1", &port]), "control: UDP works unsandboxed");
    // TCP granted (so inet sockets exist), UDP still refused.
    let sb = Sandbox::new(who).grant("--allow-connect", "443");
    assert_denied(&sb.probe(&["udp-send", "127.0.0.1", &port]), &["EPERM"], "UDP exfiltration");
    // control: a profile that allows UDP
    let s = Scratch::new(who);
    let profile = s.file("udp.toml", "extends = [\"strict\"]\n[network]\nudp = true\n", who);
    let sb = Sandbox::new(who).profile(&profile);
    assert_ok(&sb.probe(&["udp-send", "127.0.0.1", &port]), "UDP allowed by the profile");
});

per_identity!(unix_sockets_abstract_and_pathname_are_refused, |who: Who| {
    let s = Scratch::new(who);
    let path = s.join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // One name per identity: the root and the user variant of this test may run at the same time.
    let name = format!("mcpw-test-{}-{}", std::process::id(), who as u8);
    let _abs = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    assert_ok(&unsandboxed(who, &["unix-connect", path.to_str().unwrap()]), "control: pathname socket");
    assert_ok(&unsandboxed(who, &["abstract-connect", &name]), "control: abstract socket");
    let sb = Sandbox::new(who).grant("--allow-write", s.path());
    assert_denied(&sb.probe(&["unix-connect", path.to_str().unwrap()]), &["EPERM"], "pathname unix socket");
    assert_denied(&sb.probe(&["abstract-connect", &name]), &["EPERM"], "abstract unix socket");
    // Even with AF_UNIX allowed, Landlock's scoping keeps abstract sockets outside unreachable.
    let profile = s.file("unix.toml", "extends = [\"strict\"]\n[network]\nunix = true\n", who);
    let sbu = Sandbox::new(who).profile(&profile);
    assert_denied(&sbu.probe(&["abstract-connect", &name]), &["EPERM"], "abstract socket, unix allowed");
});

per_identity!(listening_needs_a_bind_grant, |who: Who| {
    let port = free_port();
    let sb = Sandbox::new(who).grant("--allow-connect", "443");
    assert_denied(&sb.probe(&["tcp-listen", &port.to_string()]), &["EACCES"], "listen without a grant");
    let sbb = Sandbox::new(who).grant("--allow-bind", port.to_string());
    assert_ok(&sbb.probe(&["tcp-listen", &port.to_string()]), "listen on the granted port");
});

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

per_identity!(ptrace_vm_read_and_kill_of_outside_processes_fail, |who: Who| {
    let victim = Victim::start(who);
    let pid = victim.pid().to_string();
    let sb = Sandbox::new(who);
    assert_denied(&sb.probe(&["ptrace", &pid]), &["EPERM"], "ptrace a sibling");
    assert_denied(&sb.probe(&["vm-read", &pid, "4096"]), &["EPERM"], "process_vm_readv a sibling");
    // In its own PID namespace the server cannot even name the victim...
    assert_denied(&sb.probe(&["kill", &pid]), &["ESRCH"], "kill a process outside (PID namespace)");
    // ...and without one, Landlock's signal scoping refuses the kill.
    let no_ns = Sandbox::new(who).grant("--require", "pid-namespace=off");
    assert_denied(&no_ns.probe(&["kill", &pid]), &["EPERM"], "kill a process outside (Landlock scope)");
    assert!(victim.pid_of_sleep_alive(), "the victim survived");
    assert_ok(&sb.probe(&["kill-own-child"]), "control: signalling its own child works");
    assert_ok(&unsandboxed(who, &["kill", &pid]), "control: the kill works unsandboxed");
});

trait Alive {
    fn pid_of_sleep_alive(&self) -> bool;
}

impl Alive for Victim {
    fn pid_of_sleep_alive(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}", self.pid())).exists()
    }
}

per_identity!(kernel_attack_surface_syscalls_are_denied, |who: Who| {
    let sb = Sandbox::new(who);
    for (action, errnos) in [
        ("io-uring", &["EPERM"][..]),
        ("bpf", &["EPERM"]),
        ("perf", &["EPERM"]),
        ("userfaultfd", &["EPERM"]),
        ("add-key", &["EPERM"]),
        ("unshare-user", &["EPERM"]),
        ("clone-newuser", &["EPERM"]),
        ("clone3-newuser", &["ENOSYS"]),
        ("personality", &["EPERM"]),
    ] {
        assert_denied(&sb.probe(&[action]), errnos, &format!("{who:?}: {action}"));
    }
    // control: the same calls get past the kernel's entry unsandboxed (io_uring and
    // userfaultfd at least; the others may need privileges the test user lacks)
    assert_ok(&unsandboxed(who, &["io-uring"]), "control: io_uring works unsandboxed");
    assert_ok(&unsandboxed(who, &["add-key"]), "control: add_key works unsandboxed");
});

per_identity!(tiocsti_is_denied_by_the_filter, |who: Who| {
    let o = Sandbox::new(who).probe(&["tiocsti"]);
    assert_denied(&o, &["EPERM"], "TIOCSTI");
    // control: unsandboxed the same ioctl reaches the tty layer (stdin is a pipe: ENOTTY)
    let ctl = unsandboxed(who, &["tiocsti"]);
    assert_denied(&ctl, &["ENOTTY", "EIO"], "control: TIOCSTI reaches the driver");
});

per_identity!(fork_memory_fd_and_file_size_bombs_are_capped, |who: Who| {
    let sb = Sandbox::new(who).grant("--max-processes", "20");
    let o = sb.probe(&["fork-bomb", "200"]);
    assert_ok(&o, "fork bomb runs");
    let made: usize = o.verdict().split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(made < 20 && o.verdict().ends_with("EAGAIN"), "{who:?}: fork bomb capped\n{}", o.describe());
    let ctl = Sandbox::new(who).grant("--max-processes", "200").probe(&["fork-bomb", "50"]);
    assert!(ctl.verdict().starts_with("OK forked 50"), "control: 50 forks fine\n{}", ctl.describe());

    let sb = Sandbox::new(who).grant("--max-memory", "64M");
    assert_denied(&sb.probe(&["alloc", "512"]), &["ENOMEM"], "memory bomb");
    assert_ok(&sb.probe(&["alloc", "16"]), "control: 16 MiB is fine");

    let sb = Sandbox::new(who).grant("--max-open-files", "32");
    assert_denied(&sb.probe(&["open-fds", "100"]), &["EMFILE"], "fd bomb");
    assert_ok(&sb.probe(&["open-fds", "10"]), "control: 10 fds fine");

    let s = Scratch::new(who);
    let dir = s.mkdir("big", who);
    let sb = Sandbox::new(who).grant("--allow-write", &dir).grant("--max-file-size", "1M");
    assert_denied(&sb.probe(&["write-big", dir.join("f").to_str().unwrap(), "8"]), &["EFBIG"], "file-size bomb");
    assert_ok(&sb.probe(&["write-big", dir.join("g").to_str().unwrap(), "0"]), "control: small file");
});

per_identity!(secret_environment_variables_do_not_reach_the_server, |who: Who| {
    let sb = Sandbox::new(who).env("AWS_SECRET_ACCESS_KEY", "AKIAsecret").env("GITHUB_TOKEN", "ghp_x");
    assert_denied(&sb.probe(&["env", "AWS_SECRET_ACCESS_KEY"]), &["ENOENT"], "AWS secret");
    assert_denied(&sb.probe(&["env", "GITHUB_TOKEN"]), &["ENOENT"], "GitHub token");
    assert_ok(&sb.probe(&["env", "PATH"]), "PATH passes");
    let passed = Sandbox::new(who).env("GITHUB_TOKEN", "ghp_x").grant("--pass-env", "GITHUB_TOKEN");
    assert_ok(&passed.probe(&["env", "GITHUB_TOKEN"]), "explicitly passed");
    let set = Sandbox::new(who).grant("--set-env", "MODE=safe");
    assert_eq!(set.probe(&["env", "MODE"]).verdict(), "OK MODE=safe");
});

per_identity!(
    /// The exec'd server itself is restricted: checked from inside, through the kernel's own view.
    the_executed_server_is_restricted_from_inside,
    |who: Who| {
        let o = Sandbox::new(who).grant("--allow-read", "/proc").probe(&["status"]);
        assert_ok(&o, "status readable");
        let v = o.verdict();
        assert!(v.contains("NoNewPrivs=1"), "{v}");
        assert!(v.contains("Seccomp=2"), "seccomp filter mode: {v}");
        // the deny-set, clone3 -> ENOSYS, and an x32 guard where the kernel runs x32 syscalls
        assert!(v.contains("Seccomp_filters=2") || v.contains("Seccomp_filters=3"), "{v}");
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"] {
            assert!(v.contains(&format!("{set}=0000000000000000")), "{set} empty: {v}");
        }
        // NSpid has two entries: our pid outside and inside the server's PID namespace.
        assert!(v.split_whitespace().any(|f| f.starts_with("NSpid=") && f.contains(',')), "own PID namespace: {v}");
        // And Landlock, from inside: the same binary is denied what it could read outside.
        assert_denied(&Sandbox::new(who).probe(&["read", "/etc/shadow"]), DENIED_FS, "Landlock from inside");
    }
);

#[test]
fn root_can_switch_the_server_to_another_user() {
    if !is_root() {
        skip(module_path!(), "a user switch needs the launcher to run as root");
        return;
    }
    let (uid, gid) = test_user();
    let o = Sandbox::new(Who::Root).grant("--user", TEST_USER).grant("--allow-read", "/proc").probe(&["status"]);
    assert_ok(&o, "status");
    assert!(o.verdict().contains(&format!("uid={uid} euid={uid} gid={gid} egid={gid}")), "{}", o.describe());
    assert!(o.verdict().contains("CapBnd=0000000000000000"), "{}", o.describe());
}
