//! Where a path lives, whatever it is called: the filesystem (its device) and the path inside it,
//! from this mount namespace's mount table (`/proc/self/mountinfo`, parsed by procfs-core). Two
//! names for one directory, a bind mount or a second mount of the same filesystem, are one place.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use procfs_core::process::MountInfo;

/// The mount table: each mount's point, the directory of its filesystem it shows there, and the
/// filesystem's device, in the order the kernel lists them (a mount over another comes later).
#[derive(Debug, Default)]
pub struct Mounts(Vec<Mount>);

#[derive(Debug)]
struct Mount {
    point: PathBuf,
    root: PathBuf,
    dev: String,
}

/// A place in a filesystem: its device (`major:minor`) and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    dev: String,
    inner: PathBuf,
}

impl Place {
    /// Is this place `other`, or below it, in the same filesystem?
    pub fn within(&self, other: &Place) -> bool {
        self.dev == other.dev && self.inner.starts_with(&other.inner)
    }
}

impl Mounts {
    /// This process's mount table (empty if it cannot be read: every place is then unknown).
    pub fn of_this_process() -> Mounts {
        Mounts::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    pub fn parse(mountinfo: &str) -> Mounts {
        let mount = |m: MountInfo| Mount {
            point: unescape(m.mount_point.as_os_str()),
            root: unescape(OsStr::new(&m.root)),
            dev: m.majmin,
        };
        Mounts(mountinfo.lines().filter_map(|l| MountInfo::from_line(l).ok()).map(mount).collect())
    }

    /// Where the absolute, symlink-free `path` lives: in the topmost of the mounts whose point is
    /// the longest prefix of it.
    pub fn place(&self, path: &Path) -> Option<Place> {
        let (_, m) = (self.0.iter().enumerate())
            .filter(|(_, m)| path.starts_with(&m.point))
            .max_by_key(|(i, m)| (m.point.components().count(), *i))?;
        let rest = path.strip_prefix(&m.point).ok()?;
        Some(Place {
            dev: m.dev.clone(),
            inner: if rest.as_os_str().is_empty() { m.root.clone() } else { m.root.join(rest) },
        })
    }

    /// Every place reached under the directory `dir`: its own, and the root of each mount beneath it.
    pub fn places_under(&self, dir: &Path) -> Vec<Place> {
        let beneath = (self.0.iter())
            .filter(|m| m.point.starts_with(dir) && m.point != dir)
            .map(|m| Place { dev: m.dev.clone(), inner: m.root.clone() });
        self.place(dir).into_iter().chain(beneath).collect()
    }
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal and every other
/// byte (UTF-8 included) as it is; procfs-core leaves the escapes in, so they are undone here,
/// byte by byte.
pub fn unescape(s: &OsStr) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.map(|d| d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'))).and_then(|v| u8::try_from(v).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 8:1 /home/u/cfg /home/u/alias rw - ext4 /dev/sda1 rw
31 22 8:1 /home/u/cfg /home/u/proj/sub rw - ext4 /dev/sda1 rw
32 22 0:40 / /tmp rw - tmpfs tmpfs rw
";

    #[test]
    fn a_directory_is_one_place_by_every_name() {
        let m = Mounts::parse(TABLE);
        let cfg = m.place(Path::new("/home/u/cfg/p.toml")).unwrap();
        // a bind mount of cfg, as a grant, holds cfg's files
        assert!(m.places_under(Path::new("/home/u/alias")).iter().any(|g| cfg.within(g)));
        // a grant holding a mount of cfg holds them too
        assert!(m.places_under(Path::new("/home/u/proj")).iter().any(|g| cfg.within(g)));
        // control: another directory, another filesystem
        assert!(!m.places_under(Path::new("/home/u/other")).iter().any(|g| cfg.within(g)));
        assert!(!m.places_under(Path::new("/tmp")).iter().any(|g| cfg.within(g)));
        assert_eq!(m.place(Path::new("/tmp/x")), Some(Place { dev: "0:40".into(), inner: "/x".into() }));
    }

    #[test]
    fn escaped_paths_round_trip() {
        assert_eq!(unescape(OsStr::new("/a\\040b")), Path::new("/a b"));
        assert_eq!(unescape(OsStr::new("/plain\\09")), Path::new("/plain\\09"), "not an escape");
        assert_eq!(unescape(OsStr::new("/x\\777")), Path::new("/x\\777"), "not a byte");
    }
}
