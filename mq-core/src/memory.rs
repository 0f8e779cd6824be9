//! The `memory` storage: nothing touches disk; everything is gone when the broker stops.

use crate::config::TopicConfig;
use crate::message::Offset;
use crate::name::TopicName;
use crate::producers::BatchStamp;
use crate::storage::{
    Appended, Durability, GroupEvent, ReadBack, Records, RecoveredGroup, Recovery, Storage,
    StorageError, SyncWait, TopicStore,
};

/// Keeps topics in memory only: everything is gone when the process exits.
///
/// ```
/// use mq_core::{Broker, MemoryStorage, NewMessage, TopicName};
/// let broker = Broker::builder().storage(MemoryStorage).build()?;
/// let receipt = broker.publish(&TopicName::new("t")?, NewMessage::new("x"))?;
/// assert_eq!(receipt.durability, mq_core::Durability::Memory);
/// # Ok::<(), mq_core::Error>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStorage;

/// A topic store that keeps nothing; also what a deleted topic's state holds, so that its
/// files are closed before they are removed.
#[derive(Debug)]
pub(crate) struct MemoryTopic;

impl Storage for MemoryStorage {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn open_topic(
        &self,
        _topic: &TopicName,
        _config: &TopicConfig,
    ) -> Result<Box<dyn TopicStore>, StorageError> {
        Ok(Box::new(MemoryTopic))
    }

    fn remove_topic(&self, _topic: &TopicName) -> Result<(), StorageError> {
        Ok(())
    }

    fn recover(&self) -> Result<Recovery, StorageError> {
        Ok(Recovery::default())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl TopicStore for MemoryTopic {
    fn append(
        &mut self,
        _records: Records<'_>,
        _stamp: Option<BatchStamp>,
    ) -> Result<Appended, StorageError> {
        Ok(Appended {
            durability: Durability::Memory,
            sync: None,
        })
    }

    fn keeps_groups(&self) -> bool {
        false
    }

    fn record_groups(&mut self, _events: &[GroupEvent]) -> Result<Option<SyncWait>, StorageError> {
        Ok(None)
    }

    fn wants_compaction(&self) -> bool {
        false
    }

    fn compact_groups(&mut self, _groups: &[RecoveredGroup]) -> Result<(), StorageError> {
        Ok(())
    }

    fn read(&mut self, from: Offset, _max_bytes: usize) -> Result<ReadBack, StorageError> {
        Err(StorageError {
            context: format!("reading offset {from} back"),
            message: "memory storage keeps every message in memory and cannot read back".into(),
            kind: None,
        })
    }

    fn resident_budget(&self) -> Option<u64> {
        None
    }

    fn trim_before(&mut self, _first: Offset) -> Result<(), StorageError> {
        Ok(())
    }
}
