//! The storage seam: how a topic's log reaches (or does not reach) a medium.
//!
//! The in-memory log in [`crate::log`] always holds what is served; a [`Storage`] decides
//! what else happens to each appended batch and reports how durable it is. `memory`
//! ([`crate::MemoryStorage`]) keeps nothing else; the `file` storage (docs/STORAGE.md) writes a
//! segmented log.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::{AckMode, TopicConfig};
use crate::message::{Message, Offset};
use crate::name::{GroupName, TopicName};
use crate::producers::{BatchStamp, RecoveredStamp};
use crate::timings::TimingsSnapshot;

/// How durable an appended message is when the broker confirms it (PROTOCOL.md,
/// `durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Held in memory only.
    Memory,
    /// Handed to the operating system, not yet fsynced.
    Written,
    /// On disk.
    Fsynced,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failed while {context}: {message}")]
pub struct StorageError {
    /// What the storage was doing, e.g. `appending to topic "orders"`.
    pub context: String,
    /// The underlying error.
    pub message: String,
    /// The I/O error kind, when there was one.
    pub kind: Option<std::io::ErrorKind>,
}

impl StorageError {
    /// Wraps an I/O error with what the storage was doing.
    pub fn io(context: impl Into<String>, err: &std::io::Error) -> Self {
        Self {
            context: context.into(),
            message: err.to_string(),
            kind: Some(err.kind()),
        }
    }
}

/// A wait for data to reach disk, done after the topic's lock is released so that
/// concurrent writers share one fsync (group commit).
pub struct SyncWait(Box<dyn FnOnce() -> Result<(), StorageError> + Send>);

impl SyncWait {
    /// A wait that runs `wait`.
    pub fn new(wait: impl FnOnce() -> Result<(), StorageError> + Send + 'static) -> Self {
        Self(Box::new(wait))
    }

    /// Blocks until the data is on disk.
    ///
    /// # Errors
    /// [`StorageError`] when the fsync failed.
    pub fn wait(self) -> Result<(), StorageError> {
        (self.0)()
    }
}

impl fmt::Debug for SyncWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncWait")
    }
}

/// What a [`ReadBack`] brings back.
#[derive(Debug)]
pub enum ReadOut {
    /// Messages, in increasing offsets.
    Messages(Vec<Arc<Message>>),
    /// Whole records in the format of docs/STORAGE.md, back to back, of consecutive offsets
    /// from `first`, their checksums verified: the log holds them again as they are.
    Records {
        /// The offset of the first record.
        first: Offset,
        /// The records.
        data: Bytes,
    },
}

/// A read of stored messages, prepared under the topic's lock and done after it is
/// released, so that disk reads never hold up the topic's publishers and consumers.
pub struct ReadBack(Box<dyn FnOnce() -> Result<ReadOut, StorageError> + Send>);

impl ReadBack {
    /// A read that runs `read`, which decodes the messages.
    pub fn new(
        read: impl FnOnce() -> Result<Vec<Arc<Message>>, StorageError> + Send + 'static,
    ) -> Self {
        Self(Box::new(move || read().map(ReadOut::Messages)))
    }

    /// A read that runs `read`, which may bring back the records themselves
    /// ([`ReadOut::Records`]).
    pub fn records(read: impl FnOnce() -> Result<ReadOut, StorageError> + Send + 'static) -> Self {
        Self(Box::new(read))
    }

    /// Reads.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be read.
    pub fn read(self) -> Result<ReadOut, StorageError> {
        (self.0)()
    }
}

impl fmt::Debug for ReadBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadBack")
    }
}

/// The records of a batch being appended, in the record format of docs/STORAGE.md (a
/// batch's stamp already on its first and last records): what a store writes. They are the
/// bytes the log holds in memory, encoded once.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    first: Offset,
    count: u64,
    parts: &'a [Bytes],
}

impl<'a> Records<'a> {
    /// `count` records from offset `first`, back to back in `parts`.
    pub(crate) fn new(first: Offset, count: u64, parts: &'a [Bytes]) -> Self {
        Self {
            first,
            count,
            parts,
        }
    }

    /// The offset of the first record.
    pub fn first(&self) -> Offset {
        self.first
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, back to back, in one or more parts.
    pub fn parts(&self) -> &'a [Bytes] {
        self.parts
    }

    /// Bytes of all the records.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    /// The messages of the records (their bytes are slices of the records, not copies).
    pub fn messages(&self) -> impl Iterator<Item = Message> + 'a {
        self.parts.iter().flat_map(|part| {
            crate::record::starts(part).filter_map(move |pos| crate::record::read_own(part, pos))
        })
    }

    /// Each record's offset and where it starts, counted from the start of the first part.
    pub fn starts(&self) -> impl Iterator<Item = (Offset, u64)> + 'a {
        let mut base = 0u64;
        let first = self.first.get();
        self.parts
            .iter()
            .flat_map(move |part| {
                let at = base;
                base += part.len() as u64;
                crate::record::starts(part).map(move |pos| at + pos as u64)
            })
            .zip(first..)
            .map(|(at, offset)| (Offset(offset), at))
    }
}

/// What a store says about an append.
#[derive(Debug)]
pub struct Appended {
    /// How durable the batch is now.
    pub durability: Durability,
    /// Under fsync `always`: the wait after which it is [`Durability::Fsynced`].
    pub sync: Option<SyncWait>,
}

/// A change to a durable group's state, journaled by stores that keep group state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A durable group was created.
    Created {
        /// The group.
        group: GroupName,
        /// Its ack mode.
        ack: AckMode,
        /// Its ack timeout.
        ack_timeout: std::time::Duration,
        /// Its delivery limit.
        max_deliveries: Option<u32>,
        /// The first offset it reads.
        start: Offset,
    },
    /// A durable group was deleted.
    Deleted {
        /// The group.
        group: GroupName,
    },
    /// The group is done with these offsets (acked, auto-acked or dead-lettered).
    Acked {
        /// The group.
        group: GroupName,
        /// The offsets.
        offsets: Vec<Offset>,
    },
    /// The group delivered these offsets once more.
    Delivered {
        /// The group.
        group: GroupName,
        /// The offsets.
        offsets: Vec<Offset>,
    },
    /// The group is done with everything below `floor`.
    Floor {
        /// The group.
        group: GroupName,
        /// The floor.
        floor: Offset,
    },
}

/// A durable group as a store recovered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredGroup {
    /// Its name.
    pub name: GroupName,
    /// Its ack mode.
    pub ack: AckMode,
    /// Its ack timeout.
    pub ack_timeout: std::time::Duration,
    /// Its delivery limit.
    pub max_deliveries: Option<u32>,
    /// The first offset it reads.
    pub start: Offset,
    /// Everything below is done.
    pub floor: Offset,
    /// Offsets above the floor that are done, in order.
    pub acked: Vec<Offset>,
    /// Delivery counts of offsets delivered and not done.
    pub deliveries: Vec<(Offset, u32)>,
}

/// A message as recovered from storage: whole, or only what the log must know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredMessage {
    /// The whole message, kept in memory.
    Loaded(Arc<Message>),
    /// Left on disk; read back when a group needs it.
    OnDisk {
        /// Its offset.
        offset: Offset,
        /// When it was appended.
        timestamp: Timestamp,
        /// Its size (payload, key, headers).
        size: u64,
        /// Its priority.
        priority: u8,
    },
}

/// A topic as a store recovered it at startup.
#[derive(Debug)]
pub struct RecoveredTopic {
    /// Its name.
    pub name: TopicName,
    /// Its config.
    pub config: TopicConfig,
    /// Retained messages, in offset order, in runs (one per segment): whole, or left on
    /// disk. Offsets missing between them (and up to `next_offset`) were lost to damage:
    /// they become holes of the log that every group counts as settled.
    pub messages: Vec<Vec<StoredMessage>>,
    /// The offset the next message gets: past every offset ever assigned.
    pub next_offset: Offset,
    /// The largest [`Message::encoded_size`] among the retained messages.
    pub largest_message: u64,
    /// Its durable groups.
    pub groups: Vec<RecoveredGroup>,
    /// The numbered batches of idempotent producers found in its log, oldest first.
    pub producers: Vec<RecoveredStamp>,
    /// The store to keep appending to.
    pub store: Box<dyn TopicStore>,
    /// Damage found and repaired, for the operator.
    pub warnings: Vec<String>,
}

/// A topic the storage found but cannot serve: its files are left as they are until an
/// operator repairs, moves or deletes them (docs/STORAGE.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedTopic {
    /// The topic.
    pub name: TopicName,
    /// Why it cannot be served, naming its files.
    pub reason: String,
}

/// What a storage found at startup.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The topics it can serve.
    pub topics: Vec<RecoveredTopic>,
    /// Topics it found but cannot serve.
    pub quarantined: Vec<QuarantinedTopic>,
    /// Things it found and left alone, for the operator (foreign files, once each).
    pub notices: Vec<String>,
}

/// A storage medium for topics.
pub trait Storage: Send + Sync + fmt::Debug {
    /// A short name: `memory` or `file`.
    fn kind(&self) -> &'static str;

    /// Whether publishes and acks wait for an fsync before they are confirmed: callers on
    /// an async runtime then run them off its workers.
    fn waits_for_disk(&self) -> bool {
        false
    }

    /// Opens (creating if needed) the store of one topic.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be used.
    fn open_topic(
        &self,
        topic: &TopicName,
        config: &TopicConfig,
    ) -> Result<Box<dyn TopicStore>, StorageError>;

    /// Removes everything stored for a topic.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be changed.
    fn remove_topic(&self, topic: &TopicName) -> Result<(), StorageError>;

    /// The topics found at startup (none for `memory`); a topic that cannot be read is
    /// quarantined, not an error.
    ///
    /// # Errors
    /// [`StorageError`] when the medium as a whole cannot be read.
    fn recover(&self) -> Result<Recovery, StorageError>;

    /// How long fsyncs have taken, for storages that fsync.
    fn fsync_timings(&self) -> Option<TimingsSnapshot> {
        None
    }

    /// Puts everything written so far on disk (at shutdown).
    ///
    /// # Errors
    /// [`StorageError`] when an fsync fails.
    fn flush(&self) -> Result<(), StorageError>;
}

/// The store of one topic. Called with the topic's lock held, in log order.
pub trait TopicStore: Send + fmt::Debug {
    /// Stores a batch being appended to the log and says how durable it now is; when it
    /// fails, the log takes the batch back.
    ///
    /// `stamp` numbers the batch for idempotent publishing (its records carry it too): a
    /// store that keeps messages across restarts keeps it with them, and gives it back in
    /// [`RecoveredTopic::producers`]. An empty batch stores nothing and returns what waits
    /// for everything stored before it to be durable.
    ///
    /// # Errors
    /// [`StorageError`]; the broker then refuses the append.
    fn append(
        &mut self,
        records: Records<'_>,
        stamp: Option<BatchStamp>,
    ) -> Result<Appended, StorageError>;

    /// Whether this store keeps group state (and so wants [`GroupEvent`]s).
    fn keeps_groups(&self) -> bool;

    /// Journals group state changes; under fsync `always`, returns the wait after which
    /// they are on disk.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be written.
    fn record_groups(&mut self, events: &[GroupEvent]) -> Result<Option<SyncWait>, StorageError>;

    /// Whether the group journal should be rewritten from a snapshot.
    fn wants_compaction(&self) -> bool;

    /// Rewrites the group journal as a snapshot of `groups`.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be written.
    fn compact_groups(&mut self, groups: &[RecoveredGroup]) -> Result<(), StorageError>;

    /// Prepares a read of stored messages from offset `from` on, about `max_bytes` of them
    /// (at least one when `from` is stored); the read itself runs later, without the
    /// topic's lock.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be read; a store that never drops messages
    /// from memory is never asked.
    fn read(&mut self, from: Offset, max_bytes: usize) -> Result<ReadBack, StorageError>;

    /// How many bytes of messages a topic on this store keeps in memory; `None`: all of
    /// them (the store cannot read them back).
    fn resident_budget(&self) -> Option<u64>;

    /// Forgets every message before `first`, which is now the first retained offset.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be changed.
    fn trim_before(&mut self, first: Offset) -> Result<(), StorageError>;

    /// Like [`TopicStore::trim_before`], and what was dropped never comes back, even after
    /// a crash (a purge).
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be changed.
    fn drop_before(&mut self, first: Offset) -> Result<(), StorageError> {
        self.trim_before(first)
    }

    /// Keeps the topic's new configuration (nothing to do for a store without files).
    ///
    /// # Errors
    /// [`StorageError`] when it cannot be written.
    fn save_config(&mut self, _config: &TopicConfig) -> Result<(), StorageError> {
        Ok(())
    }
}
