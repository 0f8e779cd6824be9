//! [`Log`]: a topic's retained messages in offset order, with an index by priority.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use crate::budget::MemoryBudget;
use crate::clock::Timestamp;
use crate::message::{Message, Offset};
use crate::storage::StoredMessage;

/// The offsets of one priority level, in increasing order.
///
/// Entries are numbered by a *sequence* that never changes when the front is trimmed, so a
/// group's cursor into a level stays valid: entry `removed + i` is `offsets[i]`.
#[derive(Debug, Default)]
pub(crate) struct Level {
    removed: u64,
    offsets: VecDeque<Offset>,
}

impl Level {
    /// Sequence number of the first retained entry.
    pub(crate) fn start(&self) -> u64 {
        self.removed
    }

    /// One past the sequence number of the last entry.
    pub(crate) fn end(&self) -> u64 {
        self.removed + self.offsets.len() as u64
    }

    /// The offset at sequence `seq`, which must lie in `start()..end()`.
    pub(crate) fn offset_at(&self, seq: u64) -> Offset {
        self.offsets[usize::try_from(seq - self.removed).unwrap_or(usize::MAX)]
    }

    /// The sequence number of the first entry whose offset is at least `offset`.
    pub(crate) fn seq_at_or_after(&self, offset: Offset) -> u64 {
        self.removed + self.offsets.partition_point(|&o| o < offset) as u64
    }
}

/// Where a retained message is.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// In memory.
    Resident(Arc<Message>),
    /// Only in the store: read it back.
    OnDisk,
    /// Not retained (trimmed, or lost to damage).
    Gone,
}

/// What the log knows of every retained message, loaded or not.
#[derive(Debug)]
struct Slot {
    timestamp: Timestamp,
    size: u32,
    priority: u8,
    /// An offset lost to damage: no message, settled for every group.
    lost: bool,
    /// The message itself, when resident in memory.
    message: Option<Arc<Message>>,
}

/// A topic's retained messages.
///
/// # Invariants
/// - `slots[i]` describes offset `first + i`; timestamps never decrease;
/// - `lost` lists, in order, the ranges of retained offsets whose messages storage lost
///   (their slots are marked `lost`; `lost_count` counts them); they are in no level;
/// - `levels[p]` holds exactly the offsets of retained messages of priority `p`, in order;
/// - `active` lists the priorities that ever had a message, highest first;
/// - `bytes` is the sum of the retained messages' sizes;
/// - `resident_bytes` is the size of the messages held in memory, and is counted in the
///   broker-wide `memory` budget;
/// - with a `budget` (a store that can read messages back), the messages held in memory
///   (`resident`, oldest load first) take at most about `budget` bytes, and fewer while the
///   broker-wide budget is exceeded; the others are read back from the store on demand.
///
/// Append and trimming the front are O(1) amortised; finding the next message a group
/// should get costs O(number of priority levels in use), whatever the backlog.
#[derive(Debug)]
pub(crate) struct Log {
    first: u64,
    slots: VecDeque<Slot>,
    lost: VecDeque<Range<u64>>,
    lost_count: u64,
    bytes: u64,
    levels: Vec<Level>,
    active: Vec<u8>,
    budget: Option<u64>,
    resident: VecDeque<u64>,
    resident_bytes: u64,
    memory: Arc<MemoryBudget>,
}

/// Bytes read from the store at once when a message is not in memory.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

impl Log {
    /// An empty log whose next offset is `next`, holding every message in memory and
    /// counting it in `memory`.
    pub(crate) fn new(next: Offset, memory: Arc<MemoryBudget>) -> Self {
        Self {
            first: next.get(),
            slots: VecDeque::new(),
            lost: VecDeque::new(),
            lost_count: 0,
            bytes: 0,
            levels: (0..=u8::MAX).map(|_| Level::default()).collect(),
            active: Vec::new(),
            budget: None,
            resident: VecDeque::new(),
            resident_bytes: 0,
            memory,
        }
    }

    /// A log of recovered messages in increasing offsets from `first` whose next offset is
    /// `next`, keeping at most about `budget` bytes of them in memory (all, for `None`).
    /// Offsets missing in between were lost: they become holes.
    pub(crate) fn recovered(
        first: Offset,
        runs: Vec<Vec<StoredMessage>>,
        next: Offset,
        budget: Option<u64>,
        memory: Arc<MemoryBudget>,
    ) -> Self {
        let mut log = Self::new(first, memory);
        log.budget = budget;
        log.slots.reserve(runs.iter().map(Vec::len).sum());
        for stored in runs.into_iter().flatten() {
            match stored {
                StoredMessage::Loaded(m) => {
                    log.lose_until(m.offset);
                    log.push(m);
                }
                StoredMessage::OnDisk {
                    offset,
                    timestamp,
                    size,
                    priority,
                } => {
                    log.lose_until(offset);
                    log.index(offset, priority, size);
                    log.slots.push_back(Slot {
                        timestamp,
                        size: u32::try_from(size).unwrap_or(u32::MAX),
                        priority,
                        lost: false,
                        message: None,
                    });
                }
            }
        }
        log.lose_until(next);
        log
    }

    /// Marks the offsets from `next()` up to `offset` lost.
    fn lose_until(&mut self, offset: Offset) {
        let (from, offset) = (self.next().get(), offset.get());
        if offset <= from {
            return;
        }
        let timestamp = self.slots.back().map(|s| s.timestamp).unwrap_or_default();
        for _ in from..offset {
            self.slots.push_back(Slot {
                timestamp,
                size: 0,
                priority: 0,
                lost: true,
                message: None,
            });
        }
        self.lost_count += offset - from;
        self.lost.push_back(from..offset);
    }

    /// The retained offsets whose messages storage lost, in order.
    pub(crate) fn lost(&self) -> impl Iterator<Item = Range<Offset>> + '_ {
        self.lost.iter().map(|r| Offset(r.start)..Offset(r.end))
    }

    /// The first retained offset (equal to `next()` when empty).
    pub(crate) fn first(&self) -> Offset {
        Offset(self.first)
    }

    /// The offset the next appended message gets.
    pub(crate) fn next(&self) -> Offset {
        Offset(self.first + self.slots.len() as u64)
    }

    /// Number of retained messages (lost offsets not counted).
    pub(crate) fn len(&self) -> u64 {
        self.slots.len() as u64 - self.lost_count
    }

    /// Retained bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn slot(&self, offset: Offset) -> Option<&Slot> {
        let idx = usize::try_from(offset.get().checked_sub(self.first)?).ok()?;
        self.slots.get(idx)
    }

    /// The first retained offset whose message was published at or after `time` (`next()`
    /// when none was).
    pub(crate) fn offset_at(&self, time: Timestamp) -> Offset {
        let idx = self.slots.partition_point(|s| s.timestamp < time);
        Offset(self.first + idx as u64)
    }

    /// The timestamp of the message at `offset`, if retained.
    pub(crate) fn timestamp_of(&self, offset: Offset) -> Option<Timestamp> {
        self.slot(offset).filter(|s| !s.lost).map(|s| s.timestamp)
    }

    /// The priority of the message at `offset`, if retained.
    pub(crate) fn priority_of(&self, offset: Offset) -> Option<u8> {
        self.slot(offset).filter(|s| !s.lost).map(|s| s.priority)
    }

    /// Where the message at `offset` is.
    pub(crate) fn lookup(&self, offset: Offset) -> Lookup {
        match self.slot(offset) {
            None => Lookup::Gone,
            Some(slot) if slot.lost => Lookup::Gone,
            Some(slot) => match &slot.message {
                Some(m) => Lookup::Resident(Arc::clone(m)),
                None => Lookup::OnDisk,
            },
        }
    }

    /// Keeps messages read back from the store in memory (within the budget) for the
    /// groups that read next.
    pub(crate) fn cache(&mut self, messages: &[Arc<Message>]) {
        for m in messages {
            let o = m.offset.get();
            let Some(idx) = o
                .checked_sub(self.first)
                .and_then(|i| usize::try_from(i).ok())
            else {
                continue;
            };
            if let Some(slot) = self.slots.get_mut(idx)
                && slot.message.is_none()
                && !slot.lost
            {
                self.resident_bytes += u64::from(slot.size);
                self.memory.add(u64::from(slot.size));
                self.resident.push_back(o);
                slot.message = Some(Arc::clone(m));
            }
        }
        self.evict();
    }

    /// Whether messages can leave memory (the store reads them back).
    pub(crate) fn evictable(&self) -> bool {
        self.budget.is_some()
    }

    /// Drops messages from memory, oldest load first, until within the topic's budget and,
    /// while the broker-wide budget is exceeded, as far as that takes.
    fn evict(&mut self) {
        let Some(budget) = self.budget else { return };
        let over = self.resident_bytes.saturating_sub(budget);
        let want = over.max(self.memory.excess(0).min(self.resident_bytes));
        if want > 0 {
            self.shed(want);
        }
    }

    /// Drops at least `want` bytes of messages the store can read back from memory (oldest
    /// load first) if there are that many; returns the bytes dropped.
    pub(crate) fn shed(&mut self, want: u64) -> u64 {
        if self.budget.is_none() {
            return 0;
        }
        let mut freed = 0;
        while freed < want {
            let Some(offset) = self.resident.pop_front() else {
                break;
            };
            let first = self.first;
            if let Some(slot) = offset
                .checked_sub(first)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.slots.get_mut(i))
                && slot.message.take().is_some()
            {
                freed += u64::from(slot.size);
            }
        }
        let freed = freed.min(self.resident_bytes);
        self.resident_bytes -= freed;
        self.memory.sub(freed);
        freed
    }

    /// Offset and timestamp of the oldest retained message.
    pub(crate) fn front(&self) -> Option<(Offset, Timestamp)> {
        self.slots
            .front()
            .map(|s| (Offset(self.first), s.timestamp))
    }

    fn index(&mut self, offset: Offset, p: u8, size: u64) {
        let level = &mut self.levels[usize::from(p)];
        if level.offsets.is_empty() && !self.active.contains(&p) {
            let at = self.active.partition_point(|&a| a > p);
            self.active.insert(at, p);
        }
        self.levels[usize::from(p)].offsets.push_back(offset);
        self.bytes += size;
    }

    /// Appends a message; its offset must be `next()`.
    pub(crate) fn push(&mut self, message: Arc<Message>) {
        debug_assert_eq!(message.offset, self.next());
        let size = message.size();
        self.index(message.offset, message.priority, size);
        if self.budget.is_some() {
            self.resident.push_back(message.offset.get());
        }
        self.resident_bytes += size;
        self.memory.add(size);
        self.slots.push_back(Slot {
            timestamp: message.timestamp,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            priority: message.priority,
            lost: false,
            message: Some(message),
        });
        self.evict();
    }

    /// Removes the oldest message.
    pub(crate) fn pop_front(&mut self) {
        let Some(slot) = self.slots.pop_front() else {
            return;
        };
        self.first += 1;
        while self.resident.front().is_some_and(|&o| o < self.first) {
            self.resident.pop_front();
        }
        if slot.lost {
            self.lost_count -= 1;
            if let Some(front) = self.lost.front_mut() {
                front.start += 1;
                if front.is_empty() {
                    self.lost.pop_front();
                }
            }
            return;
        }
        self.bytes -= u64::from(slot.size);
        if slot.message.is_some() {
            let size = u64::from(slot.size).min(self.resident_bytes);
            self.resident_bytes -= size;
            self.memory.sub(size);
        }
        let level = &mut self.levels[usize::from(slot.priority)];
        level.offsets.pop_front();
        level.removed += 1;
    }

    /// The level of priority `p`.
    pub(crate) fn level(&self, p: u8) -> &Level {
        &self.levels[usize::from(p)]
    }

    /// Priorities that have had messages, highest first.
    pub(crate) fn active(&self) -> &[u8] {
        &self.active
    }
}

impl Drop for Log {
    /// What the log held no longer counts against the broker-wide budget.
    fn drop(&mut self) {
        self.memory.sub(self.resident_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewMessage, Offset};

    fn lost(log: &Log) -> Vec<Range<u64>> {
        log.lost().map(|r| r.start.get()..r.end.get()).collect()
    }

    fn msg(offset: u64, priority: u8) -> Arc<Message> {
        Arc::new(Message::from_new(
            Offset(offset),
            Timestamp::default(),
            NewMessage::new("abc").priority(priority),
        ))
    }

    #[test]
    fn log_indexes_messages_by_priority_and_keeps_sequences_on_trim() {
        let mut log = Log::new(Offset(5), Arc::default());
        for (i, p) in [0u8, 3, 0, 3, 1].into_iter().enumerate() {
            log.push(msg(5 + i as u64, p));
        }
        assert_eq!(log.active(), &[3, 1, 0]);
        assert_eq!(log.len(), 5);
        assert_eq!(log.bytes(), 5 * (3 + crate::RECORD_OVERHEAD));
        let l3 = log.level(3);
        assert_eq!((l3.start(), l3.end()), (0, 2));
        assert_eq!(l3.offset_at(1), Offset(8));
        log.pop_front();
        log.pop_front();
        assert_eq!(log.first(), Offset(7));
        assert_eq!(log.level(3).start(), 1);
        assert_eq!(log.level(3).offset_at(1), Offset(8));
        assert_eq!(log.level(0).seq_at_or_after(Offset(7)), 1);
        assert!(log.priority_of(Offset(6)).is_none());
        assert_eq!(log.priority_of(Offset(9)), Some(1));
    }

    #[test]
    fn offsets_missing_from_recovery_are_holes_that_trim_away() {
        let run = |offsets: &[u64]| {
            offsets
                .iter()
                .map(|&o| StoredMessage::Loaded(msg(o, 0)))
                .collect::<Vec<_>>()
        };
        let mut log = Log::recovered(
            Offset(3),
            vec![run(&[3, 4]), run(&[7, 8])],
            Offset(11),
            None,
            Arc::default(),
        );
        assert_eq!(log.next(), Offset(11));
        assert_eq!(log.len(), 4);
        assert_eq!(lost(&log), vec![5..7, 9..11]);
        assert_eq!(log.level(0).end(), 4);
        assert!(log.priority_of(Offset(5)).is_none());
        for _ in 0..3 {
            log.pop_front();
        }
        assert_eq!(log.first(), Offset(6));
        assert_eq!(lost(&log), vec![6..7, 9..11]);
        assert_eq!(log.len(), 2);
        assert_eq!(log.bytes(), 2 * (3 + crate::RECORD_OVERHEAD));
    }
}
