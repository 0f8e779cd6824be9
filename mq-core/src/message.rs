//! Messages: what a producer hands in ([`NewMessage`]) and what the log stores and delivers
//! ([`Message`]).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// The position of a message in its topic's log: assigned by the broker, strictly
/// increasing per topic, never reused.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset as a plain number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The offset after this one.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One header: a string name and a bytes value. Headers keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The header's name.
    pub name: String,
    /// The header's value.
    pub value: Bytes,
}

impl Header {
    /// A header `name: value`.
    pub fn new(name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A message as a producer sends it, before the broker gives it an offset and a timestamp.
///
/// ```
/// use mq_core::NewMessage;
/// let msg = NewMessage::new("hello").priority(5).key("user-1").header("trace", "abc");
/// assert_eq!(msg.priority, 5);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// Delivery priority: higher is delivered first. Default 0.
    pub priority: u8,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Ordered headers.
    pub headers: Vec<Header>,
    /// The payload; may be empty.
    pub payload: Bytes,
}

impl NewMessage {
    /// A message with this payload, priority 0, no key and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Bytes this message counts against a topic's `max_bytes` and the memory budget: its
    /// stored record's size — payload, key, headers with their lengths, and
    /// [`RECORD_OVERHEAD`] — so that empty messages count too.
    pub fn size(&self) -> u64 {
        self.encoded_size() + RECORD_OVERHEAD
    }

    /// The size a message limit is checked against: payload, key and header bytes plus
    /// [`HEADER_FRAMING`] per header. Everything else a frame or record adds per message is
    /// fixed, so a broker that knows this size knows whether the message fits a frame.
    pub fn encoded_size(&self) -> u64 {
        encoded_size(&self.payload, self.key.as_ref(), &self.headers)
    }
}

/// Bytes a stored record adds to a message's [`Message::encoded_size`]: its length and
/// checksum (8), offset (8), timestamp (8), priority (1), and the lengths of key (4), header
/// count (2) and payload (4).
pub const RECORD_OVERHEAD: u64 = 8 + 8 + 8 + 1 + 4 + 2 + 4;

/// Bytes that frame each header in a message's encoded size: the lengths of its name (2)
/// and of its value (4).
pub const HEADER_FRAMING: u64 = 6;

/// What [`Message::encoded_size`] and [`NewMessage::encoded_size`] count.
fn encoded_size(payload: &Bytes, key: Option<&Bytes>, headers: &[Header]) -> u64 {
    content_size(payload, key, headers) + HEADER_FRAMING * headers.len() as u64
}

fn content_size(payload: &Bytes, key: Option<&Bytes>, headers: &[Header]) -> u64 {
    let headers: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    (payload.len() + key.map_or(0, Bytes::len) + headers) as u64
}

/// A message in a topic's log. Stored once and shared (behind an `Arc`) by every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its offset in the topic.
    pub offset: Offset,
    /// When the broker appended it.
    pub timestamp: Timestamp,
    /// Delivery priority: higher is delivered first.
    pub priority: u8,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Ordered headers.
    pub headers: Vec<Header>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// Stamps a producer's message with its offset and timestamp.
    pub fn from_new(offset: Offset, timestamp: Timestamp, new: NewMessage) -> Self {
        Self {
            offset,
            timestamp,
            priority: new.priority,
            key: new.key,
            headers: new.headers,
            payload: new.payload,
        }
    }

    /// Bytes this message counts against a topic's `max_bytes` and the memory budget: its
    /// stored record's size — payload, key, headers with their lengths, and
    /// [`RECORD_OVERHEAD`] — so that empty messages count too.
    pub fn size(&self) -> u64 {
        self.encoded_size() + RECORD_OVERHEAD
    }

    /// The size a message limit is checked against: payload, key and header bytes plus
    /// [`HEADER_FRAMING`] per header. Everything else a frame or record adds per message is
    /// fixed, so a broker that knows this size knows whether the message fits a frame.
    pub fn encoded_size(&self) -> u64 {
        encoded_size(&self.payload, self.key.as_ref(), &self.headers)
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_size_counts_the_whole_record() {
        let m = NewMessage::new("12345").key("ab").header("h", "xyz");
        assert_eq!(m.size(), 5 + 2 + 1 + 3 + HEADER_FRAMING + RECORD_OVERHEAD);
        assert_eq!(
            NewMessage::new("").size(),
            RECORD_OVERHEAD,
            "an empty message counts"
        );
        let stored = Message::from_new(Offset(3), Timestamp::from_millis(9), m);
        assert_eq!(stored.size(), 11 + HEADER_FRAMING + RECORD_OVERHEAD);
        assert_eq!(stored.header("h").map(|v| &v[..]), Some(&b"xyz"[..]));
    }
}
