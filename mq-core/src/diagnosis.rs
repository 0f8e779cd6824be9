//! [`GroupInfo::diagnose`]: one line in plain words saying why a group is (or is not)
//! getting messages, from the group's state and what the consumers' host (a server: their
//! connections) knows of them.

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Timestamp;
use crate::config::AckMode;
use crate::consumer_id::ConsumerId;
use crate::stats::{ConsumerInfo, GroupInfo};

/// What the host of a consumer knows of it beyond the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFacts {
    /// How to name where it is attached (a server says "connection 7 (10.0.0.5:41234)").
    pub place: String,
    /// For an auto-ack consumer: how many more messages its client accepts now.
    pub credits: Option<u64>,
    /// Whether nothing more can be sent to it: its client stopped reading.
    pub stopped_reading: bool,
}

fn span(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl GroupInfo {
    /// Why the group is or is not getting messages at `now`; `facts` says what the host
    /// knows of each consumer (`None`: a consumer in this process).
    pub fn diagnose(
        &self,
        now: Timestamp,
        facts: impl Fn(ConsumerId) -> Option<ConsumerFacts>,
    ) -> String {
        let stats = &self.stats;
        let name = |id: ConsumerId| match facts(id) {
            Some(f) => format!("consumer {} on {}", id.0, f.place),
            None => format!("consumer {} in this process", id.0),
        };
        if self.consumers.is_empty() {
            return if stats.pending > 0 {
                format!(
                    "no consumer is attached: {} waiting",
                    plural(stats.pending, "message", "messages")
                )
            } else {
                "no consumer is attached, and nothing waits".to_owned()
            };
        }
        let holder = match (self.exclusive, facts(self.consumers[0].id)) {
            (false, _) => String::new(),
            (true, Some(f)) => format!("the group is exclusive and held by {}: ", f.place),
            (true, None) => {
                "the group is exclusive and held by a consumer in this process: ".to_owned()
            }
        };
        if stats.pending == 0 && stats.in_flight == 0 {
            let mut line = format!(
                "{holder}the topic has nothing new: the group has everything up to offset {}",
                self.next_offset.get()
            );
            if stats.delivered == 0
                && self.first_offset.get() > 0
                && self.start <= self.first_offset
            {
                line.push_str(&format!(
                    "; messages before offset {} were deleted once the other groups had acked \
                     them (retain_consumed is {}: raise it to keep them for new groups)",
                    self.first_offset.get(),
                    span(Duration::from_millis(self.retain_consumed_ms))
                ));
            }
            return line;
        }
        if let Some(stopped) = self
            .consumers
            .iter()
            .find(|c| facts(c.id).is_some_and(|f| f.stopped_reading))
        {
            return format!(
                "{holder}{} stopped reading: nothing more can be sent to it until it reads",
                name(stopped.id)
            );
        }
        let at_window = |c: &ConsumerInfo| match self.ack {
            AckMode::Manual => c.in_flight >= c.prefetch,
            AckMode::Auto => facts(c.id).is_some_and(|f| f.credits == Some(0)),
        };
        if stats.pending > 0 && self.consumers.iter().all(at_window) {
            let oldest = self
                .consumers
                .iter()
                .flat_map(|c| c.oldest_unacked.iter().map(move |u| (u, c.id)))
                .min_by_key(|(u, _)| (u.since, u.offset));
            let detail = match oldest {
                Some((u, id)) => format!(
                    ": {} un-acked, the oldest (offset {}) delivered {} ago to {}; ack or nack \
                     them, or raise the prefetch",
                    plural(stats.in_flight, "delivery", "deliveries"),
                    u.offset.get(),
                    span(now.since(u.since)),
                    name(id)
                ),
                None => ": the clients have granted no more credits".to_owned(),
            };
            return format!(
                "{holder}every consumer is at its prefetch window with {} waiting{detail}",
                plural(stats.pending, "message", "messages")
            );
        }
        if let Some(due) = self.next_delayed
            && stats.in_flight == 0
        {
            let when = UNIX_EPOCH + Duration::from_millis(due.as_millis());
            return format!(
                "{holder}messages wait for a nack delay until {} ({} from now)",
                humantime::format_rfc3339_seconds(when),
                span(due.since(now))
            );
        }
        let last = self
            .consumers
            .iter()
            .filter_map(|c| c.last_delivery)
            .max()
            .map(|t| format!(", last delivery {} ago", span(now.since(t))))
            .unwrap_or_default();
        format!(
            "{holder}consuming: {} waiting, {} in flight{last}",
            stats.pending, stats.in_flight
        )
    }
}
