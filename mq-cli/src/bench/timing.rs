//! What the latency workloads share: a thread that paces sends finer than tokio's timer,
//! and the histogram their latencies go into.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::BenchResult;

/// A histogram of latencies in microseconds, from 1 µs to a minute.
pub(crate) fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Nanoseconds from `base` to now: what a paced body carries in its first 8 bytes.
fn stamp(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Records the latency of a body stamped by [`pace`] that arrived now.
pub(crate) fn record_arrival(
    histogram: &mut Histogram<u64>,
    base: Instant,
    body: &[u8],
) -> anyhow::Result<()> {
    let sent = u64::from_be_bytes(body[..8].try_into()?);
    histogram.saturating_record(stamp(base).saturating_sub(sent) / 1000);
    Ok(())
}

/// On the calling thread: `n` times, at `rate` per second from `start`, stamps a body of
/// `size` bytes (at least 8) with [`stamp`] and hands it to `send`. A thread, because
/// tokio's timer ticks in milliseconds, too coarse for 10,000 messages per second.
pub(crate) fn pace(
    n: u64,
    rate: u64,
    size: usize,
    (start, base): (Instant, Instant),
    mut send: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut body = vec![0x61u8; size.max(8)];
    for i in 0..n {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        body[..8].copy_from_slice(&stamp(base).to_be_bytes());
        send(&body)?;
    }
    Ok(())
}

impl BenchResult {
    /// The result with the percentiles of `histogram`.
    pub(crate) fn with_percentiles(mut self, histogram: &Histogram<u64>) -> Self {
        self.p50_us = Some(histogram.value_at_quantile(0.50) as f64);
        self.p99_us = Some(histogram.value_at_quantile(0.99) as f64);
        self.p999_us = Some(histogram.value_at_quantile(0.999) as f64);
        self
    }
}
