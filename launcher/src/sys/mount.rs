//! `mount_setattr(2)`, the one call of the new mount API that rustix does not wrap yet: it changes
//! the flags of a whole mount tree at once (`AT_RECURSIVE`), which the old `MS_REMOUNT|MS_BIND`
//! cannot (it ignores `MS_REC` and misses the lower of stacked mounts).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_*` (linux/mount.h).
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;

/// `struct mount_attr`, `MOUNT_ATTR_SIZE_VER0`.
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Adds the attributes `set` to the mount at `path` (relative to `dir`, or the current directory)
/// and, with `recursive`, to every mount beneath it. Nothing is cleared: inside a user namespace
/// the flags a more privileged namespace set are locked, and clearing them would fail.
pub fn add_mount_attributes(dir: Option<BorrowedFd<'_>>, path: &CStr, recursive: bool, set: u64) -> io::Result<()> {
    let attr = MountAttr { attr_set: set, ..MountAttr::default() };
    let mut flags = if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is a valid NUL-terminated string and `attr` a live, initialised
    // `struct mount_attr` whose exact size is passed; the kernel only reads both during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
