//! A group's counters: what is pending, in flight, delivered, acked and dead-lettered.

use super::Group;
use crate::log::Log;
use crate::stats::GroupStats;

impl Group {
    /// Messages waiting for this group: never delivered, or due for redelivery.
    pub(crate) fn pending(&self, log: &Log) -> u64 {
        let cursor_at = |p: u8| {
            let level = log.level(p);
            self.cursors[usize::from(p)]
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
        fresh.saturating_sub(acked_ahead) + self.redeliver.len() as u64 + self.delayed.len() as u64
    }

    /// When the oldest message waiting for this group (never delivered, or due for
    /// redelivery) was published.
    pub(crate) fn oldest_pending(&self, log: &Log) -> Option<crate::clock::Timestamp> {
        let floor = self.min_offset.max(self.acks.floor());
        let fresh = log.active().iter().filter_map(|&p| {
            let level = log.level(p);
            let mut seq = self.cursors[usize::from(p)]
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

    /// A snapshot of the group's counters.
    pub(crate) fn stats(&self, log: &Log) -> GroupStats {
        GroupStats {
            name: self.name.clone(),
            consumers: self.consumers.len() as u64,
            pending: self.pending(log),
            in_flight: self.in_flight.len() as u64,
            delivered: self.delivered,
            acked: self.acked,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
            oldest_pending: self.oldest_pending(log),
        }
    }
}
