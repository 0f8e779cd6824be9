//! Durability of appended bytes: the fsync policy, group commit for `always`, and the
//! background flusher for `interval`.
//!
//! Every file that takes appends has a [`SyncFile`]: a count of bytes written and of bytes
//! known to be on disk. Under `always`, a writer takes a ticket (the written count after its
//! append) and, once it has released the topic's lock, waits for a sync that covers it. The
//! first waiter syncs for everyone who wrote before it ran: concurrent publishers share one
//! fsync (group commit).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::cache::CachedFile;
use crate::storage::StorageError;

/// When appended data is fsynced (docs/STORAGE.md, "fsync policy").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// Before a publish (or ack) is confirmed; concurrent writers share one fsync.
    Always,
    /// Every `interval` by a background thread (default).
    #[default]
    Interval,
    /// Never explicitly; the operating system decides.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "fsync policy {other:?} is unknown: use always, interval or never"
            )),
        }
    }
}

#[derive(Debug)]
struct SyncState {
    what: String,
    file: Arc<CachedFile>,
    synced: u64,
    syncing: bool,
    failed: Option<String>,
    /// Tickets up to here were written to a file whose fsync failed: they never count as
    /// synced.
    lost_upto: u64,
    lost_why: String,
}

/// A file that takes appends, and what of it is on disk.
///
/// Tickets count bytes written over the tracker's whole life, across [`SyncFile::switch`]es.
#[derive(Debug)]
pub(crate) struct SyncFile {
    written: AtomicU64,
    dirty: AtomicBool,
    failed: AtomicBool,
    state: Mutex<SyncState>,
    done: Condvar,
}

impl SyncFile {
    /// Tracks `file` (the file being appended to), described as `what` in errors;
    /// `written` bytes are already on disk.
    pub(crate) fn new(what: String, file: Arc<CachedFile>, written: u64) -> Arc<Self> {
        Arc::new(Self {
            written: AtomicU64::new(written),
            dirty: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            state: Mutex::new(SyncState {
                what,
                file,
                synced: written,
                syncing: false,
                failed: None,
                lost_upto: 0,
                lost_why: String::new(),
            }),
            done: Condvar::new(),
        })
    }

    /// Records `n` more bytes written; returns the ticket a sync must reach to cover them.
    pub(crate) fn wrote(&self, n: u64) -> u64 {
        self.dirty.store(true, Ordering::Release);
        self.written.fetch_add(n, Ordering::AcqRel) + n
    }

    /// The ticket of everything written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Whether an fsync of the current file failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Points the tracker at a new file (a rolled segment), first syncing the old one. If
    /// that sync fails, what was written to the old file and not yet synced is reported as
    /// not synced to whoever waits for it; the new file starts clean either way.
    pub(crate) fn switch(&self, file: Arc<CachedFile>, what: String) {
        let old = self.sync_all();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.syncing {
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let written = self.written.load(Ordering::Acquire);
        if let Err(e) = old {
            state.lost_upto = written;
            state.lost_why = e.to_string();
        }
        state.failed = None;
        state.what = what;
        state.file = file;
        self.failed.store(false, Ordering::Release);
        self.done.notify_all();
    }

    /// Waits until every byte up to `ticket` is on disk, syncing if nobody else is.
    pub(crate) fn wait(&self, ticket: u64) -> Result<(), StorageError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if ticket <= state.lost_upto && ticket > state.synced {
                return Err(StorageError {
                    context: format!("syncing {}", state.what),
                    message: state.lost_why.clone(),
                    kind: None,
                });
            }
            if let Some(e) = &state.failed {
                return Err(StorageError {
                    context: format!("syncing {}", state.what),
                    message: e.clone(),
                    kind: None,
                });
            }
            if state.synced >= ticket {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            let target = self.written.load(Ordering::Acquire);
            self.dirty.store(false, Ordering::Release);
            let file = Arc::clone(&state.file);
            drop(state);
            let result = file.sync_data();
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.syncing = false;
            match result {
                Ok(()) => state.synced = state.synced.max(target),
                Err(e) => {
                    state.failed = Some(e.to_string());
                    self.failed.store(true, Ordering::Release);
                }
            }
            self.done.notify_all();
        }
    }

    /// Syncs everything written so far.
    pub(crate) fn sync_all(&self) -> Result<(), StorageError> {
        self.wait(self.written.load(Ordering::Acquire))
    }

    fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }
}

/// The files the `interval` flusher keeps on disk.
#[derive(Debug, Default)]
pub(crate) struct Flusher {
    files: Mutex<Vec<Weak<SyncFile>>>,
}

impl Flusher {
    /// Adds a file to flush.
    pub(crate) fn register(&self, file: &Arc<SyncFile>) {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(file));
    }

    /// Syncs every dirty file; forgets closed ones.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        let live: Vec<Arc<SyncFile>> = {
            let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            files.retain(|w| w.strong_count() > 0);
            files.iter().filter_map(Weak::upgrade).collect()
        };
        let mut first_error = None;
        for file in live.iter().filter(|f| f.is_dirty()) {
            if let Err(e) = file.sync_all() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts a thread that flushes every `every` for as long as `flusher` lives.
    pub(crate) fn spawn(flusher: &Arc<Flusher>, every: Duration) -> std::io::Result<()> {
        let weak = Arc::downgrade(flusher);
        std::thread::Builder::new()
            .name("mq-fsync".into())
            .spawn(move || {
                while let Some(flusher) = weak.upgrade() {
                    let _ = flusher.flush();
                    drop(flusher);
                    std::thread::sleep(every);
                }
            })
            .map(drop)
    }
}
