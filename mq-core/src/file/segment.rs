//! [`SegmentLog`]: one topic's messages on disk as a series of segment files, the last one
//! open for appends.
//!
//! ```text
//! <dir>/<base offset, 20 digits>.log    records (see record.rs), offsets from base on
//! <dir>/<base offset, 20 digits>.idx    its sparse index (see index.rs)
//! ```
//! A segment is rolled when it reaches the configured size. Retention deletes whole
//! segments once every record in them is before the first retained offset.
//!
//! The open segment is grown ahead of its records ([`reserve_ahead`]): writes and their
//! fsyncs then leave the file's length alone, which spares each fsync a metadata commit.
//! Bytes past the last record read as zeros; a segment is cut back to its records when it
//! is rolled or closed, and recovery takes zeros that run to the end of a segment for the end of its
//! records.
//!
//! # Invariants
//! - the open segment holds only whole, valid records: a write that fails is cut off again
//!   before anything else is appended, or, when even that fails, appends go on in a new
//!   segment (recovery then keeps the later copy of any offset written twice);
//! - a batch is written whole or not at all.

use std::fs::{self, File};
use std::io::{Read as _, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::cache::{CachedFile, FileCache, Mode};
use super::index::{self, Entries, IndexBuilder};
use super::io;
use super::sync::SyncFile;
use crate::message::Offset;
use crate::record;
use crate::storage::{ReadBack, ReadOut, Records, StorageError};

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The offset its name carries: no record in it is below.
    pub(crate) base: u64,
    /// One past the last offset it holds.
    pub(crate) end: u64,
    /// Its sparse index, once loaded.
    pub(crate) index: Option<Entries>,
}

/// The path of segment `base` in `dir`.
pub(crate) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The segments of one topic and the open one being appended to.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    what: String,
    segments: Vec<Segment>,
    cache: Arc<FileCache>,
    active: Arc<CachedFile>,
    active_len: u64,
    /// The open segment's length on disk: its records, then zeros it was grown by.
    reserved: u64,
    index: Arc<CachedFile>,
    index_len: u64,
    builder: IndexBuilder,
    segment_bytes: u64,
    sync: Arc<SyncFile>,
    /// A failed write could not be cut off: the open segment may end in garbage.
    torn: bool,
}

impl SegmentLog {
    /// Opens the last of recovered `segments` (or a new one at `next`) for appends.
    pub(crate) fn open(
        cache: &Arc<FileCache>,
        dir: &Path,
        what: &str,
        mut segments: Vec<Segment>,
        next: u64,
        segment_bytes: u64,
    ) -> Result<Self, StorageError> {
        if segments.last().is_none_or(|s| s.end < next) {
            // A new log, or offsets lost at its end: the new segment's name records where
            // offsets go on, so that none is ever used twice.
            segments.push(Segment {
                base: next,
                end: next,
                index: Some(Vec::new()),
            });
        }
        let base = segments.last().map_or(next, |s| s.base);
        let path = log_path(dir, base);
        let active_len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), &e)),
        };
        // Rewrite the open segment's index from what recovery read, so an index torn by a
        // crash never points past the data.
        let entries = segments
            .last()
            .and_then(|s| s.index.as_deref())
            .unwrap_or(&[]);
        let index_len = index::write_index(dir, base, entries)?;
        let active = CachedFile::new(cache, &path, Mode::Positioned);
        // Created now, so that the segment's name records where offsets go on.
        active
            .create()
            .map_err(io(format!("opening {}", path.display())))?;
        let sync = SyncFile::new(
            format!("{what} segment {}", path.display()),
            Arc::clone(&active),
            0,
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            what: what.to_owned(),
            index_len,
            segments,
            cache: Arc::clone(cache),
            active,
            active_len,
            reserved: active_len,
            index: CachedFile::new(cache, &index::index_path(dir, base), Mode::AppendUnsynced),
            builder: IndexBuilder::resume(active_len),
            segment_bytes,
            sync,
            torn: false,
        })
    }

    /// The tracker of what of the open segment is on disk.
    pub(crate) fn sync_file(&self) -> &Arc<SyncFile> {
        &self.sync
    }

    /// Appends `records`, all or none; returns the sync ticket covering them.
    ///
    /// # Errors
    /// [`StorageError`] when the records cannot be written; nothing of them stays in the
    /// segment.
    pub(crate) fn append(&mut self, records: Records<'_>) -> Result<u64, StorageError> {
        if records.is_empty() {
            return Ok(self.sync.written());
        }
        let first = records.first().get();
        if self.torn && self.cut_back().is_err() {
            // The garbage cannot be cut off: leave it behind and go on in a new segment.
            self.roll(first)?;
        } else if self.sync.has_failed() || self.active_len >= self.segment_bytes {
            // After a failed fsync nothing written since can be trusted to reach this
            // file: go on in a new one.
            self.roll(first)?;
        }
        let mut entries = Vec::new();
        // Noted on a copy: kept only once the batch is written.
        let mut builder = self.builder;
        for (offset, at) in records.starts() {
            builder.note(offset.get(), self.active_len + at, &mut entries);
        }
        let mut index_bytes = Vec::with_capacity(entries.len() * 16);
        index::encode(&entries, &mut index_bytes);
        let size = records.size();
        let to = reserve_ahead(self.active_len, size, self.reserved, self.segment_bytes);
        self.active.reserve(self.reserved, to);
        self.reserved = to;
        let mut at = self.active_len;
        let written = records
            .parts()
            .iter()
            .try_for_each(|part| {
                self.active.write_at(at, part)?;
                at += part.len() as u64;
                Ok(())
            })
            .and_then(|()| {
                if index_bytes.is_empty() {
                    Ok(())
                } else {
                    self.index.append(&index_bytes)
                }
            });
        if let Err(e) = written {
            // `builder` is dropped: the entries it noted were not written.
            self.torn = self.cut_back().is_err();
            return Err(StorageError::io(format!("appending to {}", self.what), &e));
        }
        self.builder = builder;
        self.active_len += size;
        self.index_len += index_bytes.len() as u64;
        if let Some(seg) = self.segments.last_mut() {
            seg.index.get_or_insert_with(Vec::new).extend(entries);
            seg.end = first + records.len();
        }
        Ok(self.sync.wrote(size))
    }

    /// Cuts the open segment and its index back to what was appended whole.
    fn cut_back(&mut self) -> std::io::Result<()> {
        let (active_len, index_len) = (self.active_len, self.index_len);
        self.active.truncate(active_len)?;
        self.reserved = active_len;
        self.index.truncate(index_len)?;
        self.torn = false;
        Ok(())
    }

    fn roll(&mut self, base: u64) -> Result<(), StorageError> {
        if self.reserved > self.active_len && !self.torn {
            // The zeros it was grown by go; the sync of the switch below makes that durable.
            // Should the cut fail, recovery still reads them as the end of its records.
            let _ = self.active.truncate(self.active_len);
        }
        let path = log_path(&self.dir, base);
        let active = CachedFile::new(&self.cache, &path, Mode::Positioned);
        // A file left by a failed roll at the same offset holds nothing acknowledged.
        active
            .truncate(0)
            .map_err(io(format!("creating {}", path.display())))?;
        index::write_index(&self.dir, base, &[])?;
        self.index = CachedFile::new(
            &self.cache,
            &index::index_path(&self.dir, base),
            Mode::AppendUnsynced,
        );
        self.sync.switch(
            Arc::clone(&active),
            format!("{} segment {}", self.what, path.display()),
        );
        self.active = active;
        self.active_len = 0;
        self.reserved = 0;
        self.index_len = 0;
        self.builder = IndexBuilder::resume(0);
        self.torn = false;
        if self.segments.last().is_some_and(|s| s.base == base) {
            self.segments.pop();
        }
        self.segments.push(Segment {
            base,
            end: base,
            index: Some(Vec::new()),
        });
        Ok(())
    }

    /// Prepares a read of messages from offset `from` on, about `max_bytes` of them (at
    /// least the one at `from`, when it is stored): the segment and the position to start
    /// from are found now; the file is read when the returned read runs.
    pub(crate) fn prepare_read(&mut self, from: u64, max_bytes: usize) -> ReadBack {
        let Some(i) = self
            .segments
            .partition_point(|s| s.base <= from)
            .checked_sub(1)
            .filter(|&i| from < self.segments[i].end)
        else {
            return ReadBack::new(|| Ok(Vec::new()));
        };
        let base = self.segments[i].base;
        let dir = self.dir.clone();
        let entries = self.segments[i]
            .index
            .get_or_insert_with(|| index::read_index(&dir, base));
        let start = index::position_for(entries, from);
        let path = log_path(&self.dir, base);
        ReadBack::records(move || read_from(&path, start, from, max_bytes))
    }

    /// Deletes every segment whose records all come before `first`.
    pub(crate) fn trim_before(&mut self, first: u64) -> Result<(), StorageError> {
        while self.segments.len() > 1 && self.segments[0].end <= first {
            let seg = self.segments.remove(0);
            let path = log_path(&self.dir, seg.base);
            fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
            let _ = fs::remove_file(index::index_path(&self.dir, seg.base));
        }
        Ok(())
    }

    /// Number of segment files.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl Drop for SegmentLog {
    /// Cuts the open segment back to its records, so that a cleanly closed storage leaves
    /// no zeros behind (recovery reads them as the end anyway).
    fn drop(&mut self) {
        if self.reserved > self.active_len && !self.torn {
            self.active.truncate_if_open(self.active_len);
        }
    }
}

/// Smallest step the open segment is grown by.
const GROW_MIN: u64 = 64 * 1024;
/// Largest step the open segment is grown by.
const GROW_MAX: u64 = 4 * 1024 * 1024;

/// How long the open segment should be before `size` more bytes are written after its
/// `len` bytes of records, given that it is `reserved` bytes long: unchanged while they fit,
/// else grown past them by a quarter of what it holds (between [`GROW_MIN`] and
/// [`GROW_MAX`], so that a quiet topic holds little in zeros and a busy one grows its file
/// rarely), not past the segment size unless the records themselves go past it.
fn reserve_ahead(len: u64, size: u64, reserved: u64, segment_bytes: u64) -> u64 {
    let need = len + size;
    if need <= reserved {
        return reserved;
    }
    let ahead = need + (len / 4).clamp(GROW_MIN, GROW_MAX);
    ahead.min(segment_bytes).max(need).next_multiple_of(4096)
}

/// Room beyond what a read asks for, so that the last record it wants usually fits.
const FRAME_SLACK: usize = 64 * 1024;

/// Reads the records of the segment at `path` from offset `from` on (at byte `start` or
/// after it), about `max_bytes` of them (at least the one of `from`, when it is there):
/// whole records of consecutive offsets, each checksum verified. Damage before `from` is
/// skipped; damage after it ends the read.
fn read_from(
    path: &Path,
    start: u64,
    from: u64,
    max_bytes: usize,
) -> Result<ReadOut, StorageError> {
    let mut file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    // The record at `from` lies within an index interval of `start`.
    let mut want = max_bytes.saturating_add(index::INDEX_EVERY as usize + FRAME_SLACK);
    loop {
        file.seek(SeekFrom::Start(start))
            .map_err(io(format!("reading {}", path.display())))?;
        let mut buf = Vec::with_capacity(want);
        (&mut file)
            .take(want as u64)
            .read_to_end(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        let complete = buf.len() < want;
        let data = Bytes::from(buf);
        let (mut pos, mut begin, mut last) = (0, None, None);
        // Whether the read ended on a record the buffer cut short.
        let mut cut = false;
        loop {
            match record::decode_meta(&data, pos) {
                Ok(Some((meta, len))) => {
                    match begin {
                        None if meta.offset == from => begin = Some(pos),
                        None if meta.offset < from => {}
                        Some(_) if last.map(|l: u64| l + 1) == Some(meta.offset) => {}
                        _ => break,
                    }
                    last = Some(meta.offset);
                    pos += len;
                    if begin.is_some_and(|b| pos - b >= max_bytes) {
                        break;
                    }
                }
                Err(d) if begin.is_none() && !(complete && record::only_zeros(&data, pos)) => {
                    if !complete && d.is_cut() {
                        break;
                    }
                    match record::find_next(&data, pos + 1, last) {
                        Some(q) => pos = q,
                        None => break,
                    }
                }
                Err(d) => {
                    cut = !complete && d.is_cut();
                    break;
                }
                Ok(None) => break,
            }
        }
        if let Some(begin) = begin {
            // `max_bytes` of records after `from` were asked for (a whole batch, for the
            // log to hold again): a buffer that ended before them is read again, larger.
            if cut && pos - begin < max_bytes {
                want = want.saturating_mul(2).max(begin + max_bytes + FRAME_SLACK);
                continue;
            }
            return Ok(ReadOut::Records {
                first: Offset(from),
                data: data.slice(begin..pos),
            });
        }
        if complete {
            return Ok(ReadOut::Records {
                first: Offset(from),
                data: Bytes::new(),
            });
        }
        // The record at `from` (or damage before it) runs past what was read: read more.
        want *= 2;
    }
}
