//! Profiles: the TOML model, its loading (files, embedded names, `extends`) and its validation.
//!
//! A profile says what a server may do; it is host-independent. Resolving it against the command
//! line and the host into something to enforce is the job of [`crate::plan`].

mod embedded;
pub mod load;
pub mod merge;
mod model;
pub mod origin;
mod values;
pub mod vars;

pub use embedded::{EMBEDDED, embedded};
pub use ipnet::IpNet;
pub use load::{LoadedProfile, ProfileError, load, load_source};
pub use merge::Merge;
pub use model::*;
pub use origin::{Origin, Sourced};
pub use values::{Endpoint, EndpointError, NetDisplay, NetError, Size, SizeError, parse_net};
