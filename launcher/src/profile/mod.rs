//! Profiles: the TOML model, its loading (files, embedded names, `extends`) and its validation.
//!
//! A profile says what a server may do; it is host-independent. Resolving it against the command
//! line and the host into something to enforce is the job of [`crate::plan`].

mod embedded;
pub mod load;
mod model;
pub mod vars;

pub use embedded::{EMBEDDED, embedded};
pub use load::{LoadedProfile, ProfileError, load, load_source};
pub use model::*;
