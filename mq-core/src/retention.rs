//! Retention rules (README, "the model"): limits checked on append, and the cleaner pass
//! that deletes consumed and expired messages from the front of the log.

use crate::clock::Timestamp;
use crate::config::{Overflow, RetentionConfig};
use crate::error::{Error, Limit};
use crate::log::Log;
use crate::message::Offset;
use crate::topic::TopicState;

impl RetentionConfig {
    /// The bound `log` would cross with `count` more messages of `bytes` more bytes.
    fn exceeded(&self, log: &Log, count: u64, bytes: u64) -> Option<Limit> {
        if let Some(max) = self.max_messages
            && log.len() + count > max
        {
            return Some(Limit::Messages(max));
        }
        if let Some(max) = self.max_bytes
            && log.bytes() + bytes > max
        {
            return Some(Limit::Bytes(max));
        }
        None
    }
}

impl TopicState {
    /// The lowest offset some group still needs (or a read-back in progress holds), or
    /// `None` when the topic has no groups.
    pub(crate) fn needed_floor(&self) -> Option<Offset> {
        let floor = self.groups.values().map(|g| g.floor()).min()?;
        Some(self.lowest_pinned().map_or(floor, |pin| pin.min(floor)))
    }

    /// Makes room for `count` messages of `bytes` bytes: drops what every group has acked
    /// first, then applies the overflow policy.
    ///
    /// # Errors
    /// [`Error::TopicFull`] when the policy is `reject` and the batch does not fit.
    pub(crate) fn make_room(&mut self, count: u64, bytes: u64) -> Result<(), Error> {
        if self
            .config
            .retention
            .exceeded(&self.log, count, bytes)
            .is_none()
        {
            return Ok(());
        }
        let floor = self.needed_floor().unwrap_or_default();
        let before = self.log.first();
        let retention = &self.config.retention;
        let log = &mut self.log;
        while log.first() < floor && retention.exceeded(log, count, bytes).is_some() {
            log.pop_front();
        }
        let full = match retention.exceeded(log, count, bytes) {
            Some(limit) if retention.overflow == Overflow::Reject => Some(limit),
            Some(_) => {
                while log.len() > 0 && retention.exceeded(log, count, bytes).is_some() {
                    log.pop_front();
                }
                None
            }
            None => None,
        };
        self.trimmed(before)?;
        match full {
            Some(limit) => Err(Error::TopicFull {
                topic: self.name.clone(),
                limit,
            }),
            None => Ok(()),
        }
    }

    /// After an append under `drop-oldest`, drops from the front until the topic is within
    /// its bounds again (a batch larger than the bounds keeps only its newest part).
    pub(crate) fn enforce_bounds(&mut self) -> Result<(), Error> {
        let before = self.log.first();
        let retention = &self.config.retention;
        while self.log.len() > 0 && retention.exceeded(&self.log, 0, 0).is_some() {
            self.log.pop_front();
        }
        self.trimmed(before)
    }

    /// The cleaner pass: deletes messages every group has acked once older than
    /// `retain_consumed`, and any message older than `max_age`. Returns how many went.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be trimmed.
    pub(crate) fn clean(&mut self, now: Timestamp) -> Result<u64, Error> {
        let floor = self.needed_floor();
        let before = self.log.first();
        let retention = &self.config.retention;
        while let Some((offset, timestamp)) = self.log.front() {
            let age = now.since(timestamp);
            let consumed = floor.is_some_and(|f| offset < f) && age >= retention.retain_consumed;
            let expired = retention.max_age.is_some_and(|max| age >= max);
            if !(consumed || expired) {
                break;
            }
            self.log.pop_front();
        }
        self.trimmed(before)?;
        Ok(self.log.first().get() - before.get())
    }

    /// Removes from the front the messages every group has acked, however recent, to make
    /// room in memory. Returns how many went.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be trimmed.
    pub(crate) fn drop_consumed(&mut self) -> Result<u64, Error> {
        let Some(floor) = self.needed_floor() else {
            return Ok(0);
        };
        let before = self.log.first();
        while self.log.first() < floor && self.log.len() > 0 {
            self.log.pop_front();
        }
        self.trimmed(before)?;
        Ok(self.log.first().get() - before.get())
    }

    /// Tells groups and the store that the log now starts later than `before`.
    fn trimmed(&mut self, before: Offset) -> Result<(), Error> {
        let first = self.log.first();
        if first == before {
            return Ok(());
        }
        for group in self.groups.values_mut() {
            group.forget_before(first);
        }
        self.store.trim_before(first)?;
        Ok(())
    }
}
