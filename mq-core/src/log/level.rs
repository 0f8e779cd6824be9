//! [`Level`]: the offsets of one priority level, kept as runs of consecutive offsets.

use std::collections::VecDeque;

use crate::message::Offset;

/// Offsets of one level in arithmetic progression: `len` offsets from `first`, `step` apart
/// (consecutive offsets have step 1; priorities that take turns make longer steps), the
/// first of them entry number `seq` of the level.
#[derive(Debug, Clone, Copy)]
struct Run {
    seq: u64,
    first: u64,
    step: u64,
    len: u64,
}

impl Run {
    /// Its last offset.
    fn last(&self) -> u64 {
        self.first + self.step * (self.len - 1)
    }

    /// The offset of entry `seq`, which it holds.
    fn at(&self, seq: u64) -> u64 {
        self.first + self.step * (seq - self.seq)
    }

    /// Whether it holds entry `seq`.
    fn holds(&self, seq: u64) -> bool {
        seq >= self.seq && seq < self.seq + self.len
    }
}

/// The offsets of one priority level, in increasing order.
///
/// Entries are numbered by a *sequence* that never changes when the front is trimmed, so a
/// group's cursor into a level stays valid. Offsets are kept as runs in arithmetic
/// progression: a topic whose messages share one priority keeps one run, and so does one
/// whose priorities take turns in a fixed pattern, whatever its length.
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
        for r in [self.runs.back(), self.runs.front()].into_iter().flatten() {
            if r.holds(seq) {
                return Offset(r.at(seq));
            }
        }
        let i = self.runs.partition_point(|r| r.seq + r.len <= seq);
        match self.runs.get(i) {
            Some(r) => Offset(r.at(seq)),
            None => Offset(u64::MAX),
        }
    }

    /// The sequence number of the first entry whose offset is at least `offset`.
    pub(crate) fn seq_at_or_after(&self, offset: Offset) -> u64 {
        let o = offset.get();
        let i = self.runs.partition_point(|r| r.last() < o);
        match self.runs.get(i) {
            Some(r) if o > r.first => r.seq + (o - r.first).div_ceil(r.step),
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
            Some(r) if r.len == 1 => {
                r.step = offset - r.first;
                r.len = 2;
            }
            Some(r) if r.last() + r.step == offset => r.len += 1,
            _ => self.runs.push_back(Run {
                seq: end,
                first: offset,
                step: 1,
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
        r.first += r.step;
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
        assert_eq!(level.runs.len(), 3, "3..=5, 9..=10, 20");
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

    #[test]
    fn priorities_taking_turns_keep_one_run_each() {
        let mut level = Level::default();
        let offsets: Vec<u64> = (0..100).map(|i| 7 + 10 * i).collect();
        for &o in &offsets {
            level.push(o);
        }
        assert_eq!(level.runs.len(), 1);
        for (seq, &o) in offsets.iter().enumerate() {
            assert_eq!(level.offset_at(seq as u64), Offset(o));
            assert_eq!(level.seq_at_or_after(Offset(o)), seq as u64);
            assert_eq!(level.seq_at_or_after(Offset(o - 3)), seq as u64);
        }
        assert_eq!(level.seq_at_or_after(Offset(1000)), 100);
        level.pop_front();
        assert_eq!(level.front(), Some(17));
        assert_eq!(level.offset_at(1), Offset(17));
        level.push(1000);
        assert_eq!(level.runs.len(), 2, "a break in the pattern starts a run");
        assert_eq!(level.offset_at(100), Offset(1000));
        assert_eq!(level.seq_at_or_after(Offset(998)), 100);
    }
}
