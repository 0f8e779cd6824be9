//! The errors of `mq-core`: one enum for the library, each variant with the context a
//! caller needs to act on it.

use crate::message::Offset;
use crate::name::{GroupName, NameError, TopicName};
use crate::storage::StorageError;

/// Which retention bound a refused append would have crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_messages`.
    Messages(u64),
    /// `max_bytes`.
    Bytes(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Messages(n) => write!(f, "max_messages {n}"),
            Limit::Bytes(n) => write!(f, "max_bytes {n}"),
        }
    }
}

/// Everything that can go wrong in the broker core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A topic or group name is not valid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The topic does not exist.
    #[error("topic \"{topic}\" does not exist: publish to it or create it first")]
    TopicNotFound {
        /// The topic.
        topic: TopicName,
    },
    /// `create_topic` for a topic that already exists.
    #[error("topic \"{topic}\" already exists: delete it first or use it as it is")]
    TopicExists {
        /// The topic.
        topic: TopicName,
    },
    /// A consumer whose topic was deleted under it.
    #[error("topic \"{topic}\" was deleted: subscribe again to use it")]
    TopicDeleted {
        /// The topic.
        topic: TopicName,
    },
    /// The group does not exist on the topic.
    #[error("group \"{group}\" does not exist on topic \"{topic}\"")]
    GroupNotFound {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// A subscription gave a start for a group that exists: it would be ignored (or move
    /// the group under its other consumers).
    #[error(
        "group \"{group}\" of topic \"{topic}\" exists and continues where it is: subscribe \
         without a start to join it there, or move it first with `mq groups seek`"
    )]
    StartConflict {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// `create_group` for a group that already exists.
    #[error(
        "group \"{group}\" already exists on topic \"{topic}\": use it, or move it with \
         `mq groups seek`"
    )]
    GroupExists {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// A second consumer tried to attach to an exclusive group, or an exclusive consumer to
    /// a group that already has consumers.
    #[error(
        "group \"{group}\" on topic \"{topic}\" is exclusive and already has a consumer: \
         use another group or stop the other consumer"
    )]
    GroupBusy {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// A group cannot be deleted while consumers are attached.
    #[error(
        "group \"{group}\" on topic \"{topic}\" has {consumers} consumer(s) attached: \
         stop them before deleting the group"
    )]
    GroupInUse {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
        /// How many consumers are attached.
        consumers: usize,
    },
    /// A subscriber asked for an ack mode other than the existing group's.
    #[error(
        "group \"{group}\" on topic \"{topic}\" uses ack mode {existing:?}, not {requested:?}: \
         use the group's mode or another group"
    )]
    AckModeMismatch {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
        /// The group's mode.
        existing: crate::AckMode,
        /// The mode asked for.
        requested: crate::AckMode,
    },
    /// An append would exceed the topic's limits and its overflow policy is `reject`.
    #[error(
        "topic \"{topic}\" is full ({limit}): consume and ack messages, raise the limit, \
         or use overflow drop-oldest"
    )]
    TopicFull {
        /// The topic.
        topic: TopicName,
        /// The bound that was hit.
        limit: Limit,
    },
    /// Holding the batch in memory would pass the broker-wide memory bound, and nothing
    /// could leave memory to make room.
    #[error(
        "the broker holds its limit of {limit} bytes of messages in memory, so topic \
         \"{topic}\" refuses the batch: consume and ack, delete or purge topics, or raise \
         --max-memory"
    )]
    MemoryFull {
        /// The topic the batch was for.
        topic: TopicName,
        /// The bound, in bytes.
        limit: u64,
    },
    /// A numbered batch some of whose numbers were stored and some not.
    #[error(
        "producer {producer:#x} sent a batch numbered from {seq} to topic \"{topic}\", but \
         it already stored up to {last}: resend batches exactly as first sent, or start a new \
         producer"
    )]
    SequenceOverlap {
        /// The topic.
        topic: TopicName,
        /// The producer's id.
        producer: u64,
        /// The number of the batch's first message.
        seq: u64,
        /// The highest number stored for the producer.
        last: u64,
    },
    /// A numbered batch stored before, too long ago for its offsets to be remembered.
    #[error(
        "producer {producer:#x}'s batch numbered from {seq} is already stored in topic \
         \"{topic}\" (not stored again), but too long ago to tell its offsets"
    )]
    DuplicateBatch {
        /// The topic.
        topic: TopicName,
        /// The producer's id.
        producer: u64,
        /// The number of the batch's first message.
        seq: u64,
    },
    /// Ack or nack of offsets this consumer does not have in flight.
    #[error(
        "offsets {offsets:?} are not in flight to this consumer of group \"{group}\" on topic \
         \"{topic}\": ack only what was delivered, once"
    )]
    NotInFlight {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
        /// The offsets that were not in flight.
        offsets: Vec<Offset>,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A message of a batch is larger than the broker accepts.
    #[error(
        "message {index} of the batch to topic \"{topic}\" is {size} bytes (payload, key, \
         headers and 6 bytes per header); this broker accepts at most {limit}: send it \
         smaller, split it, or raise the server's --max-frame"
    )]
    MessageTooLarge {
        /// The topic.
        topic: TopicName,
        /// The message's position in its batch.
        index: usize,
        /// Its [`crate::NewMessage::encoded_size`].
        size: u64,
        /// The broker's limit.
        limit: u64,
    },
    /// Storage holds a message larger than the broker is configured to deliver.
    #[error(
        "topic \"{topic}\" holds a message of {size} bytes, more than the {limit} bytes this \
         broker may deliver: raise --max-frame back (to at least {size} plus the frame \
         overhead in PROTOCOL.md)"
    )]
    StoredMessageTooLarge {
        /// The topic.
        topic: TopicName,
        /// The largest stored message's [`crate::Message::encoded_size`].
        size: u64,
        /// The broker's limit.
        limit: u64,
    },
    /// The topic's files could not be read at start: it is set aside until an operator
    /// repairs, moves or deletes them.
    #[error(
        "topic \"{topic}\" is quarantined: {reason}; stop the server, repair or move its \
         directory away (docs/STORAGE.md), then start it again"
    )]
    TopicQuarantined {
        /// The topic.
        topic: TopicName,
        /// Why its files cannot be read.
        reason: String,
    },
    /// Creating the topic would pass the broker's topic limit.
    #[error(
        "topic \"{topic}\" was not created: the broker holds its limit of {limit} topics; \
         delete unused topics or raise --max-topics"
    )]
    TooManyTopics {
        /// The topic.
        topic: TopicName,
        /// The limit.
        limit: usize,
    },
    /// Creating the group would pass the broker's per-topic group limit.
    #[error(
        "topic \"{topic}\" holds its limit of {limit} groups: delete unused groups, use an \
         existing one, or raise --max-groups-per-topic"
    )]
    TooManyGroups {
        /// The topic.
        topic: TopicName,
        /// The limit.
        limit: usize,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<crate::config::InvalidConfig> for Error {
    fn from(e: crate::config::InvalidConfig) -> Self {
        Error::InvalidConfig { reason: e.reason }
    }
}
