//! The hidden root (`fs-hide`): outside the grants nothing answers. Landlock checks opens and
//! executions only, so without it `stat`, `readlink`, `inotify_add_watch`, `access`, `listxattr`
//! and `open(O_PATH)` answer for every path of the host. Each lookup is an attack next to its
//! control (the same lookup without mcp-warden, and on the granted directory), as root and as an
//! unprivileged user, then the ways out of a new root an attacker would try.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed set-up panics with its location

use mcp_warden_tests::*;

/// The lookups that Landlock does not check.
const LOOKUPS: [&str; 7] = ["stat", "stat-follow", "readlink", "access", "inotify", "listxattr", "open-path"];

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A planted `~/.ssh/id_rsa` (and its symlink, for `readlink`) outside every grant.
struct Planted {
    scratch: Scratch,
    work: std::path::PathBuf,
    key: std::path::PathBuf,
    link: std::path::PathBuf,
}

impl Planted {
    fn new(who: Who) -> Planted {
        let scratch = Scratch::new(who);
        let work = scratch.mkdir("work", who);
        scratch.file("work/notes.txt", "notes\n", who);
        scratch.mkdir("home/.ssh", who);
        let key = scratch.file("home/.ssh/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\n", who);
        let link = scratch.join("home/.ssh/current");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        chown_to(&link, who);
        Planted { scratch, work, key, link }
    }

    /// What each lookup is aimed at: the link for readlink, the key for the others.
    fn target(&self, lookup: &str) -> &str {
        if lookup == "readlink" { s(&self.link) } else { s(&self.key) }
    }
}

per_identity!(
    /// Under `strict` with one granted work directory: every lookup of the planted key, of
    /// `/home`, `/root` and `/etc/shadow` fails with ENOENT; the same lookups answer without
    /// mcp-warden, and the work directory and the granted files answer inside.
    lookups_outside_the_grants_answer_enoent,
    |who: Who| {
        let p = Planted::new(who);
        let sb = Sandbox::new(who).grant("--allow-write", &p.work);
        for lookup in LOOKUPS {
            let control = unsandboxed(who, &[lookup, p.target(lookup)]);
            assert_ok(&control, &format!("{who:?}: control: {lookup} of the key answers unsandboxed"));
            let o = sb.probe(&[lookup, p.target(lookup)]);
            assert_denied(&o, &["ENOENT"], &format!("{who:?}: {lookup} of a planted ~/.ssh/id_rsa"));
            for path in ["/home", "/root", "/etc/shadow"] {
                if lookup == "readlink" {
                    continue; // not links on the host either
                }
                // (inotify needs read permission: only root's control watches /etc/shadow)
                if is_root() || (lookup, path) != ("inotify", "/etc/shadow") {
                    let control = unsandboxed(Who::current(), &[lookup, path]);
                    assert_ok(&control, &format!("control: {lookup} {path} answers"));
                }
                assert_denied(&sb.probe(&[lookup, path]), &["ENOENT"], &format!("{who:?}: {lookup} {path}"));
            }
        }
        // Controls inside: the granted directory and files answer, and are read.
        let notes = p.work.join("notes.txt");
        for lookup in ["stat", "stat-follow", "access", "inotify", "listxattr", "open-path"] {
            assert_ok(&sb.probe(&[lookup, s(&p.work)]), &format!("{who:?}: control: {lookup} of the work dir"));
            assert_ok(&sb.probe(&[lookup, s(&notes)]), &format!("{who:?}: control: {lookup} of a granted file"));
        }
        assert_ok(&sb.probe(&["read", s(&notes)]), "control: a granted file is read");
        assert_ok(&sb.probe(&["read", "/etc/passwd"]), "control: a file strict grants is read");
        assert_ok(&sb.probe(&["readlink", "/lib64"]), "control: the merged-usr link is there");
        assert_ok(&sb.probe(&["exec", "/bin/true"]), "control: a program runs through /bin");
        // The view alone (fs-hide off) lets every lookup answer: this test measures the layer.
        let view_only = Sandbox::new(who).grant("--allow-write", &p.work).grant("--require", "fs-hide=off");
        assert_ok(&view_only.probe(&["stat", s(&p.key)]), "without fs-hide the lookup answers");
        drop(p.scratch);
    }
);

per_identity!(
    /// The ways out of a new root: `..` from the granted directory (above it is the tmpfs, which
    /// holds no key), a symlink planted in the work directory pointing outside, the `root` links of
    /// `/proc` (the server's own, PID 1's, another process's), and a nested user namespace.
    the_hidden_root_has_no_way_back_to_the_host,
    |who: Who| {
        let p = Planted::new(who);
        std::os::unix::fs::symlink(&p.key, p.work.join("key-link")).unwrap();
        chown_to(&p.work.join("key-link"), who);
        let sb = Sandbox::new(who).grant("--allow-write", &p.work).grant("--allow-read", "/proc");
        let up = "../home/.ssh/id_rsa".to_string();
        assert_ok(&unsandboxed(who, &["openat-parent", s(&p.work), &up]), "control: .. reaches the key unsandboxed");
        assert_denied(&sb.probe(&["openat-parent", s(&p.work), &up]), &["ENOENT"], &format!("{who:?}: ../ from work"));
        let dotdot = format!("{}/../home/.ssh/id_rsa", p.work.display());
        assert_denied(&sb.probe(&["stat", &dotdot]), &["ENOENT"], &format!("{who:?}: WORK/../"));
        let via_link = p.work.join("key-link");
        assert_denied(&sb.probe(&["stat-follow", s(&via_link)]), &["ENOENT"], &format!("{who:?}: a planted symlink"));
        // The server's own root is the hidden one.
        let own = format!("/proc/self/root{}", p.key.display());
        assert_denied(&sb.probe(&["stat", &own]), &["ENOENT"], &format!("{who:?}: /proc/self/root"));
        // Outside processes' roots lead to the host: Landlock's ptrace scoping refuses them.
        let victim = Victim::start(who);
        for pid in ["1".to_string(), victim.pid().to_string()] {
            let path = format!("/proc/{pid}/root{}", p.key.display());
            // (PID 1 holds capabilities that even this host's root lacks: no control for it)
            if is_root() && pid != "1" {
                assert_ok(&unsandboxed(Who::Root, &["stat", &path]), &format!("control: {path} answers unsandboxed"));
            }
            assert_denied(&sb.probe(&["stat", &path]), &["EACCES", "ENOENT"], &format!("{who:?}: {path}"));
        }
        // A nested user namespace is refused (seccomp); without seccomp, one copies the hidden
        // tree, where the old root is not (and Landlock forbids it any mount).
        assert_denied(&sb.probe(&["userns-stat", s(&p.key)]), &["EPERM"], &format!("{who:?}: a nested user namespace"));
        assert_ok(&unsandboxed(who, &["userns-stat", s(&p.key)]), "control: a nested user namespace sees the key");
        let no_seccomp = sb.grant("--require", "seccomp=off").grant("--require", "network=off");
        let o = no_seccomp.probe(&["userns-stat", s(&p.key)]);
        assert_denied(&o, &["ENOENT"], &format!("{who:?}: a nested user namespace without seccomp"));
    }
);

/// Root switching to the test user: the same hidden root, built before the switch.
#[test]
fn lookups_outside_the_grants_answer_enoent_after_a_user_switch() {
    if !is_root() {
        skip(module_path!(), "a user switch needs the launcher to run as root");
        return;
    }
    let p = Planted::new(Who::User);
    let sb = Sandbox::new(Who::Root).grant("--user", TEST_USER).grant("--allow-write", &p.work);
    for lookup in LOOKUPS {
        assert_ok(&unsandboxed(Who::User, &[lookup, p.target(lookup)]), &format!("control: {lookup} unsandboxed"));
        assert_denied(&sb.probe(&[lookup, p.target(lookup)]), &["ENOENT"], &format!("--user: {lookup} of the key"));
        assert_denied(&sb.probe(&[lookup, "/root"]), &["ENOENT"], &format!("--user: {lookup} /root"));
    }
    let ids = sb.probe(&["ids"]);
    assert!(ids.verdict().contains(&format!("euid={}", test_user().0)), "the switch happened\n{}", ids.describe());
    assert_ok(&sb.probe(&["write", s(&p.work.join("out"))]), "control: the work dir is writable after the switch");
}
