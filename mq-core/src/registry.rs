//! [`Registry`]: what every handle on a broker shares — the topic map, the storage, the
//! clock, the message limit and the broker-wide counters — and the two operations both the
//! broker and its consumers need: finding or creating a topic, and appending to it.
//!
//! Lock order: a topic's creation lock, then the topic map, then one topic at a time; a
//! topic's lock is never held while waking consumers or writing to another topic (the
//! dead-letter topic). The map's write lock is held only to insert or remove an entry:
//! creating a topic's files happens under the creation lock of that name alone, so an
//! auto-created topic never stalls publishers of other topics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Waker;

use rustc_hash::FxHashMap;

use crate::budget::MemoryBudget;
use crate::clock::{Clock, Timestamp};
use crate::config::TopicConfig;
use crate::error::Error;
use crate::message::NewMessage;
use crate::name::TopicName;
use crate::producers::{ProducerLimits, ProducerStamp};
use crate::receipt::BatchReceipt;
use crate::storage::{Durability, QuarantinedTopic, Storage};
use crate::topic::Topic;

/// The state shared by a broker's handles.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) topics: RwLock<FxHashMap<TopicName, Arc<Topic>>>,
    /// One lock per topic name being created, so two creations of one name do not race
    /// and creations of different names do not wait for each other.
    creating: Mutex<FxHashMap<TopicName, Arc<Mutex<()>>>>,
    /// Topics found in storage that cannot be served; fixed at start.
    pub(crate) quarantined: Vec<QuarantinedTopic>,
    pub(crate) max_message: Option<u64>,
    pub(crate) max_topics: Option<usize>,
    pub(crate) max_groups: Option<usize>,
    /// Whether a publish to a topic that does not exist creates it.
    pub(crate) auto_create: bool,
    /// How many idempotent producers a topic remembers, and for how long.
    pub(crate) producers: ProducerLimits,
    /// Bytes of messages held in memory across topics, and their bound.
    pub(crate) memory: Arc<MemoryBudget>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) started: Timestamp,
    /// Topic creations refused at `max_topics`.
    pub(crate) refused_topics: AtomicU64,
    /// Group creations refused at `max_groups`.
    pub(crate) refused_groups: AtomicU64,
    pub(crate) warnings: Vec<String>,
    pub(crate) next_consumer: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
}

/// What a [`Registry`] starts with.
pub(crate) struct Start {
    pub(crate) topics: FxHashMap<TopicName, Arc<Topic>>,
    pub(crate) quarantined: Vec<QuarantinedTopic>,
    pub(crate) max_message: Option<u64>,
    pub(crate) max_topics: Option<usize>,
    pub(crate) max_groups: Option<usize>,
    pub(crate) auto_create: bool,
    pub(crate) producers: ProducerLimits,
    pub(crate) memory: Arc<MemoryBudget>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) warnings: Vec<String>,
}

impl Registry {
    pub(crate) fn new(start: Start) -> Self {
        Self {
            topics: RwLock::new(start.topics),
            creating: Mutex::new(FxHashMap::default()),
            quarantined: start.quarantined,
            max_message: start.max_message,
            max_topics: start.max_topics,
            max_groups: start.max_groups,
            auto_create: start.auto_create,
            producers: start.producers,
            memory: start.memory,
            refused_topics: AtomicU64::new(0),
            refused_groups: AtomicU64::new(0),
            storage: start.storage,
            started: start.clock.now(),
            clock: start.clock,
            warnings: start.warnings,
            next_consumer: AtomicU64::new(1),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
        }
    }

    /// The clock's current time.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The refusal for a quarantined topic, if `name` is one.
    pub(crate) fn quarantine_of(&self, name: &TopicName) -> Result<(), Error> {
        match self.quarantined.iter().find(|q| &q.name == name) {
            Some(q) => Err(Error::TopicQuarantined {
                topic: name.clone(),
                reason: q.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Every topic now.
    pub(crate) fn all(&self) -> Vec<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.values().cloned().collect()
    }

    /// The topic called `name`, if it exists.
    pub(crate) fn find(&self, name: &TopicName) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.get(name).cloned()
    }

    /// The topic called `name`.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], or [`Error::TopicQuarantined`].
    pub(crate) fn get(&self, name: &TopicName) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.find(name) {
            return Ok(topic);
        }
        self.quarantine_of(name)?;
        Err(Error::TopicNotFound {
            topic: name.clone(),
        })
    }

    /// The topic called `name`, created with the default config if needed and `create`.
    ///
    /// # Errors
    /// As [`Registry::get`] when it does not exist and `create` is false; as
    /// [`Registry::get_or_create`] otherwise.
    pub(crate) fn get_or_create_if(
        &self,
        name: &TopicName,
        create: bool,
    ) -> Result<Arc<Topic>, Error> {
        if create {
            self.get_or_create(name)
        } else {
            self.get(name)
        }
    }

    /// The topic called `name`, created with the default config if needed.
    ///
    /// # Errors
    /// As [`Registry::create`].
    pub(crate) fn get_or_create(&self, name: &TopicName) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.find(name) {
            return Ok(topic);
        }
        self.create(name, TopicConfig::default(), false)
    }

    /// Creates the topic `name` with `config`; an existing one is returned, or refused when
    /// `must_be_new`.
    ///
    /// # Errors
    /// [`Error::TopicExists`], [`Error::TopicQuarantined`], or the storage's failure.
    pub(crate) fn create(
        &self,
        name: &TopicName,
        config: TopicConfig,
        must_be_new: bool,
    ) -> Result<Arc<Topic>, Error> {
        let lock = {
            let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(creating.entry(name.clone()).or_default())
        };
        let created = {
            let _creating = lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.create_alone(name, config, must_be_new)
        };
        let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&lock) <= 2 {
            creating.remove(name);
        }
        created
    }

    /// [`Registry::create`] once this thread is the only one creating `name`.
    fn create_alone(
        &self,
        name: &TopicName,
        config: TopicConfig,
        must_be_new: bool,
    ) -> Result<Arc<Topic>, Error> {
        if let Some(topic) = self.find(name) {
            if must_be_new {
                return Err(Error::TopicExists {
                    topic: name.clone(),
                });
            }
            return Ok(topic);
        }
        self.quarantine_of(name)?;
        if let Some(limit) = self.max_topics {
            let count = self
                .topics
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            if count >= limit {
                self.refused_topics.fetch_add(1, Ordering::Relaxed);
                return Err(Error::TooManyTopics {
                    topic: name.clone(),
                    limit,
                });
            }
        }
        // The files are made without the map's lock: other topics go on meanwhile.
        let store = self.storage.open_topic(name, &config)?;
        let topic = Arc::new(Topic::new(
            name.clone(),
            config,
            store,
            Arc::clone(&self.memory),
            self.producers,
        ));
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        topics.insert(name.clone(), Arc::clone(&topic));
        Ok(topic)
    }

    /// Appends a batch, all or nothing, creating the topic if needed; waits for the fsync
    /// the storage asks for, after the topic's lock is released.
    ///
    /// # Errors
    /// What the topic or the storage refuses; nothing of the batch is appended then.
    pub(crate) fn append(
        &self,
        topic: &TopicName,
        batch: Vec<NewMessage>,
        create: bool,
    ) -> Result<BatchReceipt, Error> {
        self.append_stamped(topic, batch, create, None)
    }

    /// Like [`Registry::append`] for a batch `stamp` numbers: a batch sent again is not
    /// stored twice, and gets the receipt of its first copy.
    ///
    /// # Errors
    /// As [`Registry::append`], and what [`crate::producers`] refuses.
    pub(crate) fn append_stamped(
        &self,
        topic: &TopicName,
        batch: Vec<NewMessage>,
        create: bool,
        stamp: Option<ProducerStamp>,
    ) -> Result<BatchReceipt, Error> {
        let now = self.now();
        let mut wakers = Vec::new();
        let mut handle = self.get_or_create_if(topic, create)?;
        let bytes = batch.iter().map(NewMessage::size).sum();
        if self.memory.limit().is_some() {
            self.make_memory_room(&handle, bytes)?;
        }
        let (mut receipt, sync) = loop {
            let mut state = handle.lock();
            if state.deleted {
                drop(state);
                handle = self.get_or_create_if(topic, create)?;
                continue;
            }
            break state.append(batch, bytes, now, stamp, &mut wakers)?;
        };
        if let Some(sync) = sync {
            sync.wait()?;
            receipt.durability = Durability::Fsynced;
        }
        wakers.into_iter().for_each(Waker::wake);
        self.messages_in.fetch_add(receipt.count, Ordering::Relaxed);
        Ok(receipt)
    }

    /// Makes room in the broker-wide memory budget for `bytes` more of `topic`: messages the
    /// storage can read back leave memory first (oldest loaded first, topic by topic), then
    /// messages every group has acked are removed from topics held only in memory. A topic whose store cannot read messages
    /// back refuses the batch when that is not enough; one that can takes it and lets older
    /// messages leave memory.
    ///
    /// # Errors
    /// [`Error::MemoryFull`] when the batch does not fit; [`Error::Storage`] when a topic
    /// cannot be trimmed.
    fn make_memory_room(&self, topic: &Arc<Topic>, bytes: u64) -> Result<(), Error> {
        if self.memory.excess(bytes) == 0 {
            return Ok(());
        }
        // Make a tenth of the budget more room than needed, so that the next appends do
        // not each walk every topic again.
        let slack = self.memory.limit().unwrap_or(0) / 10;
        let topics = self.all();
        for t in &topics {
            let want = self.memory.excess(bytes + slack);
            if want == 0 {
                return Ok(());
            }
            t.lock().log.shed(want);
        }
        for t in &topics {
            if self.memory.excess(bytes) == 0 {
                return Ok(());
            }
            let mut state = t.lock();
            if !state.log.evictable() {
                state.drop_consumed()?;
            }
        }
        let state = topic.lock();
        if self.memory.excess(bytes) == 0 || state.log.evictable() {
            return Ok(());
        }
        drop(state);
        self.memory.refused.fetch_add(1, Ordering::Relaxed);
        Err(Error::MemoryFull {
            topic: topic.name.clone(),
            limit: self.memory.limit().unwrap_or(0),
        })
    }

    /// Counts deliveries for the broker-wide stats.
    pub(crate) fn count_out(&self, n: usize) {
        if n > 0 {
            self.messages_out
                .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}
