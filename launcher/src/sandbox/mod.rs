//! The hardening layers and stage 2, the single-threaded process that applies them in order and
//! then executes the server.

pub mod landlock;
pub mod seccomp;
pub mod stage2;
