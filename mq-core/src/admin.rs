//! Administration of topics and groups that changes them in place: purge a topic, alter
//! its configuration, create a group, move a group, read without a group (peek), and find
//! the offset of a point in time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;

use crate::broker::Broker;
use crate::clock::Timestamp;
use crate::config::{StartPosition, TopicConfig};
use crate::error::Error;
use crate::group::{Group, GroupSettings};
use crate::message::{Message, Offset};
use crate::name::{GroupName, TopicName};
use crate::storage::SyncWait;

/// Most messages one [`Broker::peek`] returns.
pub const MAX_PEEK: usize = 1000;

impl Broker {
    /// Drops every message the topic retains; its groups move past them. Offsets are never
    /// reused: the next message gets the next offset as before. Returns how many went.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`]; [`Error::Storage`] when the store cannot drop them.
    pub fn purge_topic(&self, topic: &TopicName) -> Result<u64, Error> {
        let handle = self.registry.get(topic)?;
        let mut state = handle.lock();
        let before = state.log.first();
        let dropped = state.log.len();
        while state.log.first() < state.log.next() {
            state.log.pop_front();
        }
        let first = state.log.first();
        for group in state.groups.values_mut() {
            group.forget_before(first);
        }
        if first != before {
            state.store.drop_before(first)?;
        }
        Ok(dropped)
    }

    /// Replaces the topic's configuration: limits apply to the next append, group defaults
    /// to groups created from now on.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`]; [`Error::InvalidConfig`]; [`Error::Storage`] when the
    /// configuration cannot be saved.
    pub fn alter_topic(&self, topic: &TopicName, config: TopicConfig) -> Result<(), Error> {
        config.validate()?;
        let handle = self.registry.get(topic)?;
        let mut state = handle.lock();
        state.store.save_config(&config)?;
        state.config = config;
        Ok(())
    }

    /// Creates a durable group reading from `start`, without attaching a consumer.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`]; [`Error::GroupExists`]; [`Error::TooManyGroups`].
    pub fn create_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
        start: StartPosition,
    ) -> Result<(), Error> {
        let handle = self.registry.get(topic)?;
        let sync = {
            let mut state = handle.lock();
            let state = &mut *state;
            if state.groups.contains_key(group) {
                return Err(Error::GroupExists {
                    topic: topic.clone(),
                    group: group.clone(),
                });
            }
            if let Some(limit) = self.registry.max_groups
                && state.groups.len() >= limit
            {
                self.registry.refused_groups.fetch_add(1, Ordering::Relaxed);
                return Err(Error::TooManyGroups {
                    topic: topic.clone(),
                    limit,
                });
            }
            let defaults = &state.config.groups;
            let settings = GroupSettings {
                ack: defaults.ack,
                ack_timeout: defaults.ack_timeout,
                max_deliveries: defaults.max_deliveries,
            };
            let mut g = Group::new(group.clone(), settings, start, &state.log);
            let sync = if state.store.keeps_groups() {
                g.journal_changes();
                state.record(&[g.created_event()])?
            } else {
                None
            };
            state.groups.insert(group.clone(), g);
            sync
        };
        wait(sync)
    }

    /// Moves a group to `to`: from there on everything is waiting for it, nothing before is
    /// its. Deliveries in flight go back (acking them afterwards is refused); consumers stay
    /// attached and receive from the new position.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`]; [`Error::GroupNotFound`].
    pub fn seek_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
        to: StartPosition,
    ) -> Result<(), Error> {
        let handle = self.registry.get(topic)?;
        let mut wakers: Vec<Waker> = Vec::new();
        let sync = {
            let mut state = handle.lock();
            let state = &mut *state;
            let g = state
                .groups
                .get_mut(group)
                .ok_or_else(|| Error::GroupNotFound {
                    topic: topic.clone(),
                    group: group.clone(),
                })?;
            let events = g.seek(to, &state.log);
            g.take_wakers(&mut wakers);
            state.record(&events)?
        };
        wakers.into_iter().for_each(Waker::wake);
        wait(sync)
    }

    /// Up to `max` (at most [`MAX_PEEK`]) retained messages from `from` on, in order,
    /// without any group and without changing any delivery state.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`]; [`Error::Storage`] when one cannot be read back.
    pub fn peek(
        &self,
        topic: &TopicName,
        from: StartPosition,
        max: usize,
    ) -> Result<Vec<Arc<Message>>, Error> {
        let handle = self.registry.get(topic)?;
        let offsets: Vec<Offset> = {
            let state = handle.lock();
            let from = match from {
                StartPosition::Resume | StartPosition::Earliest => state.log.first(),
                StartPosition::Latest => state.log.next(),
                StartPosition::Offset(o) => o,
                StartPosition::Time(t) => state.log.offset_at(t),
            };
            let start = from.max(state.log.first()).get();
            let end = state.log.next().get();
            (start..end)
                .map(Offset)
                .filter(|&o| state.log.priority_of(o).is_some())
                .take(max.min(MAX_PEEK))
                .collect()
        };
        Ok(handle.fetch(&offsets)?.into_iter().flatten().collect())
    }

    /// The first retained offset of `topic` published at or after `time` (the next offset
    /// when none was).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`].
    pub fn offset_at(&self, topic: &TopicName, time: Timestamp) -> Result<Offset, Error> {
        Ok(self.registry.get(topic)?.lock().log.offset_at(time))
    }
}

fn wait(sync: Option<SyncWait>) -> Result<(), Error> {
    if let Some(sync) = sync {
        sync.wait()?;
    }
    Ok(())
}
