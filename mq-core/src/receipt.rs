//! What the broker confirms for an append: [`Receipt`] for one message, [`BatchReceipt`]
//! for a batch.

use crate::message::Offset;
use crate::storage::Durability;

/// What the broker confirms for one appended message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The message's offset.
    pub offset: Offset,
    /// How durable it is now.
    pub durability: Durability,
}

/// What the broker confirms for an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchReceipt {
    /// Offset of the batch's first message; the others follow without gaps.
    pub first: Offset,
    /// Number of messages appended.
    pub count: u64,
    /// How durable the batch is now.
    pub durability: Durability,
}

impl BatchReceipt {
    /// The offsets of the batch's messages, in order.
    pub fn offsets(&self) -> impl Iterator<Item = Offset> + use<> {
        (self.first.get()..self.first.get() + self.count).map(Offset)
    }
}
