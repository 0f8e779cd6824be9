//! [`Queue`]: what a producer's handles queued and its batcher has not taken yet.
//!
//! A `publish` costs one uncontended lock and a push: messages wait here in order, and the
//! batcher takes as many as fit a frame each time it is free, so the more a producer
//! queues while a batch is on its way, the larger the next batch (batching adapts to the
//! load without a timer).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use mq_core::{NewMessage, Offset};
use tokio::sync::{Notify, oneshot};

use crate::error::ClientError;

/// Where a `send` gets its offset.
pub(super) type OffsetTx = oneshot::Sender<Result<Offset, ClientError>>;
/// Where a queued batch gets its offsets.
pub(super) type OffsetsTx = oneshot::Sender<Result<Vec<Offset>, ClientError>>;

/// Who waits for the outcome of a run of queued messages, in queue order.
#[derive(Debug)]
pub(super) enum Waiter {
    /// One message of a `send`.
    One(OffsetTx),
    /// Messages queued by `publish` that nobody waits for; a run may be split over batches.
    Loose(usize),
    /// A batch, never split, and maybe who waits for its offsets.
    Batch(usize, Option<OffsetsTx>),
}

impl Waiter {
    fn len(&self) -> usize {
        match self {
            Waiter::One(_) => 1,
            Waiter::Loose(n) | Waiter::Batch(n, _) => *n,
        }
    }
}

/// An entry of the queue: messages with their waiter, or a flush.
#[derive(Debug)]
enum Entry {
    Messages(Waiter),
    Flush(oneshot::Sender<()>),
}

/// What the batcher took for one publish frame.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// The messages, in queue order.
    pub(super) messages: Vec<NewMessage>,
    /// Who waits for them, in the same order.
    pub(super) waiters: Vec<Waiter>,
    /// A flush queued right after them: answered once everything before it is settled.
    pub(super) flush: Option<oneshot::Sender<()>>,
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
    messages: VecDeque<NewMessage>,
    entries: VecDeque<Entry>,
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
        self.push(1, |state| {
            state.messages.push_back(message);
            match (waiter, state.entries.back_mut()) {
                (None, Some(Entry::Messages(Waiter::Loose(n)))) => *n += 1,
                (None, _) => state.entries.push_back(Entry::Messages(Waiter::Loose(1))),
                (Some(tx), _) => state.entries.push_back(Entry::Messages(Waiter::One(tx))),
            }
        })
        .await
    }

    /// Queues a batch (never split), waiting while the queue is full (a batch larger than
    /// the queue waits until the queue is empty); true when the batcher should be woken.
    pub(super) async fn push_batch(
        &self,
        messages: Vec<NewMessage>,
        waiter: Option<OffsetsTx>,
    ) -> bool {
        let n = messages.len();
        self.push(n, |state| {
            state.messages.extend(messages);
            state
                .entries
                .push_back(Entry::Messages(Waiter::Batch(n, waiter)));
        })
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

    /// Puts what [`Queue::take`] took back at the front, as it was (its sending could not
    /// start).
    pub(super) fn put_back(&self, taken: Taken) {
        let mut state = self.lock();
        if let Some(done) = taken.flush {
            state.entries.push_front(Entry::Flush(done));
        }
        for waiter in taken.waiters.into_iter().rev() {
            state.entries.push_front(Entry::Messages(waiter));
        }
        for message in taken.messages.into_iter().rev() {
            state.messages.push_front(message);
        }
    }

    /// Queues a flush: `done` is answered once everything queued before is settled.
    pub(super) fn push_flush(&self, done: oneshot::Sender<()>) {
        self.lock().entries.push_back(Entry::Flush(done));
        self.ready.notify_one();
    }

    async fn push(&self, n: usize, add: impl FnOnce(&mut State)) -> bool {
        let mut add = Some(add);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            {
                let mut state = self.lock();
                let queued = state.messages.len();
                if queued == 0 || queued + n <= self.capacity {
                    let was_empty = state.entries.is_empty();
                    if let Some(add) = add.take() {
                        add(&mut state);
                    }
                    return was_empty || state.messages.len() >= self.wake_at;
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
            || state.messages.len() >= limits.count
            || state.entries.iter().any(|e| matches!(e, Entry::Flush(_)))
    }

    /// Waits for a change worth a look while lingering.
    pub(super) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Takes the messages at the front of the queue for one frame within `limits` (a batch
    /// larger than the limits alone), and a flush right behind them.
    pub(super) fn take(&self, limits: Limits) -> Taken {
        let mut taken = Taken::default();
        let mut state = self.lock();
        let mut bytes = 0;
        while taken.messages.len() < limits.count && bytes < limits.bytes {
            let State {
                messages, entries, ..
            } = &mut *state;
            match entries.front_mut() {
                None => break,
                Some(Entry::Flush(_)) => {
                    if let Some(Entry::Flush(done)) = entries.pop_front() {
                        taken.flush = Some(done);
                    }
                    break;
                }
                Some(Entry::Messages(Waiter::Batch(n, _)))
                    if !taken.messages.is_empty() && taken.messages.len() + *n > limits.count =>
                {
                    break;
                }
                Some(Entry::Messages(Waiter::Loose(n))) => {
                    let mut k = 0;
                    while k < *n && taken.messages.len() < limits.count && bytes < limits.bytes {
                        let Some(m) = messages.pop_front() else { break };
                        bytes += m.payload.len();
                        taken.messages.push(m);
                        k += 1;
                    }
                    *n -= k;
                    if *n == 0 {
                        entries.pop_front();
                    }
                    if k > 0 {
                        taken.waiters.push(Waiter::Loose(k));
                    }
                }
                Some(Entry::Messages(_)) => {
                    let Some(Entry::Messages(waiter)) = entries.pop_front() else {
                        break;
                    };
                    for m in messages.drain(..waiter.len()) {
                        bytes += m.payload.len();
                        taken.messages.push(m);
                    }
                    taken.waiters.push(waiter);
                }
            }
        }
        if taken.flush.is_none()
            && matches!(state.entries.front(), Some(Entry::Flush(_)))
            && let Some(Entry::Flush(done)) = state.entries.pop_front()
        {
            taken.flush = Some(done);
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
}
