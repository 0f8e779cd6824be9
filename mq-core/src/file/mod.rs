//! The `file` storage (SPEC §3): per topic, a segmented append-only log with a checksum per
//! record and a sparse offset index, a journal of durable group state, the topic's config,
//! and the fsync policy. docs/STORAGE.md documents the layout.
//!
//! ```text
//! <data dir>/LOCK                      held (flock) by the running broker
//! <data dir>/topics/<topic>/config.json
//! <data dir>/topics/<topic>/meta.json  {"first": first retained offset}
//! <data dir>/topics/<topic>/*.log, *.idx, groups.journal
//! ```

mod journal;
mod record;
mod segment;
mod sync;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use sync::FsyncPolicy;

use self::journal::Journal;
use self::segment::SegmentLog;
use self::sync::Flusher;
use crate::config::TopicConfig;
use crate::message::{Message, Offset};
use crate::name::TopicName;
use crate::storage::{
    Appended, Durability, GroupEvent, RecoveredGroup, RecoveredTopic, Storage, StorageError,
    SyncWait, TopicStore,
};

/// Default size at which a segment is rolled.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default bytes of messages a topic keeps in memory.
pub const DEFAULT_RESIDENT_BYTES: u64 = 64 * 1024 * 1024;
/// How long a trim of the first retained offset may wait before it is written down.
const META_EVERY: Duration = Duration::from_secs(1);

/// Settings of the file storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// When appended data is fsynced.
    pub fsync: FsyncPolicy,
    /// The period of `interval`.
    pub interval: Duration,
    /// Size at which a segment is rolled.
    pub segment_bytes: u64,
    /// Bytes of messages each topic keeps in memory; older ones are read back from disk
    /// when a group needs them.
    pub resident_bytes: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Interval,
            interval: Duration::from_millis(100),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            resident_bytes: DEFAULT_RESIDENT_BYTES,
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, &e)
}

/// Writes `bytes` to `path` atomically (a temp file, fsynced, renamed over it).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("replacing {}", path.display())))
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    first: u64,
}

/// Topics in files under a data dir, held exclusively by one broker.
///
/// ```
/// use mq_core::{Broker, FileOptions, FileStorage, NewMessage, TopicName};
/// let dir = std::env::temp_dir().join(format!("mq-doc-{}", std::process::id()));
/// {
///     let broker = Broker::builder().storage(FileStorage::open(&dir, FileOptions::default())?).build()?;
///     broker.publish(&TopicName::new("t")?, NewMessage::new("kept"))?;
///     broker.flush()?;
/// }
/// let broker = Broker::builder().storage(FileStorage::open(&dir, FileOptions::default())?).build()?;
/// assert_eq!(broker.topic_stats(&TopicName::new("t")?)?.retained, 1);
/// # drop(broker);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileStorage {
    root: PathBuf,
    options: FileOptions,
    flusher: Arc<Flusher>,
    _lock: File,
}

impl FileStorage {
    /// Opens (creating) the data dir `dir` and locks it.
    ///
    /// # Errors
    /// [`StorageError`] when the dir cannot be created, or another broker holds it.
    pub fn open(dir: impl AsRef<Path>, options: FileOptions) -> Result<Self, StorageError> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(root.join("topics"))
            .map_err(io(format!("creating data dir {}", root.display())))?;
        let lock_path = root.join("LOCK");
        let lock =
            File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError {
                    context: format!("locking data dir {}", root.display()),
                    message: format!(
                        "it is in use by another mq-server (lock file {}): stop that server or use another --data-dir",
                        lock_path.display()
                    ),
                    kind: Some(std::io::ErrorKind::WouldBlock),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StorageError::io(
                    format!("locking {}", lock_path.display()),
                    &e,
                ));
            }
        }
        let flusher = Arc::new(Flusher::default());
        if options.fsync == FsyncPolicy::Interval {
            Flusher::spawn(&flusher, options.interval).map_err(io("starting the fsync thread"))?;
        }
        Ok(Self {
            root,
            options,
            flusher,
            _lock: lock,
        })
    }

    fn topic_dir(&self, topic: &TopicName) -> PathBuf {
        self.root.join("topics").join(topic.as_str())
    }

    fn open_store(
        &self,
        topic: &TopicName,
        first: u64,
    ) -> Result<
        (
            FileTopic,
            segment::Recovered,
            Vec<RecoveredGroup>,
            Vec<String>,
        ),
        StorageError,
    > {
        let dir = self.topic_dir(topic);
        let what = format!("topic \"{topic}\"");
        let recovered = SegmentLog::recover(
            &dir,
            &what,
            first,
            self.options.segment_bytes,
            self.options.resident_bytes,
        )?;
        let (journal, groups, mut warnings) = Journal::recover(&dir, &what)?;
        warnings.extend(recovered.warnings.iter().cloned());
        self.flusher.register(recovered.log.sync_file());
        self.flusher.register(journal.sync_file());
        Ok((
            FileTopic {
                dir,
                what,
                resident_bytes: self.options.resident_bytes,
                policy: self.options.fsync,
                flusher: Arc::clone(&self.flusher),
                first,
                meta_written: first,
                meta_at: Instant::now(),
                log: None,
                journal,
            },
            recovered,
            groups,
            warnings,
        ))
    }
}

impl Storage for FileStorage {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn open_topic(
        &self,
        topic: &TopicName,
        config: &TopicConfig,
    ) -> Result<Box<dyn TopicStore>, StorageError> {
        let dir = self.topic_dir(topic);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(format!("clearing {}", dir.display())))?;
        }
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let json = serde_json::to_vec_pretty(config).map_err(|e| StorageError {
            context: format!("saving the config of topic \"{topic}\""),
            message: e.to_string(),
            kind: None,
        })?;
        write_atomic(&dir.join("config.json"), &json)?;
        write_atomic(&dir.join("meta.json"), br#"{"first":0}"#)?;
        let (mut store, recovered, _, _) = self.open_store(topic, 0)?;
        store.log = Some(recovered.log);
        Ok(Box::new(store))
    }

    fn remove_topic(&self, topic: &TopicName) -> Result<(), StorageError> {
        let dir = self.topic_dir(topic);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("removing {}", dir.display()), &e)),
        }
    }

    fn recover(&self) -> Result<Vec<RecoveredTopic>, StorageError> {
        let topics_dir = self.root.join("topics");
        let mut names: Vec<String> = fs::read_dir(&topics_dir)
            .map_err(io(format!("listing {}", topics_dir.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut topics = Vec::new();
        for name in names {
            let dir = topics_dir.join(&name);
            let (Ok(topic), Ok(config)) = (
                TopicName::new(&name).or_else(|_| {
                    // Dead-letter topics of 197+ character names are longer than users may
                    // choose; they are still ours.
                    name.strip_suffix(crate::name::DLQ_SUFFIX)
                        .ok_or(())
                        .and_then(|base| TopicName::new(base).map_err(drop))
                        .map(|t| t.dead_letter())
                        .map_err(drop)
                }),
                fs::read(dir.join("config.json")),
            ) else {
                // A topic whose creation never finished: nothing was ever appended to it.
                fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
                continue;
            };
            let config: TopicConfig =
                serde_json::from_slice(&config).map_err(|e| StorageError {
                    context: format!("reading the config of topic \"{name}\""),
                    message: e.to_string(),
                    kind: None,
                })?;
            let first = fs::read(dir.join("meta.json"))
                .ok()
                .and_then(|m| serde_json::from_slice::<Meta>(&m).ok())
                .map_or(0, |m| m.first);
            let (mut store, recovered, groups, warnings) = self.open_store(&topic, first)?;
            store.log = Some(recovered.log);
            topics.push(RecoveredTopic {
                name: topic,
                config,
                messages: recovered.messages,
                next_offset: recovered.next,
                groups,
                store: Box::new(store),
                warnings,
            });
        }
        Ok(topics)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.flusher.flush()
    }
}

/// One topic's files.
#[derive(Debug)]
struct FileTopic {
    dir: PathBuf,
    what: String,
    resident_bytes: u64,
    policy: FsyncPolicy,
    flusher: Arc<Flusher>,
    first: u64,
    meta_written: u64,
    meta_at: Instant,
    log: Option<SegmentLog>,
    journal: Journal,
}

impl FileTopic {
    fn log(&mut self) -> Result<&mut SegmentLog, StorageError> {
        self.log.as_mut().ok_or_else(|| StorageError {
            context: format!("using {}", self.what),
            message: "its log is not open".into(),
            kind: None,
        })
    }

    fn write_meta(&mut self) -> Result<(), StorageError> {
        let json = serde_json::to_vec(&Meta { first: self.first }).unwrap_or_default();
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
    fn append(&mut self, messages: &[Arc<Message>]) -> Result<Appended, StorageError> {
        let policy = self.policy;
        let log = self.log()?;
        let ticket = log.append(messages)?;
        let sync = (policy == FsyncPolicy::Always).then(|| {
            let file = Arc::clone(log.sync_file());
            SyncWait::new(move || file.wait(ticket))
        });
        Ok(Appended {
            durability: Durability::Written,
            sync,
        })
    }

    fn read(&mut self, from: Offset, max_bytes: usize) -> Result<Vec<Arc<Message>>, StorageError> {
        self.log()?.read(from.get(), max_bytes)
    }

    fn resident_budget(&self) -> Option<u64> {
        Some(self.resident_bytes)
    }

    fn trim_before(&mut self, first: Offset) -> Result<(), StorageError> {
        self.first = first.get();
        let log = self.log()?;
        let before = log.segment_count();
        log.trim_before(first.get())?;
        let dropped_segment = log.segment_count() != before;
        if dropped_segment || self.meta_at.elapsed() >= META_EVERY {
            self.write_meta()?;
        }
        Ok(())
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
