//! [`Timings`]: a histogram of durations (how long fsyncs take), counted with atomics so
//! that recording costs no lock; [`TimingsSnapshot`] is what a reader sees.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 50 µs to 10 s.
const BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    10_000_000,
];

/// A histogram of durations.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    buckets: [AtomicU64; BOUNDS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Timings {
    /// Counts one duration.
    pub(crate) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BOUNDS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub(crate) fn snapshot(&self) -> TimingsSnapshot {
        let mut cumulative = 0;
        let buckets = BOUNDS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (Duration::from_micros(bound), cumulative)
            })
            .collect();
        TimingsSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram of durations as counted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingsSnapshot {
    /// `(upper bound, how many took at most that)`, bounds increasing; the counts are
    /// cumulative.
    pub buckets: Vec<(Duration, u64)>,
    /// How many were counted (including those over the last bound).
    pub count: u64,
    /// Their total duration.
    pub sum: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_cumulative_buckets() {
        let t = Timings::default();
        t.record(Duration::from_micros(40));
        t.record(Duration::from_millis(3));
        t.record(Duration::from_secs(20));
        let s = t.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (Duration::from_micros(50), 1));
        assert_eq!(s.buckets[6], (Duration::from_millis(5), 2));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(2));
        assert_eq!(s.sum, Duration::from_micros(20_003_040));
    }
}
