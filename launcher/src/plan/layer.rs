//! The protection layers a profile sets a requirement for, and where each one's requirement is
//! written in a profile's `[require]` section.

use crate::profile::{Level, Require};

/// The layers a profile sets a requirement for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Landlock,
    Seccomp,
    Limits,
    Network,
    PidNamespace,
    FsView,
    FsHide,
    Monitor,
    AuditLog,
}

/// A name that is not one of [`Layer::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layer `{0}` (one of: {names})", names = Layer::ALL.map(Layer::name).join(", "))]
pub struct UnknownLayer(pub String);

impl crate::error::Diagnose for UnknownLayer {}

impl Layer {
    pub const ALL: [Layer; 9] = [
        Layer::Landlock,
        Layer::Seccomp,
        Layer::Limits,
        Layer::Network,
        Layer::PidNamespace,
        Layer::FsView,
        Layer::FsHide,
        Layer::Monitor,
        Layer::AuditLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Limits => "limits",
            Layer::Network => "network",
            Layer::PidNamespace => "pid-namespace",
            Layer::FsView => "fs-view",
            Layer::FsHide => "fs-hide",
            Layer::Monitor => "monitor",
            Layer::AuditLog => "audit-log",
        }
    }

    /// The requirement when neither a profile nor `--require` sets one.
    pub fn default_level(self) -> Level {
        match self {
            Layer::PidNamespace | Layer::FsHide | Layer::Monitor => Level::BestEffort,
            _ => Level::Required,
        }
    }

    /// The level `r` sets for this layer, if any.
    pub fn required_by(self, r: &Require) -> Option<Level> {
        *self.requirement(&mut r.clone())
    }

    /// This layer's key in `[require]`.
    pub fn requirement(self, r: &mut Require) -> &mut Option<Level> {
        match self {
            Layer::Landlock => &mut r.landlock,
            Layer::Seccomp => &mut r.seccomp,
            Layer::Limits => &mut r.limits,
            Layer::Network => &mut r.network,
            Layer::PidNamespace => &mut r.pid_namespace,
            Layer::FsView => &mut r.fs_view,
            Layer::FsHide => &mut r.fs_hide,
            Layer::Monitor => &mut r.monitor,
            Layer::AuditLog => &mut r.audit_log,
        }
    }
}

impl std::str::FromStr for Layer {
    type Err = UnknownLayer;
    fn from_str(s: &str) -> Result<Self, UnknownLayer> {
        Layer::ALL.into_iter().find(|l| l.name() == s).ok_or_else(|| UnknownLayer(s.to_string()))
    }
}
