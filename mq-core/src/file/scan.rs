//! Reading one segment at start-up ([`scan`]): every valid record in order, with the
//! damaged regions between them skipped and noted, the holes they leave in the offsets, and
//! the segment's sparse index. [`scan_all`] spreads the segments over the cores.

use std::fs::File;
use std::io::{Read as _, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::index::{self, Entries, IndexBuilder};
use super::io;
use super::segment::log_path;
use crate::clock::Timestamp;
use crate::message::Offset;
use crate::producers::RecoveredStamp;
use crate::record::{self, Damage, Mark, Read};
use crate::storage::{StorageError, StoredMessage};

/// Bytes of a segment left on disk that are read at once while scanning it.
const CHUNK: u64 = 256 * 1024;

/// A byte range of a segment that holds no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    /// The bytes.
    pub(crate) bytes: Range<u64>,
    /// Why the first of them is not a record.
    pub(crate) why: Damage,
}

/// What reading one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Its records from the first retained offset on.
    pub(crate) messages: Vec<StoredMessage>,
    /// Offset of its first valid record.
    pub(crate) first_valid: Option<u64>,
    /// One past its last valid offset (its base when it has none).
    pub(crate) end: u64,
    /// Where its last valid record ends (zeros it was grown by may follow).
    pub(crate) valid_len: u64,
    /// Its length.
    pub(crate) len: u64,
    /// Damaged regions, in order.
    pub(crate) regions: Vec<Region>,
    /// Offsets missing between its valid records, with the region that held them.
    pub(crate) holes: Vec<(Range<u64>, Option<usize>)>,
    /// Its sparse index, from what was read.
    pub(crate) index: Entries,
    /// The largest [`crate::Message::encoded_size`] of a retained record.
    pub(crate) largest: u64,
    /// The numbered batches its records end.
    pub(crate) stamps: Vec<RecoveredStamp>,
    /// A numbered batch whose first record is there and whose last is not (a write a crash
    /// cut short): its first offset and that record's position.
    pub(crate) unfinished: Option<(u64, u64)>,
}

impl Scan {
    /// The damaged region after its last valid record, if any.
    pub(super) fn tail(&self) -> Option<&Region> {
        self.regions
            .last()
            .filter(|r| r.bytes.end == self.len && r.bytes.start >= self.valid_len)
    }

    /// The damaged region before its first valid record, if any.
    pub(super) fn head(&self) -> Option<&Region> {
        self.regions.first().filter(|r| r.bytes.start == 0)
    }
}

/// Where a scan of a buffer stopped.
enum Stop {
    /// At the end of the data (the position).
    End(usize),
    /// At a record cut by the end of the buffer: read more.
    More(usize),
    /// At damage, with more of the file unread: read the rest before deciding.
    Damaged(usize),
}

/// Reads one segment's records in order, keeping what recovery needs.
struct Scanner {
    first: u64,
    whole: bool,
    scan: Scan,
    builder: IndexBuilder,
    last: Option<u64>,
}

impl Scanner {
    /// Reads the records of `data` (which starts at byte `at` of the segment) from `pos`.
    /// With `eof`, damage is skipped: reading resumes at the next valid record.
    fn run(&mut self, data: &Bytes, mut pos: usize, at: u64, eof: bool) -> Stop {
        loop {
            let read = if self.whole {
                match record::decode(data, pos) {
                    Read::End => Ok(None),
                    Read::Damaged(d) => Err(d),
                    Read::Record(m, len, mark) => {
                        Ok(Some((m.offset.get(), len, Some(m), None, mark)))
                    }
                }
            } else {
                record::decode_meta(data, pos)
                    .map(|r| r.map(|(meta, len)| (meta.offset, len, None, Some(meta), meta.stamp)))
            };
            let damage = match read {
                Ok(None) => return Stop::End(pos),
                Ok(Some((offset, len, message, meta, mark))) => {
                    if self.last.is_some_and(|l| offset <= l) {
                        Damage::OutOfSequence
                    } else {
                        let position = at + pos as u64;
                        let stored = match (message, meta) {
                            (Some(m), _) => {
                                let encoded = m.encoded_size();
                                (StoredMessage::Loaded(Arc::new(m)), encoded)
                            }
                            (None, Some(meta)) => (
                                StoredMessage::OnDisk {
                                    offset: Offset(meta.offset),
                                    timestamp: Timestamp::from_millis(meta.timestamp),
                                    size: meta.size,
                                    priority: meta.priority,
                                },
                                meta.encoded,
                            ),
                            (None, None) => return Stop::End(pos),
                        };
                        if let Some(mark) = mark {
                            self.note_mark(mark, &stored.0, position);
                        }
                        self.accept(offset, position, len as u64, stored);
                        pos += len;
                        continue;
                    }
                }
                Err(d) if d.is_cut() && !eof => return Stop::More(pos),
                Err(d) => d,
            };
            if !eof {
                return Stop::Damaged(pos);
            }
            if record::only_zeros(data, pos) {
                // What the segment was grown by past its last record.
                return Stop::End(data.len());
            }
            let start = at + pos as u64;
            let resume = record::find_next(data, pos + 1, self.last);
            let end = resume.map_or(data.len(), |q| q);
            self.scan.regions.push(Region {
                bytes: start..at + end as u64,
                why: damage,
            });
            match resume {
                Some(q) => pos = q,
                None => return Stop::End(data.len()),
            }
        }
    }

    /// Notes the mark of `record`, a valid record at `position`: a batch's end is
    /// remembered, its beginning is unfinished until the end follows.
    fn note_mark(&mut self, mark: Mark, record: &StoredMessage, position: u64) {
        let (offset, timestamp) = match record {
            StoredMessage::Loaded(m) => (m.offset, m.timestamp),
            StoredMessage::OnDisk {
                offset, timestamp, ..
            } => (*offset, *timestamp),
        };
        match mark {
            Mark::Last(stamp) => {
                self.scan.unfinished = None;
                self.scan.stamps.push(RecoveredStamp {
                    stamp,
                    last: offset,
                    timestamp,
                });
            }
            Mark::First(_) => self.scan.unfinished = Some((offset.get(), position)),
        }
    }

    fn accept(
        &mut self,
        offset: u64,
        position: u64,
        len: u64,
        (stored, encoded): (StoredMessage, u64),
    ) {
        let scan = &mut self.scan;
        if let Some(last) = self.last
            && offset > last + 1
        {
            let region = scan.regions.len().checked_sub(1);
            scan.holes.push((last + 1..offset, region));
        }
        scan.first_valid.get_or_insert(offset);
        self.builder.note(offset, position, &mut scan.index);
        if offset >= self.first {
            scan.largest = scan.largest.max(encoded);
            scan.messages.push(stored);
        }
        self.last = Some(offset);
        scan.end = offset + 1;
        scan.valid_len = position + len;
    }
}

/// Reads and validates segment `base` from the first retained offset on: whole messages, or
/// only what the log must know of them.
pub(crate) fn scan(dir: &Path, base: u64, first: u64, whole: bool) -> Result<Scan, StorageError> {
    let path = log_path(dir, base);
    let start = if base < first {
        index::position_for(&index::read_index(dir, base), first)
    } else {
        0
    };
    let mut scanner = Scanner {
        first,
        whole,
        scan: Scan {
            end: base,
            valid_len: start,
            ..Scan::default()
        },
        builder: IndexBuilder::resume(start),
        last: None,
    };
    let mut file = File::open(&path).map_err(io(format!("opening {}", path.display())))?;
    let len = file.metadata().map_or(0, |m| m.len());
    scanner.scan.len = len;
    file.seek(SeekFrom::Start(start))
        .map_err(io(format!("reading {}", path.display())))?;
    if whole {
        scanner
            .scan
            .messages
            .reserve(usize::try_from(len / 128).unwrap_or(0));
    } else {
        // About one message per 100 bytes of segment: a close guess saves regrowing the list.
        scanner
            .scan
            .messages
            .reserve(usize::try_from(len / 100).unwrap_or(0));
    }
    let chunk = if whole { len.max(1) } else { CHUNK };
    let mut at = start;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut data = std::mem::take(&mut pending);
        let got = (&mut file)
            .take(chunk)
            .read_to_end(&mut data)
            .map_err(io(format!("reading {}", path.display())))?;
        let mut eof = (got as u64) < chunk || at + data.len() as u64 >= len;
        let mut bytes = Bytes::from(data);
        let consumed = loop {
            match scanner.run(&bytes, 0, at, eof) {
                Stop::End(_) if eof => return Ok(scanner.scan),
                Stop::End(pos) | Stop::More(pos) => break pos,
                Stop::Damaged(pos) => {
                    // Damage is rare: read the rest of the file and decide with all of it.
                    let mut rest = bytes[pos..].to_vec();
                    file.read_to_end(&mut rest)
                        .map_err(io(format!("reading {}", path.display())))?;
                    at += pos as u64;
                    bytes = Bytes::from(rest);
                    eof = true;
                }
            }
        };
        pending = bytes[consumed..].to_vec();
        at += consumed as u64;
    }
}

/// Scans every segment, spreading them over the machine's cores: a restart with millions of
/// retained messages is bound by decoding them.
pub(super) fn scan_all(
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
