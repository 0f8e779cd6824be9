//! [`Journal`]: one topic's durable group state as an append-only file of events, compacted
//! into a snapshot when it grows.
//!
//! ```text
//! <dir>/groups.journal   records: len:u32 crc:u32 body (LE, CRC32C of body)
//! body := kind:u8 name_len:u16 name fields
//!   1 created   ack:u8 (1 auto, 2 manual) ack_timeout_ms:u64 max_deliveries:u32 (0 = none) start:u64
//!   2 deleted
//!   3 acked     count:u32 count × offset:u64      (acked, auto-acked or dead-lettered)
//!   4 delivered count:u32 count × offset:u64      (one more delivery each)
//!   5 floor     floor:u64                         (everything below is done)
//!   6 acked     count:u32 count × (first:u64 len:u32)   (runs: as 3, offsets first..first+len)
//!   7 delivered count:u32 count × (first:u64 len:u32)   (runs: as 4)
//! ```
//! Offsets that follow one another (what a group delivers, and acks in the order it
//! delivered) are written as runs, 12 bytes a run instead of 8 a message; an entry carries
//! at most [`OFFSETS_PER_ENTRY`] offsets either way. Replaying the events gives each durable group's ack floor, the acks above it and the
//! delivery counts of what is not yet acked. A damaged event is skipped (the next valid one
//! is found by its checksum) and a torn tail is cut off; a failed write is cut off at once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use rustc_hash::FxHashMap;

use super::cache::{CachedFile, FileCache, Mode};
use super::io;
use super::sync::SyncFile;
use crate::ackset::AckSet;
use crate::config::AckMode;
use crate::cursor::Cursor;
use crate::message::Offset;
use crate::name::GroupName;
use crate::storage::{GroupEvent, RecoveredGroup, StorageError};

/// Journal size past which it is rewritten as a snapshot.
const COMPACT_AT: u64 = 16 * 1024 * 1024;

/// Group state being rebuilt from events.
struct Replay {
    ack: AckMode,
    ack_timeout: Duration,
    max_deliveries: Option<u32>,
    start: Offset,
    acks: AckSet,
    deliveries: FxHashMap<Offset, u32>,
}

/// The group journal of one topic.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    cache: Arc<FileCache>,
    file: Arc<CachedFile>,
    len: u64,
    sync: Arc<SyncFile>,
    /// A failed write could not be cut off.
    torn: bool,
    buf: Vec<u8>,
}

/// Most offsets one `acked` or `delivered` entry carries; longer lists take several.
const OFFSETS_PER_ENTRY: usize = 1 << 16;

/// Appends the entries of `event` to `buf`.
fn encode(event: &GroupEvent, buf: &mut Vec<u8>) {
    match event {
        GroupEvent::Acked { group, offsets } if offsets.len() > OFFSETS_PER_ENTRY => {
            for chunk in offsets.chunks(OFFSETS_PER_ENTRY) {
                let part = GroupEvent::Acked {
                    group: group.clone(),
                    offsets: chunk.to_vec(),
                };
                encode_entry(&part, buf);
            }
        }
        GroupEvent::Delivered { group, offsets } if offsets.len() > OFFSETS_PER_ENTRY => {
            for chunk in offsets.chunks(OFFSETS_PER_ENTRY) {
                let part = GroupEvent::Delivered {
                    group: group.clone(),
                    offsets: chunk.to_vec(),
                };
                encode_entry(&part, buf);
            }
        }
        event => encode_entry(event, buf),
    }
}

/// The runs of consecutive offsets in `offsets`, in order: `(first, len)`.
fn runs(offsets: &[Offset]) -> Vec<(u64, u32)> {
    let mut runs: Vec<(u64, u32)> = Vec::new();
    for o in offsets {
        match runs.last_mut() {
            Some((first, len)) if first.checked_add(u64::from(*len)) == Some(o.get()) => {
                *len += 1;
            }
            _ => runs.push((o.get(), 1)),
        }
    }
    runs
}

/// Bytes of one run of offsets in an entry.
const RUN: usize = 8 + 4;

/// Appends one entry: its lengths fit their fields, since group names are at most 204
/// bytes and an entry carries at most [`OFFSETS_PER_ENTRY`] offsets.
fn encode_entry(event: &GroupEvent, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.put_u32_le(0);
    buf.put_u32_le(0);
    let offsets = match event {
        GroupEvent::Acked { offsets, .. } | GroupEvent::Delivered { offsets, .. } => {
            &offsets[..offsets.len().min(OFFSETS_PER_ENTRY)]
        }
        _ => &[],
    };
    let runs = runs(offsets);
    let as_runs = runs.len() * RUN < offsets.len() * 8;
    let (kind, group) = match event {
        GroupEvent::Created { group, .. } => (1, group),
        GroupEvent::Deleted { group } => (2, group),
        GroupEvent::Acked { group, .. } if as_runs => (6, group),
        GroupEvent::Acked { group, .. } => (3, group),
        GroupEvent::Delivered { group, .. } if as_runs => (7, group),
        GroupEvent::Delivered { group, .. } => (4, group),
        GroupEvent::Floor { group, .. } => (5, group),
    };
    buf.put_u8(kind);
    let name = group.as_str().as_bytes();
    buf.put_u16_le(u16::try_from(name.len()).unwrap_or(u16::MAX));
    buf.put_slice(&name[..name.len().min(usize::from(u16::MAX))]);
    match event {
        GroupEvent::Created {
            ack,
            ack_timeout,
            max_deliveries,
            start,
            ..
        } => {
            buf.put_u8(match ack {
                AckMode::Auto => 1,
                AckMode::Manual => 2,
            });
            buf.put_u64_le(u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX));
            buf.put_u32_le(max_deliveries.unwrap_or(0));
            buf.put_u64_le(start.get());
        }
        GroupEvent::Deleted { .. } => {}
        GroupEvent::Acked { .. } | GroupEvent::Delivered { .. } if as_runs => {
            buf.put_u32_le(u32::try_from(runs.len()).unwrap_or(u32::MAX));
            for (first, len) in runs {
                buf.put_u64_le(first);
                buf.put_u32_le(len);
            }
        }
        GroupEvent::Acked { .. } | GroupEvent::Delivered { .. } => {
            buf.put_u32_le(u32::try_from(offsets.len()).unwrap_or(u32::MAX));
            for o in offsets {
                buf.put_u64_le(o.get());
            }
        }
        GroupEvent::Floor { floor, .. } => buf.put_u64_le(floor.get()),
    }
    let len = buf.len() - start - 8;
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn decode(body: &[u8]) -> Option<GroupEvent> {
    let mut c = Cursor::new(body);
    let kind = c.u8()?;
    let n = c.u16()? as usize;
    let group = GroupName::new_or_ephemeral(std::str::from_utf8(c.take(n)?).ok()?).ok()?;
    let offsets = |c: &mut Cursor<'_>| -> Option<Vec<Offset>> {
        let count = c.u32()? as usize;
        (0..count).map(|_| c.u64().map(Offset)).collect()
    };
    // Runs expand to at most what a list entry may carry: a damaged length cannot make
    // replay allocate without bound.
    let runs = |c: &mut Cursor<'_>| -> Option<Vec<Offset>> {
        let count = c.u32()? as usize;
        let mut out = Vec::new();
        for _ in 0..count {
            let (first, len) = (c.u64()?, c.u32()?);
            let end = first.checked_add(u64::from(len))?;
            if len == 0 || out.len() + len as usize > OFFSETS_PER_ENTRY {
                return None;
            }
            out.extend((first..end).map(Offset));
        }
        Some(out)
    };
    let event = match kind {
        1 => GroupEvent::Created {
            group,
            ack: match c.u8()? {
                1 => AckMode::Auto,
                2 => AckMode::Manual,
                _ => return None,
            },
            ack_timeout: Duration::from_millis(c.u64()?),
            max_deliveries: Some(c.u32()?).filter(|&m| m > 0),
            start: Offset(c.u64()?),
        },
        2 => GroupEvent::Deleted { group },
        3 | 6 => GroupEvent::Acked {
            group,
            offsets: if kind == 3 {
                offsets(&mut c)
            } else {
                runs(&mut c)
            }?,
        },
        4 | 7 => GroupEvent::Delivered {
            group,
            offsets: if kind == 4 {
                offsets(&mut c)
            } else {
                runs(&mut c)
            }?,
        },
        5 => GroupEvent::Floor {
            group,
            floor: Offset(c.u64()?),
        },
        _ => return None,
    };
    c.is_done().then_some(event)
}

/// The valid event at `pos` of `data` and its length, framing included.
fn event_at(data: &[u8], pos: usize) -> Option<(GroupEvent, usize)> {
    let header = data.get(pos..pos.checked_add(8)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let body = data.get(pos + 8..pos.checked_add(8 + len)?)?;
    (crc32c::crc32c(body) == crc).then_some(())?;
    Some((decode(body)?, 8 + len))
}

/// For the fuzz targets: the entry at `pos`, if one decodes there, encodes back to an
/// entry of the same event (offsets may be written as a list or as runs, so the bytes may
/// differ from the original's), and that entry encodes back to its own bytes.
#[cfg(feature = "fuzzing")]
pub(crate) fn check_entry_at(data: &[u8], pos: usize) {
    if let Some((event, _)) = event_at(data, pos) {
        let mut again = Vec::new();
        encode_entry(&event, &mut again);
        let decoded = event_at(&again, 0).map(|(e, _)| e);
        assert_eq!(decoded.as_ref(), Some(&event), "the journal entry at {pos}");
        let mut fourth = Vec::new();
        if let Some(e) = decoded {
            encode_entry(&e, &mut fourth);
        }
        assert_eq!(
            again, fourth,
            "the journal entry at {pos} re-encodes to itself"
        );
    }
}

fn apply(groups: &mut BTreeMap<GroupName, Replay>, event: GroupEvent) {
    match event {
        GroupEvent::Created {
            group,
            ack,
            ack_timeout,
            max_deliveries,
            start,
        } => {
            groups.insert(
                group,
                Replay {
                    ack,
                    ack_timeout,
                    max_deliveries,
                    start,
                    acks: AckSet::new(start),
                    deliveries: FxHashMap::default(),
                },
            );
        }
        GroupEvent::Deleted { group } => {
            groups.remove(&group);
        }
        GroupEvent::Acked { group, offsets } => {
            if let Some(g) = groups.get_mut(&group) {
                for o in offsets {
                    g.acks.insert(o);
                    g.deliveries.remove(&o);
                }
            }
        }
        GroupEvent::Delivered { group, offsets } => {
            if let Some(g) = groups.get_mut(&group) {
                for o in offsets {
                    if !g.acks.contains(o) {
                        *g.deliveries.entry(o).or_default() += 1;
                    }
                }
            }
        }
        GroupEvent::Floor { group, floor } => {
            if let Some(g) = groups.get_mut(&group) {
                g.acks.raise_floor(floor);
                let done = &g.acks;
                g.deliveries.retain(|&o, _| !done.contains(o));
            }
        }
    }
}

impl Journal {
    /// Opens (creating) `dir/groups.journal`, replays it, and cuts off a damaged tail.
    pub(crate) fn recover(
        cache: &Arc<FileCache>,
        dir: &Path,
        what: &str,
    ) -> Result<(Self, Vec<RecoveredGroup>, Vec<String>), StorageError> {
        let (recovered, warnings) = Self::replay(dir, what)?;
        let path = dir.join("groups.journal");
        let journal = Self::rewrite(cache, &path, what, &snapshot(&recovered))?;
        Ok((journal, recovered, warnings))
    }

    /// Reads `dir/groups.journal` without changing it: the groups it records, and what
    /// is damaged in it.
    pub(crate) fn replay(
        dir: &Path,
        what: &str,
    ) -> Result<(Vec<RecoveredGroup>, Vec<String>), StorageError> {
        let path = dir.join("groups.journal");
        let data = match fs::read(&path) {
            Ok(d) => Bytes::from(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Bytes::new(),
            Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), &e)),
        };
        let mut groups = BTreeMap::new();
        let mut warnings = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            match event_at(&data, pos) {
                Some((event, len)) => {
                    apply(&mut groups, event);
                    pos += len;
                }
                None => {
                    let resume = (pos + 1..data.len()).find(|&p| event_at(&data, p).is_some());
                    let end = resume.unwrap_or(data.len());
                    warnings.push(format!(
                        "{what}: group journal {} is damaged at bytes {pos}–{end}; {}",
                        path.display(),
                        if resume.is_some() {
                            "the events after it were kept (acks it held are redelivered)"
                        } else {
                            "it was cut off there (acks it held are redelivered)"
                        }
                    ));
                    pos = end;
                }
            }
        }
        let recovered: Vec<RecoveredGroup> = groups
            .into_iter()
            .map(|(name, g)| {
                let floor = g.acks.floor();
                let mut delivered: Vec<Offset> = g.deliveries.keys().copied().collect();
                delivered.sort_unstable();
                RecoveredGroup {
                    name,
                    ack: g.ack,
                    ack_timeout: g.ack_timeout,
                    max_deliveries: g.max_deliveries,
                    start: g.start,
                    floor,
                    acked: g.acks.above_floor().collect(),
                    deliveries: delivered
                        .into_iter()
                        .map(|o| (o, g.deliveries[&o]))
                        .collect(),
                }
            })
            .collect();
        Ok((recovered, warnings))
    }

    /// Writes `events` as the whole journal (atomically: a new file renamed over the old).
    fn rewrite(
        cache: &Arc<FileCache>,
        path: &Path,
        what: &str,
        events: &[GroupEvent],
    ) -> Result<Self, StorageError> {
        let mut buf = Vec::new();
        for e in events {
            encode(e, &mut buf);
        }
        let tmp = path.with_extension("journal.tmp");
        {
            let mut f = File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
            f.write_all(&buf)
                .and_then(|()| f.sync_all())
                .map_err(io(format!("writing {}", tmp.display())))?;
        }
        fs::rename(&tmp, path).map_err(io(format!("replacing {}", path.display())))?;
        if let Some(parent) = path.parent()
            && let Ok(d) = File::open(parent)
        {
            let _ = d.sync_all();
        }
        cache.note_synced(path, buf.len() as u64);
        let file = CachedFile::new(cache, path, Mode::Append);
        let sync = SyncFile::new(format!("{what} group journal"), Arc::clone(&file), 0);
        Ok(Self {
            path: path.to_path_buf(),
            cache: Arc::clone(cache),
            file,
            len: buf.len() as u64,
            sync,
            torn: false,
            buf: Vec::new(),
        })
    }

    /// The tracker of what of the journal is on disk.
    pub(crate) fn sync_file(&self) -> &Arc<SyncFile> {
        &self.sync
    }

    /// Appends events, all or none; returns the sync ticket covering them.
    ///
    /// # Errors
    /// [`StorageError`] when they cannot be written; nothing of them stays in the file.
    pub(crate) fn append(&mut self, events: &[GroupEvent]) -> Result<u64, StorageError> {
        let context = || format!("appending to {}", self.path.display());
        let len = self.len;
        if self.torn {
            self.file
                .truncate(len)
                .map_err(|e| StorageError::io(context(), &e))?;
            self.torn = false;
        }
        self.buf.clear();
        for e in events {
            encode(e, &mut self.buf);
        }
        if let Err(e) = self.file.append(&self.buf) {
            // Cut off what was written of the events; if even that fails, the next append
            // tries again first, and compaction rewrites the file.
            self.torn = self.file.truncate(len).is_err();
            return Err(StorageError::io(context(), &e));
        }
        self.len += self.buf.len() as u64;
        Ok(self.sync.wrote(self.buf.len() as u64))
    }

    /// Whether the journal should be rewritten from a snapshot: it has grown large, or a
    /// failed write or fsync left it untrustworthy.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.len >= COMPACT_AT || self.torn || self.sync.has_failed()
    }

    /// Replaces the journal with a snapshot of `groups`. The new file gets a new sync
    /// tracker, registered by the caller.
    pub(crate) fn compact(
        &mut self,
        groups: &[RecoveredGroup],
        what: &str,
    ) -> Result<(), StorageError> {
        if !self.sync.has_failed() && !self.torn {
            self.sync.sync_all()?;
        }
        let cache = Arc::clone(&self.cache);
        *self = Self::rewrite(&cache, &self.path, what, &snapshot(groups))?;
        Ok(())
    }
}

/// The events that recreate `groups`.
pub(crate) fn snapshot(groups: &[RecoveredGroup]) -> Vec<GroupEvent> {
    let mut events = Vec::new();
    for g in groups {
        events.push(GroupEvent::Created {
            group: g.name.clone(),
            ack: g.ack,
            ack_timeout: g.ack_timeout,
            max_deliveries: g.max_deliveries,
            start: g.start,
        });
        events.push(GroupEvent::Floor {
            group: g.name.clone(),
            floor: g.floor,
        });
        if !g.acked.is_empty() {
            events.push(GroupEvent::Acked {
                group: g.name.clone(),
                offsets: g.acked.clone(),
            });
        }
        for &(offset, n) in &g.deliveries {
            events.push(GroupEvent::Delivered {
                group: g.name.clone(),
                offsets: vec![offset; n as usize],
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupName {
        GroupName::new("g").unwrap()
    }

    fn offsets(o: impl IntoIterator<Item = u64>) -> Vec<Offset> {
        o.into_iter().map(Offset).collect()
    }

    /// The entry `event` encodes to, its kind, and the event it decodes back to.
    fn round_trip(event: &GroupEvent) -> (Vec<u8>, u8, GroupEvent) {
        let mut buf = Vec::new();
        encode_entry(event, &mut buf);
        let (back, len) = event_at(&buf, 0).expect("the entry decodes");
        assert_eq!(len, buf.len());
        (buf.clone(), buf[8], back)
    }

    #[test]
    fn consecutive_offsets_are_written_as_runs_and_read_back_as_they_were() {
        let acked = GroupEvent::Acked {
            group: group(),
            offsets: offsets(1000..1500),
        };
        let (bytes, kind, back) = round_trip(&acked);
        assert_eq!(kind, 6);
        assert!(bytes.len() < 40, "{} bytes for one run", bytes.len());
        assert_eq!(back, acked);
        let delivered = GroupEvent::Delivered {
            group: group(),
            offsets: offsets((10..20).chain(30..40).chain([7])),
        };
        let (_, kind, back) = round_trip(&delivered);
        assert_eq!(kind, 7);
        assert_eq!(back, delivered, "runs keep the offsets' order");
    }

    #[test]
    fn scattered_offsets_stay_a_list() {
        let acked = GroupEvent::Acked {
            group: group(),
            offsets: offsets([3, 9, 27, 81]),
        };
        let (_, kind, back) = round_trip(&acked);
        assert_eq!(kind, 3);
        assert_eq!(back, acked);
    }

    #[test]
    fn runs_that_would_expand_past_an_entry_do_not_decode() {
        let name = b"g";
        let mut body = vec![6u8];
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name);
        body.extend_from_slice(&2u32.to_le_bytes());
        for first in [0u64, 1 << 40] {
            body.extend_from_slice(&first.to_le_bytes());
            body.extend_from_slice(&(OFFSETS_PER_ENTRY as u32).to_le_bytes());
        }
        assert_eq!(decode(&body), None);
        body.truncate(body.len() - 12);
        body[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            decode(&body),
            Some(GroupEvent::Acked { offsets, .. }) if offsets.len() == OFFSETS_PER_ENTRY
        ));
    }
}
