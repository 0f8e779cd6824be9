//! The `file` storage (SPEC §3): per topic, a segmented append-only log with a checksum per
//! record and a sparse offset index, a journal of durable group state, the topic's config,
//! and the fsync policy. docs/STORAGE.md documents the layout.
//!
//! ```text
//! <data dir>/LOCK                      held (flock) by the running broker
//! <data dir>/FORMAT                    the data format version, a decimal number
//! <data dir>/topics/<topic>/config.json
//! <data dir>/topics/<topic>/meta.json  {"first": first retained offset}
//! <data dir>/topics/<topic>/*.log, *.idx, groups.journal
//! <data dir>/topics/.creating-<topic>/ a topic being created, renamed into place when ready
//! <data dir>/topics/.deleting-<topic>/ a topic being deleted
//! ```
//! The broker never deletes or changes what it did not create: a directory under `topics`
//! that is not a topic it can read is reported and left alone (quarantined when it carries
//! a topic's name).

mod cache;
mod check;
mod cursor;
mod disk;
mod index;
mod journal;
mod record;
mod recovery;
mod segment;
mod sync;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use check::CheckReport;
pub use sync::FsyncPolicy;

use self::cache::FileCache;
use self::disk::DiskGuard;
use self::journal::Journal;
use self::segment::SegmentLog;
use self::sync::Flusher;
use crate::config::TopicConfig;
use crate::message::{Message, Offset};
use crate::name::TopicName;
use crate::storage::{
    Appended, Durability, GroupEvent, QuarantinedTopic, RecoveredGroup, RecoveredTopic, Recovery,
    Storage, StorageError, SyncWait, TopicStore,
};

/// The data format this release writes and reads (the `FORMAT` file).
pub const DATA_FORMAT: u32 = 1;
/// Prefix of a topic directory being created.
const CREATING: &str = ".creating-";
/// Prefix of a topic directory being deleted.
const DELETING: &str = ".deleting-";

/// Default size at which a segment is rolled.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default bytes of messages a topic keeps in memory.
pub const DEFAULT_RESIDENT_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes a segment record adds to a message's encoded size (frame, offset, timestamp,
/// priority, lengths), near enough for the free-space check.
const RECORD_OVERHEAD: u64 = 8 + 27;
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
    /// Free bytes kept on the data dir's filesystem: below them appends are refused with a
    /// "disk almost full" error (acks and consumers go on). `None`: 1 GiB, or 5% of the
    /// filesystem when smaller; `Some(0)`: no floor.
    pub min_free_disk: Option<u64>,
    /// Segment, index and journal files held open at once, whatever the number of topics;
    /// the least recently used are closed (fsynced first) to open others. `None`: a
    /// quarter of the process's open-file limit, between 16 and 4096.
    pub max_open_files: Option<usize>,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Interval,
            interval: Duration::from_millis(100),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            resident_bytes: DEFAULT_RESIDENT_BYTES,
            min_free_disk: None,
            max_open_files: None,
        }
    }
}

/// [`FileOptions::max_open_files`] when not set: a quarter of the soft open-file limit.
fn default_open_files() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map_or(cache::DEFAULT_OPEN_FILES, |n| {
        usize::try_from(n / 4).unwrap_or(usize::MAX).clamp(16, 4096)
    })
}

/// Makes a [`FileStorage`]'s file operations fail on demand, as a full or failing disk
/// would: for tests of what the storage does then.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone)]
pub struct FaultInjector(Arc<FileCache>);

#[cfg(feature = "fault-injection")]
impl FaultInjector {
    /// The append that would take the total past `bytes` more bytes writes what fits, then
    /// fails (a short write, as on a full disk).
    pub fn fail_write_after(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        self.0.faults.write_budget.store(bytes, Ordering::Release);
    }

    /// The next `n` truncations fail.
    pub fn fail_truncates(&self, n: u32) {
        use std::sync::atomic::Ordering;
        self.0.faults.failing_truncates.store(n, Ordering::Release);
    }

    /// The next `n` fsyncs fail.
    pub fn fail_fsyncs(&self, n: u32) {
        use std::sync::atomic::Ordering;
        self.0.faults.failing_fsyncs.store(n, Ordering::Release);
    }
}

/// A handle on a [`FileStorage`]'s free-space floor ([`FileOptions::min_free_disk`]), to
/// read or change it while the broker runs.
#[derive(Debug, Clone)]
pub struct FreeSpaceFloor(Arc<DiskGuard>);

impl FreeSpaceFloor {
    /// The floor in bytes (0: none).
    pub fn get(&self) -> u64 {
        self.0.floor()
    }

    /// Changes the floor; 0 turns it off.
    pub fn set(&self, bytes: u64) {
        self.0.set_floor(bytes);
    }
}

/// Turns an I/O error into a [`StorageError`] saying what the storage was doing: the one
/// I/O-error helper of the file storage.
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

/// Makes the entries of directory `dir` durable (a rename or a new file in it).
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing directory {}", dir.display())))
}

/// The topic a directory under `topics` is named for, if its name is one.
fn topic_of(name: &str) -> Option<TopicName> {
    TopicName::new_or_dead_letter(name).ok()
}

/// A topic directory's config and first retained offset, or why they cannot be read.
fn read_topic_files(dir: &Path) -> Result<(TopicConfig, u64), String> {
    let config = match fs::read(dir.join("config.json")) {
        Ok(bytes) => serde_json::from_slice::<TopicConfig>(&bytes)
            .map_err(|e| format!("its config.json cannot be read ({e})"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "it holds no config.json: mq did not create it, or its files were moved".into(),
            );
        }
        Err(e) => return Err(format!("its config.json cannot be read ({e})")),
    };
    config
        .validate()
        .map_err(|e| format!("its config.json is not valid ({e})"))?;
    let first = match fs::read(dir.join("meta.json")) {
        Ok(m) => {
            serde_json::from_slice::<TopicMeta>(&m)
                .map_err(|e| format!("its meta.json cannot be read ({e})"))?
                .first
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("its meta.json cannot be read ({e})")),
    };
    Ok((config, first))
}

/// One past the highest offset the groups have seen: it was assigned, even if its record
/// was lost.
fn seen_offsets(groups: &[RecoveredGroup]) -> u64 {
    groups
        .iter()
        .flat_map(|g| {
            [g.floor, g.start]
                .into_iter()
                .chain(g.acked.last().map(|o| o + 1))
                .chain(g.deliveries.iter().map(|(o, _)| o + 1).max())
        })
        .max()
        .unwrap_or(0)
}

/// Checks the data dir's format version, writing it into a new or pre-versioned dir.
fn check_format(root: &Path, write: bool) -> Result<(), StorageError> {
    let path = root.join("FORMAT");
    let refuse = |message: String| StorageError {
        context: format!("opening data dir {}", root.display()),
        message,
        kind: None,
    };
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(format) if format <= DATA_FORMAT => Ok(()),
            Ok(format) => Err(refuse(format!(
                "it holds data format {format}, written by a newer mq-server; this one reads \
                 formats up to {DATA_FORMAT}: run a newer mq-server or use another --data-dir"
            ))),
            Err(_) => Err(refuse(format!(
                "{} does not hold a format number: restore it (this release writes \"{DATA_FORMAT}\") \
                 or use another --data-dir",
                path.display()
            ))),
        },
        // A new dir, or one written before the format was recorded (format 1).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if write {
                write_atomic(&path, format!("{DATA_FORMAT}\n").as_bytes())?;
            }
            Ok(())
        }
        Err(e) => Err(StorageError::io(format!("reading {}", path.display()), &e)),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
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
    disk: Arc<DiskGuard>,
    cache: Arc<FileCache>,
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
        check_format(&root, true)?;
        let flusher = Arc::new(Flusher::default());
        if options.fsync == FsyncPolicy::Interval {
            Flusher::spawn(&flusher, options.interval).map_err(io("starting the fsync thread"))?;
        }
        let disk = Arc::new(DiskGuard::new(&root, options.min_free_disk)?);
        let cache = FileCache::new(options.max_open_files.unwrap_or_else(default_open_files));
        Ok(Self {
            root,
            options,
            flusher,
            disk,
            cache,
            _lock: lock,
        })
    }

    /// A handle to make this storage's file operations fail on demand.
    #[cfg(feature = "fault-injection")]
    pub fn fault_injector(&self) -> FaultInjector {
        FaultInjector(Arc::clone(&self.cache))
    }

    /// Segment, index and journal files open now (bounded by
    /// [`FileOptions::max_open_files`]).
    pub fn open_files(&self) -> usize {
        self.cache.open_count()
    }

    /// The free-space floor, to read or change while the broker runs.
    pub fn free_space_floor(&self) -> FreeSpaceFloor {
        FreeSpaceFloor(Arc::clone(&self.disk))
    }

    fn topic_dir(&self, topic: &TopicName) -> PathBuf {
        self.root.join("topics").join(topic.as_str())
    }

    /// Opens the files of `topic` in `dir`, recovering what they hold.
    fn open_store(
        &self,
        topic: &TopicName,
        dir: PathBuf,
        first: u64,
    ) -> Result<(FileTopic, recovery::Recovered, Vec<RecoveredGroup>), StorageError> {
        let what = format!("topic \"{topic}\"");
        let (journal, groups, mut warnings) = Journal::recover(&self.cache, &dir, &what)?;
        let mut recovered = recovery::recover(
            &dir,
            &what,
            first,
            seen_offsets(&groups),
            self.options.resident_bytes,
            recovery::Mode::Repair,
        )?;
        let log = SegmentLog::open(
            &self.cache,
            &dir,
            &what,
            std::mem::take(&mut recovered.segments),
            recovered.next,
            self.options.segment_bytes,
        )?;
        warnings.append(&mut recovered.warnings);
        recovered.warnings = warnings;
        self.flusher.register(log.sync_file());
        self.flusher.register(journal.sync_file());
        Ok((
            FileTopic {
                dir,
                what,
                resident_bytes: self.options.resident_bytes,
                policy: self.options.fsync,
                flusher: Arc::clone(&self.flusher),
                disk: Arc::clone(&self.disk),
                first,
                meta_written: first,
                meta_at: Instant::now(),
                log,
                journal,
            },
            recovered,
            groups,
        ))
    }

    /// Recovers the topic in `dir`, or says why it cannot be served.
    fn recover_topic(&self, topic: TopicName, dir: PathBuf) -> Result<RecoveredTopic, String> {
        let (config, first) = read_topic_files(&dir)?;
        let (store, recovered, groups) = self
            .open_store(&topic, dir, first)
            .map_err(|e| e.to_string())?;
        Ok(RecoveredTopic {
            name: topic,
            config,
            messages: recovered.messages,
            next_offset: recovered.next,
            largest_message: recovered.largest,
            groups,
            store: Box::new(store),
            warnings: recovered.warnings,
        })
    }
}

impl Storage for FileStorage {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn waits_for_disk(&self) -> bool {
        self.options.fsync == FsyncPolicy::Always
    }

    fn open_topic(
        &self,
        topic: &TopicName,
        config: &TopicConfig,
    ) -> Result<Box<dyn TopicStore>, StorageError> {
        let topics = self.root.join("topics");
        let dir = self.topic_dir(topic);
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(StorageError {
                context: format!("creating topic \"{topic}\""),
                message: format!(
                    "{} is in the way and is not a topic this broker serves: move it away, \
                     then try again",
                    dir.display()
                ),
                kind: Some(std::io::ErrorKind::AlreadyExists),
            });
        }
        // Built aside and renamed into place once complete: a crash leaves either no topic
        // or a whole one, and nothing of anyone else's is ever in the way.
        let tmp = topics.join(format!("{CREATING}{topic}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(format!("clearing {}", tmp.display())))?;
        }
        fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        let json = serde_json::to_vec_pretty(config).map_err(|e| StorageError {
            context: format!("saving the config of topic \"{topic}\""),
            message: e.to_string(),
            kind: None,
        })?;
        write_atomic(&tmp.join("config.json"), &json)?;
        write_atomic(&tmp.join("meta.json"), br#"{"first":0}"#)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &dir).map_err(io(format!("creating {}", dir.display())))?;
        sync_dir(&topics)?;
        let (store, _, _) = self.open_store(topic, dir, 0)?;
        Ok(Box::new(store))
    }

    fn remove_topic(&self, topic: &TopicName) -> Result<(), StorageError> {
        let dir = self.topic_dir(topic);
        let doomed = self.root.join("topics").join(format!("{DELETING}{topic}"));
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io(format!("removing {}", dir.display()), &e)),
        }
        fs::remove_dir_all(&doomed).map_err(io(format!("removing {}", doomed.display())))
    }

    fn recover(&self) -> Result<Recovery, StorageError> {
        let topics_dir = self.root.join("topics");
        let mut entries: Vec<(std::ffi::OsString, PathBuf)> = fs::read_dir(&topics_dir)
            .map_err(io(format!("listing {}", topics_dir.display())))?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name(), e.path()))
            .collect();
        entries.sort();
        let mut recovery = Recovery::default();
        for (name, path) in entries {
            let name = name.to_string_lossy();
            if name.starts_with(CREATING) || name.starts_with(DELETING) {
                // Ours: a creation or deletion that a stop interrupted.
                fs::remove_dir_all(&path).map_err(io(format!("removing {}", path.display())))?;
                continue;
            }
            let topic = topic_of(&name).filter(|_| path.is_dir());
            let Some(topic) = topic else {
                recovery.notices.push(format!(
                    "{} is not a topic (its name is not a topic name, or it is not a \
                     directory): it was left alone",
                    path.display()
                ));
                continue;
            };
            match self.recover_topic(topic.clone(), path.clone()) {
                Ok(t) => recovery.topics.push(t),
                Err(reason) => recovery.quarantined.push(QuarantinedTopic {
                    name: topic,
                    reason: format!("{}: {reason}", path.display()),
                }),
            }
        }
        Ok(recovery)
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
    disk: Arc<DiskGuard>,
    first: u64,
    meta_written: u64,
    meta_at: Instant,
    log: SegmentLog,
    journal: Journal,
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
    fn append(&mut self, messages: &[Arc<Message>]) -> Result<Appended, StorageError> {
        let bytes = messages
            .iter()
            .map(|m| m.encoded_size() + RECORD_OVERHEAD)
            .sum();
        self.disk.admit(bytes, &self.what)?;
        let policy = self.policy;
        let log = &mut self.log;
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
        self.log.read(from.get(), max_bytes)
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
