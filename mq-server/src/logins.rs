//! [`Logins`]: failed handshakes per address — each one logged with the peer's address, and
//! answered later and later after repeated failures, so that guessing a token is slow while
//! a client with the right token is never held up, whatever its address.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures from one address answered at once; later ones wait.
const FREE_FAILURES: u32 = 3;
/// The wait after the first failure past the free ones; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address whose last failure is older than this starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Most addresses remembered; beyond, the oldest are forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Failed logins by address.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The address part of a peer (`ip:port`), what failures are counted by.
fn address(peer: &str) -> &str {
    peer.rsplit_once(':').map_or(peer, |(host, _)| host)
}

impl Logins {
    /// Records a failed login from `peer`; returns how long to wait before answering it.
    pub(crate) fn failed(&self, peer: &str) -> Duration {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= MAX_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(address(peer).to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let excess = entry.0.saturating_sub(FREE_FAILURES);
        if excess == 0 {
            return Duration::ZERO;
        }
        FIRST_DELAY
            .saturating_mul(1 << (excess - 1).min(16))
            .min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_failures_and_are_per_address() {
        let logins = Logins::default();
        let waits: Vec<Duration> = (0..6).map(|_| logins.failed("10.0.0.1:5000")).collect();
        assert_eq!(waits[..3], [Duration::ZERO; 3]);
        assert_eq!(waits[3], FIRST_DELAY);
        assert_eq!(waits[4], FIRST_DELAY * 2);
        assert_eq!(waits[5], FIRST_DELAY * 4);
        assert_eq!(logins.failed("10.0.0.2:5000"), Duration::ZERO);
        for _ in 0..30 {
            logins.failed("10.0.0.3:1");
        }
        assert_eq!(logins.failed("10.0.0.3:1"), MAX_DELAY);
    }
}
