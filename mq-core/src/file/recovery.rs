//! Recovery of one topic's segments at start-up: every valid record is kept, damaged regions
//! are skipped and reported, and offsets lost to them are named.
//!
//! A record carries its offset and checksum, so after a damaged region recovery finds the
//! next valid record (`record::find_next`) and goes on; later segments are never touched.
//! Only the open (last) segment's damaged tail is cut off, so that appends go after valid
//! data. Offsets lost in between become holes of the log, counted as settled by every group.

use std::fs::OpenOptions;
use std::ops::Range;
use std::path::Path;

use super::io;
use super::scan::{Region, scan_all};
use super::segment::{Segment, log_path};
use crate::producers::RecoveredStamp;
use crate::storage::{StorageError, StoredMessage};

/// What recovery found in a topic's segments.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The segments, the last one open for appends.
    pub(crate) segments: Vec<Segment>,
    /// Messages at or after the first retained offset, in order, one list per segment: the
    /// newest whole, the older ones only as the log must know them. Offsets may jump over
    /// lost ones.
    pub(crate) messages: Vec<Vec<StoredMessage>>,
    /// The offset the next message gets: past every offset ever assigned that recovery
    /// knows of.
    pub(crate) next: u64,
    /// The largest [`crate::Message::encoded_size`] of a retained message.
    pub(crate) largest: u64,
    /// The numbered batches found, oldest first.
    pub(crate) stamps: Vec<RecoveredStamp>,
    /// What was damaged and which offsets were lost, for the operator.
    pub(crate) warnings: Vec<String>,
}

/// Offsets `range` as the operator reads them.
fn offsets(range: &Range<u64>) -> String {
    if range.end - range.start == 1 {
        format!("offset {}", range.start)
    } else {
        format!("offsets {}–{}", range.start, range.end - 1)
    }
}

fn describe(path: &Path, region: &Region) -> String {
    format!(
        "{} bytes {}–{} ({})",
        path.display(),
        region.bytes.start,
        region.bytes.end,
        region.why
    )
}

/// Whether recovery may change files (at start) or only reads them (`mq-server check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Cut the open segment's damaged tail off.
    Repair,
    /// Change nothing; say what a start would do.
    ReadOnly,
}

/// Scans every segment of `dir` and works out what survived: see the module docs. `next`
/// is the least next offset other records prove (the group journal).
pub(crate) fn recover(
    dir: &Path,
    what: &str,
    first: u64,
    next: u64,
    resident_bytes: u64,
    mode: Mode,
) -> Result<Recovered, StorageError> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io(format!("listing {}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log")?;
            (base.len() == 20).then(|| base.parse().ok()).flatten()
        })
        .collect();
    bases.sort_unstable();
    // The newest segments, up to the resident budget, are read whole; the older ones only
    // for what the log must know, and read back on demand.
    let mut whole = vec![false; bases.len()];
    let mut budget = resident_bytes;
    for (i, &base) in bases.iter().enumerate().rev() {
        let len = std::fs::metadata(log_path(dir, base)).map_or(0, |m| m.len());
        if len > budget {
            break;
        }
        budget -= len;
        whole[i] = true;
    }
    let mut scans = scan_all(dir, &bases, &whole, first)?;
    let mut warnings = Vec::new();
    // A record a later segment also holds was rewritten there after a failed write: the
    // later segment is the one that was acknowledged.
    for i in 1..scans.len() {
        let base = bases[i];
        let scan = &mut scans[i - 1];
        if scan.end > base {
            let kept = scan.messages.partition_point(|m| stored_offset(m) < base);
            scan.messages.truncate(kept);
            warnings.push(format!(
                "{what}: {} holds {} again in the next segment; the next segment's copy is kept",
                log_path(dir, bases[i - 1]).display(),
                offsets(&(base..scan.end)),
            ));
            scan.end = base;
        }
    }
    let mut segments = Vec::with_capacity(scans.len());
    let mut messages = Vec::with_capacity(scans.len());
    let mut largest = 0;
    let mut stamps = Vec::new();
    let mut expected: Option<u64> = None;
    // The damaged tail of the segment before, reported with the offsets it lost, if any.
    let mut tail: Option<String> = None;
    let count = scans.len();
    for (i, (&base, mut scan)) in bases.iter().zip(scans).enumerate() {
        let path = log_path(dir, base);
        let mut reported = vec![false; scan.regions.len()];
        if let (Some(e), Some(f)) = (expected, scan.first_valid)
            && f > e
        {
            let place = match (tail.take(), scan.head()) {
                (Some(place), _) => place,
                (None, Some(region)) => {
                    reported[0] = true;
                    describe(&path, region)
                }
                (None, None) => format!("{} (no segment holds them)", dir.display()),
            };
            warnings.push(format!("{what}: {} lost in {place}", offsets(&(e..f))));
        }
        if let Some(place) = tail.take() {
            warnings.push(format!("{what}: {place} is damaged; no offsets were lost"));
        }
        for (lost, region) in &scan.holes {
            let place = match region {
                Some(r) => {
                    reported[*r] = true;
                    describe(&path, &scan.regions[*r])
                }
                None => format!("{} (no damaged bytes between them)", path.display()),
            };
            warnings.push(format!("{what}: {} lost in {place}", offsets(lost)));
        }
        let last_region = scan.tail().cloned();
        for (region, done) in scan.regions.iter().zip(&reported) {
            if !done && last_region.as_ref() != Some(region) {
                warnings.push(format!(
                    "{what}: {} is damaged; no offsets were lost",
                    describe(&path, region)
                ));
            }
        }
        if let Some(region) = &last_region {
            tail = Some(describe(&path, region));
            if i + 1 == count && mode == Mode::ReadOnly {
                warnings.push(format!(
                    "{what}: {} ends the open segment: the next start cuts it off",
                    describe(&path, region)
                ));
            } else if i + 1 == count {
                // The open segment: cut the damaged tail off so appends go after valid data.
                cut(&path, scan.valid_len)?;
                warnings.push(format!(
                    "{what}: {} was cut off: it ended the open segment",
                    describe(&path, region)
                ));
            }
        }
        if i + 1 == count
            && last_region.is_none()
            && scan.len > scan.valid_len
            && mode == Mode::Repair
        {
            // Zeros the open segment was grown by: appends go on where its records end.
            cut(&path, scan.valid_len)?;
        }
        if i + 1 == count
            && let Some((first, position)) = scan.unfinished
        {
            // A numbered batch a crash cut short: it was never acknowledged, and its
            // producer sends it again whole. Keeping its first records would store them twice.
            let lost = offsets(&(first..scan.end));
            if mode == Mode::ReadOnly {
                warnings.push(format!(
                    "{what}: {lost} in {} are a batch cut short by a crash: the next start \
                     removes them",
                    path.display()
                ));
            } else {
                cut(&path, position)?;
                warnings.push(format!(
                    "{what}: {lost} in {} were a batch cut short by a crash (never \
                     acknowledged): removed",
                    path.display()
                ));
                let kept = scan.messages.partition_point(|m| stored_offset(m) < first);
                scan.messages.truncate(kept);
                scan.index.retain(|&(_, at)| at < position);
                scan.end = first;
                scan.valid_len = position;
            }
        }
        if scan.first_valid.is_some() {
            expected = Some(scan.end);
        }
        largest = largest.max(scan.largest);
        stamps.extend(scan.stamps);
        messages.push(scan.messages);
        segments.push(Segment {
            base,
            end: scan.end,
            index: Some(scan.index),
        });
    }
    let found = segments.last().map_or(first, |s| s.end).max(first);
    let next = next.max(found);
    if next > found {
        let place = tail.unwrap_or_else(|| {
            "the end of the log, which was not on disk (fsync interval or never)".into()
        });
        warnings.push(format!(
            "{what}: {} lost in {place}",
            offsets(&(found..next))
        ));
    }
    Ok(Recovered {
        segments,
        messages,
        next,
        largest,
        stamps,
        warnings,
    })
}

/// Cuts the segment at `path` to `len` bytes, durably.
fn cut(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("truncating {}", path.display())))
}

fn stored_offset(m: &StoredMessage) -> u64 {
    match m {
        StoredMessage::Loaded(m) => m.offset.get(),
        StoredMessage::OnDisk { offset, .. } => offset.get(),
    }
}
