//! [`MemoryBudget`]: the broker-wide bound on the bytes of messages held in memory, shared
//! by every topic's log.
//!
//! Each log adds what it loads and subtracts what it lets go; the registry checks the
//! total before an append and makes room (cached copies first, then consumed messages)
//! or refuses the append.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of messages held in memory across all topics, and the bound on them.
#[derive(Debug, Default)]
pub(crate) struct MemoryBudget {
    limit: Option<u64>,
    used: AtomicU64,
    /// Appends refused because the budget was full.
    pub(crate) refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`None`: unbounded, only counted).
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// The bound, if any.
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more held.
    pub(crate) fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` let go.
    pub(crate) fn sub(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// How many bytes must go before `extra` more fit (0 when they fit or there is no
    /// bound).
    pub(crate) fn excess(&self, extra: u64) -> u64 {
        self.limit
            .map_or(0, |limit| (self.used() + extra).saturating_sub(limit))
    }
}
