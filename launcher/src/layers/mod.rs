//! The protections, one file each. The supervisor prepares them (fallible work, before the fork);
//! stage 2 applies them in order.

pub mod broker;
pub mod cgroup;
pub mod fs_view;
pub mod landlock;
pub mod private_tmp;
pub mod seccomp;
