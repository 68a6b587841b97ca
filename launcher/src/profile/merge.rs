//! How two layers of configuration combine: a base (a profile's `extends`, or the profile under
//! the command line) and the layer over it. One rule, stated once, used by `extends` and by the
//! command-line grants (uv's `Combine`):
//! - a single value: the layer over it wins when it sets one (`Option`);
//! - a list: the base's entries, then the layer's (grants add up);
//! - a table (`environment.set`, `mcp.rate-limits`): entry by entry, the layer over it wins;
//! - a section: field by field, by these rules ([`layer!`] lists the fields).

use std::collections::BTreeMap;

/// Combines a base with the layer `over` it.
pub trait Merge {
    fn merge(self, over: Self) -> Self;
}

impl<T: Merge> Merge for Option<T> {
    fn merge(self, over: Self) -> Self {
        match (self, over) {
            (Some(base), Some(over)) => Some(base.merge(over)),
            (base, over) => over.or(base),
        }
    }
}

impl<T> Merge for Vec<T> {
    fn merge(mut self, over: Self) -> Self {
        self.extend(over);
        self
    }
}

impl<K: Ord, V> Merge for BTreeMap<K, V> {
    fn merge(mut self, over: Self) -> Self {
        self.extend(over);
        self
    }
}

/// Single values: the layer over the base replaces it.
macro_rules! replaced {
    ($($ty:ty),*) => {
        $(impl $crate::profile::merge::Merge for $ty {
            fn merge(self, over: Self) -> Self {
                over
            }
        })*
    };
}
replaced!(bool, u16, u64, usize, String);
pub(crate) use replaced;

/// Implements [`Merge`] and [`Locate`](super::origin::Locate) for a profile section, field by
/// field. The field list is a complete destructuring pattern: a field added to the section and
/// not listed here does not compile.
macro_rules! layer {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $crate::profile::merge::Merge for $ty {
            fn merge(self, over: Self) -> Self {
                let $ty { $($field),* } = self;
                $ty { $($field: $crate::profile::merge::Merge::merge($field, over.$field)),* }
            }
        }

        impl $crate::profile::origin::Locate for $ty {
            fn locate(&mut self, at: &dyn Fn(&std::ops::Range<usize>) -> String) {
                let $ty { $($field),* } = self;
                $($crate::profile::origin::Locate::locate($field, at);)*
            }
        }
    };
}
pub(crate) use layer;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_replaced_lists_add_up_tables_merge_by_key() {
        assert_eq!(Some(1u64).merge(None), Some(1));
        assert_eq!(Some(1u64).merge(Some(2)), Some(2));
        assert_eq!(None::<u64>.merge(Some(2)), Some(2));
        assert_eq!(vec![1u16, 2].merge(vec![3]), vec![1, 2, 3]);
        let base: BTreeMap<&str, u64> = [("a", 1), ("b", 2)].into();
        let over: BTreeMap<&str, u64> = [("b", 3), ("c", 4)].into();
        assert_eq!(base.merge(over), [("a", 1), ("b", 3), ("c", 4)].into());
    }
}
