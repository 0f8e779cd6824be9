//! [`Queue`]: what a producer's handles queued and its batcher has not taken yet.
//!
//! A `publish` costs one uncontended lock and a push: messages wait here in order, and the
//! batcher takes as many as fit a frame each time it is free, so the more a producer
//! queues while a batch is on its way, the larger the next batch (batching adapts to the
//! load without a timer). A batch stays the vector it was queued as: taken alone, it
//! becomes the frame's messages without being copied.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mq_core::{NewMessage, Offset};
use tokio::sync::{Notify, oneshot};

use super::buffer;
use crate::error::ClientError;

/// Where a `send` gets its offset.
pub(super) type OffsetTx = oneshot::Sender<Result<Offset, ClientError>>;
/// Where a queued batch gets its offsets.
pub(super) type OffsetsTx = oneshot::Sender<Result<Vec<Offset>, ClientError>>;

/// Who waits for the outcome of a run of taken messages, in queue order.
#[derive(Debug)]
pub(super) enum Waiter {
    /// One message of a `send`.
    One(OffsetTx),
    /// Messages queued by `publish` that nobody waits for.
    Loose(usize),
    /// A batch, never split, and maybe who waits for its offsets.
    Batch(usize, Option<OffsetsTx>),
}

/// An entry of the queue.
#[derive(Debug)]
enum Entry {
    /// One message, and maybe who waits for its offset.
    One(NewMessage, Option<OffsetTx>),
    /// A batch (never split), and maybe who waits for its offsets.
    Batch(Vec<NewMessage>, Option<OffsetsTx>),
    /// A flush.
    Flush(oneshot::Sender<()>),
}

/// What the batcher took for one publish frame.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// The messages, in queue order.
    pub(super) messages: Vec<NewMessage>,
    /// Who waits for them, in the same order.
    pub(super) waiters: Vec<Waiter>,
    /// What they count for in the client's publish buffer.
    pub(super) bytes: usize,
    /// A flush queued right after them: answered once everything before it is settled.
    pub(super) flush: Option<oneshot::Sender<()>>,
}

impl Taken {
    /// Adds one message: loose ones next to each other share a waiter.
    fn add_one(&mut self, message: NewMessage, waiter: Option<OffsetTx>) {
        self.bytes += buffer::size_of(&message);
        self.messages.push(message);
        match (waiter, self.waiters.last_mut()) {
            (Some(tx), _) => self.waiters.push(Waiter::One(tx)),
            (None, Some(Waiter::Loose(n))) => *n += 1,
            (None, _) => self.waiters.push(Waiter::Loose(1)),
        }
    }

    /// Adds a whole batch: its vector becomes the messages when they are the first.
    fn add_batch(&mut self, messages: Vec<NewMessage>, waiter: Option<OffsetsTx>) {
        self.bytes += buffer::size_of_all(&messages);
        self.waiters.push(Waiter::Batch(messages.len(), waiter));
        if self.messages.is_empty() {
            self.messages = messages;
        } else {
            self.messages.extend(messages);
        }
    }
}

/// The queue shared by a producer's handles and its batcher.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// Wakes the batcher: the queue is no longer empty, a batch's worth or a flush is
    /// queued, or every handle is gone.
    ready: Notify,
    /// Wakes callers waiting for room.
    room: Notify,
    /// Messages queued before callers wait.
    capacity: usize,
    /// Queued messages that wake a lingering batcher (`usize::MAX` without linger).
    wake_at: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Messages and flushes, in order.
    entries: VecDeque<Entry>,
    /// Messages queued.
    queued: usize,
    /// Batches taken and not settled yet ([`Queue::settled`]).
    unsettled: usize,
    /// Every handle is gone: nothing more is queued.
    closed: bool,
}

/// Limits of one frame's batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Most messages.
    pub(super) count: usize,
    /// Payload bytes after which nothing more is added (a batch is never split).
    pub(super) bytes: usize,
}

impl Queue {
    /// An empty queue that makes callers wait beyond `capacity` messages and wakes a
    /// batcher that lingers once `wake_at` messages are queued.
    pub(super) fn new(capacity: usize, wake_at: Option<usize>) -> Self {
        Self {
            state: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
            wake_at: wake_at.unwrap_or(usize::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one message, waiting while the queue is full; true when the batcher should be
    /// woken for it ([`Queue::wake`]).
    pub(super) async fn push_one(&self, message: NewMessage, waiter: Option<OffsetTx>) -> bool {
        self.push(1, Entry::One(message, waiter)).await
    }

    /// Queues a batch (never split), waiting while the queue is full (a batch larger than
    /// the queue waits until the queue is empty); true when the batcher should be woken.
    pub(super) async fn push_batch(
        &self,
        messages: Vec<NewMessage>,
        waiter: Option<OffsetsTx>,
    ) -> bool {
        self.push(messages.len(), Entry::Batch(messages, waiter))
            .await
    }

    /// Wakes the batcher.
    pub(super) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Whether nothing is queued and every batch taken is settled: a flush now has nothing
    /// to wait for.
    pub(super) fn is_idle(&self) -> bool {
        let state = self.lock();
        state.entries.is_empty() && state.unsettled == 0
    }

    /// A batch [`Queue::take`] took has its outcome reported.
    pub(super) fn settled(&self) {
        let mut state = self.lock();
        state.unsettled = state.unsettled.saturating_sub(1);
    }

    /// Puts what [`Queue::take`] took back at the front, as it was (its sending could not
    /// start).
    pub(super) fn put_back(&self, taken: Taken) {
        let Taken {
            mut messages,
            waiters,
            flush,
            ..
        } = taken;
        let mut state = self.lock();
        if !messages.is_empty() {
            state.unsettled = state.unsettled.saturating_sub(1);
            state.queued += messages.len();
        }
        if let Some(done) = flush {
            state.entries.push_front(Entry::Flush(done));
        }
        for waiter in waiters.into_iter().rev() {
            match waiter {
                Waiter::One(tx) => {
                    if let Some(m) = messages.pop() {
                        state.entries.push_front(Entry::One(m, Some(tx)));
                    }
                }
                Waiter::Loose(n) => {
                    for _ in 0..n {
                        if let Some(m) = messages.pop() {
                            state.entries.push_front(Entry::One(m, None));
                        }
                    }
                }
                Waiter::Batch(n, tx) => {
                    let at = messages.len().saturating_sub(n);
                    let batch = if at == 0 {
                        std::mem::take(&mut messages)
                    } else {
                        messages.split_off(at)
                    };
                    state.entries.push_front(Entry::Batch(batch, tx));
                }
            }
        }
    }

    /// Queues a flush: `done` is answered once everything queued before is settled.
    pub(super) fn push_flush(&self, done: oneshot::Sender<()>) {
        self.lock().entries.push_back(Entry::Flush(done));
        self.ready.notify_one();
    }

    async fn push(&self, n: usize, entry: Entry) -> bool {
        let mut entry = Some(entry);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            {
                let mut state = self.lock();
                if state.queued == 0 || state.queued + n <= self.capacity {
                    let was_empty = state.entries.is_empty();
                    if let Some(entry) = entry.take() {
                        state.entries.push_back(entry);
                        state.queued += n;
                    }
                    return was_empty || state.queued >= self.wake_at;
                }
                room.as_mut().enable();
            }
            room.await;
        }
    }

    /// Every handle is gone: the batcher sends what is queued and ends.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Waits until something is queued; `None` once the queue is empty and closed.
    pub(super) async fn wait(&self) -> Option<()> {
        loop {
            {
                let state = self.lock();
                if !state.entries.is_empty() {
                    return Some(());
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Whether a batch within `limits` would be full now, or a flush is waiting.
    pub(super) fn full(&self, limits: Limits) -> bool {
        let state = self.lock();
        state.closed
            || state.queued >= limits.count
            || state.entries.iter().any(|e| matches!(e, Entry::Flush(_)))
    }

    /// Waits for a change worth a look while lingering.
    pub(super) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Takes the messages at the front of the queue for one frame within `limits` (a batch
    /// larger than the limits alone), and a flush right behind them. Messages taken are a
    /// batch unsettled until [`Queue::settled`] (or [`Queue::put_back`]).
    pub(super) fn take(&self, limits: Limits) -> Taken {
        let mut taken = Taken::default();
        let mut state = self.lock();
        let mut bytes = 0;
        while taken.messages.len() < limits.count && bytes < limits.bytes {
            let Some(entry) = state.entries.pop_front() else {
                break;
            };
            match entry {
                Entry::Flush(done) => {
                    taken.flush = Some(done);
                    break;
                }
                Entry::Batch(messages, waiter)
                    if !taken.messages.is_empty()
                        && taken.messages.len() + messages.len() > limits.count =>
                {
                    state.entries.push_front(Entry::Batch(messages, waiter));
                    break;
                }
                Entry::Batch(messages, waiter) => {
                    bytes += messages.iter().map(|m| m.payload.len()).sum::<usize>();
                    taken.add_batch(messages, waiter);
                }
                Entry::One(message, waiter) => {
                    if taken.messages.is_empty() {
                        taken.messages.reserve(state.queued.min(limits.count));
                    }
                    bytes += message.payload.len();
                    taken.add_one(message, waiter);
                }
            }
        }
        if taken.flush.is_none()
            && matches!(state.entries.front(), Some(Entry::Flush(_)))
            && let Some(Entry::Flush(done)) = state.entries.pop_front()
        {
            taken.flush = Some(done);
        }
        if !taken.messages.is_empty() {
            state.queued = state.queued.saturating_sub(taken.messages.len());
            state.unsettled += 1;
        }
        drop(state);
        if !taken.messages.is_empty() {
            self.room.notify_waiters();
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(taken: &Taken) -> Vec<String> {
        taken
            .messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }

    fn limits(count: usize) -> Limits {
        Limits {
            count,
            bytes: usize::MAX,
        }
    }

    #[tokio::test]
    async fn loose_messages_merge_and_split_while_batches_stay_whole() {
        let queue = Queue::new(100, None);
        for i in 0..3 {
            queue.push_one(NewMessage::new(format!("m{i}")), None).await;
        }
        queue
            .push_batch(vec![NewMessage::new("b0"), NewMessage::new("b1")], None)
            .await;
        let (tx, _rx) = oneshot::channel();
        queue.push_flush(tx);
        let first = queue.take(limits(2));
        assert_eq!(texts(&first), ["m0", "m1"]);
        assert!(matches!(first.waiters[..], [Waiter::Loose(2)]));
        let second = queue.take(limits(2));
        assert_eq!(
            texts(&second),
            ["m2"],
            "the batch of two does not fit behind m2"
        );
        let third = queue.take(limits(2));
        assert_eq!(texts(&third), ["b0", "b1"]);
        assert!(
            third.flush.is_some(),
            "the flush comes with what is before it"
        );
        assert!(queue.take(limits(2)).messages.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_until_the_batcher_takes() {
        let queue = std::sync::Arc::new(Queue::new(2, None));
        queue.push_one(NewMessage::new("a"), None).await;
        queue.push_one(NewMessage::new("b"), None).await;
        let pushing = {
            let queue = std::sync::Arc::clone(&queue);
            tokio::spawn(async move { queue.push_one(NewMessage::new("c"), None).await })
        };
        tokio::task::yield_now().await;
        assert!(!pushing.is_finished(), "no room for a third message");
        assert_eq!(texts(&queue.take(limits(10))), ["a", "b"]);
        pushing.await.unwrap();
        assert_eq!(texts(&queue.take(limits(10))), ["c"]);
        queue.close();
        assert!(queue.wait().await.is_none());
    }

    #[tokio::test]
    async fn the_queue_is_idle_once_what_was_taken_is_settled() {
        let queue = Queue::new(10, None);
        assert!(queue.is_idle());
        queue.push_one(NewMessage::new("a"), None).await;
        assert!(!queue.is_idle(), "a message is queued");
        let taken = queue.take(limits(10));
        assert!(!queue.is_idle(), "taken, not settled");
        queue.put_back(taken);
        assert!(!queue.is_idle(), "put back: queued again");
        let taken = queue.take(limits(10));
        assert_eq!(texts(&taken), ["a"]);
        queue.settled();
        assert!(queue.is_idle());
    }
}
