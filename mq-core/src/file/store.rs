//! [`FileTopic`]: the store of one topic — its segments and its group journal — as the
//! broker sees it through [`TopicStore`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::DiskGuard;
use super::journal::Journal;
use super::layout::{TopicMeta, write_atomic};
use super::segment::SegmentLog;
use super::sync::{Flusher, FsyncPolicy};
use crate::config::TopicConfig;
use crate::message::Offset;
use crate::producers::BatchStamp;
use crate::storage::{
    Appended, Durability, GroupEvent, ReadBack, Records, RecoveredGroup, StorageError, SyncWait,
    TopicStore,
};

/// How long a trim of the first retained offset may wait before it is written down.
const META_EVERY: Duration = Duration::from_secs(1);

/// One topic's files.
#[derive(Debug)]
pub(super) struct FileTopic {
    /// The topic's directory.
    pub(super) dir: PathBuf,
    /// `topic "<name>"`, for messages.
    pub(super) what: String,
    /// Bytes of messages the topic keeps in memory.
    pub(super) resident_bytes: u64,
    /// When appends are fsynced.
    pub(super) policy: FsyncPolicy,
    /// The `interval` flusher its files are registered with.
    pub(super) flusher: Arc<Flusher>,
    /// The free-space floor of the data dir.
    pub(super) disk: Arc<DiskGuard>,
    /// The first retained offset.
    pub(super) first: u64,
    /// The first retained offset `meta.json` holds.
    pub(super) meta_written: u64,
    /// When `meta.json` was last written.
    pub(super) meta_at: Instant,
    /// The segments.
    pub(super) log: SegmentLog,
    /// The group journal.
    pub(super) journal: Journal,
}

impl FileTopic {
    fn write_meta(&mut self) -> Result<(), StorageError> {
        let json = serde_json::to_vec(&TopicMeta { first: self.first }).unwrap_or_default();
        write_atomic(&self.dir.join("meta.json"), &json)?;
        self.meta_written = self.first;
        self.meta_at = Instant::now();
        Ok(())
    }
}

impl Drop for FileTopic {
    fn drop(&mut self) {
        if self.first != self.meta_written && self.dir.exists() {
            let _ = self.write_meta();
        }
    }
}

impl TopicStore for FileTopic {
    fn append(
        &mut self,
        records: Records<'_>,
        _stamp: Option<BatchStamp>,
    ) -> Result<Appended, StorageError> {
        self.disk.admit(records.size(), &self.what)?;
        let policy = self.policy;
        let log = &mut self.log;
        let ticket = log.append(records)?;
        let sync = (policy == FsyncPolicy::Always).then(|| {
            let file = Arc::clone(log.sync_file());
            SyncWait::new(move || file.wait(ticket))
        });
        Ok(Appended {
            durability: Durability::Written,
            sync,
        })
    }

    fn read(&mut self, from: Offset, max_bytes: usize) -> Result<ReadBack, StorageError> {
        Ok(self.log.prepare_read(from.get(), max_bytes))
    }

    fn resident_budget(&self) -> Option<u64> {
        Some(self.resident_bytes)
    }

    fn trim_before(&mut self, first: Offset) -> Result<(), StorageError> {
        self.first = first.get();
        let log = &mut self.log;
        let before = log.segment_count();
        log.trim_before(first.get())?;
        let dropped_segment = log.segment_count() != before;
        if dropped_segment || self.meta_at.elapsed() >= META_EVERY {
            self.write_meta()?;
        }
        Ok(())
    }

    fn drop_before(&mut self, first: Offset) -> Result<(), StorageError> {
        self.trim_before(first)?;
        self.write_meta()
    }

    fn save_config(&mut self, config: &TopicConfig) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(config).map_err(|e| StorageError {
            context: format!("saving the config of {}", self.what),
            message: e.to_string(),
            kind: None,
        })?;
        write_atomic(&self.dir.join("config.json"), &json)
    }

    fn keeps_groups(&self) -> bool {
        true
    }

    fn record_groups(&mut self, events: &[GroupEvent]) -> Result<Option<SyncWait>, StorageError> {
        let ticket = self.journal.append(events)?;
        Ok((self.policy == FsyncPolicy::Always).then(|| {
            let file = Arc::clone(self.journal.sync_file());
            SyncWait::new(move || file.wait(ticket))
        }))
    }

    fn wants_compaction(&self) -> bool {
        self.journal.wants_compaction()
    }

    fn compact_groups(&mut self, groups: &[RecoveredGroup]) -> Result<(), StorageError> {
        self.journal.compact(groups, &self.what)?;
        self.flusher.register(self.journal.sync_file());
        Ok(())
    }
}
