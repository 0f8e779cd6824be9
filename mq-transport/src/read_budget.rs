//! [`ReadBudget`]: one pool of memory for the partially received frames of every connection.
//!
//! A frame's bytes are charged as they arrive, never when its length is announced, so a
//! client that announces a large frame and sends little costs little. Frames that fit in a
//! connection's first read buffer are not charged at all (that buffer is per connection
//! and bounded by the connection limit). When the pool is empty, the connection that needs
//! more is refused ([`CodecError::ReadBudgetExhausted`](crate::CodecError)) and closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Partial frames up to this many bytes are not charged: a connection's first read buffer
/// holds them.
pub const UNCHARGED_BYTES: usize = 64 * 1024;

/// A broker-wide pool of bytes for partially received frames; clones share the pool.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl Default for ReadBudget {
    /// No limit.
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl ReadBudget {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The size of the pool.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now, across all connections.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `more` bytes if the pool has them.
    fn take(&self, more: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one connection has charged for the frame it is receiving; given back when the
/// frame is complete or the connection goes.
#[derive(Debug, Default)]
pub(crate) struct Charge {
    budget: ReadBudget,
    charged: usize,
}

impl Charge {
    /// A charge against `budget`.
    pub(crate) fn new(budget: ReadBudget) -> Self {
        Self { budget, charged: 0 }
    }

    /// Makes the charge cover `received` bytes of a partial frame; false when the pool has
    /// not got them.
    pub(crate) fn cover(&mut self, received: usize) -> bool {
        if received <= UNCHARGED_BYTES || received <= self.charged {
            return true;
        }
        let more = received - self.charged;
        if !self.budget.take(more) {
            return false;
        }
        self.charged = received;
        true
    }

    /// Gives everything back (the frame is complete).
    pub(crate) fn release(&mut self) {
        if self.charged > 0 {
            self.budget.give_back(self.charged);
            self.charged = 0;
        }
    }

    /// The pool charged.
    pub(crate) fn budget(&self) -> &ReadBudget {
        &self.budget
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_what_arrives_and_gives_it_back() {
        let budget = ReadBudget::new(200 * 1024);
        let mut a = Charge::new(budget.clone());
        let mut b = Charge::new(budget.clone());
        assert!(a.cover(1000), "small partial frames are free");
        assert_eq!(budget.used(), 0);
        assert!(a.cover(150 * 1024));
        assert_eq!(budget.used(), 150 * 1024);
        assert!(!b.cover(100 * 1024), "the pool is shared");
        assert!(b.cover(50 * 1024));
        a.release();
        assert_eq!(budget.used(), 0);
        assert!(b.cover(100 * 1024));
        drop(b);
        assert_eq!(
            budget.used(),
            0,
            "a closed connection gives its charge back"
        );
    }
}
