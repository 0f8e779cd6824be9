//! A segment's sparse offset index.
//!
//! ```text
//! <dir>/<base offset, 20 digits>.idx    (offset:u64, position:u64) LE pairs, one for the
//!                                       first record at or after every INDEX_EVERY bytes
//! ```
//! The index only speeds up finding a record: a reader verifies what it finds at an indexed
//! position, and recovery rewrites the open segment's index from the records it read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::storage::StorageError;

/// Bytes of segment between two sparse index entries.
pub(crate) const INDEX_EVERY: u64 = 4096;

/// Index entries in order: (offset, position of its record in the segment).
pub(crate) type Entries = Vec<(u64, u64)>;

/// The path of segment `base`'s index in `dir`.
pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// Records which entries an index gets as records are laid out one after another.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IndexBuilder {
    next_at: u64,
}

impl IndexBuilder {
    /// A builder for a segment whose records so far end at `len`.
    pub(crate) fn resume(len: u64) -> Self {
        Self {
            next_at: len.div_ceil(INDEX_EVERY) * INDEX_EVERY,
        }
    }

    /// Whether the record of `offset` at `position` gets an entry; pushes it onto `out`.
    pub(crate) fn note(&mut self, offset: u64, position: u64, out: &mut Entries) -> bool {
        if position < self.next_at {
            return false;
        }
        out.push((offset, position));
        self.next_at = (position / INDEX_EVERY + 1) * INDEX_EVERY;
        true
    }
}

/// The position in the segment from which a reader looks for `offset`: the entry at or
/// before it, or the start.
pub(crate) fn position_for(entries: &[(u64, u64)], offset: u64) -> u64 {
    let at = entries.partition_point(|&(o, _)| o <= offset);
    at.checked_sub(1).map_or(0, |i| entries[i].1)
}

/// The sparse index of segment `base` (empty when it cannot be read: readers then scan).
pub(crate) fn read_index(dir: &Path, base: u64) -> Entries {
    let Ok(index) = fs::read(index_path(dir, base)) else {
        return Vec::new();
    };
    index
        .chunks_exact(16)
        .map(|c| {
            let mut o = [0u8; 8];
            let mut p = [0u8; 8];
            o.copy_from_slice(&c[..8]);
            p.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(o), u64::from_le_bytes(p))
        })
        .collect()
}

/// Appends the encoding of `entries` to `buf`.
pub(crate) fn encode(entries: &[(u64, u64)], buf: &mut Vec<u8>) {
    for (offset, pos) in entries {
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(&pos.to_le_bytes());
    }
}

/// Writes the index file of segment `base` afresh with `entries`; returns its length.
pub(crate) fn write_index(
    dir: &Path,
    base: u64,
    entries: &[(u64, u64)],
) -> Result<u64, StorageError> {
    let path = index_path(dir, base);
    let mut bytes = Vec::with_capacity(entries.len() * 16);
    encode(entries, &mut bytes);
    let io = |e| StorageError::io(format!("writing {}", path.display()), &e);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    Ok(bytes.len() as u64)
}
