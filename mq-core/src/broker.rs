//! [`Broker`]: the handle an embedding program holds. Cheap to clone, `Send + Sync`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::Waker;

use rustc_hash::FxHashMap;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::TopicConfig;
use crate::consumer::{Consumer, Subscription};
use crate::dlq::dead_letter_message;
use crate::error::Error;
use crate::group::{ConsumerId, DeadLetter, Group, GroupSettings};
use crate::log::Log;
use crate::memory::{MemoryStorage, MemoryTopic};
use crate::message::{Message, NewMessage, Offset};
use crate::name::{GroupName, TopicName};
use crate::stats::{BrokerStats, GroupStats, TopicInfo, TopicStats};
use crate::storage::{Durability, GroupEvent, QuarantinedTopic, Storage};
use crate::topic::{BatchReceipt, Topic};

/// What the broker confirms for one appended message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The message's offset.
    pub offset: Offset,
    /// How durable it is now.
    pub durability: Durability,
}

/// What one cleaner pass ([`Broker::tick`]) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Messages deleted by retention.
    pub deleted: u64,
    /// Messages moved to dead-letter topics after their ack timeout.
    pub dead_lettered: u64,
    /// Failures met on the way (the pass goes on past them).
    pub errors: Vec<Error>,
}

/// Builds a [`Broker`] with a chosen clock and storage.
#[derive(Debug, Default)]
pub struct BrokerBuilder {
    clock: Option<Arc<dyn Clock>>,
    storage: Option<Arc<dyn Storage>>,
    max_message: Option<u64>,
}

impl BrokerBuilder {
    /// Uses `clock` for timestamps, timeouts and retention (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Uses `storage` for topics (default: [`MemoryStorage`]).
    #[must_use]
    pub fn storage(mut self, storage: impl Storage + 'static) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Refuses messages whose [`NewMessage::encoded_size`] exceeds `bytes` (default: no
    /// limit). A server sets it from its frame limit, so that every message it accepts can
    /// be delivered, also as a dead letter.
    #[must_use]
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// Builds the broker, recovering the topics the storage holds. Topics the storage
    /// cannot read are quarantined ([`Broker::quarantined`]); the others serve.
    ///
    /// # Errors
    /// [`Error::Storage`] when the storage cannot be read;
    /// [`Error::StoredMessageTooLarge`] when a topic holds a message over the
    /// [`BrokerBuilder::max_message_size`].
    pub fn build(self) -> Result<Broker, Error> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let started = clock.now();
        let storage = self.storage.unwrap_or_else(|| Arc::new(MemoryStorage));
        let mut topics = FxHashMap::default();
        let recovery = storage.recover()?;
        let mut warnings = recovery.notices;
        for q in &recovery.quarantined {
            warnings.push(format!(
                "topic \"{}\" is quarantined: {}; its files were left as they are \
                 (see docs/STORAGE.md to release it)",
                q.name, q.reason
            ));
        }
        for recovered in recovery.topics {
            if let Some(limit) = self.max_message
                && recovered.largest_message > limit
            {
                return Err(Error::StoredMessageTooLarge {
                    topic: recovered.name,
                    size: recovered.largest_message,
                    limit,
                });
            }
            warnings.extend(recovered.warnings.iter().cloned());
            let topic = Topic::restore(recovered);
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        Ok(Broker {
            inner: Arc::new(Inner {
                topics: RwLock::new(topics),
                quarantined: recovery.quarantined,
                max_message: self.max_message,
                storage,
                clock,
                started,
                warnings,
                next_consumer: AtomicU64::new(1),
                messages_in: AtomicU64::new(0),
                messages_out: AtomicU64::new(0),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    topics: RwLock<FxHashMap<TopicName, Arc<Topic>>>,
    /// Topics found in storage that cannot be served; fixed at start.
    quarantined: Vec<QuarantinedTopic>,
    max_message: Option<u64>,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    started: Timestamp,
    warnings: Vec<String>,
    next_consumer: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

/// The broker: topics, their logs and groups. Clones share the same broker.
///
/// Lock order: the topic map, then one topic at a time; a topic's lock is never held while
/// waking consumers or writing to another topic (the dead-letter topic).
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    /// A broker on memory storage and the system clock.
    pub fn new() -> Self {
        BrokerBuilder::default()
            .build()
            .unwrap_or_else(|_| unreachable!("memory storage cannot fail to open"))
    }

    /// A builder to choose the clock and the storage.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// The broker clock's current time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The storage's kind: `memory` or `file`.
    pub fn storage_kind(&self) -> &'static str {
        self.inner.storage.kind()
    }

    /// What the storage found when the broker started, one line each: damage it skipped
    /// or cut off (naming topic, file, bytes and lost offsets), quarantined topics, and
    /// files it left alone.
    pub fn recovery_warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// Topics found in storage that cannot be served.
    pub fn quarantined(&self) -> &[QuarantinedTopic] {
        &self.inner.quarantined
    }

    /// The limit on a message's [`NewMessage::encoded_size`], if any.
    pub fn max_message_size(&self) -> Option<u64> {
        self.inner.max_message
    }

    /// The refusal for a quarantined topic, if `name` is one.
    fn quarantine_of(&self, name: &TopicName) -> Result<(), Error> {
        match self.inner.quarantined.iter().find(|q| &q.name == name) {
            Some(q) => Err(Error::TopicQuarantined {
                topic: name.clone(),
                reason: q.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Puts everything written so far on disk (call at shutdown).
    ///
    /// # Errors
    /// [`Error::Storage`] when an fsync fails.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.inner.storage.flush()?)
    }

    fn find(&self, name: &TopicName) -> Option<Arc<Topic>> {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        topics.get(name).cloned()
    }

    fn get(&self, name: &TopicName) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.find(name) {
            return Ok(topic);
        }
        self.quarantine_of(name)?;
        Err(Error::TopicNotFound {
            topic: name.clone(),
        })
    }

    fn get_or_create(&self, name: &TopicName) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.find(name) {
            return Ok(topic);
        }
        self.create(name, TopicConfig::default(), false)
    }

    fn create(
        &self,
        name: &TopicName,
        config: TopicConfig,
        must_be_new: bool,
    ) -> Result<Arc<Topic>, Error> {
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get(name) {
            if must_be_new {
                return Err(Error::TopicExists {
                    topic: name.clone(),
                });
            }
            return Ok(Arc::clone(topic));
        }
        self.quarantine_of(name)?;
        let store = self.inner.storage.open_topic(name, &config)?;
        let topic = Arc::new(Topic::new(name.clone(), config, store));
        topics.insert(name.clone(), Arc::clone(&topic));
        Ok(topic)
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
        if let Some(limit) = self.inner.max_message {
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
        self.append_batch(topic, batch)
    }

    /// Appends a batch without the message size check: dead-letter copies may exceed the
    /// limit by at most [`crate::dlq::RESERVE`], which the limit leaves room for.
    fn append_batch(
        &self,
        topic: &TopicName,
        batch: Vec<NewMessage>,
    ) -> Result<BatchReceipt, Error> {
        let now = self.now();
        let mut wakers = Vec::new();
        let mut handle = self.get_or_create(topic)?;
        let (mut receipt, sync) = loop {
            let mut state = handle.lock();
            if state.deleted {
                drop(state);
                handle = self.get_or_create(topic)?;
                continue;
            }
            break state.append(batch, now, &mut wakers)?;
        };
        if let Some(sync) = sync {
            sync.wait()?;
            receipt.durability = Durability::Fsynced;
        }
        wakers.into_iter().for_each(Waker::wake);
        self.inner
            .messages_in
            .fetch_add(receipt.count, Ordering::Relaxed);
        Ok(receipt)
    }

    /// Creates a topic with `config`.
    ///
    /// # Errors
    /// [`Error::TopicExists`] if it exists; [`Error::InvalidConfig`] for a bad config.
    pub fn create_topic(&self, topic: &TopicName, config: TopicConfig) -> Result<(), Error> {
        config.validate()?;
        self.create(topic, config, true).map(|_| ())
    }

    /// Deletes a topic, its messages and its groups. Its consumers get
    /// [`Error::TopicDeleted`] from then on.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist; [`Error::Storage`] when its files
    /// cannot be removed.
    pub fn delete_topic(&self, topic: &TopicName) -> Result<(), Error> {
        self.quarantine_of(topic)?;
        let handle = {
            let mut topics = self
                .inner
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
            state.log = Log::new(0);
            // Close the topic's files now: consumers may keep this state alive after a
            // topic of the same name has been created again.
            state.store = Box::new(MemoryTopic);
        }
        wakers.into_iter().for_each(Waker::wake);
        self.inner.storage.remove_topic(topic)?;
        Ok(())
    }

    /// The names of all topics, sorted.
    pub fn topics(&self) -> Vec<TopicName> {
        let topics = self
            .inner
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
        let handle = self.get(topic)?;
        let state = handle.lock();
        Ok(TopicInfo {
            config: state.config.clone(),
            stats: state.stats(),
        })
    }

    /// A topic's counters.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`] if it does not exist.
    pub fn topic_stats(&self, topic: &TopicName) -> Result<TopicStats, Error> {
        Ok(self.get(topic)?.lock().stats())
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
        let handle = self.get(topic)?;
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
        let id = ConsumerId(self.inner.next_consumer.fetch_add(1, Ordering::Relaxed));
        let group_name = sub
            .group
            .clone()
            .unwrap_or_else(|| GroupName::ephemeral(id.0));
        let mut handle = self.get_or_create(&sub.topic)?;
        let mut sync = None;
        let ack = loop {
            let mut state = handle.lock();
            if state.deleted {
                drop(state);
                handle = self.get_or_create(&sub.topic)?;
                continue;
            }
            let state = &mut *state;
            let defaults = state.config.groups.clone();
            if !state.groups.contains_key(&group_name) {
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
            broker: self.clone(),
            topic: handle,
            group: group_name,
            id,
            ack,
        })
    }

    /// Detaches a consumer (called when it is dropped).
    pub(crate) fn detach(&self, consumer: &Consumer) {
        let now = self.now();
        let mut dead = Vec::new();
        let mut wakers = Vec::new();
        let letters = {
            let mut state = consumer.topic.lock();
            let state = &mut *state;
            let Some(group) = state.groups.get_mut(&consumer.group) else {
                return;
            };
            group.detach(consumer.id, now, &mut dead);
            group.take_wakers(&mut wakers);
            if consumer.group.is_ephemeral() && group.consumer_count() == 0 {
                state.groups.remove(&consumer.group);
            }
            // Best effort: a failed journal write only means a restart redelivers these.
            let _ = state.persist_groups();
            // Nobody to report a failed read-back to: the messages stay in the log.
            state.dead_messages(&dead).unwrap_or_default()
        };
        wakers.into_iter().for_each(Waker::wake);
        // A consumer being dropped has nobody to report to; what the dead-letter topic
        // refuses stays in the group.
        let _ = self.dead_letter(&consumer.topic, &consumer.group, letters);
    }

    /// Appends dead letters of `group` on `topic` to `<topic>.dlq`, then tells the group:
    /// copied messages are done; those the dead-letter topic refused go back to waiting, so
    /// nothing is lost.
    ///
    /// # Errors
    /// Why the dead-letter topic refused them (full, storage).
    pub(crate) fn dead_letter(
        &self,
        topic: &Topic,
        group: &GroupName,
        letters: Vec<(Arc<Message>, DeadLetter)>,
    ) -> Result<(), Error> {
        if letters.is_empty() {
            return Ok(());
        }
        let batch = letters
            .iter()
            .map(|(message, letter)| dead_letter_message(&topic.name, group, message, *letter))
            .collect();
        let copied = self
            .append_batch(&topic.name.dead_letter(), batch)
            .map(|_| ());
        let offsets: Vec<u64> = letters.iter().map(|(_, d)| d.offset).collect();
        let mut wakers = Vec::new();
        let sync = {
            let mut state = topic.lock();
            let state = &mut *state;
            match state.groups.get_mut(group) {
                Some(g) => {
                    g.settle_dead(&offsets, copied.is_ok());
                    g.take_wakers(&mut wakers);
                    state.persist_groups()?
                }
                None => None,
            }
        };
        wakers.into_iter().for_each(Waker::wake);
        if let Some(sync) = sync {
            sync.wait()?;
        }
        copied
    }

    /// Counts deliveries for the broker-wide stats.
    pub(crate) fn count_out(&self, n: usize) {
        if n > 0 {
            self.inner
                .messages_out
                .fetch_add(n as u64, Ordering::Relaxed);
        }
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
        let topics: Vec<Arc<Topic>> = {
            let topics = self
                .inner
                .topics
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            topics.values().cloned().collect()
        };
        let mut report = TickReport::default();
        for topic in topics {
            let mut wakers = Vec::new();
            let mut letters = Vec::new();
            {
                let mut state = topic.lock();
                let state = &mut *state;
                let mut dead_by_group = Vec::new();
                for (name, group) in &mut state.groups {
                    let mut dead = Vec::new();
                    if group.expire(now, &mut dead) {
                        group.take_wakers(&mut wakers);
                    }
                    if !dead.is_empty() {
                        dead_by_group.push((name.clone(), dead));
                    }
                }
                for (name, dead) in dead_by_group {
                    match state.dead_messages(&dead) {
                        Ok(batch) => letters.push((name, batch)),
                        Err(e) => report.errors.push(e),
                    }
                }
                match state.clean(now) {
                    Ok(n) => report.deleted += n,
                    Err(e) => report.errors.push(e),
                }
                let journaled = state
                    .persist_groups()
                    .and_then(|_| state.compact_if_needed());
                if let Err(e) = journaled {
                    report.errors.push(e);
                }
            }
            wakers.into_iter().for_each(Waker::wake);
            for (group, batch) in letters {
                let n = batch.len() as u64;
                match self.dead_letter(&topic, &group, batch) {
                    Ok(()) => report.dead_lettered += n,
                    Err(e) => report.errors.push(e),
                }
            }
        }
        report
    }

    /// Broker-wide counters.
    pub fn stats(&self) -> BrokerStats {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        BrokerStats {
            uptime_ms: u64::try_from(self.now().since(self.inner.started).as_millis())
                .unwrap_or(u64::MAX),
            connections: 0,
            topics: topics.len() as u64,
            messages_in: self.inner.messages_in.load(Ordering::Relaxed),
            messages_out: self.inner.messages_out.load(Ordering::Relaxed),
            quarantined: self.inner.quarantined.clone(),
        }
    }
}
