//! The storage seam: how a topic's log reaches (or does not reach) a medium.
//!
//! The in-memory log in [`crate::log`] always holds what is served; a [`Storage`] decides
//! what else happens to each appended batch and reports how durable it is. `memory`
//! ([`crate::MemoryStorage`]) keeps nothing else; the `file` storage (SPEC §3) writes a
//! segmented log.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::TopicConfig;
use crate::message::{Message, Offset};
use crate::name::TopicName;

/// How durable an appended message is when the broker confirms it (SPEC §6).
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

/// A storage medium for topics.
pub trait Storage: Send + Sync + fmt::Debug {
    /// A short name: `memory` or `file`.
    fn kind(&self) -> &'static str;

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
}

/// The store of one topic. Called with the topic's lock held, in log order.
pub trait TopicStore: Send + fmt::Debug {
    /// Stores a batch just appended to the log and says how durable it now is.
    ///
    /// # Errors
    /// [`StorageError`]; the broker then refuses the append.
    fn append(&mut self, messages: &[Arc<Message>]) -> Result<Durability, StorageError>;

    /// Forgets every message before `first`, which is now the first retained offset.
    ///
    /// # Errors
    /// [`StorageError`] when the medium cannot be changed.
    fn trim_before(&mut self, first: Offset) -> Result<(), StorageError>;
}
