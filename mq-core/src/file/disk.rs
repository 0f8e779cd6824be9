//! [`DiskGuard`]: refuses appends while the data dir's filesystem is below its free-space
//! floor, so that a full disk never cuts a write in half and acks and consumers go on.
//!
//! Free space is read with `statvfs` at most every [`RECHECK`], or sooner once the bytes
//! appended since the last reading could have crossed the floor; publishing resumes on its
//! own as soon as a reading finds the space back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::storage::StorageError;

/// Longest time between two readings of the free space.
const RECHECK: Duration = Duration::from_millis(100);
/// The default floor: 1 GiB, or 5% of the filesystem when that is smaller.
const DEFAULT_FLOOR: u64 = 1024 * 1024 * 1024;

#[derive(Debug)]
struct Reading {
    at: Instant,
    free: u64,
    /// Bytes appended since.
    appended: u64,
}

/// The free-space floor of one data dir.
#[derive(Debug)]
pub(crate) struct DiskGuard {
    root: PathBuf,
    floor: AtomicU64,
    last: Mutex<Option<Reading>>,
}

/// Free bytes and total bytes of the filesystem holding `path`.
fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

impl DiskGuard {
    /// A guard for the data dir `root` keeping `floor` bytes free (`None`: the default).
    pub(crate) fn new(root: &Path, floor: Option<u64>) -> Result<Self, StorageError> {
        let floor = match floor {
            Some(f) => f,
            None => {
                let (_, total) = space(root).map_err(|e| {
                    StorageError::io(format!("reading the free space of {}", root.display()), &e)
                })?;
                DEFAULT_FLOOR.min(total / 20)
            }
        };
        Ok(Self {
            root: root.to_path_buf(),
            floor: AtomicU64::new(floor),
            last: Mutex::new(None),
        })
    }

    /// The floor in bytes.
    pub(crate) fn floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// Changes the floor (0 turns the guard off).
    pub(crate) fn set_floor(&self, bytes: u64) {
        self.floor.store(bytes, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether `bytes` more may be appended; refuses with a `StorageFull` error below the
    /// floor.
    pub(crate) fn admit(&self, bytes: u64, what: &str) -> Result<(), StorageError> {
        let floor = self.floor();
        if floor == 0 {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = last.as_ref().is_none_or(|r| {
            r.at.elapsed() >= RECHECK || r.appended + bytes >= r.free.saturating_sub(floor) / 2
        });
        if stale {
            let (free, _) = space(&self.root).map_err(|e| {
                StorageError::io(
                    format!("reading the free space of {}", self.root.display()),
                    &e,
                )
            })?;
            *last = Some(Reading {
                at: Instant::now(),
                free,
                appended: 0,
            });
        }
        let reading = last.get_or_insert_with(|| Reading {
            at: Instant::now(),
            free: 0,
            appended: 0,
        });
        let free = reading.free.saturating_sub(reading.appended);
        if free < floor.saturating_add(bytes) {
            return Err(StorageError {
                context: format!("appending to {what}"),
                message: format!(
                    "the disk of {} is almost full: {free} bytes free, and the server keeps \
                     {floor} free (--min-free-disk); free some space (publishing resumes on its \
                     own) or lower the floor",
                    self.root.display()
                ),
                kind: Some(std::io::ErrorKind::StorageFull),
            });
        }
        reading.appended += bytes;
        Ok(())
    }
}
