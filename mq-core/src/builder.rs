//! [`BrokerBuilder`]: a broker's clock, storage and message limit, and the recovery of
//! what the storage holds when it is built.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::broker::Broker;
use crate::budget::MemoryBudget;
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::memory::MemoryStorage;
use crate::producers::ProducerLimits;
use crate::registry::{Registry, Start};
use crate::storage::Storage;
use crate::topic::Topic;

/// Builds a [`Broker`] with a chosen clock and storage.
#[derive(Debug, Default)]
pub struct BrokerBuilder {
    clock: Option<Arc<dyn Clock>>,
    storage: Option<Arc<dyn Storage>>,
    max_message: Option<u64>,
    max_topics: Option<usize>,
    max_groups: Option<usize>,
    max_memory: Option<u64>,
    no_auto_create: bool,
    producers: ProducerLimits,
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

    /// Refuses to create more than `n` topics (default: no limit); topics recovered from
    /// storage are kept, but count.
    #[must_use]
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = Some(n);
        self
    }

    /// Refuses to create more than `n` groups on one topic (default: no limit).
    #[must_use]
    pub fn max_groups_per_topic(mut self, n: usize) -> Self {
        self.max_groups = Some(n);
        self
    }

    /// Whether a publish to a topic that does not exist creates it with the default
    /// config (the default); without, it is refused with [`Error::TopicNotFound`].
    /// Dead-letter topics are always created when needed.
    #[must_use]
    pub fn auto_create_topics(mut self, create: bool) -> Self {
        self.no_auto_create = !create;
        self
    }

    /// Bounds the bytes of messages held in memory across all topics (each message counts
    /// its encoded record size). At the bound, messages the storage can read back leave
    /// memory first, then messages every group has acked are removed; only then are
    /// appends refused with [`Error::MemoryFull`]. Unbounded by default.
    #[must_use]
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// How many idempotent producers each topic remembers, and for how long (default:
    /// [`ProducerLimits::default`]): a batch sent again by a producer it forgot is stored
    /// again.
    #[must_use]
    pub fn producer_limits(mut self, limits: ProducerLimits) -> Self {
        self.producers = limits;
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
        let storage = self.storage.unwrap_or_else(|| Arc::new(MemoryStorage));
        let mut topics = FxHashMap::default();
        let memory = Arc::new(MemoryBudget::new(self.max_memory));
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
            let topic = Topic::restore(recovered, Arc::clone(&memory), self.producers);
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        Ok(Broker {
            registry: Arc::new(Registry::new(Start {
                topics,
                quarantined: recovery.quarantined,
                max_message: self.max_message,
                max_topics: self.max_topics,
                max_groups: self.max_groups,
                auto_create: !self.no_auto_create,
                producers: self.producers,
                memory,
                storage,
                clock,
                warnings,
            })),
        })
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
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}
