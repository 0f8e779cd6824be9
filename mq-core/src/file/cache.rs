//! [`FileCache`]: bounds the files the storage holds open, whatever the number of topics.
//!
//! Segments, their indexes and group journals are [`CachedFile`]s: opened when used and
//! closed again, least recently used first (a clock: a used file gets a second chance),
//! when more than the cache's capacity are open. A file that took writes is fsynced before
//! it is closed, so that an error the disk reports is never lost with the descriptor.
//!
//! Lock order: a cached file's lock, then the cache's. The cache only *tries* a file's
//! lock, and skips a file in use.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use crate::timings::Timings;

/// Files open at once when nothing else is known.
pub(crate) const DEFAULT_OPEN_FILES: usize = 1024;

/// Failures to inject into a storage's writes, truncations and fsyncs (for tests; see
/// `FaultInjector`). Off unless armed: one atomic load per operation.
#[derive(Debug)]
pub(crate) struct Faults {
    /// Bytes that may still be appended before a write fails part-way (`u64::MAX`: off).
    pub(crate) write_budget: AtomicU64,
    /// How many of the next truncations fail.
    pub(crate) failing_truncates: AtomicU32,
    /// How many of the next fsyncs fail.
    pub(crate) failing_fsyncs: AtomicU32,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            write_budget: AtomicU64::new(u64::MAX),
            failing_truncates: AtomicU32::new(0),
            failing_fsyncs: AtomicU32::new(0),
        }
    }
}

/// Takes one from a counter of failures to inject; whether one was due.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// The open files of one storage.
#[derive(Debug)]
pub(crate) struct FileCache {
    capacity: usize,
    open: AtomicUsize,
    pub(crate) faults: Faults,
    /// How long fsyncs of appended data take.
    pub(crate) fsyncs: Timings,
    /// Open files in the order they were opened; closed ones are dropped when met.
    queue: Mutex<VecDeque<Weak<CachedFile>>>,
    /// Where fsynced lengths are recorded ([`super::FileOptions::sync_log`]).
    pub(crate) sync_log: Option<Mutex<File>>,
}

impl FileCache {
    /// A cache keeping at most `capacity` files open (at least 4).
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(4),
            open: AtomicUsize::new(0),
            faults: Faults::default(),
            fsyncs: Timings::default(),
            queue: Mutex::new(VecDeque::new()),
            sync_log: None,
        })
    }

    /// Records in the sync log, if any, that `len` bytes of `path` are on disk.
    pub(crate) fn note_synced(&self, path: &Path, len: u64) {
        if let Some(log) = &self.sync_log {
            let line = format!("{len} {}\n", path.display());
            let _ = log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(line.as_bytes());
        }
    }

    /// Files open now.
    pub(crate) fn open_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Makes room for one more open file, then counts `file` as open.
    fn admit(&self, file: &Arc<CachedFile>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut budget = 2 * queue.len() + 1;
        while self.open.load(Ordering::Acquire) >= self.capacity && budget > 0 {
            budget -= 1;
            let Some(victim) = queue.pop_front() else {
                break;
            };
            let Some(victim) = victim.upgrade() else {
                continue;
            };
            if victim.used.swap(false, Ordering::AcqRel) {
                queue.push_back(Arc::downgrade(&victim));
                continue;
            }
            match victim.file.try_lock() {
                Ok(mut guard) => victim.close_locked(&mut guard),
                Err(_) => queue.push_back(Arc::downgrade(&victim)),
            }
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        queue.push_back(Arc::downgrade(file));
    }
}

/// How a cached file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Appended to; fsynced before it is closed.
    Append,
    /// Appended to; its durability does not matter (an index).
    AppendUnsynced,
    /// Written at positions the owner keeps, and grown ahead of them ([`CachedFile::reserve`]):
    /// a segment. Fsynced before it is closed.
    Positioned,
}

/// A file the cache opens on demand.
#[derive(Debug)]
pub(crate) struct CachedFile {
    path: PathBuf,
    mode: Mode,
    cache: Arc<FileCache>,
    /// Shared with an fsync running outside the lock, so that it needs no second descriptor.
    file: Mutex<Option<Arc<File>>>,
    used: AtomicBool,
    /// [`Mode::Positioned`]: where the bytes written through this handle end (0: none yet),
    /// the length an fsync makes durable (the file may be longer: grown ahead).
    written_end: AtomicU64,
    /// Written to since its last fsync.
    dirty: AtomicBool,
    /// Why the fsync before it was last closed failed, until a sync reports it.
    close_error: Mutex<Option<io::Error>>,
}

impl CachedFile {
    /// A file at `path` (created when first opened), not yet open.
    pub(crate) fn new(cache: &Arc<FileCache>, path: &Path, mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            mode,
            cache: Arc::clone(cache),
            file: Mutex::new(None),
            used: AtomicBool::new(false),
            written_end: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            close_error: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the file if it does not exist yet.
    pub(crate) fn create(self: &Arc<Self>) -> io::Result<()> {
        self.with(false, |_| Ok(()))
    }

    /// Appends all of `bytes`, or returns the error that stopped it part-way.
    pub(crate) fn append(self: &Arc<Self>, bytes: &[u8]) -> io::Result<()> {
        self.write_with_faults(bytes, |mut f, bytes| f.write_all(bytes))
    }

    /// Writes all of `bytes` at byte `pos` ([`Mode::Positioned`]), or returns the error that
    /// stopped it part-way.
    pub(crate) fn write_at(self: &Arc<Self>, pos: u64, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let result = self.write_with_faults(bytes, |f, bytes| f.write_all_at(bytes, pos));
        if result.is_ok() {
            self.written_end
                .fetch_max(pos + bytes.len() as u64, Ordering::AcqRel);
        }
        result
    }

    /// Writes `bytes` with `write`, failing part-way when an injected fault says so.
    fn write_with_faults(
        self: &Arc<Self>,
        bytes: &[u8],
        write: impl Fn(&File, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let faults = &self.cache.faults;
        let budget = faults.write_budget.load(Ordering::Acquire);
        if budget != u64::MAX {
            let allowed = usize::try_from(budget).unwrap_or(usize::MAX);
            if bytes.len() > allowed {
                faults.write_budget.store(u64::MAX, Ordering::Release);
                self.with(true, |f| write(f, &bytes[..allowed]))?;
                return Err(injected("write"));
            }
            faults
                .write_budget
                .store(budget - bytes.len() as u64, Ordering::Release);
        }
        self.with(true, |f| write(f, bytes))
    }

    /// Grows the file from `len` to `to` bytes ahead of the writes that will fill it, so
    /// that those writes and their fsyncs need not change its length (which would cost a
    /// metadata commit each). The new bytes read as zeros. Best effort: where blocks cannot
    /// be allocated ahead, the file is only lengthened; where not even that works, writes
    /// grow it as they go.
    pub(crate) fn reserve(self: &Arc<Self>, len: u64, to: u64) {
        if to <= len {
            return;
        }
        let _ = self.with(false, |f| {
            #[cfg(target_os = "linux")]
            if rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), len, to - len).is_ok()
            {
                return Ok(());
            }
            f.set_len(to)
        });
    }

    /// Cuts the file to `len` bytes.
    pub(crate) fn truncate(self: &Arc<Self>, len: u64) -> io::Result<()> {
        if take_one(&self.cache.faults.failing_truncates) {
            return Err(injected("truncate"));
        }
        self.with(false, |f| f.set_len(len))?;
        if self.mode == Mode::Positioned {
            self.written_end.store(len, Ordering::Release);
        }
        Ok(())
    }

    /// Cuts the file to `len` bytes if it is open now; never opens it (its path may name
    /// another file by then).
    pub(crate) fn truncate_if_open(&self, len: u64) {
        if let Some(file) = self.lock().as_deref() {
            let _ = file.set_len(len);
        }
    }

    /// Runs `op` on the open file, opening it first when needed. `writes` marks it dirty.
    fn with<R>(
        self: &Arc<Self>,
        writes: bool,
        op: impl FnOnce(&File) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut guard = self.lock();
        if guard.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(self.mode != Mode::Positioned)
                .write(true)
                .open(&self.path)?;
            self.cache.admit(self);
            *guard = Some(Arc::new(file));
        }
        self.used.store(true, Ordering::Release);
        if writes {
            self.dirty.store(true, Ordering::Release);
        }
        match guard.as_deref() {
            Some(file) => op(file),
            None => Err(io::Error::other("the file could not be opened")),
        }
    }

    /// Puts what was written on disk: outside the file's lock when the file is open (so
    /// writers are not held up by the fsync), or reports how the fsync before it was closed
    /// went.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        if take_one(&self.cache.faults.failing_fsyncs) {
            return Err(injected("fsync"));
        }
        let open = {
            let guard = self.lock();
            guard.as_ref().map(|file| {
                self.dirty.store(false, Ordering::Release);
                // Read under the lock writes take: a length between two writes.
                let len = self
                    .cache
                    .sync_log
                    .as_ref()
                    .and_then(|_| self.durable_len(file));
                (Arc::clone(file), len)
            })
        };
        match open {
            Some((file, len)) => {
                let start = Instant::now();
                let synced = file.sync_data();
                self.cache.fsyncs.record(start.elapsed());
                if let (Ok(()), Some(len)) = (&synced, len) {
                    self.cache.note_synced(&self.path, len);
                }
                synced
            }
            None => match self
                .close_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }

    /// The length an fsync of `file` now makes durable, for the sync log: its length, or for
    /// a [`Mode::Positioned`] file where what was written through this handle ends (`None`
    /// before anything was).
    fn durable_len(&self, file: &File) -> Option<u64> {
        if self.mode == Mode::Positioned {
            let end = self.written_end.load(Ordering::Acquire);
            return (end > 0).then_some(end);
        }
        file.metadata().ok().map(|m| m.len())
    }

    /// Closes the file, syncing it first when it must be.
    fn close_locked(&self, guard: &mut Option<Arc<File>>) {
        let Some(file) = guard.take() else {
            return;
        };
        if self.mode != Mode::AppendUnsynced && self.dirty.swap(false, Ordering::AcqRel) {
            match file.sync_data() {
                Ok(()) => {
                    if let Some(len) = self.durable_len(&file) {
                        self.cache.note_synced(&self.path, len);
                    }
                }
                Err(e) => {
                    *self
                        .close_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            }
        }
        drop(file);
        self.cache.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.take().is_some() {
            self.cache.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
