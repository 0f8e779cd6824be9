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
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::record::{self, Read};
use super::sync::SyncFile;
use crate::message::Message;
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
    /// Messages at or after the first retained offset, in order.
    pub(crate) messages: Vec<Arc<Message>>,
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
        let scans = scan_all(dir, &bases, first)?;
        let mut segments = Vec::new();
        let mut messages = Vec::with_capacity(scans.iter().map(|s| s.messages.len()).sum());
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
            messages.extend(scan.messages);
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
        let index = rebuild_index(dir, base, active_len)?;
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
        for m in messages {
            let at = self.active_len + self.buf.len() as u64;
            if at >= self.next_index_at {
                index.extend_from_slice(&m.offset.get().to_le_bytes());
                index.extend_from_slice(&at.to_le_bytes());
                self.next_index_at = (at / INDEX_EVERY + 1) * INDEX_EVERY;
            }
            record::encode(m, &mut self.buf);
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
        self.index = rebuild_index(&self.dir, base, 0)?;
        self.active = active;
        self.active_len = 0;
        self.next_index_at = 0;
        self.segments.push(Segment { base, end: base });
        Ok(())
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
    messages: Vec<Arc<Message>>,
    /// One past its last valid offset.
    end: u64,
    /// Where and why it is damaged.
    damaged: Option<(usize, &'static str)>,
}

/// Reads and validates one segment from the first retained offset on.
fn scan(dir: &Path, base: u64, first: u64) -> Result<Scan, StorageError> {
    let path = log_path(dir, base);
    let data = Bytes::from(fs::read(&path).map_err(io(format!("reading {}", path.display())))?);
    let mut pos = if base < first {
        seek_position(dir, base, first)
    } else {
        0
    };
    let mut messages = Vec::with_capacity(data.len() / 128);
    let mut expected = None;
    let mut end = base;
    loop {
        match record::decode(&data, pos) {
            Read::End => break,
            Read::Record(m, len) if expected.is_none_or(|e| e == m.offset.get()) => {
                let offset = m.offset.get();
                if offset >= first {
                    messages.push(Arc::new(m));
                }
                expected = Some(offset + 1);
                end = offset + 1;
                pos += len;
            }
            Read::Record(..) => {
                let why = "a record's offset is out of sequence";
                return Ok(Scan {
                    messages,
                    end,
                    damaged: Some((pos, why)),
                });
            }
            Read::Damaged(why) => {
                return Ok(Scan {
                    messages,
                    end,
                    damaged: Some((pos, why)),
                });
            }
        }
    }
    Ok(Scan {
        messages,
        end,
        damaged: None,
    })
}

/// Scans every segment, spreading them over the machine's cores: a restart with millions of
/// retained messages is bound by decoding them.
fn scan_all(dir: &Path, bases: &[u64], first: u64) -> Result<Vec<Scan>, StorageError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(bases.len())
        .max(1);
    let mut results: Vec<Option<Result<Scan, StorageError>>> =
        (0..bases.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<_> = results
            .chunks_mut(bases.len().div_ceil(threads).max(1))
            .zip(bases.chunks(bases.len().div_ceil(threads).max(1)))
            .collect();
        for (out, bases) in chunks {
            s.spawn(move || {
                for (slot, &base) in out.iter_mut().zip(bases) {
                    *slot = Some(scan(dir, base, first));
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
    let Ok(index) = fs::read(index_path(dir, base)) else {
        return 0;
    };
    let entries: Vec<(u64, u64)> = index
        .chunks_exact(16)
        .map(|c| {
            let mut o = [0u8; 8];
            let mut p = [0u8; 8];
            o.copy_from_slice(&c[..8]);
            p.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(o), u64::from_le_bytes(p))
        })
        .collect();
    let at = entries.partition_point(|&(o, _)| o <= offset);
    at.checked_sub(1)
        .map_or(0, |i| usize::try_from(entries[i].1).unwrap_or(0))
}

/// Recreates the index of segment `base` for its first `len` bytes, so an index torn by a
/// crash never points past the data.
fn rebuild_index(dir: &Path, base: u64, len: u64) -> Result<File, StorageError> {
    let path = index_path(dir, base);
    let mut entries = Vec::new();
    if len > 0 {
        let data = Bytes::from(
            fs::read(log_path(dir, base)).map_err(io(format!("reading segment {base}")))?,
        );
        let mut pos = 0usize;
        let mut next_at = 0u64;
        while let Read::Record(m, n) = record::decode(&data, pos) {
            if pos as u64 >= next_at {
                entries.extend_from_slice(&m.offset.get().to_le_bytes());
                entries.extend_from_slice(&(pos as u64).to_le_bytes());
                next_at = (pos as u64 / INDEX_EVERY + 1) * INDEX_EVERY;
            }
            pos += n;
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io(format!("writing {}", path.display())))?;
    file.write_all(&entries)
        .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(file)
}
