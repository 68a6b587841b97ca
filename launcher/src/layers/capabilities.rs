//! Capabilities in stage 2: dropping the bounding set and clearing the ambient, inheritable,
//! effective and permitted sets. The calls go through rustix, which returns the kernel's errno
//! (the `caps` crate folds it into a message string).

use rustix::io::Errno;
use rustix::thread::{self, CapabilitySet, CapabilitySets};

/// Can this process drop capabilities from its bounding set (`CAP_SETPCAP` effective)? Without
/// it (an unprivileged launcher without a user namespace) the bounding set is inert anyway: there
/// are no capabilities to keep and no_new_privs stops file capabilities on exec.
pub fn can_drop_bounding_set() -> bool {
    thread::capabilities(None).is_ok_and(|sets| sets.effective.contains(CapabilitySet::SETPCAP))
}

/// Drops every capability the kernel knows from the bounding set, including ones newer than this
/// build: capability numbers are probed upwards until the kernel says `EINVAL` (past
/// `CAP_LAST_CAP`).
pub fn drop_bounding_set() -> Result<(), Errno> {
    for bit in 0..u64::BITS {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        match thread::capability_is_in_bounding_set(cap) {
            Ok(true) => thread::remove_capability_from_bounding_set(cap)?,
            Ok(false) => {}
            Err(Errno::INVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Empties the ambient set, then the inheritable, effective and permitted sets. Ambient first:
/// it can never exceed permitted and inheritable, and clearing it needs no privilege.
pub fn clear_all() -> Result<(), Errno> {
    thread::clear_ambient_capability_set()?;
    let none = CapabilitySet::empty();
    thread::set_capabilities(None, CapabilitySets { effective: none, permitted: none, inheritable: none })
}
