//! [`Failure`]: the first failure of a producer's publishes that nobody waited for, kept
//! until a `flush` (or the next `publish`) reports it. Checking it costs one atomic load
//! while there is none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::ClientError;

/// A producer's unreported failure, shared by its handles and its batcher.
#[derive(Debug, Default)]
pub(super) struct Failure {
    /// Whether `error` holds one (read without the lock).
    set: AtomicBool,
    error: Mutex<Option<ClientError>>,
}

impl Failure {
    /// Keeps `e` unless a failure is already kept.
    pub(super) fn keep(&self, e: ClientError) {
        let mut error = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        error.get_or_insert(e);
        self.set.store(true, Ordering::Release);
    }

    /// The kept failure, now reported (`None` when there is none).
    pub(super) fn take(&self) -> Option<ClientError> {
        if !self.set.load(Ordering::Acquire) {
            return None;
        }
        let mut error = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        self.set.store(false, Ordering::Release);
        error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_reported_once() {
        let failure = Failure::default();
        assert!(failure.take().is_none());
        failure.keep(ClientError::closed());
        failure.keep(ClientError::NoRuntime { what: "second" });
        let first = failure.take().map(|e| e.to_string());
        assert_eq!(first, Some(ClientError::closed().to_string()));
        assert!(failure.take().is_none());
    }
}
