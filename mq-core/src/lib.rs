//! `mq-core`: the whole mq broker model as an embeddable library — topics with an
//! append-only log, consumer groups with cursors, priority delivery, acks and redelivery,
//! dead-lettering, retention, storage and stats. No async runtime and no network: a program
//! uses it from plain threads, or awaits deliveries on any executor.
//!
//! ```
//! use mq_core::{AckMode, Broker, GroupName, NewMessage, Subscription, TopicName};
//!
//! let broker = Broker::new();
//! let orders = TopicName::new("orders")?;
//!
//! // Two groups each get every message (fan-out); consumers inside one group share them.
//! let billing = broker.subscribe(Subscription::new(orders.clone()).group(GroupName::new("billing")?))?;
//! let audit = broker.subscribe(
//!     Subscription::new(orders.clone()).group(GroupName::new("audit")?).ack(AckMode::Auto),
//! )?;
//!
//! broker.publish(&orders, NewMessage::new("routine"))?;
//! broker.publish(&orders, NewMessage::new("urgent").priority(9))?;
//!
//! // Highest priority first.
//! let first = billing.poll()?.expect("two messages wait");
//! assert_eq!(&first.message.payload[..], b"urgent");
//! billing.ack(first.offset())?;
//!
//! assert_eq!(audit.poll()?.map(|d| d.message.payload.clone()).as_deref(), Some(&b"urgent"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Time comes from an injectable [`Clock`]; retention, ack timeouts and delayed nacks are
//! applied by [`Broker::tick`], which the embedding program calls periodically.

mod ackset;
mod admin;
mod broker;
mod budget;
mod builder;
mod cleaner;
mod clock;
mod config;
mod consumer;
mod consumer_id;
mod cursor;
mod diagnosis;
pub mod dlq;
mod duration_form;
mod error;
mod file;
mod group;
mod log;
mod memory;
mod message;
mod name;
mod producers;
mod receipt;
mod record;
mod registry;
mod retention;
mod stats;
mod storage;
mod timings;
mod topic;

pub use admin::MAX_PEEK;
pub use broker::Broker;
pub use builder::BrokerBuilder;
pub use cleaner::TickReport;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{
    AckMode, DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_DELIVERIES, DEFAULT_PREFETCH,
    GroupDefaults, InvalidConfig, Overflow, RetentionConfig, StartPosition, TopicConfig,
    unknown_config_keys,
};
pub use consumer::{Consumer, Recv, RecvBatch, Subscription};
pub use consumer_id::ConsumerId;
pub use diagnosis::ConsumerFacts;
pub use error::{Error, Limit};
#[cfg(feature = "fault-injection")]
pub use file::FaultInjector;
#[cfg(feature = "fuzzing")]
pub use file::fuzzing;
pub use file::{
    CheckReport, DATA_FORMAT, DEFAULT_RESIDENT_BYTES, DEFAULT_SEGMENT_BYTES, FileOptions,
    FileStorage, FreeSpaceFloor, FsyncPolicy,
};
pub use group::Delivery;
pub use memory::MemoryStorage;
pub use message::{HEADER_FRAMING, Header, Message, NewMessage, Offset, RECORD_OVERHEAD};
pub use name::{DLQ_SUFFIX, GroupName, MAX_NAME_LEN, NameError, TopicName};
pub use producers::{
    BATCHES_KEPT, BatchStamp, DEFAULT_MAX_PRODUCERS, DEFAULT_PRODUCER_EXPIRY, ProducerLimits,
    ProducerStamp, RecoveredStamp,
};
pub use receipt::{BatchReceipt, Receipt};
pub use stats::{
    BrokerStats, ConsumerInfo, GroupInfo, GroupStats, LostRange, TopicInfo, TopicStats, Unacked,
};
pub use storage::{
    Appended, Durability, GroupEvent, QuarantinedTopic, ReadBack, ReadOut, Records, RecoveredGroup,
    RecoveredTopic, Recovery, Storage, StorageError, StoredMessage, SyncWait, TopicStore,
};
pub use timings::TimingsSnapshot;
