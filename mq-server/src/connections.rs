//! [`Connections`]: how many connections the server holds open, has opened and has
//! refused, for broker stats and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of connections.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: AtomicU64,
    opened: AtomicU64,
    refused: AtomicU64,
}

impl Connections {
    /// Counts a connection until the returned guard is dropped; the guard holds the
    /// connection's number (1 for the first since start).
    pub(crate) fn open(&self) -> Opened<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        let number = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        Opened(self, number)
    }

    /// Counts a connection refused (at the connection limit, or out of descriptors).
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub(crate) fn current(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections opened since start.
    pub(crate) fn total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connections refused since start.
    pub(crate) fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Keeps one connection counted; holds its number.
pub(crate) struct Opened<'a>(&'a Connections, pub(crate) u64);

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
