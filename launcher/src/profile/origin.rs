//! Where each profile value came from: a place in a profile file, a command-line flag, or the
//! server's runtime. `explain` prints it next to every grant and errors name it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::Runtime;

/// The place a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Bytes of the file being parsed. Loading replaces it with [`Origin::File`] as soon as the
    /// file is known (see [`Locate`]); a merged profile holds no spans.
    Span(Range<usize>),
    /// `file:line:column` in a profile.
    File(String),
    /// A command-line flag (`--allow-read`).
    Flag(&'static str),
    /// Granted because the profile names the server's runtime: its own installation.
    Runtime(Runtime),
}

impl Origin {
    /// The flag, for a value given on the command line.
    pub fn flag(&self) -> Option<&'static str> {
        match self {
            Origin::Flag(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Span(r) => write!(f, "bytes {}..{}", r.start, r.end),
            Origin::File(at) => f.write_str(at),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Runtime(r) => write!(f, "runtime = {r:?} (its installation)"),
        }
    }
}

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    /// A value given with a command-line flag.
    pub fn flag(flag: &'static str, value: T) -> Self {
        Sourced { value, origin: Origin::Flag(flag) }
    }

    /// Its bytes in the file being parsed (before [`Locate`] ran).
    pub fn span(&self) -> Option<Range<usize>> {
        match &self.origin {
            Origin::Span(r) => Some(r.clone()),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sourced<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<T>::deserialize(d)?;
        Ok(Sourced { origin: Origin::Span(spanned.span()), value: spanned.into_inner() })
    }
}

/// The value alone (for the defaults of the JSON schema).
impl<T: Serialize> Serialize for Sourced<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Turns the spans of a parsed file into `file:line:column` origins (`at` knows the file).
pub trait Locate {
    fn locate(&mut self, at: &dyn Fn(&Range<usize>) -> String);
}

impl<T> Locate for Sourced<T> {
    fn locate(&mut self, at: &dyn Fn(&Range<usize>) -> String) {
        if let Origin::Span(span) = &self.origin {
            self.origin = Origin::File(at(span));
        }
    }
}

impl<T: Locate> Locate for Vec<T> {
    fn locate(&mut self, at: &dyn Fn(&Range<usize>) -> String) {
        self.iter_mut().for_each(|v| v.locate(at));
    }
}

impl<T: Locate> Locate for Option<T> {
    fn locate(&mut self, at: &dyn Fn(&Range<usize>) -> String) {
        if let Some(v) = self {
            v.locate(at);
        }
    }
}

impl<K, V: Locate> Locate for BTreeMap<K, V> {
    fn locate(&mut self, at: &dyn Fn(&Range<usize>) -> String) {
        self.values_mut().for_each(|v| v.locate(at));
    }
}

/// Values that carry no origin of their own.
macro_rules! no_origin {
    ($($ty:ty),*) => {
        $(impl $crate::profile::origin::Locate for $ty {
            fn locate(&mut self, _: &dyn Fn(&std::ops::Range<usize>) -> String) {}
        })*
    };
}
no_origin!(bool, u16, u64, usize, String);
pub(crate) use no_origin;
