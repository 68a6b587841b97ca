//! The protections, one file each. The supervisor prepares them (fallible work, before the fork);
//! stage 2 applies them in order.

pub mod broker;
pub mod capabilities;
pub mod cgroup;
pub mod fs_hide;
pub mod fs_view;
pub mod identity;
pub mod landlock;
pub mod namespaces;
pub mod private_tmp;
pub mod refused_call;
pub mod rlimits;
pub mod seccomp;
