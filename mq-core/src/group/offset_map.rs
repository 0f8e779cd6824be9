//! [`OffsetMap`]: a hash map keyed by offsets that keeps neighbouring offsets in
//! neighbouring buckets.
//!
//! A group's deliveries in flight are mostly runs of consecutive offsets, delivered and
//! acked in about that order. A general-purpose hash scatters such a run over the whole
//! table, so that with thousands in flight nearly every insert and lookup misses the CPU's
//! caches (the work queue's profile showed most of `Group::ack` waiting on one load).
//! Here the table's bucket (a hash's low bits) is chosen per block of [`BLOCK`] offsets
//! and the offsets of a block take consecutive buckets from there: a run touches a few
//! cache lines per block instead of one per offset, while blocks stay scattered so that
//! no long clusters form. The top seven bits, which the table compares first within a
//! group of buckets, are mixed from the whole offset, so that neighbours differ there.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::message::Offset;

/// A hash map from offsets, cheap for runs of consecutive offsets.
pub(crate) type OffsetMap<V> = HashMap<Offset, V, BuildHasherDefault<OffsetHasher>>;

/// The hash of an [`Offset`]: its block's scattered position plus its place in the block,
/// with top bits mixed from the whole offset.
#[derive(Debug, Default)]
pub(crate) struct OffsetHasher(u64);

/// Offsets that share a block land side by side.
const BLOCK: u64 = 16;
/// The top seven bits of a hash: the tag the table compares first.
const TAG_BITS: u64 = 0x7F << 57;

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Offsets hash with `write_u64`; anything else is folded in eight bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(self.0.rotate_left(29) ^ u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let block = (n / BLOCK).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let tag = n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        self.0 = (block & !(BLOCK - 1) & !TAG_BITS) | (n % BLOCK) | (tag & TAG_BITS);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    fn hash(offset: u64) -> u64 {
        BuildHasherDefault::<OffsetHasher>::default().hash_one(Offset(offset))
    }

    #[test]
    fn a_block_takes_consecutive_buckets_and_blocks_scatter() {
        let bucket = |o: u64| hash(o) & !TAG_BITS;
        for o in 1024..1024 + BLOCK {
            assert_eq!(bucket(o), bucket(1024) + (o - 1024));
        }
        let starts: HashSet<u64> = (0..1000).map(|b| bucket(b * BLOCK) & 0xFFFF).collect();
        assert!(starts.len() > 900, "{} distinct block starts", starts.len());
        let tags: HashSet<u64> = (1024..1024 + BLOCK).map(|o| hash(o) >> 57).collect();
        assert!(
            tags.len() > BLOCK as usize / 2,
            "{} distinct tags",
            tags.len()
        );
    }

    #[test]
    fn works_as_a_map() {
        let mut map = OffsetMap::default();
        for o in (0..10_000u64).rev() {
            map.insert(Offset(o * 3), o);
        }
        assert!((0..10_000u64).all(|o| map.get(&Offset(o * 3)) == Some(&o)));
        assert!(!map.contains_key(&Offset(1)));
        for o in 0..5_000u64 {
            assert_eq!(map.remove(&Offset(o * 3)), Some(o));
        }
        assert_eq!(map.len(), 5_000);
    }
}
