//! Resource limits: stage 2 sets the supervisor's list (`CORE=0` always, then the profile's
//! open files, processes, memory, file size and CPU time), each with soft = hard.

use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};

/// Sets every limit, soft and hard alike, so the server cannot raise them back; stops at the
/// first one the kernel refuses and returns its errno (e.g. `EPERM` when a hard limit would be
/// raised without `CAP_SYS_RESOURCE`).
pub fn set_all(limits: &[(Resource, u64)]) -> Result<(), Errno> {
    limits.iter().try_for_each(|&(resource, value)| setrlimit(resource, value, value))
}
