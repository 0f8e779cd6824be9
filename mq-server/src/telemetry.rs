//! [`Telemetry`]: what the server counts beyond the broker's own stats — traffic, errors
//! by code, how long publishes take to be answered — for `/metrics`. Each count is taken
//! once per frame or request, never per message.

use std::time::Duration;

use mq_transport::{ErrorCode, Traffic};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The label set of a count by error code.
pub(crate) type CodeLabel = [(&'static str, &'static str); 1];

/// Upper bounds of the publish latency buckets, in seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// The server's own counters.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    /// Frames and bytes of every protocol connection.
    pub(crate) traffic: Traffic,
    /// Error frames sent, by code.
    pub(crate) errors: Family<CodeLabel, Counter>,
    /// From a Publish read to its reply queued.
    pub(crate) publish_latency: Histogram,
}

impl Telemetry {
    /// Counters at zero.
    pub(crate) fn new(traffic: Traffic) -> Self {
        Self {
            traffic,
            errors: Family::default(),
            publish_latency: Histogram::new(LATENCY_BUCKETS),
        }
    }

    /// Counts an error frame.
    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors.get_or_create(&[("code", code.name())]).inc();
    }

    /// Counts how long a publish took to be answered.
    pub(crate) fn published(&self, took: Duration) {
        self.publish_latency.observe(took.as_secs_f64());
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new(Traffic::default())
    }
}
