//! The files axis: the secret classes the server can read, how much it reads and writes, whether
//! it can write where code runs later (persistence) or run what it wrote, and the devices it
//! opens. Paths come from the plan's grants as Landlock and the filesystem view enforce them.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};

use crate::plan::Layer;
use crate::profile::Origin;

use super::{Assessor, Axis, Ctx, Finding, Grade, graded, list};

const fn secret_row(id: &'static str, title: &'static str, assess: fn(&Ctx<'_>) -> Finding) -> Assessor {
    Assessor {
        id,
        axis: Axis::Files,
        title,
        layers: &[Layer::Landlock],
        grades: &[SECRET_NONE, SECRET_READABLE],
        hint: "remove the grant that covers it from [filesystem] read/write/exec (or --allow-*); grant the one file the server needs, or run it as a dedicated user ([process] user, --user)",
        assess,
    }
}

pub const ASSESSORS: &[Assessor] = &[
    secret_row("files.secrets.ssh-gpg", "SSH and GPG keys, password stores, keyrings", |c| secrets(c, "ssh-gpg")),
    secret_row("files.secrets.cloud-cli", "cloud and CLI credentials", |c| secrets(c, "cloud-cli")),
    secret_row("files.secrets.browser", "browser profiles (cookies, saved passwords)", |c| secrets(c, "browser")),
    secret_row("files.secrets.dotenv", "`.env` files in user directories", |c| secrets(c, "dotenv")),
    secret_row("files.secrets.host-keys", "the host's keys and password hashes (root's)", |c| secrets(c, "host-keys")),
    Assessor {
        id: "files.read-breadth",
        axis: Axis::Files,
        title: "how much of the filesystem the server reads",
        layers: &[Layer::Landlock],
        grades: &[READ_SYSTEM, READ_SOME, READ_HOME, READ_ROOT],
        hint: "grant the directories the server needs in [filesystem] read, not $HOME or /; keep the landlock layer on",
        assess: read_breadth,
    },
    Assessor {
        id: "files.write-breadth",
        axis: Axis::Files,
        title: "how much of the filesystem the server writes",
        layers: &[Layer::Landlock, Layer::FsView],
        grades: &[WRITE_NONE, WRITE_METADATA, WRITE_SOME, WRITE_HOME, WRITE_SYSTEM],
        hint: "narrow [filesystem] write (--allow-write) to the server's own directory; use private-tmp = true for scratch space",
        assess: write_breadth,
    },
    Assessor {
        id: "files.persistence",
        axis: Axis::Files,
        title: "writable places where code runs later, outside the sandbox",
        layers: &[Layer::Landlock, Layer::FsView],
        grades: &[PERSIST_NONE, PERSIST_GIT, PERSIST_LOGIN],
        hint: "remove write grants that cover shell start-up files, autostart, systemd units, cron, ~/.local/bin or /etc; give the server a directory of its own",
        assess: persistence,
    },
    Assessor {
        id: "files.exec-writable",
        axis: Axis::Files,
        title: "running code the server wrote",
        layers: &[Layer::Landlock, Layer::FsView, Layer::Seccomp],
        grades: &[EXEC_NONE, EXEC_MEMFD, EXEC_WRITTEN],
        hint: "do not grant exec on a written directory (filesystem.exec beneath filesystem.write); keep memfd_create out of [syscalls] allow; keep the fs-view and seccomp layers on",
        assess: exec_writable,
    },
    Assessor {
        id: "files.devices",
        axis: Axis::Files,
        title: "device nodes beyond null, zero, full and random",
        layers: &[Layer::Landlock],
        grades: &[DEV_HARMLESS, DEV_SOME, DEV_ALL],
        hint: "grant single harmless devices (/dev/null, /dev/urandom), never /dev",
        assess: devices,
    },
];

pub const SECRET_NONE: Grade = Grade { name: "none", badness: 0, means: "none of the class's paths is readable" };
pub const SECRET_READABLE: Grade = Grade { name: "readable", badness: 100, means: "a grant covers the class" };
const READ_SYSTEM: Grade = Grade { name: "system", badness: 0, means: "system locations and the runtime only" };
const READ_SOME: Grade = Grade { name: "some", badness: 30, means: "named user directories or files" };
const READ_HOME: Grade = Grade { name: "home", badness: 80, means: "a whole home directory" };
const READ_ROOT: Grade = Grade { name: "root", badness: 100, means: "everything the server's user may open" };
const WRITE_NONE: Grade =
    Grade { name: "none", badness: 0, means: "nothing but harmless devices (and a private TMPDIR)" };
const WRITE_METADATA: Grade = Grade {
    name: "metadata",
    badness: 20,
    means: "no filesystem view: chmod, chown, utimes and xattrs on every file of the server's user",
};
const WRITE_SOME: Grade = Grade { name: "some", badness: 30, means: "named directories or files" };
const WRITE_HOME: Grade = Grade { name: "home", badness: 80, means: "a whole home directory" };
pub const WRITE_SYSTEM: Grade = Grade { name: "system", badness: 100, means: "/ or a system location" };
const PERSIST_NONE: Grade = Grade { name: "none", badness: 0, means: "no writable directory" };
const PERSIST_GIT: Grade = Grade {
    name: "git-hooks",
    badness: 60,
    means: "a writable directory may hold a repository whose hooks and config run at the user's next git command",
};
pub const PERSIST_LOGIN: Grade = Grade {
    name: "login",
    badness: 100,
    means: "a start-up file, autostart entry, unit, crontab, PATH directory or /etc is writable",
};
const EXEC_NONE: Grade = Grade { name: "none", badness: 0, means: "written files cannot run" };
const EXEC_MEMFD: Grade = Grade { name: "memfd", badness: 50, means: "memfd_create: code in anonymous files runs" };
const EXEC_WRITTEN: Grade = Grade { name: "exec", badness: 100, means: "a writable path is executable" };
const DEV_HARMLESS: Grade = Grade { name: "harmless", badness: 0, means: "only the data's harmless devices" };
const DEV_SOME: Grade = Grade { name: "some", badness: 50, means: "other device nodes or /dev directories" };
const DEV_ALL: Grade = Grade { name: "all", badness: 100, means: "every device the server's user may open" };

/// The home directories `~/` stands for: the server's, root's and each /home/NAME a grant lies in.
struct Homes(Vec<PathBuf>);

impl Homes {
    fn of<'a>(c: &Ctx<'_>, paths: impl Iterator<Item = &'a Path>) -> Homes {
        let mut homes = vec![c.plan.identity().home.clone(), PathBuf::from("/root")];
        for p in paths {
            if let Some(first) = p.strip_prefix("/home").ok().and_then(|r| r.components().next()) {
                homes.push(Path::new("/home").join(first));
            }
        }
        homes.retain(|h| h.parent().is_some());
        homes.sort();
        homes.dedup();
        Homes(homes)
    }

    /// Does a grant of `grant` expose `pattern` (`~/x` or absolute): contain it or lie in it? A
    /// grant of / or /home covers every home.
    fn exposes(&self, grant: &Path, pattern: &str) -> bool {
        let within = |t: &Path| t.starts_with(grant) || grant.starts_with(t);
        match pattern.strip_prefix("~/") {
            Some(rest) => Path::new("/home/_").starts_with(grant) || self.0.iter().any(|h| within(&h.join(rest))),
            None => within(Path::new(pattern)),
        }
    }

    /// Is `p` a home directory or above one?
    fn holds_a_home(&self, p: &Path) -> bool {
        Path::new("/home/_").starts_with(p) || self.0.iter().any(|h| h.starts_with(p))
    }
}

/// A granted path (every grant reads), and whether it is the runtime's own installation.
struct Grant<'a> {
    path: &'a Path,
    installation: bool,
}

/// What the server reads: `None` is everything (no Landlock).
fn readable<'a>(c: &Ctx<'a>) -> Option<Vec<Grant<'a>>> {
    c.mech.landlock_fs.then(|| {
        c.plan
            .paths()
            .iter()
            .map(|(p, (_, o))| Grant { path: p, installation: matches!(o, Origin::Runtime(_)) })
            .collect()
    })
}

/// What the server writes, and whether code written there can run: the write grants when
/// Landlock or the filesystem view holds them, else what the user's file modes allow (everything
/// for uid 0; the home and the shared temporary directories otherwise). Without the view a
/// written file runs even where Landlock refuses `execve`: the dynamic loader maps it
/// (`ld.so DIR/payload`), which Landlock does not check; the view mounts write grants `noexec`.
fn writable(c: &Ctx<'_>) -> Vec<(PathBuf, bool)> {
    let (m, paths) = (c.mech, c.plan.paths());
    if m.landlock_fs || m.fs_view {
        return paths
            .iter()
            .filter(|(_, (a, _))| a.write)
            .map(|(p, (a, _))| (p.clone(), !m.fs_view || a.exec))
            .collect();
    }
    let id = c.plan.identity();
    match id.uid {
        0 => vec![(PathBuf::from("/"), true)],
        _ => [id.home.clone(), "/tmp".into(), "/var/tmp".into()].into_iter().map(|p| (p, true)).collect(),
    }
}

fn harmless(c: &Ctx<'_>, p: &Path) -> bool {
    c.data.harmless_devices.iter().any(|d| d == p)
}

fn secrets(c: &Ctx<'_>, name: &str) -> Finding {
    let Some(class) = c.data.secret(name) else {
        return Finding::NotApplicable(format!("no secret class `{name}` in the data"));
    };
    let id = c.plan.identity();
    if class.root_only && id.uid != 0 {
        return graded(&SECRET_NONE, format!("root's only; the server runs as uid {}", id.uid));
    }
    let Some(grants) = readable(c) else {
        return graded(&SECRET_READABLE, "no Landlock: every file the server's user may open");
    };
    let homes = Homes::of(c, grants.iter().map(|g| g.path));
    let mut names = GlobSetBuilder::new();
    for glob in class.names.iter().filter_map(|n| Glob::new(n).ok()) {
        names.add(glob);
    }
    let names = names.build().unwrap_or_default();
    let mut found = Vec::new();
    for g in grants.iter().filter(|g| !g.installation) {
        if let Some(p) = class.paths.iter().find(|p| homes.exposes(g.path, p)) {
            found.push(format!("{} (covers {p})", g.path.display()));
        } else if !class.names.is_empty() && user_directory(c, g.path) {
            found.push(format!("{} may hold {}", g.path.display(), list(&class.names, 2)));
        } else if g.path.file_name().is_some_and(|f| names.is_match(f)) {
            found.push(g.path.display().to_string());
        }
    }
    match found.is_empty() {
        true => graded(&SECRET_NONE, "no grant covers it"),
        false => graded(&SECRET_READABLE, list(found, 3)),
    }
}

/// A directory that may hold user data (not a system location, a device or an installation).
fn user_directory(c: &Ctx<'_>, p: &Path) -> bool {
    p.is_dir() && !c.data.is_system(p)
}

fn read_breadth(c: &Ctx<'_>) -> Finding {
    let Some(grants) = readable(c) else {
        return graded(&READ_ROOT, "no Landlock: every file the server's user may open");
    };
    let homes = Homes::of(c, grants.iter().map(|g| g.path));
    let user: Vec<&Grant<'_>> = grants.iter().filter(|g| !g.installation && !c.data.is_system(g.path)).collect();
    let show = |gs: Vec<&&Grant<'_>>| list(gs.iter().map(|g| g.path.display()), 4);
    let root: Vec<_> = user.iter().filter(|g| g.path == Path::new("/")).collect();
    let home: Vec<_> = user.iter().filter(|g| homes.holds_a_home(g.path)).collect();
    if !root.is_empty() {
        graded(&READ_ROOT, "/")
    } else if !home.is_empty() {
        graded(&READ_HOME, show(home))
    } else if !user.is_empty() {
        graded(&READ_SOME, show(user.iter().collect()))
    } else {
        graded(&READ_SYSTEM, "system locations and the runtime's installation")
    }
}

fn write_breadth(c: &Ctx<'_>) -> Finding {
    let written: Vec<PathBuf> = writable(c).into_iter().map(|(p, _)| p).filter(|p| !harmless(c, p)).collect();
    let homes = Homes::of(c, written.iter().map(PathBuf::as_path));
    let system: Vec<_> = written
        .iter()
        .filter(|p| p.as_path() == Path::new("/") || (c.data.is_system(p) && !p.starts_with("/dev")))
        .collect();
    let home: Vec<_> = written.iter().filter(|p| homes.holds_a_home(p)).collect();
    let show = |ps: Vec<&PathBuf>| list(ps.iter().map(|p| p.display()), 4);
    let how = if c.mech.landlock_fs || c.mech.fs_view { "" } else { " (no Landlock, no filesystem view)" };
    if !system.is_empty() {
        graded(&WRITE_SYSTEM, format!("{}{how}", show(system)))
    } else if !home.is_empty() {
        graded(&WRITE_HOME, format!("{}{how}", show(home)))
    } else if !written.is_empty() {
        graded(&WRITE_SOME, format!("{}{how}", show(written.iter().collect())))
    } else if !c.mech.fs_view {
        graded(&WRITE_METADATA, "no write grant, but no filesystem view: file metadata stays writable")
    } else {
        graded(&WRITE_NONE, "no write grant but harmless devices")
    }
}

fn persistence(c: &Ctx<'_>) -> Finding {
    let written: Vec<PathBuf> = writable(c).into_iter().map(|(p, _)| p).filter(|p| !harmless(c, p)).collect();
    let homes = Homes::of(c, written.iter().map(PathBuf::as_path));
    let login: Vec<String> = written
        .iter()
        .filter_map(|w| {
            let hit = c.data.persistence.login.iter().find(|pat| homes.exposes(w, pat))?;
            Some(format!("{} (covers {hit})", w.display()))
        })
        .collect();
    if !login.is_empty() {
        return graded(&PERSIST_LOGIN, list(login, 3));
    }
    let pseudo = |p: &Path| c.data.persistence.not_repositories.iter().any(|n| p.starts_with(n));
    let dirs: Vec<_> = written.iter().filter(|p| !pseudo(p) && (p.is_dir() || !p.exists())).collect();
    match dirs.is_empty() {
        true => graded(&PERSIST_NONE, "no writable directory"),
        false => graded(&PERSIST_GIT, list(dirs.iter().map(|p| p.display()), 3)),
    }
}

fn exec_writable(c: &Ctx<'_>) -> Finding {
    let runnable: Vec<PathBuf> =
        writable(c).into_iter().filter(|(p, x)| *x && !harmless(c, p)).map(|(p, _)| p).collect();
    if !runnable.is_empty() {
        let how =
            if c.mech.fs_view { "exec-granted" } else { "no filesystem view: the dynamic loader runs what is written" };
        return graded(&EXEC_WRITTEN, format!("{how}: {}", list(runnable.iter().map(|p| p.display()), 3)));
    }
    let memfd = syscalls::Sysno::memfd_create;
    if !c.mech.seccomp || !c.plan.syscalls().deny.contains(&memfd) {
        return graded(&EXEC_MEMFD, "memfd_create is not denied: code in an anonymous file runs through /proc/self/fd");
    }
    graded(&EXEC_NONE, "write grants are not executable (noexec in the filesystem view); memfd_create denied")
}

fn devices(c: &Ctx<'_>) -> Finding {
    let Some(grants) = readable(c) else {
        return graded(&DEV_ALL, "no Landlock: every device the server's user may open");
    };
    let all: Vec<_> = grants.iter().filter(|g| Path::new("/dev").starts_with(g.path)).collect();
    let some: Vec<_> = grants.iter().filter(|g| g.path.starts_with("/dev") && !harmless(c, g.path)).collect();
    if !all.is_empty() {
        graded(&DEV_ALL, list(all.iter().map(|g| g.path.display()), 2))
    } else if !some.is_empty() {
        graded(&DEV_SOME, list(some.iter().map(|g| g.path.display()), 4))
    } else {
        graded(&DEV_HARMLESS, "only harmless devices")
    }
}
