//! A bound on work done at once (a thread each): a call enters while there is room, and its slot
//! is given back when its ticket is dropped, on every path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` tickets out at once.
#[derive(Debug)]
pub struct Gate {
    taken: AtomicUsize,
    max: usize,
}

/// One slot of a [`Gate`], given back when dropped.
#[derive(Debug)]
pub struct Ticket(Arc<Gate>);

impl Gate {
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate { taken: AtomicUsize::new(0), max })
    }

    /// A ticket, or `None` when `max` are out.
    pub fn enter(self: &Arc<Gate>) -> Option<Ticket> {
        if self.taken.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket(Arc::clone(self)))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_bounded_and_given_back() {
        let gate = Gate::new(2);
        let (a, b) = (gate.enter(), gate.enter());
        assert!(a.is_some() && b.is_some());
        assert!(gate.enter().is_none());
        drop(a);
        assert!(gate.enter().is_some());
    }
}
