//! [`AckSet`]: which offsets one group is done with, as an ack floor plus a bitmap above it.

use std::collections::VecDeque;

use crate::message::Offset;

/// The offsets a group has finished with (acked, auto-acked or dead-lettered).
///
/// # Invariants
/// - every offset below `floor` is done; `floor` itself is not;
/// - `base` is a multiple of 64 with `base <= floor < base + 64` whenever `words` is not
///   empty; bit `i` of `words[w]` stands for offset `base + 64 * w + i`.
///
/// Acks arrive mostly in order, so the bitmap stays a few words long and every operation is
/// O(1) amortised.
#[derive(Debug, Clone)]
pub(crate) struct AckSet {
    floor: u64,
    base: u64,
    words: VecDeque<u64>,
}

impl AckSet {
    /// A set in which exactly the offsets below `floor` are done.
    pub(crate) fn new(floor: Offset) -> Self {
        let floor = floor.get();
        Self {
            floor,
            base: floor & !63,
            words: VecDeque::new(),
        }
    }

    /// The lowest offset not yet done.
    pub(crate) fn floor(&self) -> Offset {
        Offset(self.floor)
    }

    /// Whether `offset` is done.
    pub(crate) fn contains(&self, offset: Offset) -> bool {
        let offset = offset.get();
        if offset < self.floor {
            return true;
        }
        let idx = offset - self.base;
        let word = usize::try_from(idx / 64).unwrap_or(usize::MAX);
        self.words
            .get(word)
            .is_some_and(|w| w & (1 << (idx % 64)) != 0)
    }

    /// Marks `offset` done; returns whether it was not done before.
    pub(crate) fn insert(&mut self, offset: Offset) -> bool {
        if self.contains(offset) {
            return false;
        }
        let offset = offset.get();
        let idx = offset - self.base;
        let word = usize::try_from(idx / 64).unwrap_or(usize::MAX);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (idx % 64);
        if offset == self.floor {
            self.advance();
        }
        true
    }

    /// Marks every offset below `floor` done (messages removed from the log).
    pub(crate) fn raise_floor(&mut self, floor: Offset) {
        let floor = floor.get();
        if floor <= self.floor {
            return;
        }
        while self.base + 64 <= floor && !self.words.is_empty() {
            self.words.pop_front();
            self.base += 64;
        }
        self.floor = floor;
        if self.words.is_empty() {
            self.base = floor & !63;
        }
        self.advance();
    }

    /// The done offsets above the floor, in increasing order.
    pub(crate) fn above_floor(&self) -> impl Iterator<Item = Offset> + '_ {
        self.words.iter().enumerate().flat_map(move |(w, &bits)| {
            let base = self.base + 64 * w as u64;
            (0..64u64)
                .filter(move |i| bits & (1 << i) != 0)
                .map(move |i| base + i)
                .filter(move |&o| o >= self.floor)
                .map(Offset)
        })
    }

    fn advance(&mut self) {
        while let Some(&word) = self.words.front() {
            let shift = self.floor - self.base;
            self.floor += u64::from((word >> shift).trailing_ones());
            if self.floor - self.base < 64 {
                return;
            }
            self.words.pop_front();
            self.base += 64;
        }
        self.base = self.floor & !63;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_acks_advance_the_floor() {
        let mut s = AckSet::new(Offset(0));
        for o in 0..200 {
            assert!(s.insert(Offset(o)));
            assert_eq!(s.floor(), Offset(o + 1));
        }
        assert!(!s.insert(Offset(5)));
    }

    #[test]
    fn acks_above_a_gap_hold_the_floor_until_the_gap_fills() {
        let mut s = AckSet::new(Offset(10));
        s.insert(Offset(12));
        s.insert(Offset(11));
        assert_eq!(s.floor(), Offset(10));
        assert!(s.contains(Offset(12)) && !s.contains(Offset(10)));
        s.insert(Offset(10));
        assert_eq!(s.floor(), Offset(13));
    }

    #[test]
    fn raise_floor_skips_removed_offsets() {
        let mut s = AckSet::new(Offset(0));
        s.insert(Offset(130));
        s.raise_floor(Offset(130));
        assert_eq!(s.floor(), Offset(131));
    }

    proptest! {
        #[test]
        fn ackset_matches_a_plain_set(ops in proptest::collection::vec((0u64..300, any::<bool>()), 0..400)) {
            let mut s = AckSet::new(Offset(0));
            let mut model = std::collections::BTreeSet::new();
            let mut raised = 0;
            for (o, raise) in ops {
                if raise {
                    s.raise_floor(Offset(o));
                    raised = raised.max(o);
                } else {
                    s.insert(Offset(o));
                    model.insert(o);
                }
                let mut floor = raised;
                while model.contains(&floor) { floor += 1; }
                prop_assert_eq!(s.floor(), Offset(floor));
                for p in 0..310 {
                    prop_assert_eq!(s.contains(Offset(p)), p < raised || model.contains(&p));
                }
                let above: Vec<u64> = s.above_floor().map(Offset::get).collect();
                let want: Vec<u64> = model.iter().copied().filter(|&o| o > floor).collect();
                prop_assert_eq!(above, want);
            }
        }
    }
}
