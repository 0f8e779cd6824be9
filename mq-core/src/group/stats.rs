//! A group's counters: what is pending, in flight, delivered, acked and dead-lettered.

use std::time::Duration;

use super::{Group, InFlight};
use crate::clock::Timestamp;
use crate::config::AckMode;
use crate::log::Log;
use crate::message::Offset;
use crate::stats::{ConsumerInfo, GroupStats, Unacked};

/// What [`Group::info`] knows beyond the counters.
pub(crate) struct GroupDetail {
    pub(crate) ack: AckMode,
    pub(crate) exclusive: bool,
    pub(crate) ack_timeout: Duration,
    pub(crate) start: Offset,
    pub(crate) next_delayed: Option<Timestamp>,
    pub(crate) consumers: Vec<ConsumerInfo>,
}

impl Group {
    /// Messages waiting for this group: never delivered, or due for redelivery.
    pub(crate) fn pending(&self, log: &Log) -> u64 {
        self.lag(log) + self.redeliver.len() as u64 + self.delayed.len() as u64
    }

    /// Messages this group has never been handed.
    pub(crate) fn lag(&self, log: &Log) -> u64 {
        let cursor_at = |p: u8| {
            let level = log.level(p);
            self.cursor(p)
                .max(level.start())
                .max(level.seq_at_or_after(self.min_offset.max(self.acks.floor())))
        };
        let fresh: u64 = log
            .active()
            .iter()
            .map(|&p| log.level(p).end().saturating_sub(cursor_at(p)))
            .sum();
        // Offsets acked out of order before a restart are still ahead of the cursors.
        let acked_ahead = self
            .acks
            .above_floor()
            .filter(|&o| {
                log.priority_of(o).is_some_and(|p| {
                    let level = log.level(p);
                    let at = cursor_at(p);
                    at < level.end() && level.offset_at(at) <= o
                })
            })
            .count() as u64;
        fresh.saturating_sub(acked_ahead)
    }

    /// When the oldest message waiting for this group (never delivered, or due for
    /// redelivery) was published.
    pub(crate) fn oldest_pending(&self, log: &Log) -> Option<crate::clock::Timestamp> {
        let floor = self.min_offset.max(self.acks.floor());
        let fresh = log.active().iter().filter_map(|&p| {
            let level = log.level(p);
            let mut seq = self
                .cursor(p)
                .max(level.start())
                .max(level.seq_at_or_after(floor));
            while seq < level.end() && self.acks.contains(level.offset_at(seq)) {
                seq += 1;
            }
            (seq < level.end()).then(|| level.offset_at(seq))
        });
        let again = self.redeliver.keys().map(|&(_, offset)| offset);
        let delayed = self.delayed.keys().map(|&(_, offset)| offset);
        fresh
            .chain(again)
            .chain(delayed)
            .filter_map(|offset| log.timestamp_of(offset))
            .min()
    }

    /// The group in detail over `log`: counters, settings and consumers.
    pub(crate) fn info(&self, log: &Log) -> (GroupStats, GroupDetail) {
        let since = |f: &InFlight| {
            Timestamp::from_millis(f.deadline.as_millis().saturating_sub(
                u64::try_from(self.settings.ack_timeout.as_millis()).unwrap_or(u64::MAX),
            ))
        };
        let consumers = self
            .consumers
            .iter()
            .map(|c| {
                let mut unacked: Vec<Unacked> = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.consumer == c.id)
                    .map(|(&offset, f)| Unacked {
                        offset,
                        since: since(f),
                    })
                    .collect();
                unacked.sort_by_key(|u| (u.since, u.offset));
                unacked.truncate(5);
                ConsumerInfo {
                    id: c.id,
                    prefetch: c.prefetch,
                    in_flight: c.in_flight,
                    last_delivery: c.last_delivery,
                    last_ack: c.last_ack,
                    oldest_unacked: unacked,
                }
            })
            .collect();
        let detail = GroupDetail {
            ack: self.settings.ack,
            exclusive: self.exclusive && !self.consumers.is_empty(),
            ack_timeout: self.settings.ack_timeout,
            start: self.min_offset,
            next_delayed: self.delayed.keys().next().map(|&(due, _)| due),
            consumers,
        };
        (self.stats(log), detail)
    }

    /// A snapshot of the group's counters.
    pub(crate) fn stats(&self, log: &Log) -> GroupStats {
        GroupStats {
            name: self.name.clone(),
            consumers: self.consumers.len() as u64,
            pending: self.pending(log),
            lag: self.lag(log),
            in_flight: self.in_flight.len() as u64,
            delivered: self.delivered,
            acked: self.acked,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
            oldest_pending: self.oldest_pending(log),
        }
    }
}
