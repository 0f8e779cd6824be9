//! [`Log`]: a topic's retained messages in offset order, with an index by priority.
//!
//! Messages held in memory are records in the format of the segment files (one format,
//! two media), encoded back to back into large chunks and handed out as zero-copy slices;
//! each retained message costs the log its record and two bytes of index (where its record
//! starts in its piece's data, which is why no record but a piece's first starts further
//! in than [`MAX_POSITION`]).

mod level;

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::budget::MemoryBudget;
use crate::clock::Timestamp;
use crate::message::NewMessage;
use crate::message::{Message, Offset};
use crate::producers::BatchStamp;
use crate::record::{self, Fields, Mark, STAMP, TooLong};
use crate::storage::{Records, StoredMessage};

pub(crate) use level::Level;

/// Bytes of each chunk records are encoded into (a record larger than that gets a chunk of
/// its own) ...
const CHUNK: usize = 64 * 1024;
/// ... or fewer, down to this, when what is left of a batch is smaller: a topic that
/// receives little holds little.
const SMALL_CHUNK: usize = 4 * 1024;

/// Slots of the cache of messages read from the chunks: groups that read close behind one
/// another share one decoded message instead of decoding it each.
const HOT: usize = 16 * 1024;

/// The furthest into a piece's data a record other than its first may start: positions
/// are two bytes.
const MAX_POSITION: usize = u16::MAX as usize;

/// Bytes read from the store at once when a message is not in memory.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// Where a retained message is.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// In memory.
    Resident(Arc<Message>),
    /// Only in the store: read it back.
    OnDisk,
    /// Not retained (trimmed, or lost to damage).
    Gone,
}

/// Where the messages of a piece are.
#[derive(Debug)]
enum Held {
    /// In memory: their records, back to back.
    Resident(Bytes),
    /// Only in the store.
    Evicted,
    /// Lost to damage: no message, settled for every group.
    Lost,
}

/// Consecutive offsets appended together (one batch) or recovered together: they share a
/// timestamp and where they are held.
#[derive(Debug)]
struct Piece {
    /// Its first offset when made.
    start: u64,
    /// One past its last offset.
    end: u64,
    /// Its retained offsets: `end - count .. end`.
    count: u64,
    timestamp: Timestamp,
    /// The sizes of its retained messages.
    bytes: u64,
    /// Whether the records at `start` and at `end - 1` carry their batch's mark.
    marks: [bool; 2],
    /// Bytes of its records from `start` on, back to back (its data's length when
    /// resident): where the record after its last would start.
    len: u64,
    held: Held,
    /// Held in memory again after it was read back from the store.
    restored: bool,
}

impl Piece {
    /// Whether the record of `offset` carries its batch's mark.
    fn marked(&self, offset: u64) -> bool {
        (offset == self.start && self.marks[0]) || (offset + 1 == self.end && self.marks[1])
    }

    /// The size of the message at `offset`, whose record starts at `position` and the next
    /// one at `next` (`None` for the piece's last): records lie back to back, so a record
    /// is the distance to the next one, and a message its record without a batch's mark.
    fn size(&self, offset: u64, position: u16, next: Option<u16>) -> u64 {
        let next = next.map_or(self.len, u64::from);
        let mark = if self.marked(offset) { STAMP as u64 } else { 0 };
        next.saturating_sub(u64::from(position))
            .saturating_sub(mark)
    }

    /// The sizes of its retained messages, in order, from their `positions`.
    fn sizes<'a>(
        &'a self,
        positions: &'a VecDeque<u16>,
        start: usize,
    ) -> impl Iterator<Item = u64> + 'a {
        let from = self.end - self.count;
        let mut at = positions
            .range(start..)
            .take(usize::try_from(self.count).unwrap_or(0))
            .peekable();
        (from..).map_while(move |offset| {
            let position = *at.next()?;
            Some(self.size(offset, position, at.peek().map(|p| **p)))
        })
    }
}

/// The records of a staged batch in one chunk.
#[derive(Debug, Default, Clone, Copy)]
struct Part {
    count: u64,
    /// The sizes of its messages.
    bytes: u64,
    /// Whether its first and its last record carry the batch's mark.
    marks: [bool; 2],
}

/// A batch encoded into the log's chunks and not yet part of the log: see [`Log::stage`].
#[derive(Debug)]
pub(crate) struct Staged {
    first: Offset,
    timestamp: Timestamp,
    /// The log's entry count before it.
    entries: usize,
    /// Its records, a part per chunk they landed in.
    parts: Vec<Bytes>,
    /// What the log keeps of each part.
    counts: Vec<Part>,
}

impl Staged {
    /// Its records, for the store.
    pub(crate) fn records(&self) -> Records<'_> {
        let count = self.counts.iter().map(|p| p.count).sum();
        Records::new(self.first, count, &self.parts)
    }
}

/// A topic's retained messages.
///
/// # Invariants
/// - `entries[i]` describes offset `first + i`: where its record starts in its piece's data
///   (where it started when the piece was resident; where it would start, back to back
///   from the piece's first, for a piece recovered evicted), 0 when lost;
/// - `pieces` cover `first..next()` exactly, in order; timestamps never decrease;
/// - `lost` lists, in order, the ranges of retained offsets whose messages storage lost
///   (their pieces are `Lost`; `lost_count` counts them); they are in no level;
/// - `levels[p]` holds exactly the offsets of retained messages of priority `p`, in order;
/// - `active` lists the priorities that ever had a message, highest first;
/// - `bytes` is the sum of the retained messages' sizes;
/// - `resident_bytes` is the size of the messages held in memory (resident pieces and
///   messages read back), and is counted in the broker-wide `memory` budget;
/// - with a `budget` (a store that can read messages back), the messages held in memory
///   take at most about `budget` bytes, and fewer while the broker-wide budget is exceeded
///   (messages read back go first, then resident pieces, oldest first); the others are
///   read back from the store on demand.
///
/// Append and trimming the front are O(1) amortised; finding a message costs a binary
/// search over the pieces; finding the next message a group should get costs O(number of
/// priority levels in use), whatever the backlog.
#[derive(Debug)]
pub(crate) struct Log {
    first: u64,
    entries: VecDeque<u16>,
    pieces: VecDeque<Piece>,
    /// The unused rest of the chunk appends are encoded into.
    tail: BytesMut,
    lost: VecDeque<Range<u64>>,
    lost_count: u64,
    bytes: u64,
    levels: Vec<Level>,
    active: Vec<u8>,
    budget: Option<u64>,
    /// The ends of the resident pieces, oldest first.
    resident: VecDeque<u64>,
    resident_bytes: u64,
    /// The ends of the pieces read back from the store, in their order of loading, and
    /// the bytes of their messages still held.
    read_order: VecDeque<u64>,
    restored_bytes: u64,
    /// Messages lately read from the chunks, in the slot of their offset modulo [`HOT`]
    /// (allocated at the first read); a slot is emptied when its message leaves memory.
    hot: Vec<Option<Arc<Message>>>,
    /// Pieces removed from the front so far, and the number (counted from the first piece
    /// ever) of the piece the last lookup found.
    pieces_popped: usize,
    hint: Cell<usize>,
    memory: Arc<MemoryBudget>,
}

impl Log {
    /// An empty log whose next offset is `next`, holding every message in memory and
    /// counting it in `memory`.
    pub(crate) fn new(next: Offset, memory: Arc<MemoryBudget>) -> Self {
        Self {
            first: next.get(),
            entries: VecDeque::new(),
            pieces: VecDeque::new(),
            tail: BytesMut::new(),
            lost: VecDeque::new(),
            lost_count: 0,
            bytes: 0,
            levels: (0..=u8::MAX).map(|_| Level::default()).collect(),
            active: Vec::new(),
            budget: None,
            resident: VecDeque::new(),
            resident_bytes: 0,
            read_order: VecDeque::new(),
            restored_bytes: 0,
            hot: Vec::new(),
            pieces_popped: 0,
            hint: Cell::new(0),
            memory,
        }
    }

    /// A log of recovered messages in increasing offsets from `first` whose next offset is
    /// `next`, keeping at most about `budget` bytes of them in memory (all, for `None`).
    /// Offsets missing in between were lost: they become holes.
    pub(crate) fn recovered(
        first: Offset,
        runs: Vec<Vec<StoredMessage>>,
        next: Offset,
        budget: Option<u64>,
        memory: Arc<MemoryBudget>,
    ) -> Self {
        let mut log = Self::new(first, memory);
        log.budget = budget;
        log.entries.reserve(runs.iter().map(Vec::len).sum());
        let mut loaded: Vec<Arc<Message>> = Vec::new();
        for stored in runs.into_iter().flatten() {
            match stored {
                StoredMessage::Loaded(m) => {
                    let joins = loaded
                        .last()
                        .is_some_and(|l| l.timestamp == m.timestamp && l.offset.next() == m.offset);
                    if !joins {
                        log.append_loaded(&mut loaded);
                        log.lose_until(m.offset);
                    }
                    loaded.push(m);
                }
                StoredMessage::OnDisk {
                    offset,
                    timestamp,
                    size,
                    priority,
                } => {
                    log.append_loaded(&mut loaded);
                    log.lose_until(offset);
                    log.push_evicted(offset, timestamp, size, priority);
                }
            }
        }
        log.append_loaded(&mut loaded);
        log.lose_until(next);
        log
    }

    fn append_loaded(&mut self, loaded: &mut Vec<Arc<Message>>) {
        if loaded.is_empty() {
            return;
        }
        // Each was read from a record, so a record holds it; were it not, it is lost.
        if self.append(loaded).is_err()
            && let Some(last) = loaded.last()
        {
            self.lose_until(last.offset.next());
        }
        loaded.clear();
    }

    /// Adds a message left in the store to the end of the log.
    fn push_evicted(&mut self, offset: Offset, timestamp: Timestamp, size: u64, priority: u8) {
        self.index(offset, priority, size);
        // Reading the piece back may find batch marks on its first record, which move the
        // others by a stamp: room is left for that.
        let room = (MAX_POSITION - STAMP) as u64;
        match self.pieces.back_mut() {
            Some(p)
                if matches!(p.held, Held::Evicted)
                    && p.timestamp == timestamp
                    && p.end == offset.get()
                    && p.len <= room =>
            {
                self.entries.push_back(p.len as u16);
                p.end += 1;
                p.count += 1;
                p.bytes += size;
                p.len += size;
            }
            _ => {
                self.entries.push_back(0);
                self.pieces.push_back(Piece {
                    start: offset.get(),
                    end: offset.get() + 1,
                    count: 1,
                    timestamp,
                    bytes: size,
                    marks: [false; 2],
                    len: size,
                    held: Held::Evicted,
                    restored: false,
                });
            }
        }
    }

    /// Marks the offsets from `next()` up to `offset` lost.
    fn lose_until(&mut self, offset: Offset) {
        let (from, offset) = (self.next().get(), offset.get());
        if offset <= from {
            return;
        }
        let timestamp = self.pieces.back().map(|p| p.timestamp).unwrap_or_default();
        self.entries.extend(std::iter::repeat_n(
            0,
            usize::try_from(offset - from).unwrap_or(0),
        ));
        self.pieces.push_back(Piece {
            start: from,
            end: offset,
            count: offset - from,
            timestamp,
            bytes: 0,
            marks: [false; 2],
            len: 0,
            held: Held::Lost,
            restored: false,
        });
        self.lost_count += offset - from;
        self.lost.push_back(from..offset);
    }

    /// The retained offsets whose messages storage lost, in order.
    pub(crate) fn lost(&self) -> impl Iterator<Item = Range<Offset>> + '_ {
        self.lost.iter().map(|r| Offset(r.start)..Offset(r.end))
    }

    /// The first retained offset (equal to `next()` when empty).
    pub(crate) fn first(&self) -> Offset {
        Offset(self.first)
    }

    /// The offset the next appended message gets.
    pub(crate) fn next(&self) -> Offset {
        Offset(self.first + self.entries.len() as u64)
    }

    /// Number of retained messages (lost offsets not counted).
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64 - self.lost_count
    }

    /// Retained bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The piece holding retained `offset`, and the offset's entry.
    fn find(&self, offset: Offset) -> Option<(&Piece, u16)> {
        let o = offset.get();
        let idx = usize::try_from(o.checked_sub(self.first)?).ok()?;
        let entry = *self.entries.get(idx)?;
        // Reads go mostly forward: the piece of the last find, or the next, before a search.
        let hint = self.hint.get().wrapping_sub(self.pieces_popped);
        let holds = |i: usize| {
            self.pieces
                .get(i)
                .is_some_and(|p| p.end - p.count <= o && o < p.end)
        };
        let at = if holds(hint) {
            hint
        } else if holds(hint.wrapping_add(1)) {
            hint.wrapping_add(1)
        } else {
            self.pieces.partition_point(|p| p.end <= o)
        };
        self.hint.set(at.wrapping_add(self.pieces_popped));
        Some((self.pieces.get(at)?, entry))
    }

    /// The first retained offset whose message was published at or after `time` (`next()`
    /// when none was).
    pub(crate) fn offset_at(&self, time: Timestamp) -> Offset {
        match self
            .pieces
            .get(self.pieces.partition_point(|p| p.timestamp < time))
        {
            Some(p) => Offset((p.end - p.count).max(self.first)),
            None => self.next(),
        }
    }

    /// The timestamp of the message at `offset`, if retained.
    pub(crate) fn timestamp_of(&self, offset: Offset) -> Option<Timestamp> {
        match self.find(offset)? {
            (
                Piece {
                    held: Held::Lost, ..
                },
                _,
            ) => None,
            (p, _) => Some(p.timestamp),
        }
    }

    /// The priority of the message at `offset`, if retained.
    pub(crate) fn priority_of(&self, offset: Offset) -> Option<u8> {
        match self.find(offset)? {
            (
                Piece {
                    held: Held::Lost, ..
                },
                _,
            ) => None,
            (
                Piece {
                    held: Held::Resident(data),
                    ..
                },
                pos,
            ) => record::own_priority(data, usize::from(pos)),
            (
                Piece {
                    held: Held::Evicted,
                    ..
                },
                _,
            ) => self.active.iter().copied().find(|&p| {
                let level = &self.levels[usize::from(p)];
                let seq = level.seq_at_or_after(offset);
                seq < level.end() && level.offset_at(seq) == offset
            }),
        }
    }

    /// Where the message at `offset` is. With `share` (other groups will read it soon), a
    /// message read from the chunks is kept decoded for them.
    pub(crate) fn lookup(&mut self, offset: Offset, share: bool) -> Lookup {
        let slot = (offset.get() % HOT as u64) as usize;
        if let Some(Some(m)) = self.hot.get(slot)
            && m.offset == offset
        {
            return Lookup::Resident(Arc::clone(m));
        }
        let message = match self.find(offset) {
            None => return Lookup::Gone,
            Some((piece, pos)) => match &piece.held {
                Held::Lost => return Lookup::Gone,
                Held::Evicted => return Lookup::OnDisk,
                Held::Resident(data) => match record::read_own(data, usize::from(pos)) {
                    Some(message) => Arc::new(message),
                    None => return Lookup::Gone,
                },
            },
        };
        if share {
            if self.hot.is_empty() {
                self.hot.resize(HOT, None);
            }
            self.hot[slot] = Some(Arc::clone(&message));
        }
        Lookup::Resident(message)
    }

    /// Whether the message at `offset` is retained but only in the store (what
    /// [`Log::lookup`] says with [`Lookup::OnDisk`], without decoding anything).
    pub(crate) fn is_on_disk(&self, offset: Offset) -> bool {
        matches!(
            self.find(offset),
            Some((
                Piece {
                    held: Held::Evicted,
                    ..
                },
                _
            ))
        )
    }

    /// Where to read evicted `offset` back from so that its whole piece comes back: the
    /// piece's first retained offset, and about how many bytes its records take.
    pub(crate) fn evicted_span(&self, offset: Offset) -> Option<(Offset, usize)> {
        match self.find(offset)? {
            (
                p @ Piece {
                    held: Held::Evicted,
                    ..
                },
                _,
            ) => {
                let bytes = usize::try_from(p.bytes).unwrap_or(usize::MAX);
                Some((Offset(p.end - p.count), bytes.saturating_add(2 * STAMP)))
            }
            _ => None,
        }
    }

    /// Holds evicted pieces in memory again, each whose retained records `data` holds
    /// whole: records of consecutive offsets from `first`, back to back, their checksums
    /// verified, as the store read them (one format, two media: they are kept as they
    /// are). Room is made for them by dropping other pieces ([`Log::shed`]). Returns
    /// whether any piece came back.
    pub(crate) fn restore(&mut self, first: Offset, data: &Bytes) -> bool {
        let (mut offset, mut pos) = (first.get(), 0usize);
        let mut at = self.pieces.partition_point(|p| p.end <= offset);
        let mut restored = 0;
        while let Some(piece) = self.pieces.get_mut(at) {
            let from = piece.end - piece.count;
            // Records of offsets not retained, of a piece not evicted or of one the data
            // does not begin with are passed over.
            let evicted = matches!(piece.held, Held::Evicted);
            while offset < piece.end && (offset != from || !evicted) {
                match record::frame_at(data, pos) {
                    Some((len, o)) if o == offset => {
                        pos += len;
                        offset += 1;
                    }
                    _ => return self.restored(restored),
                }
            }
            if offset != from || offset >= piece.end {
                at += 1;
                continue;
            }
            let Ok(start) = usize::try_from(from - self.first) else {
                break;
            };
            let begin = pos;
            let sizes: Vec<u64> = piece.sizes(&self.entries, start).collect();
            let mut positions = Vec::with_capacity(sizes.len());
            let mut marks = piece.marks;
            for o in from..piece.end {
                let size = sizes.get(positions.len()).copied();
                let fits = match (record::frame_at(data, pos), size) {
                    (Some((len, got)), Some(size)) if got == o => {
                        // A record is its message's size, and a batch's mark on the first
                        // or last record of the piece: that says where the marks are.
                        let (first, last) = (o == piece.start, o + 1 == piece.end);
                        match len.checked_sub(size as usize) {
                            Some(0) => {
                                marks[0] &= !first;
                                marks[1] &= !last;
                                Some(len)
                            }
                            Some(STAMP) if first || last => {
                                marks[usize::from(last)] = true;
                                Some(len)
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let (Some(len), Ok(position)) = (fits, u16::try_from(pos - begin)) else {
                    return self.restored(restored);
                };
                positions.push(position);
                pos += len;
            }
            for (entry, position) in self.entries.range_mut(start..).zip(positions) {
                *entry = position;
            }
            piece.held = Held::Resident(data.slice(begin..pos));
            piece.marks = marks;
            piece.len = (pos - begin) as u64;
            piece.restored = true;
            self.restored_bytes += piece.bytes;
            self.resident_bytes += piece.bytes;
            self.memory.add(piece.bytes);
            self.read_order.push_back(piece.end);
            restored += 1;
            offset = piece.end;
            at += 1;
        }
        self.restored(restored)
    }

    /// Keeps the log within its budget after `restored` pieces came back, making room for
    /// them: other pieces leave memory first, these only if that is not enough (the
    /// budgets are kept whatever happens). Says whether any came back.
    fn restored(&mut self, restored: usize) -> bool {
        if restored > 0 {
            let just = self
                .read_order
                .split_off(self.read_order.len().saturating_sub(restored));
            self.evict();
            self.read_order.extend(just);
            self.evict();
        }
        restored > 0
    }

    /// Whether messages can leave memory (the store reads them back).
    pub(crate) fn evictable(&self) -> bool {
        self.budget.is_some()
    }

    /// Drops messages from memory until within the topic's budget and, while the
    /// broker-wide budget is exceeded, as far as that takes.
    fn evict(&mut self) {
        let Some(budget) = self.budget else { return };
        let over = self.resident_bytes.saturating_sub(budget);
        let want = over.max(self.memory.excess(0).min(self.resident_bytes));
        if want > 0 {
            self.shed(want);
        }
    }

    /// Drops at least `want` bytes of messages the store can read back from memory (the
    /// oldest appended pieces, or those read back before once they hold half the budget)
    /// if there are that many; returns the bytes dropped.
    pub(crate) fn shed(&mut self, want: u64) -> u64 {
        let Some(budget) = self.budget else {
            return 0;
        };
        let mut freed = 0;
        while freed < want {
            // Pieces read back make room for each other once they hold half the budget;
            // below that the oldest appended ones go first, so that groups reading behind
            // others find what the first one read back (each batch is read back once),
            // while new appends still keep the other half for groups reading the tail.
            let read_back_first = self.restored_bytes.saturating_mul(2) > budget;
            let queue = if read_back_first || self.resident.is_empty() {
                &mut self.read_order
            } else {
                &mut self.resident
            };
            let Some(end) = queue.pop_front().or_else(|| self.resident.pop_front()) else {
                break;
            };
            freed += self.evict_piece(end);
        }
        let freed = freed.min(self.resident_bytes);
        self.resident_bytes -= freed;
        self.memory.sub(freed);
        freed
    }

    /// Leaves the messages of the piece ending at `end` to the store (their entries keep
    /// where their records were: that gives their sizes); returns the bytes it held.
    fn evict_piece(&mut self, end: u64) -> u64 {
        let i = self.pieces.partition_point(|p| p.end < end);
        let Some(piece) = self
            .pieces
            .get_mut(i)
            .filter(|p| p.end == end && matches!(p.held, Held::Resident(_)))
        else {
            return 0;
        };
        piece.held = Held::Evicted;
        if std::mem::take(&mut piece.restored) {
            self.restored_bytes = self.restored_bytes.saturating_sub(piece.bytes);
        }
        let from = piece.end - piece.count;
        if !self.hot.is_empty() {
            for offset in from..piece.end {
                let slot = (offset % HOT as u64) as usize;
                if self.hot[slot]
                    .as_ref()
                    .is_some_and(|m| m.offset.get() == offset)
                {
                    self.hot[slot] = None;
                }
            }
        }
        piece.bytes
    }

    /// Offset and timestamp of the oldest retained message.
    pub(crate) fn front(&self) -> Option<(Offset, Timestamp)> {
        self.pieces
            .front()
            .map(|p| (Offset(self.first), p.timestamp))
    }

    fn index(&mut self, offset: Offset, p: u8, size: u64) {
        let level = &mut self.levels[usize::from(p)];
        if level.is_empty() && !self.active.contains(&p) {
            let at = self.active.partition_point(|&a| a > p);
            self.active.insert(at, p);
        }
        self.levels[usize::from(p)].push(offset.get());
        self.bytes += size;
    }

    /// Appends stored messages that share a timestamp (recovery); the first one's offset
    /// must be `next()` and the others follow it.
    ///
    /// # Errors
    /// The offset of a message too long for a record, and why (the log is unchanged).
    pub(crate) fn append(&mut self, messages: &[Arc<Message>]) -> Result<(), (Offset, TooLong)> {
        let Some(m) = messages.first() else {
            return Ok(());
        };
        let bytes = messages.iter().map(|m| m.size()).sum();
        let staged = self.stage_with(m.offset, m.timestamp, messages.len(), bytes, |i| {
            (Fields::of(&messages[i]), None, messages[i].size())
        })?;
        self.commit_with(staged, |i| (messages[i].priority, messages[i].size()));
        Ok(())
    }

    /// Encodes a producer's batch as the records of offsets `next()` on, stored at
    /// `timestamp`, with the batch's `stamp` on its first and last records: they fill the
    /// current chunk, then new ones. The log holds them once [`Log::commit`]ted; until
    /// then [`Staged::records`] are what the store writes, and [`Log::abort`] forgets them.
    ///
    /// # Errors
    /// The offset of a message too long for a record, and why (the log is unchanged).
    pub(crate) fn stage(
        &mut self,
        batch: &[NewMessage],
        bytes: u64,
        timestamp: Timestamp,
        stamp: Option<BatchStamp>,
    ) -> Result<Staged, (Offset, TooLong)> {
        let (first, last) = (self.next(), batch.len().saturating_sub(1));
        self.stage_with(first, timestamp, batch.len(), bytes, |i| {
            let mark = match stamp {
                Some(s) if i == last => Some(Mark::Last(s)),
                Some(s) if i == 0 => Some(Mark::First(s)),
                _ => None,
            };
            let m = &batch[i];
            let offset = first.get() + i as u64;
            (Fields::of_new(m, offset, timestamp), mark, m.size())
        })
    }

    /// Encodes `count` records, `bytes` the sizes of their messages, as [`Log::stage`] does.
    fn stage_with<'m>(
        &mut self,
        first: Offset,
        timestamp: Timestamp,
        count: usize,
        bytes: u64,
        record: impl Fn(usize) -> (Fields<'m>, Option<Mark>, u64),
    ) -> Result<Staged, (Offset, TooLong)> {
        debug_assert_eq!(first, self.next());
        let mut staged = Staged {
            first,
            timestamp,
            entries: self.entries.len(),
            parts: Vec::new(),
            counts: Vec::new(),
        };
        // What is left of the batch (its marks aside): how large a new chunk need be.
        let mut rest = usize::try_from(bytes).unwrap_or(usize::MAX);
        let mut part = Part::default();
        for i in 0..count {
            let (fields, mark, size) = record(i);
            let len = usize::try_from(size).unwrap_or(usize::MAX) + mark.map_or(0, |_| STAMP);
            if self.tail.capacity() - self.tail.len() < len || self.tail.len() > MAX_POSITION {
                if part.count > 0 {
                    staged.parts.push(self.tail.split().freeze());
                    staged.counts.push(part);
                }
                part = Part::default();
                self.tail = BytesMut::with_capacity(rest.clamp(SMALL_CHUNK, CHUNK).max(len));
            }
            // Within MAX_POSITION: a chunk past it was left above.
            let pos = self.tail.len() as u16;
            // Records the store keeps get their checksum; in memory alone nothing checks it.
            let checksum = self.budget.is_some();
            if let Err(e) = record::encode(fields, mark, checksum, &mut self.tail) {
                self.tail.clear();
                self.entries.truncate(staged.entries);
                return Err((Offset(fields.offset), e));
            }
            self.entries.push_back(pos);
            rest = rest.saturating_sub(len);
            if part.count == 0 {
                part.marks[0] = mark.is_some();
            }
            part.marks[1] = mark.is_some();
            part.count += 1;
            part.bytes += size;
        }
        if part.count > 0 {
            staged.parts.push(self.tail.split().freeze());
            staged.counts.push(part);
        }
        Ok(staged)
    }

    /// Makes a staged producer's batch part of the log.
    pub(crate) fn commit(&mut self, staged: Staged, batch: &[NewMessage]) {
        self.commit_with(staged, |i| (batch[i].priority, batch[i].size()));
    }

    fn commit_with(&mut self, staged: Staged, message: impl Fn(usize) -> (u8, u64)) {
        let Staged {
            first,
            timestamp,
            parts,
            counts,
            ..
        } = staged;
        let mut end = first.get();
        let mut i = 0;
        for (data, part) in parts.into_iter().zip(counts) {
            let Part {
                count,
                bytes,
                marks,
            } = part;
            for offset in end..end + count {
                let (priority, size) = message(i);
                self.index(Offset(offset), priority, size);
                i += 1;
            }
            let start = end;
            end += count;
            self.pieces.push_back(Piece {
                start,
                end,
                count,
                timestamp,
                bytes,
                marks,
                len: data.len() as u64,
                held: Held::Resident(data),
                restored: false,
            });
            if self.budget.is_some() {
                self.resident.push_back(end);
            }
            self.resident_bytes += bytes;
            self.memory.add(bytes);
        }
        self.evict();
    }

    /// Forgets a staged batch the store could not take.
    pub(crate) fn abort(&mut self, staged: Staged) {
        self.entries.truncate(staged.entries);
    }

    /// Removes the oldest message.
    pub(crate) fn pop_front(&mut self) {
        let (Some(entry), Some(piece)) = (self.entries.pop_front(), self.pieces.front_mut()) else {
            return;
        };
        let offset = self.first;
        self.first += 1;
        piece.count -= 1;
        if let Some(slot) = self.hot.get_mut((offset % HOT as u64) as usize)
            && slot.as_ref().is_some_and(|m| m.offset.get() == offset)
        {
            *slot = None;
        }
        let next = if piece.count > 0 {
            self.entries.front().copied()
        } else {
            None
        };
        let size = match &piece.held {
            Held::Lost => {
                self.lost_count -= 1;
                if let Some(front) = self.lost.front_mut() {
                    front.start += 1;
                    if front.is_empty() {
                        self.lost.pop_front();
                    }
                }
                None
            }
            Held::Resident(_) => {
                let size = piece.size(offset, entry, next);
                let held = size.min(self.resident_bytes);
                self.resident_bytes -= held;
                self.memory.sub(held);
                if piece.restored {
                    self.restored_bytes = self.restored_bytes.saturating_sub(size);
                }
                Some(size)
            }
            Held::Evicted => Some(piece.size(offset, entry, next)),
        };
        if let Some(size) = size {
            piece.bytes = piece.bytes.saturating_sub(size);
            self.bytes -= size.min(self.bytes);
            if let Some(&p) = self
                .active
                .iter()
                .find(|&&p| self.levels[usize::from(p)].front() == Some(offset))
            {
                self.levels[usize::from(p)].pop_front();
            }
        }
        if piece.count == 0 {
            self.pieces.pop_front();
            self.pieces_popped = self.pieces_popped.wrapping_add(1);
        }
        while self.resident.front().is_some_and(|&end| end <= self.first) {
            self.resident.pop_front();
        }
        while self
            .read_order
            .front()
            .is_some_and(|&end| end <= self.first)
        {
            self.read_order.pop_front();
        }
    }

    /// The level of priority `p`.
    pub(crate) fn level(&self, p: u8) -> &Level {
        &self.levels[usize::from(p)]
    }

    /// Priorities that have had messages, highest first.
    pub(crate) fn active(&self) -> &[u8] {
        &self.active
    }
}

impl Drop for Log {
    /// What the log held no longer counts against the broker-wide budget.
    fn drop(&mut self) {
        self.memory.sub(self.resident_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Offset;
    use crate::message::NewMessage;

    fn lost(log: &Log) -> Vec<Range<u64>> {
        log.lost().map(|r| r.start.get()..r.end.get()).collect()
    }

    fn msg(offset: u64, priority: u8) -> Arc<Message> {
        Arc::new(Message::from_new(
            Offset(offset),
            Timestamp::default(),
            NewMessage::new("abc").priority(priority),
        ))
    }

    #[test]
    fn log_indexes_messages_by_priority_and_keeps_sequences_on_trim() {
        let mut log = Log::new(Offset(5), Arc::default());
        for (i, p) in [0u8, 3, 0, 3, 1].into_iter().enumerate() {
            log.append(&[msg(5 + i as u64, p)]).unwrap();
        }
        assert_eq!(log.active(), &[3, 1, 0]);
        assert_eq!(log.len(), 5);
        assert_eq!(log.bytes(), 5 * (3 + crate::RECORD_OVERHEAD));
        let l3 = log.level(3);
        assert_eq!((l3.start(), l3.end()), (0, 2));
        assert_eq!(l3.offset_at(1), Offset(8));
        log.pop_front();
        log.pop_front();
        assert_eq!(log.first(), Offset(7));
        assert_eq!(log.level(3).start(), 1);
        assert_eq!(log.level(3).offset_at(1), Offset(8));
        assert_eq!(log.level(0).seq_at_or_after(Offset(7)), 1);
        assert!(log.priority_of(Offset(6)).is_none());
        assert_eq!(log.priority_of(Offset(9)), Some(1));
    }

    #[test]
    fn offsets_missing_from_recovery_are_holes_that_trim_away() {
        let run = |offsets: &[u64]| {
            offsets
                .iter()
                .map(|&o| StoredMessage::Loaded(msg(o, 0)))
                .collect::<Vec<_>>()
        };
        let mut log = Log::recovered(
            Offset(3),
            vec![run(&[3, 4]), run(&[7, 8])],
            Offset(11),
            None,
            Arc::default(),
        );
        assert_eq!(log.next(), Offset(11));
        assert_eq!(log.len(), 4);
        assert_eq!(lost(&log), vec![5..7, 9..11]);
        assert_eq!(log.level(0).end(), 4);
        assert!(log.priority_of(Offset(5)).is_none());
        for _ in 0..3 {
            log.pop_front();
        }
        assert_eq!(log.first(), Offset(6));
        assert_eq!(lost(&log), vec![6..7, 9..11]);
        assert_eq!(log.len(), 2);
        assert_eq!(log.bytes(), 2 * (3 + crate::RECORD_OVERHEAD));
    }

    fn batch(first: u64, n: u64, size: usize, at: u64) -> Vec<Arc<Message>> {
        (first..first + n)
            .map(|o| {
                Arc::new(Message::from_new(
                    Offset(o),
                    Timestamp::from_millis(at),
                    NewMessage::new(vec![(o % 251) as u8; size])
                        .priority((o % 3) as u8)
                        .key(format!("k{o}"))
                        .header("h", format!("{o}")),
                ))
            })
            .collect()
    }

    #[test]
    fn records_fill_chunks_and_read_back_as_appended() {
        let memory = Arc::new(MemoryBudget::default());
        let mut log = Log::new(Offset(0), Arc::clone(&memory));
        let mut all = Vec::new();
        for b in 0..4 {
            let messages = batch(b * 300, 300, 200, b);
            log.append(&messages).unwrap();
            all.extend(messages);
        }
        assert!(log.pieces.len() > 4, "batches larger than a chunk span two");
        let total: u64 = all.iter().map(|m| m.size()).sum();
        assert_eq!((log.bytes(), memory.used()), (total, total));
        for m in &all {
            match log.lookup(m.offset, true) {
                Lookup::Resident(got) => assert_eq!(&*got, &**m),
                other => panic!("offset {}: {other:?}", m.offset),
            }
            assert_eq!(log.priority_of(m.offset), Some(m.priority));
            assert_eq!(log.timestamp_of(m.offset), Some(m.timestamp));
        }
        assert_eq!(log.offset_at(Timestamp::from_millis(2)), Offset(600));
        while log.len() > 0 {
            log.pop_front();
        }
        assert_eq!((log.bytes(), memory.used()), (0, 0));
        assert!(log.pieces.is_empty());
        assert!((0..=2).all(|p| log.level(p).start() == log.level(p).end()));
    }

    #[test]
    fn evicted_pieces_keep_what_retention_and_delivery_need() {
        let memory = Arc::new(MemoryBudget::default());
        let mut log = Log::new(Offset(0), Arc::clone(&memory));
        log.budget = Some(40_000);
        let messages = batch(0, 600, 100, 1);
        for chunk in messages.chunks(100) {
            log.append(chunk).unwrap();
        }
        assert!(memory.used() <= 40_000, "{} held", memory.used());
        assert!(matches!(log.lookup(Offset(0), false), Lookup::OnDisk));
        assert!(matches!(
            log.lookup(Offset(599), false),
            Lookup::Resident(_)
        ));
        assert_eq!(log.priority_of(Offset(4)), Some(1));
        assert_eq!(log.timestamp_of(Offset(4)), Some(Timestamp::from_millis(1)));
        // The first piece's records as the store holds them: it comes back whole.
        assert!(log.restore(Offset(0), &stored(&messages[..100])));
        assert!(memory.used() <= 40_000, "{} held", memory.used());
        for m in &messages[..100] {
            match log.lookup(m.offset, false) {
                Lookup::Resident(got) => assert_eq!(got, *m),
                other => panic!("offset {}: {other:?}", m.offset),
            }
        }
        assert!(
            matches!(log.lookup(Offset(100), false), Lookup::OnDisk),
            "a piece the read did not hold stays on disk"
        );
        let total: u64 = messages.iter().map(|m| m.size()).sum();
        assert_eq!(log.bytes(), total);
        while log.len() > 0 {
            log.pop_front();
        }
        assert_eq!((log.bytes(), memory.used()), (0, 0));
        assert!(log.read_order.is_empty());
    }

    /// The records of `messages` as a store holds them.
    fn stored(messages: &[Arc<Message>]) -> Bytes {
        let mut records = BytesMut::new();
        for m in messages {
            record::encode(Fields::of(m), None, true, &mut records).unwrap();
        }
        records.freeze()
    }

    fn resident(log: &mut Log, offset: u64) -> bool {
        matches!(log.lookup(Offset(offset), false), Lookup::Resident(_))
    }

    #[test]
    fn batches_read_back_stay_while_appends_push_out_the_oldest_until_they_hold_half() {
        let memory = Arc::new(MemoryBudget::default());
        let mut log = Log::new(Offset(1000), Arc::clone(&memory));
        // Keys of four digits from offset 1000 on: every batch of 100 is the same size.
        let messages = batch(1000, 800, 100, 1);
        let piece: u64 = messages[..100].iter().map(|m| m.size()).sum();
        log.budget = Some(piece * 3);
        for chunk in messages[..600].chunks(100) {
            log.append(chunk).unwrap();
        }
        assert!(
            (3..6).all(|p| resident(&mut log, 1000 + p * 100)),
            "the newest three"
        );
        assert!(!resident(&mut log, 1200));
        assert!(log.restore(Offset(1000), &stored(&messages[..100])));
        assert!(resident(&mut log, 1000), "read back");
        assert!(!resident(&mut log, 1300), "the oldest appended made room");
        log.append(&messages[600..700]).unwrap();
        assert!(
            resident(&mut log, 1000),
            "a new append pushes out appended ones first"
        );
        assert!(!resident(&mut log, 1400));
        assert!((5..7).all(|p| resident(&mut log, 1000 + p * 100)));
        assert!(log.restore(Offset(1100), &stored(&messages[100..200])));
        log.append(&messages[700..]).unwrap();
        assert!(
            !resident(&mut log, 1000),
            "past half the budget, what was read back first goes"
        );
        assert!(resident(&mut log, 1100) && resident(&mut log, 1700));
        assert!(memory.used() <= piece * 3, "{} held", memory.used());
        while log.len() > 0 {
            log.pop_front();
        }
        assert_eq!((memory.used(), log.restored_bytes), (0, 0));
    }

    #[test]
    fn records_that_do_not_match_a_piece_are_not_taken_back() {
        let memory = Arc::new(MemoryBudget::default());
        let mut log = Log::new(Offset(0), Arc::clone(&memory));
        log.budget = Some(0);
        let messages = batch(0, 10, 100, 1);
        log.append(&messages).unwrap();
        assert_eq!(memory.used(), 0, "everything left memory");
        // Half the piece, another message in its place, records from the wrong offset.
        assert!(!log.restore(Offset(0), &stored(&messages[..5])));
        let mut other = messages.clone();
        other[3] = batch(3, 1, 7, 1).remove(0);
        assert!(!log.restore(Offset(0), &stored(&other)));
        assert!(!log.restore(Offset(1), &stored(&messages[1..])));
        assert!(matches!(log.lookup(Offset(0), false), Lookup::OnDisk));
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn pieces_keep_their_positions_within_two_bytes() {
        let memory = Arc::new(MemoryBudget::default());
        let mut log = Log::new(Offset(0), Arc::clone(&memory));
        // A record larger than a chunk between small ones, all in one batch.
        let mut messages = batch(0, 5, 100, 1);
        messages.insert(2, batch(2, 1, 200_000, 1).remove(0));
        let messages: Vec<_> = (0..)
            .zip(messages)
            .map(|(o, m)| {
                Arc::new(Message {
                    offset: Offset(o),
                    ..(*m).clone()
                })
            })
            .collect();
        log.append(&messages).unwrap();
        for m in &messages {
            match log.lookup(m.offset, false) {
                Lookup::Resident(got) => assert_eq!(got, *m),
                other => panic!("offset {}: {other:?}", m.offset),
            }
        }
        while log.len() > 0 {
            log.pop_front();
        }
        assert_eq!((log.bytes(), memory.used()), (0, 0));

        // Recovered left in the store: 300 records of about 1 KiB share a timestamp, but
        // a piece holds what two-byte positions reach.
        let messages = batch(10, 300, 1000, 2);
        let on_disk = messages
            .iter()
            .map(|m| StoredMessage::OnDisk {
                offset: m.offset,
                timestamp: m.timestamp,
                size: m.size(),
                priority: m.priority,
            })
            .collect();
        let mut log = Log::recovered(
            Offset(10),
            vec![on_disk],
            Offset(310),
            Some(1 << 20),
            Arc::clone(&memory),
        );
        assert!(log.pieces.len() >= 5, "{} pieces", log.pieces.len());
        assert!(
            log.pieces
                .iter()
                .all(|p| p.len <= MAX_POSITION as u64 + 2000)
        );
        let second = log.pieces[1].end - log.pieces[1].count;
        let from = usize::try_from(second - 10).unwrap();
        assert!(log.restore(Offset(second), &stored(&messages[from..])));
        assert!(matches!(
            log.lookup(Offset(second + 1), false),
            Lookup::Resident(_)
        ));
        let total: u64 = messages.iter().map(|m| m.size()).sum();
        assert_eq!(log.bytes(), total);
        while log.len() > 0 {
            log.pop_front();
        }
        assert_eq!((log.bytes(), memory.used()), (0, 0));
    }

    #[test]
    fn a_stamped_batch_counts_its_messages_without_the_marks() {
        for budget in [None, Some(0)] {
            let memory = Arc::new(MemoryBudget::default());
            let mut log = Log::new(Offset(0), Arc::clone(&memory));
            log.budget = budget;
            let batch: Vec<NewMessage> = (0..700)
                .map(|i| NewMessage::new(vec![1u8; 100 + i % 7]))
                .collect();
            let stamp = BatchStamp {
                producer: 7,
                seq: 0,
                count: 700,
            };
            let stored: u64 = batch.iter().map(NewMessage::size).sum();
            let staged = log
                .stage(&batch, stored, Timestamp::from_millis(1), Some(stamp))
                .unwrap();
            let records = staged.records();
            assert_eq!(records.len(), 700);
            assert_eq!(records.size(), stored + 2 * STAMP as u64, "two marks");
            assert_eq!(records.messages().count(), 700);
            log.commit(staged, &batch);
            assert_eq!(log.bytes(), stored);
            for _ in 0..700 {
                log.pop_front();
            }
            assert_eq!((log.bytes(), memory.used()), (0, 0), "budget {budget:?}");
        }
    }
}
