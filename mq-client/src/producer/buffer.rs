//! [`PublishBuffer`]: the bytes a client's producers hold, queued or on their way and not
//! yet acknowledged, all producers of the client together. A publish that would take it
//! past its limit waits until acknowledgements free enough: a program that publishes to
//! many topics at once holds a bounded amount of memory (and reuses it) instead of queueing
//! everything it produces.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use mq_core::NewMessage;
use tokio::sync::Notify;

/// What a message is counted for besides its bytes (what holding it costs the client).
const PER_MESSAGE: usize = 64;

/// The bytes a message counts for in the buffer.
pub(crate) fn size_of(message: &NewMessage) -> usize {
    let key = message.key.as_ref().map_or(0, |k| k.len());
    let headers: usize = message
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len())
        .sum();
    PER_MESSAGE + message.payload.len() + key + headers
}

/// Bytes taken from a [`PublishBuffer`] for messages about to be queued: given back if
/// they never are (the publish was cancelled while it waited to queue them).
#[derive(Debug)]
pub(crate) struct Held<'a> {
    buffer: &'a PublishBuffer,
    bytes: usize,
}

impl Held<'_> {
    /// The messages are queued: their bytes go back once they are settled
    /// ([`PublishBuffer::give_back`]).
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.buffer.give_back(self.bytes);
    }
}

/// The bytes messages count for in the buffer, together.
pub(crate) fn size_of_all(messages: &[NewMessage]) -> usize {
    messages.iter().map(size_of).sum()
}

/// A client's publish buffer (see the module docs). Shared by its producers.
#[derive(Debug)]
pub(crate) struct PublishBuffer {
    /// Bytes held now.
    used: AtomicUsize,
    /// Bytes held before publishes wait.
    limit: usize,
    /// Wakes publishes waiting for room.
    room: Notify,
}

impl PublishBuffer {
    /// An empty buffer of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Notify::new(),
        }
    }

    /// Takes `bytes` if they fit (anything fits an empty buffer, so that a batch larger
    /// than the whole buffer goes once everything before it is acknowledged).
    fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used != 0 && used.saturating_add(bytes) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Takes `bytes` if they fit now.
    pub(crate) fn try_hold(&self, bytes: usize) -> Option<Held<'_>> {
        // Not `then_some`: a `Held` made and dropped would give back what was never taken.
        self.try_take(bytes).then(|| Held {
            buffer: self,
            bytes,
        })
    }

    /// Takes `bytes`, waiting while the buffer has no room for them. They go back when
    /// the [`Held`] is dropped, unless it is [kept](Held::keep) for messages queued.
    pub(crate) async fn take(&self, bytes: usize) -> Held<'_> {
        if !self.try_take(bytes) {
            loop {
                let mut room = pin!(self.room.notified());
                room.as_mut().enable();
                if self.try_take(bytes) {
                    break;
                }
                room.await;
            }
        }
        Held {
            buffer: self,
            bytes,
        }
    }

    /// Gives back `bytes` taken before (their messages are settled).
    pub(crate) fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_full_buffer_makes_publishes_wait_until_bytes_are_given_back() {
        let buffer = Arc::new(PublishBuffer::new(100));
        buffer.take(60).await.keep();
        let waiting = {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(async move { buffer.take(60).await.keep() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "60 + 60 is past the limit of 100");
        buffer.give_back(60);
        waiting.await.unwrap();
        assert_eq!(buffer.used(), 60);
    }

    #[tokio::test]
    async fn more_than_the_whole_buffer_goes_once_it_is_empty() {
        let buffer = Arc::new(PublishBuffer::new(100));
        buffer.take(500).await.keep();
        assert_eq!(buffer.used(), 500);
        assert!(!buffer.try_take(1));
        buffer.give_back(500);
        assert!(buffer.try_take(1));
    }

    #[test]
    fn a_hold_that_does_not_fit_takes_and_gives_back_nothing() {
        let buffer = PublishBuffer::new(100);
        let held = buffer.try_hold(80).expect("fits an empty buffer");
        assert!(buffer.try_hold(80).is_none());
        assert_eq!(buffer.used(), 80);
        held.keep();
        assert_eq!(buffer.used(), 80);
    }

    #[tokio::test]
    async fn bytes_of_a_publish_cancelled_before_it_queued_go_back() {
        let buffer = Arc::new(PublishBuffer::new(100));
        let held = buffer.take(40).await;
        assert_eq!(buffer.used(), 40);
        drop(held);
        assert_eq!(buffer.used(), 0);
    }

    #[test]
    fn a_message_counts_its_bytes_and_a_fixed_cost() {
        let message = NewMessage::new(vec![0u8; 100]).key("k");
        assert_eq!(size_of(&message), PER_MESSAGE + 101);
    }
}
