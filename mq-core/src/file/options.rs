//! [`FileOptions`]: the settings of the file storage, and the handles that change its
//! behaviour while it runs ([`FreeSpaceFloor`], and `FaultInjector` for tests).

use std::sync::Arc;
use std::time::Duration;

use super::cache;
#[cfg(feature = "fault-injection")]
use super::cache::FileCache;
use super::disk::DiskGuard;
use super::sync::FsyncPolicy;

/// Default size at which a segment is rolled.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default bytes of messages a topic keeps in memory.
pub const DEFAULT_RESIDENT_BYTES: u64 = 64 * 1024 * 1024;
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
    /// For power-loss tests: after every fsync of a segment, index or journal the storage
    /// appends a line `LENGTH PATH` to this file — the length that fsync made durable — so
    /// that a test harness can cut every file back to it after a SIGKILL, as a power cut
    /// would (SIGKILL alone keeps the page cache). `None` (the default) records nothing.
    pub sync_log: Option<std::path::PathBuf>,
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
            sync_log: None,
        }
    }
}

/// [`FileOptions::max_open_files`] when not set: a quarter of the soft open-file limit.
pub(super) fn default_open_files() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map_or(cache::DEFAULT_OPEN_FILES, |n| {
        usize::try_from(n / 4).unwrap_or(usize::MAX).clamp(16, 4096)
    })
}

/// Makes a [`FileStorage`]'s file operations fail on demand, as a full or failing disk
/// would: for tests of what the storage does then.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone)]
pub struct FaultInjector(pub(super) Arc<FileCache>);

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
pub struct FreeSpaceFloor(pub(super) Arc<DiskGuard>);

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
