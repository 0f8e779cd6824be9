//! The `file` storage: per topic, a segmented append-only log with a checksum per record
//! and a sparse offset index, a journal of durable group state, the topic's config, and the
//! fsync policy. docs/STORAGE.md documents the layout and the guarantees.
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
mod disk;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod index;
mod journal;
mod layout;
mod options;
mod recovery;
mod scan;
mod segment;
mod store;
mod sync;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use check::CheckReport;
pub use layout::DATA_FORMAT;
#[cfg(feature = "fault-injection")]
pub use options::FaultInjector;
pub use options::{DEFAULT_RESIDENT_BYTES, DEFAULT_SEGMENT_BYTES, FileOptions, FreeSpaceFloor};
pub use sync::FsyncPolicy;

use self::cache::FileCache;
use self::disk::DiskGuard;
use self::journal::Journal;
use self::layout::{
    CREATING, DELETING, check_format, read_topic_files, sync_dir, topic_of, write_atomic,
};
use self::options::default_open_files;
use self::segment::SegmentLog;
use self::store::FileTopic;
use self::sync::Flusher;
use crate::config::TopicConfig;
use crate::message::Offset;
use crate::name::TopicName;
use crate::storage::{
    QuarantinedTopic, RecoveredGroup, RecoveredTopic, Recovery, Storage, StorageError, TopicStore,
};

/// Turns an I/O error into a [`StorageError`] saying what the storage was doing: the one
/// I/O-error helper of the file storage.
fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, &e)
}

/// One past the highest offset the groups have seen: it was assigned, even if its record
/// was lost.
fn seen_offsets(groups: &[RecoveredGroup]) -> u64 {
    groups
        .iter()
        .flat_map(|g| {
            [g.floor, g.start]
                .into_iter()
                .chain(g.acked.last().map(|o| o.next()))
                .chain(g.deliveries.iter().map(|(o, _)| o.next()).max())
        })
        .max()
        .map_or(0, Offset::get)
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
        let mut cache = FileCache::new(options.max_open_files.unwrap_or_else(default_open_files));
        if let Some(path) = &options.sync_log {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io(format!("opening the sync log {}", path.display())))?;
            if let Some(c) = Arc::get_mut(&mut cache) {
                c.sync_log = Some(Mutex::new(log));
            }
        }
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
            next_offset: Offset(recovered.next),
            largest_message: recovered.largest,
            groups,
            producers: recovered.stamps,
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

    fn fsync_timings(&self) -> Option<crate::timings::TimingsSnapshot> {
        Some(self.cache.fsyncs.snapshot())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.flusher.flush()
    }
}
