//! [`Level`]: the offsets of one priority level, kept as runs of consecutive offsets.

use std::collections::VecDeque;

use crate::message::Offset;

/// Consecutive offsets of one level: `len` offsets from `first`, the first of them entry
/// number `seq` of the level.
#[derive(Debug, Clone, Copy)]
struct Run {
    seq: u64,
    first: u64,
    len: u64,
}

/// The offsets of one priority level, in increasing order.
///
/// Entries are numbered by a *sequence* that never changes when the front is trimmed, so a
/// group's cursor into a level stays valid. Offsets are kept as runs of consecutive
/// offsets: a topic whose messages share one priority keeps one run, whatever its length.
#[derive(Debug, Default)]
pub(crate) struct Level {
    removed: u64,
    len: u64,
    runs: VecDeque<Run>,
}

impl Level {
    /// Sequence number of the first retained entry.
    pub(crate) fn start(&self) -> u64 {
        self.removed
    }

    /// One past the sequence number of the last entry.
    pub(crate) fn end(&self) -> u64 {
        self.removed + self.len
    }

    /// Whether the level holds no offset.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset at sequence `seq`, which must lie in `start()..end()`.
    pub(crate) fn offset_at(&self, seq: u64) -> Offset {
        // Most levels are one run, and most reads are near one end.
        if let Some(r) = self.runs.back()
            && seq >= r.seq
        {
            return Offset(r.first + (seq - r.seq));
        }
        if let Some(r) = self.runs.front()
            && seq < r.seq + r.len
        {
            return Offset(r.first + (seq - r.seq));
        }
        let i = self.runs.partition_point(|r| r.seq + r.len <= seq);
        match self.runs.get(i) {
            Some(r) => Offset(r.first + (seq - r.seq)),
            None => Offset(u64::MAX),
        }
    }

    /// The sequence number of the first entry whose offset is at least `offset`.
    pub(crate) fn seq_at_or_after(&self, offset: Offset) -> u64 {
        let o = offset.get();
        let i = self.runs.partition_point(|r| r.first + r.len <= o);
        match self.runs.get(i) {
            Some(r) if o > r.first => r.seq + (o - r.first),
            Some(r) => r.seq,
            None => self.end(),
        }
    }

    /// The first offset, if any.
    pub(crate) fn front(&self) -> Option<u64> {
        self.runs.front().map(|r| r.first)
    }

    /// Appends `offset`, above every offset of the level.
    pub(crate) fn push(&mut self, offset: u64) {
        let end = self.end();
        match self.runs.back_mut() {
            Some(r) if r.first + r.len == offset => r.len += 1,
            _ => self.runs.push_back(Run {
                seq: end,
                first: offset,
                len: 1,
            }),
        }
        self.len += 1;
    }

    /// Removes the first offset.
    pub(crate) fn pop_front(&mut self) {
        let Some(r) = self.runs.front_mut() else {
            return;
        };
        r.first += 1;
        r.seq += 1;
        r.len -= 1;
        if r.len == 0 {
            self.runs.pop_front();
        }
        self.removed += 1;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_answer_like_a_list_of_offsets() {
        let offsets = [3u64, 4, 5, 9, 10, 20];
        let mut level = Level::default();
        for o in offsets {
            level.push(o);
        }
        assert_eq!(level.runs.len(), 3);
        for (seq, &o) in offsets.iter().enumerate() {
            assert_eq!(level.offset_at(seq as u64), Offset(o));
        }
        assert_eq!(level.seq_at_or_after(Offset(0)), 0);
        assert_eq!(level.seq_at_or_after(Offset(5)), 2);
        assert_eq!(level.seq_at_or_after(Offset(6)), 3);
        assert_eq!(level.seq_at_or_after(Offset(11)), 5);
        assert_eq!(level.seq_at_or_after(Offset(21)), 6);
        for _ in 0..4 {
            level.pop_front();
        }
        assert_eq!((level.start(), level.end()), (4, 6));
        assert_eq!(level.front(), Some(10));
        assert_eq!(level.offset_at(5), Offset(20));
        assert_eq!(level.seq_at_or_after(Offset(3)), 4);
    }
}
