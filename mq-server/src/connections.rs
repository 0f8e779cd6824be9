//! [`Connections`]: how many connections the server holds open, for broker stats.

use std::sync::atomic::{AtomicU64, Ordering};

/// A count of open connections.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: AtomicU64,
}

impl Connections {
    /// Counts a connection until the returned guard is dropped.
    pub(crate) fn open(&self) -> Opened<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        Opened(self)
    }

    /// Connections open now.
    pub(crate) fn current(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// Keeps one connection counted.
pub(crate) struct Opened<'a>(&'a Connections);

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
