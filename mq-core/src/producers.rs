//! Idempotent publishing: what a topic remembers of each producer that numbers its
//! messages, so that a batch sent again (after a lost reply or a reconnect) is answered
//! with the offsets it got the first time instead of being stored twice.
//!
//! A producer has an id (any `u64` it picked, random in the SDK) and numbers its messages
//! 0, 1, 2, …; a batch carries the number of its first message. Per topic, the table keeps
//! the highest number stored for each producer and its last [`BATCHES_KEPT`] batches. Under
//! file storage the last record of every numbered batch carries its [`BatchStamp`], so the
//! table is rebuilt from the log at start: it is exactly as durable as the messages.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::clock::Timestamp;
use crate::message::Offset;

/// Batches remembered per producer, so that any of a producer's last batches in flight can
/// be answered again with its offsets.
pub const BATCHES_KEPT: usize = 32;

/// Default of [`ProducerLimits::max_producers`].
pub const DEFAULT_MAX_PRODUCERS: usize = 10_000;

/// Default of [`ProducerLimits::expiry`]: a day.
pub const DEFAULT_PRODUCER_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Who sent a batch and the number of its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerStamp {
    /// The producer's id.
    pub producer: u64,
    /// The number of the batch's first message; the others follow it.
    pub seq: u64,
}

/// A numbered batch as the log records it (on its last record, under file storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStamp {
    /// The producer's id.
    pub producer: u64,
    /// The number of the batch's first message.
    pub seq: u64,
    /// How many messages the batch has.
    pub count: u32,
}

/// A numbered batch found in storage at start: its stamp, the offset of its last message
/// and when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredStamp {
    /// The batch.
    pub stamp: BatchStamp,
    /// The offset of its last message.
    pub last: Offset,
    /// When it was stored.
    pub timestamp: Timestamp,
}

/// How many producers a topic remembers, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// Producers remembered per topic; past it the one idle longest is forgotten.
    pub max_producers: usize,
    /// A producer that published nothing for this long is forgotten.
    pub expiry: Duration,
}

impl Default for ProducerLimits {
    fn default() -> Self {
        Self {
            max_producers: DEFAULT_MAX_PRODUCERS,
            expiry: DEFAULT_PRODUCER_EXPIRY,
        }
    }
}

/// What to do with a numbered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Store it: its numbers are new.
    New,
    /// It is stored already, from this offset on: answer with it.
    Duplicate(Offset),
    /// Its numbers were all stored, but the batch is no longer remembered (or was cut
    /// differently): its offsets cannot be told.
    Forgotten,
    /// Some of its numbers were stored and some not: a client must resend batches as it
    /// first sent them.
    Overlap {
        /// The highest number stored for the producer.
        last: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Batch {
    seq: u64,
    count: u32,
    first: Offset,
}

#[derive(Debug)]
struct Producer {
    /// The highest number stored.
    last: u64,
    batches: VecDeque<Batch>,
    seen: Timestamp,
}

/// The producers of one topic.
#[derive(Debug)]
pub(crate) struct ProducerTable {
    limits: ProducerLimits,
    producers: FxHashMap<u64, Producer>,
    /// No producer expires before this (ms): [`ProducerTable::expire`], called on every
    /// cleaner pass, walks the table only from then on.
    next_expiry: u64,
}

impl ProducerTable {
    /// An empty table.
    pub(crate) fn new(limits: ProducerLimits) -> Self {
        Self {
            limits,
            producers: FxHashMap::default(),
            next_expiry: 0,
        }
    }

    /// The table the batches found in storage make, oldest first.
    pub(crate) fn restore(limits: ProducerLimits, stamps: &[RecoveredStamp]) -> Self {
        let mut table = Self::new(limits);
        for s in stamps {
            let count = u64::from(s.stamp.count);
            let first = Offset((s.last.get() + 1).saturating_sub(count));
            table.record(
                s.stamp.producer,
                s.stamp.seq,
                s.stamp.count,
                first,
                s.timestamp,
            );
        }
        table
    }

    /// How many producers are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// What to do with a batch of `count` messages numbered from `stamp.seq`.
    pub(crate) fn check(&mut self, stamp: ProducerStamp, count: u32, now: Timestamp) -> Check {
        let Some(p) = self.producers.get(&stamp.producer) else {
            return Check::New;
        };
        if idle(now, p.seen) > duration_millis(self.limits.expiry) {
            self.producers.remove(&stamp.producer);
            return Check::New;
        }
        let end = stamp.seq.saturating_add(u64::from(count.max(1)) - 1);
        if stamp.seq > p.last {
            return Check::New;
        }
        if end > p.last {
            return Check::Overlap { last: p.last };
        }
        p.batches
            .iter()
            .find(|b| b.seq == stamp.seq && b.count == count)
            .map_or(Check::Forgotten, |b| Check::Duplicate(b.first))
    }

    /// Notes a batch stored from offset `first`.
    pub(crate) fn record(
        &mut self,
        producer: u64,
        seq: u64,
        count: u32,
        first: Offset,
        now: Timestamp,
    ) {
        if !self.producers.contains_key(&producer)
            && self.producers.len() >= self.limits.max_producers
        {
            self.forget_idlest();
        }
        let p = self.producers.entry(producer).or_insert_with(|| Producer {
            last: 0,
            batches: VecDeque::new(),
            seen: now,
        });
        p.last = p.last.max(seq.saturating_add(u64::from(count.max(1)) - 1));
        p.seen = p.seen.max(now);
        let expires = p
            .seen
            .as_millis()
            .saturating_add(duration_millis(self.limits.expiry));
        self.next_expiry = self.next_expiry.min(expires.saturating_add(1));
        if p.batches.len() == BATCHES_KEPT {
            p.batches.pop_front();
        }
        p.batches.push_back(Batch { seq, count, first });
    }

    /// Forgets producers idle past the expiry.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        if now.as_millis() < self.next_expiry {
            return;
        }
        let expiry = duration_millis(self.limits.expiry);
        self.producers.retain(|_, p| idle(now, p.seen) <= expiry);
        self.next_expiry = self
            .producers
            .values()
            .map(|p| p.seen.as_millis().saturating_add(expiry).saturating_add(1))
            .min()
            .unwrap_or(u64::MAX);
    }

    fn forget_idlest(&mut self) {
        if let Some(id) = self
            .producers
            .iter()
            .min_by_key(|(_, p)| p.seen)
            .map(|(id, _)| *id)
        {
            self.producers.remove(&id);
        }
    }
}

/// Milliseconds from `seen` to `now` (0 when the clock went back).
fn idle(now: Timestamp, seen: Timestamp) -> u64 {
    now.as_millis().saturating_sub(seen.as_millis())
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(producer: u64, seq: u64) -> ProducerStamp {
        ProducerStamp { producer, seq }
    }

    #[test]
    fn a_batch_sent_again_is_answered_with_its_first_offsets() {
        let mut t = ProducerTable::new(ProducerLimits::default());
        let now = Timestamp::from_millis(1_000);
        assert_eq!(t.check(stamp(7, 0), 3, now), Check::New);
        t.record(7, 0, 3, Offset(10), now);
        assert_eq!(t.check(stamp(7, 3), 2, now), Check::New);
        t.record(7, 3, 2, Offset(20), now);
        assert_eq!(t.check(stamp(7, 0), 3, now), Check::Duplicate(Offset(10)));
        assert_eq!(t.check(stamp(7, 3), 2, now), Check::Duplicate(Offset(20)));
        assert_eq!(t.check(stamp(7, 1), 2, now), Check::Forgotten);
        assert_eq!(t.check(stamp(7, 4), 2, now), Check::Overlap { last: 4 });
        assert_eq!(t.check(stamp(8, 0), 3, now), Check::New, "another producer");
    }

    #[test]
    fn a_gap_in_the_numbers_is_stored_since_refused_batches_leave_one() {
        let mut t = ProducerTable::new(ProducerLimits::default());
        let now = Timestamp::from_millis(1_000);
        t.record(1, 0, 1, Offset(0), now);
        assert_eq!(t.check(stamp(1, 5), 1, now), Check::New);
    }

    #[test]
    fn only_the_last_batches_are_answered_with_offsets() {
        let mut t = ProducerTable::new(ProducerLimits::default());
        let now = Timestamp::from_millis(1_000);
        for i in 0..=BATCHES_KEPT as u64 {
            t.record(1, i, 1, Offset(i), now);
        }
        assert_eq!(t.check(stamp(1, 0), 1, now), Check::Forgotten);
        assert_eq!(t.check(stamp(1, 1), 1, now), Check::Duplicate(Offset(1)));
    }

    #[test]
    fn producers_are_forgotten_past_the_window_and_the_expiry() {
        let limits = ProducerLimits {
            max_producers: 2,
            expiry: Duration::from_secs(60),
        };
        let mut t = ProducerTable::new(limits);
        t.record(1, 0, 1, Offset(0), Timestamp::from_millis(1_000));
        t.record(2, 0, 1, Offset(1), Timestamp::from_millis(2_000));
        t.record(3, 0, 1, Offset(2), Timestamp::from_millis(3_000));
        assert_eq!(t.len(), 2);
        let now = Timestamp::from_millis(3_000);
        assert_eq!(t.check(stamp(1, 0), 1, now), Check::New, "the idlest went");
        assert_eq!(t.check(stamp(2, 0), 1, now), Check::Duplicate(Offset(1)));
        let later = Timestamp::from_millis(3_000 + 61_000);
        assert_eq!(t.check(stamp(3, 0), 1, later), Check::New, "expired");
        t.expire(later);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_rebuilt_from_stamps_found_in_storage() {
        let stamps = [RecoveredStamp {
            stamp: BatchStamp {
                producer: 9,
                seq: 100,
                count: 4,
            },
            last: Offset(53),
            timestamp: Timestamp::from_millis(5),
        }];
        let mut t = ProducerTable::restore(ProducerLimits::default(), &stamps);
        let now = Timestamp::from_millis(6);
        assert_eq!(t.check(stamp(9, 100), 4, now), Check::Duplicate(Offset(50)));
        assert_eq!(t.check(stamp(9, 104), 1, now), Check::New);
    }
}
