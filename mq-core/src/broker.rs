//! [`Broker`]: the handle an embedding program holds. Cheap to clone, `Send + Sync`: topics
//! and their administration, publish and subscribe, the cleaner pass, stats. What its
//! handles share lives in `registry.rs`; building one, in `builder.rs`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::Waker;

use crate::cleaner::{self, TickReport};
use crate::clock::Timestamp;
use crate::config::TopicConfig;
use crate::consumer::{Consumer, Subscription};
use crate::error::Error;
use crate::group::{ConsumerId, Group, GroupSettings};
use crate::log::Log;
use crate::memory::MemoryTopic;
use crate::message::{NewMessage, Offset};
use crate::name::{GroupName, TopicName};
use crate::producers::ProducerStamp;
use crate::receipt::{BatchReceipt, Receipt};
use crate::registry::Registry;
use crate::stats::{BrokerStats, GroupStats, TopicInfo, TopicStats};
use crate::storage::{GroupEvent, QuarantinedTopic};

/// The broker: topics, their logs and groups. Clones share the same broker.
///
/// Lock order: the topic map, then one topic at a time; a topic's lock is never held while
/// waking consumers or writing to another topic (the dead-letter topic).
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) registry: Arc<Registry>,
}

impl Broker {
    /// The broker clock's current time.
    pub fn now(&self) -> Timestamp {
        self.registry.now()
    }

    /// Whether publishes, acks and group changes wait for an fsync before they return:
    /// async callers then run them off their runtime's workers.
    pub fn waits_for_disk(&self) -> bool {
        self.registry.storage.waits_for_disk()
    }

    /// How long the storage's fsyncs have taken (`None` for a storage that never fsyncs).
    pub fn fsync_timings(&self) -> Option<crate::TimingsSnapshot> {
        self.registry.storage.fsync_timings()
    }

    /// The storage's kind: `memory` or `file`.
    pub fn storage_kind(&self) -> &'static str {
        self.registry.storage.kind()
    }

    /// What the storage found when the broker started, one line each: damage it skipped
    /// or cut off (naming topic, file, bytes and lost offsets), quarantined topics, and
    /// files it left alone.
    pub fn recovery_warnings(&self) -> &[String] {
        &self.registry.warnings
    }

    /// Topics found in storage that cannot be served.
    pub fn quarantined(&self) -> &[QuarantinedTopic] {
        &self.registry.quarantined
    }

    /// The limit on a message's [`NewMessage::encoded_size`], if any.
    pub fn max_message_size(&self) -> Option<u64> {
        self.registry.max_message
    }

    /// Puts everything written so far on disk (call at shutdown).
    ///
    /// # Errors
    /// [`Error::Storage`] when an fsync fails.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.registry.storage.flush()?)
    }

    /// Appends one message, creating the topic if needed.
    ///
    /// ```
    /// use mq_core::{Broker, NewMessage, Offset, TopicName};
    /// let broker = Broker::new();
    /// let receipt = broker.publish(&TopicName::new("orders")?, NewMessage::new("hello"))?;
    /// assert_eq!(receipt.offset, Offset(0));
    /// # Ok::<(), mq_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TopicFull`] when the topic's bounds are reached and its overflow is
    /// `reject`; [`Error::MessageTooLarge`] over the broker's message limit;
    /// [`Error::TopicQuarantined`] for a topic whose files cannot be read;
    /// [`Error::Storage`] when the storage fails.
    pub fn publish(&self, topic: &TopicName, message: NewMessage) -> Result<Receipt, Error> {
        let receipt = self.publish_batch(topic, vec![message])?;
        Ok(Receipt {
            offset: receipt.first,
            durability: receipt.durability,
        })
    }

    /// Appends a batch, all or nothing, creating the topic if needed. The messages get
    /// consecutive offsets in the batch's order.
    ///
    /// # Errors
    /// As [`Broker::publish`]; on error nothing of the batch was appended.
    pub fn publish_batch(
        &self,
        topic: &TopicName,
        batch: Vec<NewMessage>,
    ) -> Result<BatchReceipt, Error> {
        self.publish_stamped(topic, batch, None)
    }

    /// Appends a batch numbered by an idempotent producer: `stamp` names the producer and
    /// the number of the batch's first message (the others follow it). A batch whose numbers
    /// the topic already stored for that producer is not stored again: the receipt is the
    /// first copy's, once everything stored before is as durable as a new batch would be.
    /// Numbers may skip (a refused batch leaves a gap), never go back within a batch.
    ///
    /// ```
    /// use mq_core::{Broker, NewMessage, ProducerStamp, TopicName};
    /// let broker = Broker::new();
    /// let topic = TopicName::new("orders")?;
    /// let stamp = ProducerStamp { producer: 42, seq: 0 };
    /// let first = broker.publish_idempotent(&topic, stamp, vec![NewMessage::new("a")])?;
    /// let again = broker.publish_idempotent(&topic, stamp, vec![NewMessage::new("a")])?;
    /// assert_eq!(first.first, again.first);
    /// assert_eq!(broker.topic_stats(&topic)?.retained, 1);
    /// # Ok::<(), mq_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Broker::publish`]; [`Error::SequenceOverlap`] for a batch that overlaps what
    /// the producer stored; [`Error::DuplicateBatch`] for one stored too long ago to tell
    /// its offsets (it is not stored again).
    pub fn publish_idempotent(
        &self,
        topic: &TopicName,
        stamp: ProducerStamp,
        batch: Vec<NewMessage>,
    ) -> Result<BatchReceipt, Error> {
        self.publish_stamped(topic, batch, Some(stamp))
    }

    fn publish_stamped(
        &self,
        topic: &TopicName,
        batch: Vec<NewMessage>,
        stamp: Option<ProducerStamp>,
    ) -> Result<BatchReceipt, Error> {
        if let Some(base) = topic.dead_letter_of() {
            return Err(Error::InvalidName(crate::name::NameError::Reserved {
                name: topic.to_string(),
                base: base.to_string(),
            }));
        }
        if let Some(limit) = self.registry.max_message {
            for (index, m) in batch.iter().enumerate() {
                let size = m.encoded_size();
                if size > limit {
                    return Err(Error::MessageTooLarge {
                        topic: topic.clone(),
                        index,
                        size,
                        limit,
                    });
                }
            }
        }
        self.registry
            .append_stamped(topic, batch, self.registry.auto_create, stamp)
    }

    /// Creates a topic with `config`.
    ///
    /// # Errors
    /// [`Error::TopicExists`] if it exists; [`Error::InvalidConfig`] for a bad config.
    pub fn create_topic(&self, topic: &TopicName, config: TopicConfig) -> Result<(), Error> {
        config.validate()?;
        self.registry.create(topic, config, true).map(|_| ())
    }

    /// Deletes a topic, its messages and its groups. Its consumers get
    /// [`Error::TopicDeleted`] from then on.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist; [`Error::Storage`] when its files
    /// cannot be removed.
    pub fn delete_topic(&self, topic: &TopicName) -> Result<(), Error> {
        self.registry.quarantine_of(topic)?;
        let handle = {
            let mut topics = self
                .registry
                .topics
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            topics.remove(topic).ok_or_else(|| Error::TopicNotFound {
                topic: topic.clone(),
            })?
        };
        let mut wakers = Vec::new();
        {
            let mut state = handle.lock();
            state.deleted = true;
            for group in state.groups.values_mut() {
                group.take_wakers(&mut wakers);
            }
            state.groups.clear();
            state.log = Log::new(Offset(0), Arc::clone(&self.registry.memory));
            // Close the topic's files now: consumers may keep this state alive after a
            // topic of the same name has been created again.
            state.store = Box::new(MemoryTopic);
        }
        wakers.into_iter().for_each(Waker::wake);
        self.registry.storage.remove_topic(topic)?;
        Ok(())
    }

    /// The names of all topics, sorted.
    pub fn topics(&self) -> Vec<TopicName> {
        let topics = self
            .registry
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<_> = topics.keys().cloned().collect();
        names.sort();
        names
    }

    /// A topic's config and counters.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist.
    pub fn describe(&self, topic: &TopicName) -> Result<TopicInfo, Error> {
        let handle = self.registry.get(topic)?;
        let state = handle.lock();
        Ok(TopicInfo {
            config: state.config.clone(),
            stats: state.stats(),
        })
    }

    /// A group in detail: counters, settings, consumers and their oldest un-acked
    /// deliveries.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`].
    pub fn describe_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
    ) -> Result<crate::GroupInfo, Error> {
        let handle = self.registry.get(topic)?;
        let state = handle.lock();
        let g = state
            .groups
            .get(group)
            .ok_or_else(|| Error::GroupNotFound {
                topic: topic.clone(),
                group: group.clone(),
            })?;
        let (stats, detail) = g.info(&state.log);
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(crate::GroupInfo {
            topic: topic.clone(),
            stats,
            ack: detail.ack,
            exclusive: detail.exclusive,
            ack_timeout_ms: millis(detail.ack_timeout),
            start: detail.start,
            first_offset: state.log.first(),
            next_offset: state.log.next(),
            retain_consumed_ms: millis(state.config.retention.retain_consumed),
            next_delayed: detail.next_delayed,
            consumers: detail.consumers,
        })
    }

    /// A topic's counters.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist.
    pub fn topic_stats(&self, topic: &TopicName) -> Result<TopicStats, Error> {
        Ok(self.registry.get(topic)?.lock().stats())
    }

    /// The counters of a topic's groups, by name.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist.
    pub fn groups(&self, topic: &TopicName) -> Result<Vec<GroupStats>, Error> {
        Ok(self.topic_stats(topic)?.groups)
    }

    /// Deletes a durable group and its position.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`]; [`Error::GroupInUse`] while consumers are attached.
    pub fn delete_group(&self, topic: &TopicName, group: &GroupName) -> Result<(), Error> {
        let handle = self.registry.get(topic)?;
        let mut state = handle.lock();
        let consumers = state
            .groups
            .get(group)
            .ok_or_else(|| Error::GroupNotFound {
                topic: topic.clone(),
                group: group.clone(),
            })?
            .consumer_count();
        if consumers > 0 {
            return Err(Error::GroupInUse {
                topic: topic.clone(),
                group: group.clone(),
                consumers,
            });
        }
        state.groups.remove(group);
        let sync = state.record(&[GroupEvent::Deleted {
            group: group.clone(),
        }])?;
        drop(state);
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(())
    }

    /// Attaches a consumer, creating the topic and the group if needed.
    ///
    /// ```
    /// use mq_core::{Broker, GroupName, NewMessage, Subscription, TopicName};
    /// let broker = Broker::new();
    /// let topic = TopicName::new("jobs")?;
    /// let consumer = broker.subscribe(Subscription::new(topic.clone()).group(GroupName::new("w")?))?;
    /// assert!(consumer.poll()?.is_none());
    /// broker.publish(&topic, NewMessage::new("job-1"))?;
    /// let delivery = consumer.poll()?.expect("a message waits");
    /// consumer.ack(delivery.offset())?;
    /// # Ok::<(), mq_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::GroupBusy`] when exclusivity forbids attaching; [`Error::AckModeMismatch`]
    /// when the group exists with another ack mode.
    pub fn subscribe(&self, sub: Subscription) -> Result<Consumer, Error> {
        let id = ConsumerId(self.registry.next_consumer.fetch_add(1, Ordering::Relaxed));
        let group_name = sub
            .group
            .clone()
            .unwrap_or_else(|| GroupName::ephemeral(id.0));
        let mut handle = self
            .registry
            .get_or_create_if(&sub.topic, sub.create_topic)?;
        let mut sync = None;
        let ack = loop {
            let mut state = handle.lock();
            if state.deleted {
                drop(state);
                handle = self
                    .registry
                    .get_or_create_if(&sub.topic, sub.create_topic)?;
                continue;
            }
            let state = &mut *state;
            let defaults = state.config.groups.clone();
            if !state.groups.contains_key(&group_name) {
                if let Some(limit) = self.registry.max_groups
                    && state.groups.len() >= limit
                {
                    self.registry.refused_groups.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::TooManyGroups {
                        topic: sub.topic.clone(),
                        limit,
                    });
                }
                let settings = GroupSettings {
                    ack: sub.ack.unwrap_or(defaults.ack),
                    ack_timeout: defaults.ack_timeout,
                    max_deliveries: defaults.max_deliveries,
                };
                let mut group = Group::new(group_name.clone(), settings, sub.start, &state.log);
                if !group_name.is_ephemeral() && state.store.keeps_groups() {
                    group.journal_changes();
                    sync = state.record(&[group.created_event()])?;
                }
                state.groups.insert(group_name.clone(), group);
            } else if sub.start != crate::config::StartPosition::Resume && !sub.start_if_new {
                return Err(Error::StartConflict {
                    topic: sub.topic.clone(),
                    group: group_name,
                });
            }
            let Some(group) = state.groups.get_mut(&group_name) else {
                unreachable!("inserted above");
            };
            if let Some(requested) = sub.ack.filter(|&a| a != group.ack_mode()) {
                return Err(Error::AckModeMismatch {
                    topic: sub.topic.clone(),
                    group: group_name,
                    existing: group.ack_mode(),
                    requested,
                });
            }
            let prefetch = sub.prefetch.unwrap_or(defaults.prefetch);
            if !group.attach(id, prefetch, sub.exclusive) {
                return Err(Error::GroupBusy {
                    topic: sub.topic.clone(),
                    group: group_name,
                });
            }
            break group.ack_mode();
        };
        if let Some(sync) = sync {
            sync.wait()?;
        }
        Ok(Consumer {
            registry: Arc::clone(&self.registry),
            topic: handle,
            group: group_name,
            id,
            ack,
            detached: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The cleaner pass at time `now`: redelivers what timed out, releases delayed nacks,
    /// moves poison messages to dead-letter topics and applies retention. The embedding
    /// program calls it periodically (the server every 100 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mq_core::{Broker, Clock, GroupName, ManualClock, NewMessage, Subscription, Timestamp, TopicName};
    ///
    /// let clock = ManualClock::new(Timestamp::from_millis(0));
    /// let broker = Broker::builder().clock(clock.clone()).build()?;
    /// let topic = TopicName::new("t")?;
    /// let c = broker.subscribe(Subscription::new(topic.clone()).group(GroupName::new("g")?))?;
    /// broker.publish(&topic, NewMessage::new("x"))?;
    /// let d = c.poll()?.unwrap();
    /// c.ack(d.offset())?;
    /// clock.advance(Duration::from_millis(1));
    /// assert_eq!(broker.tick(clock.now()).deleted, 1);
    /// # Ok::<(), mq_core::Error>(())
    /// ```
    pub fn tick(&self, now: Timestamp) -> TickReport {
        cleaner::clean(&self.registry, now)
    }

    /// Broker-wide counters.
    pub fn stats(&self) -> BrokerStats {
        let topics = self
            .registry
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        BrokerStats {
            uptime_ms: u64::try_from(self.now().since(self.registry.started).as_millis())
                .unwrap_or(u64::MAX),
            connections: 0,
            topics: topics.len() as u64,
            messages_in: self.registry.messages_in.load(Ordering::Relaxed),
            messages_out: self.registry.messages_out.load(Ordering::Relaxed),
            quarantined: self.registry.quarantined.clone(),
            refused_topics: self.registry.refused_topics.load(Ordering::Relaxed),
            memory_bytes: self.registry.memory.used(),
            memory_limit: self.registry.memory.limit(),
            refused_memory: self.registry.memory.refused.load(Ordering::Relaxed),
            refused_groups: self.registry.refused_groups.load(Ordering::Relaxed),
        }
    }
}
