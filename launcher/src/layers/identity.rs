//! The server's identity: supplementary groups, gid and uid, switched in stage 2 when the
//! launcher runs as root and the profile names a user.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};

/// Becomes `uid`/`gid` (real, effective and saved) with `gid` as the only supplementary group.
/// Groups first, then the gid, then the uid: after `setresuid` the process could change neither.
/// The errno is the failing call's.
pub fn switch_to(uid: u32, gid: u32) -> Result<(), Errno> {
    let gid = Gid::from_raw(gid);
    setgroups(&[gid])?;
    setresgid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    setresuid(uid, uid, uid)
}
