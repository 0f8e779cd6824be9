//! [`Log`]: a topic's retained messages in offset order, with an index by priority.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::message::Message;

/// The offsets of one priority level, in increasing order.
///
/// Entries are numbered by a *sequence* that never changes when the front is trimmed, so a
/// group's cursor into a level stays valid: entry `removed + i` is `offsets[i]`.
#[derive(Debug, Default)]
pub(crate) struct Level {
    removed: u64,
    offsets: VecDeque<u64>,
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
    pub(crate) fn offset_at(&self, seq: u64) -> u64 {
        self.offsets[usize::try_from(seq - self.removed).unwrap_or(usize::MAX)]
    }

    /// The sequence number of the first entry whose offset is at least `offset`.
    pub(crate) fn seq_at_or_after(&self, offset: u64) -> u64 {
        self.removed + self.offsets.partition_point(|&o| o < offset) as u64
    }
}

/// A topic's retained messages.
///
/// # Invariants
/// - `messages[i].offset == first + i`; timestamps never decrease;
/// - `levels[p]` holds exactly the offsets of retained messages of priority `p`, in order;
/// - `active` lists the priorities that ever had a message, highest first;
/// - `bytes` is the sum of the retained messages' sizes.
///
/// Append and trimming the front are O(1) amortised; finding the next message a group
/// should get costs O(number of priority levels in use), whatever the backlog.
#[derive(Debug)]
pub(crate) struct Log {
    first: u64,
    messages: VecDeque<Arc<Message>>,
    bytes: u64,
    levels: Vec<Level>,
    active: Vec<u8>,
}

impl Log {
    /// An empty log whose next offset is `next`.
    pub(crate) fn new(next: u64) -> Self {
        Self {
            first: next,
            messages: VecDeque::new(),
            bytes: 0,
            levels: (0..=u8::MAX).map(|_| Level::default()).collect(),
            active: Vec::new(),
        }
    }

    /// A log holding `messages`, which must have consecutive offsets from `first`.
    pub(crate) fn from_messages(first: u64, messages: Vec<Arc<Message>>) -> Self {
        let mut log = Self::new(first);
        for message in &messages {
            let p = message.priority;
            if !log.active.contains(&p) {
                let at = log.active.partition_point(|&a| a > p);
                log.active.insert(at, p);
            }
            log.levels[usize::from(p)]
                .offsets
                .push_back(message.offset.get());
            log.bytes += message.size();
        }
        log.messages = VecDeque::from(messages);
        log
    }

    /// The first retained offset (equal to `next()` when empty).
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The offset the next appended message gets.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.messages.len() as u64
    }

    /// Number of retained messages.
    pub(crate) fn len(&self) -> u64 {
        self.messages.len() as u64
    }

    /// Retained bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The message at `offset`, if retained.
    pub(crate) fn get(&self, offset: u64) -> Option<&Arc<Message>> {
        let idx = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.messages.get(idx)
    }

    /// The oldest retained message.
    pub(crate) fn front(&self) -> Option<&Arc<Message>> {
        self.messages.front()
    }

    /// Appends a message; its offset must be `next()`.
    pub(crate) fn push(&mut self, message: Arc<Message>) {
        debug_assert_eq!(message.offset.get(), self.next());
        let p = message.priority;
        let level = &mut self.levels[usize::from(p)];
        if level.offsets.is_empty() && !self.active.contains(&p) {
            let at = self.active.partition_point(|&a| a > p);
            self.active.insert(at, p);
        }
        level.offsets.push_back(message.offset.get());
        self.bytes += message.size();
        self.messages.push_back(message);
    }

    /// Removes the oldest message.
    pub(crate) fn pop_front(&mut self) -> Option<Arc<Message>> {
        let message = self.messages.pop_front()?;
        self.first += 1;
        self.bytes -= message.size();
        let level = &mut self.levels[usize::from(message.priority)];
        level.offsets.pop_front();
        level.removed += 1;
        Some(message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewMessage, Offset, Timestamp};

    fn msg(offset: u64, priority: u8) -> Arc<Message> {
        Arc::new(Message::from_new(
            Offset(offset),
            Timestamp::default(),
            NewMessage::new("abc").priority(priority),
        ))
    }

    #[test]
    fn log_indexes_messages_by_priority_and_keeps_sequences_on_trim() {
        let mut log = Log::new(5);
        for (i, p) in [0u8, 3, 0, 3, 1].into_iter().enumerate() {
            log.push(msg(5 + i as u64, p));
        }
        assert_eq!(log.active(), &[3, 1, 0]);
        assert_eq!(log.len(), 5);
        assert_eq!(log.bytes(), 15);
        let l3 = log.level(3);
        assert_eq!((l3.start(), l3.end()), (0, 2));
        assert_eq!(l3.offset_at(1), 8);
        log.pop_front();
        log.pop_front();
        assert_eq!(log.first(), 7);
        assert_eq!(log.level(3).start(), 1);
        assert_eq!(log.level(3).offset_at(1), 8);
        assert_eq!(log.level(0).seq_at_or_after(7), 1);
        assert!(log.get(6).is_none());
        assert_eq!(log.get(9).map(|m| m.priority), Some(1));
    }
}
