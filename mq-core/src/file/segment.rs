//! [`SegmentLog`]: one topic's messages on disk as a series of segment files.
//!
//! ```text
//! <dir>/<base offset, 20 digits>.log    records (see record.rs), offsets base, base+1, …
//! <dir>/<base offset, 20 digits>.idx    sparse index: (offset:u64, position:u64) LE pairs,
//!                                       one every INDEX_EVERY bytes of the segment
//! ```
//! A segment is rolled when it reaches the configured size. Retention deletes whole
//! segments once every record in them is before the first retained offset.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::record::{self, Read};
use super::sync::SyncFile;
use crate::clock::Timestamp;
use crate::log::StoredMessage;
use crate::message::{Message, Offset};
use crate::storage::StorageError;

/// Bytes of segment between two sparse index entries.
pub(crate) const INDEX_EVERY: u64 = 4096;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, &e)
}

#[derive(Debug)]
struct Segment {
    base: u64,
    /// One past the last offset it holds.
    end: u64,
    /// Its sparse index, once loaded: (offset, position) pairs in order.
    index: Option<Vec<(u64, u64)>>,
}

fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// What recovery found in a topic's segments.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) log: SegmentLog,
    /// Messages at or after the first retained offset, in order, one list per segment: the
    /// newest whole, the older ones only as the log must know them.
    pub(crate) messages: Vec<Vec<StoredMessage>>,
    /// The offset the next message gets.
    pub(crate) next: u64,
    /// What was damaged and cut off.
    pub(crate) warnings: Vec<String>,
}

/// The segments of one topic and the open one being appended to.
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    what: String,
    segments: Vec<Segment>,
    active: File,
    active_len: u64,
    index: File,
    next_index_at: u64,
    segment_bytes: u64,
    sync: Arc<SyncFile>,
    buf: Vec<u8>,
}

impl SegmentLog {
    /// Opens the segments in `dir` (creating it), validates them, truncates a damaged tail,
    /// and reads back every record from offset `first` on.
    pub(crate) fn recover(
        dir: &Path,
        what: &str,
        first: u64,
        segment_bytes: u64,
        resident_bytes: u64,
    ) -> Result<Recovered, StorageError> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut bases: Vec<u64> = fs::read_dir(dir)
            .map_err(io(format!("listing {}", dir.display())))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        // The newest segments, up to the resident budget, are read whole; the older ones
        // only for what the log must know, and read back on demand.
        let mut whole = vec![false; bases.len()];
        let mut budget = resident_bytes;
        for (i, &base) in bases.iter().enumerate().rev() {
            let len = fs::metadata(log_path(dir, base)).map_or(0, |m| m.len());
            if len > budget {
                break;
            }
            budget -= len;
            whole[i] = true;
        }
        let scans = scan_all(dir, &bases, &whole, first)?;
        let mut segments = Vec::new();
        let mut messages = Vec::with_capacity(scans.len());
        let mut warnings = Vec::new();
        let mut next = first;
        let mut cut = false;
        for (&base, scan) in bases.iter().zip(scans) {
            let path = log_path(dir, base);
            if cut {
                fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
                let _ = fs::remove_file(index_path(dir, base));
                continue;
            }
            messages.push(scan.messages);
            if let Some((pos, why)) = scan.damaged {
                warnings.push(format!(
                    "{what}: segment {} is damaged at byte {pos} (after offset {}): {why}; \
                     the log was truncated there",
                    path.display(),
                    scan.end.max(base).saturating_sub(1)
                ));
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(format!("opening {}", path.display())))?;
                file.set_len(pos as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(io(format!("truncating {}", path.display())))?;
                cut = true;
            }
            next = next.max(scan.end);
            segments.push(Segment {
                base,
                end: scan.end,
                index: Some(scan.index),
            });
        }
        let log = Self::open_active(dir, what, segments, next, segment_bytes)?;
        Ok(Recovered {
            log,
            messages,
            next,
            warnings,
        })
    }

    fn open_active(
        dir: &Path,
        what: &str,
        mut segments: Vec<Segment>,
        next: u64,
        segment_bytes: u64,
    ) -> Result<Self, StorageError> {
        if segments.is_empty() {
            segments.push(Segment {
                base: next,
                end: next,
                index: Some(Vec::new()),
            });
        }
        let base = segments.last().map_or(next, |s| s.base);
        let path = log_path(dir, base);
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let active_len = active
            .metadata()
            .map_err(io(format!("reading {}", path.display())))?
            .len();
        // Rewrite the open segment's index from what recovery read, so an index torn by a
        // crash never points past the data.
        let entries = segments
            .last()
            .and_then(|s| s.index.as_deref())
            .unwrap_or(&[]);
        let index = write_index(dir, base, entries)?;
        let sync = SyncFile::new(
            format!("{what} segment {}", path.display()),
            active
                .try_clone()
                .map_err(io(format!("opening {}", path.display())))?,
            0,
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            what: what.to_owned(),
            segments,
            active,
            active_len,
            index,
            next_index_at: active_len.div_ceil(INDEX_EVERY) * INDEX_EVERY,
            segment_bytes,
            sync,
            buf: Vec::new(),
        })
    }

    /// The tracker of what of the open segment is on disk.
    pub(crate) fn sync_file(&self) -> &Arc<SyncFile> {
        &self.sync
    }

    /// Appends records for `messages`; returns the sync ticket covering them.
    pub(crate) fn append(&mut self, messages: &[Arc<Message>]) -> Result<u64, StorageError> {
        if self.active_len >= self.segment_bytes
            && let Some(first) = messages.first()
        {
            self.roll(first.offset.get())?;
        }
        self.buf.clear();
        let mut index = Vec::new();
        let mut entries = Vec::new();
        for m in messages {
            let at = self.active_len + self.buf.len() as u64;
            if at >= self.next_index_at {
                index.extend_from_slice(&m.offset.get().to_le_bytes());
                index.extend_from_slice(&at.to_le_bytes());
                entries.push((m.offset.get(), at));
                self.next_index_at = (at / INDEX_EVERY + 1) * INDEX_EVERY;
            }
            record::encode(m, &mut self.buf);
        }
        if let Some(active) = self.segments.last_mut() {
            active.index.get_or_insert_with(Vec::new).extend(entries);
        }
        self.active
            .write_all(&self.buf)
            .map_err(io(format!("appending to {}", self.what)))?;
        if !index.is_empty() {
            self.index
                .write_all(&index)
                .map_err(io(format!("indexing {}", self.what)))?;
        }
        self.active_len += self.buf.len() as u64;
        if let (Some(last), Some(seg)) = (messages.last(), self.segments.last_mut()) {
            seg.end = last.offset.get() + 1;
        }
        Ok(self.sync.wrote(self.buf.len() as u64))
    }

    fn roll(&mut self, base: u64) -> Result<(), StorageError> {
        let path = log_path(&self.dir, base);
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        let handle = active
            .try_clone()
            .map_err(io(format!("opening {}", path.display())))?;
        self.sync.switch(handle)?;
        self.index = write_index(&self.dir, base, &[])?;
        self.active = active;
        self.active_len = 0;
        self.next_index_at = 0;
        self.segments.push(Segment {
            base,
            end: base,
            index: Some(Vec::new()),
        });
        Ok(())
    }

    /// Reads back messages from offset `from` on, about `max_bytes` of them (at least the
    /// one at `from`, when it is stored).
    pub(crate) fn read(
        &mut self,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<Arc<Message>>, StorageError> {
        let Some(i) = self
            .segments
            .partition_point(|s| s.base <= from)
            .checked_sub(1)
        else {
            return Ok(Vec::new());
        };
        let (base, end) = (self.segments[i].base, self.segments[i].end);
        if from >= end {
            return Ok(Vec::new());
        }
        let dir = self.dir.clone();
        let index = self.segments[i]
            .index
            .get_or_insert_with(|| read_index(&dir, base));
        let at = index.partition_point(|&(o, _)| o <= from);
        let start = at.checked_sub(1).map_or(0, |j| index[j].1);
        let path = log_path(&self.dir, base);
        let mut file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        let mut want = max_bytes.max(64 * 1024);
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
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut pos = 0;
            while let Read::Record(m, len) = record::decode(&data, pos) {
                pos += len;
                if m.offset.get() >= from {
                    bytes += len;
                    out.push(Arc::new(m));
                    if bytes >= max_bytes {
                        break;
                    }
                }
            }
            if !out.is_empty() || complete {
                return Ok(out);
            }
            // The record at `from` is larger than what was read: read more.
            want *= 2;
        }
    }

    /// Deletes every segment whose records all come before `first`.
    pub(crate) fn trim_before(&mut self, first: u64) -> Result<(), StorageError> {
        while self.segments.len() > 1 && self.segments[0].end <= first {
            let seg = self.segments.remove(0);
            let path = log_path(&self.dir, seg.base);
            fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
            let _ = fs::remove_file(index_path(&self.dir, seg.base));
        }
        Ok(())
    }

    /// Number of segment files.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// What reading one segment found.
struct Scan {
    /// Its records from the first retained offset on.
    messages: Vec<StoredMessage>,
    /// One past its last valid offset.
    end: u64,
    /// Where and why it is damaged.
    damaged: Option<(usize, &'static str)>,
    /// Its sparse index, from what was read: (offset, position) of the first record at or
    /// after every INDEX_EVERY bytes.
    index: Vec<(u64, u64)>,
}

/// Reads and validates one segment from the first retained offset on: whole messages, or
/// only what the log must know of them.
fn scan(dir: &Path, base: u64, first: u64, whole: bool) -> Result<Scan, StorageError> {
    let start = if base < first {
        seek_position(dir, base, first)
    } else {
        0
    };
    let mut scan = Scan {
        messages: Vec::new(),
        end: base,
        damaged: None,
        index: Vec::new(),
    };
    let mut expected = None;
    let mut next_index_at = 0u64;
    let mut accept = |scan: &mut Scan, offset: u64, pos: usize, stored: StoredMessage| {
        if expected.is_some_and(|e| e != offset) {
            return false;
        }
        let pos = pos as u64;
        if pos >= next_index_at {
            scan.index.push((offset, pos));
            next_index_at = (pos / INDEX_EVERY + 1) * INDEX_EVERY;
        }
        if offset >= first {
            scan.messages.push(stored);
        }
        expected = Some(offset + 1);
        scan.end = offset + 1;
        true
    };
    let path = log_path(dir, base);
    let sequence = "a record's offset is out of sequence";
    if whole {
        let data = Bytes::from(fs::read(&path).map_err(io(format!("reading {}", path.display())))?);
        scan.messages.reserve(data.len() / 128);
        let mut pos = start;
        loop {
            match record::decode(&data, pos) {
                Read::End => break,
                Read::Damaged(why) => {
                    scan.damaged = Some((pos, why));
                    break;
                }
                Read::Record(m, len) => {
                    if !accept(
                        &mut scan,
                        m.offset.get(),
                        pos,
                        StoredMessage::Loaded(Arc::new(m)),
                    ) {
                        scan.damaged = Some((pos, sequence));
                        break;
                    }
                    pos += len;
                }
            }
        }
        return Ok(scan);
    }
    // What stays on disk is streamed through a small buffer, not read whole.
    const CHUNK: u64 = 256 * 1024;
    let mut file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
    let len = file.metadata().map_or(0, |m| m.len());
    // About one message per 100 bytes of segment: a close guess saves regrowing the list.
    scan.messages
        .reserve(usize::try_from(len / 100).unwrap_or(0));
    file.seek(SeekFrom::Start(start as u64))
        .map_err(io(format!("reading {}", path.display())))?;
    let mut data: Vec<u8> = Vec::with_capacity(2 * CHUNK as usize);
    let mut at = start;
    loop {
        let got = (&mut file)
            .take(CHUNK)
            .read_to_end(&mut data)
            .map_err(io(format!("reading {}", path.display())))?;
        let eof = (got as u64) < CHUNK;
        let mut pos = 0;
        loop {
            match record::decode_meta(&data, pos) {
                Ok(None) => break,
                Ok(Some((meta, len))) => {
                    let stored = StoredMessage::OnDisk {
                        offset: Offset(meta.offset),
                        timestamp: Timestamp::from_millis(meta.timestamp),
                        size: meta.size,
                        priority: meta.priority,
                    };
                    if !accept(&mut scan, meta.offset, at + pos, stored) {
                        scan.damaged = Some((at + pos, sequence));
                        return Ok(scan);
                    }
                    pos += len;
                }
                Err(why) if !eof && (why == record::CUT_HEADER || why == record::CUT_RECORD) => {
                    break;
                }
                Err(why) => {
                    scan.damaged = Some((at + pos, why));
                    return Ok(scan);
                }
            }
        }
        at += pos;
        if eof {
            return Ok(scan);
        }
        data.drain(..pos);
    }
}

/// Scans every segment, spreading them over the machine's cores: a restart with millions of
/// retained messages is bound by decoding them.
fn scan_all(
    dir: &Path,
    bases: &[u64],
    whole: &[bool],
    first: u64,
) -> Result<Vec<Scan>, StorageError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(bases.len())
        .max(1);
    let mut results: Vec<Option<Result<Scan, StorageError>>> =
        (0..bases.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let per = bases.len().div_ceil(threads).max(1);
        let chunks = results
            .chunks_mut(per)
            .zip(bases.chunks(per))
            .zip(whole.chunks(per));
        for ((out, bases), whole) in chunks {
            s.spawn(move || {
                for ((slot, &base), &whole) in out.iter_mut().zip(bases).zip(whole) {
                    *slot = Some(scan(dir, base, first, whole));
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(StorageError {
                    context: "scanning segments".into(),
                    message: "a scan did not finish".into(),
                    kind: None,
                })
            })
        })
        .collect()
}

/// Where in segment `base` the record of `offset` starts, per the sparse index (0 when the
/// index has no entry at or before it). The caller verifies what it finds there.
fn seek_position(dir: &Path, base: u64, offset: u64) -> usize {
    let entries = read_index(dir, base);
    let at = entries.partition_point(|&(o, _)| o <= offset);
    at.checked_sub(1)
        .map_or(0, |i| usize::try_from(entries[i].1).unwrap_or(0))
}

/// The sparse index of segment `base` (empty when it cannot be read: readers then scan).
fn read_index(dir: &Path, base: u64) -> Vec<(u64, u64)> {
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

/// Writes the index file of segment `base` afresh with `entries`, open for appending more.
fn write_index(dir: &Path, base: u64, entries: &[(u64, u64)]) -> Result<File, StorageError> {
    let path = index_path(dir, base);
    let mut bytes = Vec::with_capacity(entries.len() * 16);
    for (offset, pos) in entries {
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&pos.to_le_bytes());
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io(format!("writing {}", path.display())))?;
    file.write_all(&bytes)
        .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(file)
}
