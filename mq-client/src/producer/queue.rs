//! [`Queue`]: what a producer's handles queued and its batcher has not taken yet.
//!
//! A `publish` costs one uncontended lock and a push: messages wait here in order, and the
//! batcher takes as many as fit a frame each time it is free, so the more a producer
//! queues while a batch is on its way, the larger the next batch (batching adapts to the
//! load without a timer). Single messages wait in one queue, in order; a batch stays the
//! vector it was queued as: taken alone, it becomes the frame's messages without a copy.

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
    /// Messages queued by `publish` that nobody waits for; a run may be split over batches.
    Loose(usize),
    /// A batch, never split, and maybe who waits for its offsets.
    Batch(usize, Option<OffsetsTx>),
}

/// An entry of the queue.
#[derive(Debug)]
enum Entry {
    /// Single messages, at the front of the queue's messages: a `send`'s (`Waiter::One`)
    /// or a run of `publish`es (`Waiter::Loose`).
    Messages(Waiter),
    /// A batch (never split), maybe who waits for its offsets, and what it counts for in
    /// the client's publish buffer.
    Batch(Vec<NewMessage>, Option<OffsetsTx>, usize),
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
    /// The single messages of the `Messages` entries, in order.
    messages: VecDeque<NewMessage>,
    /// Entries and flushes, in order.
    entries: VecDeque<Entry>,
    /// Messages queued, single or in batches.
    queued: usize,
    /// Batches taken and not settled yet ([`Queue::settled`]).
    unsettled: usize,
    /// Every handle is gone: nothing more is queued.
    closed: bool,
}

impl State {
    /// Queues one message for `waiter` (a run of loose ones shares an entry).
    fn add_one(&mut self, message: NewMessage, waiter: Option<OffsetTx>) {
        self.messages.push_back(message);
        self.queued += 1;
        match (waiter, self.entries.back_mut()) {
            (None, Some(Entry::Messages(Waiter::Loose(n)))) => *n += 1,
            (None, _) => self.entries.push_back(Entry::Messages(Waiter::Loose(1))),
            (Some(tx), _) => self.entries.push_back(Entry::Messages(Waiter::One(tx))),
        }
    }

    /// Queues a batch that counts for `bytes` in the publish buffer.
    fn add_batch(&mut self, messages: Vec<NewMessage>, waiter: Option<OffsetsTx>, bytes: usize) {
        self.queued += messages.len();
        self.entries
            .push_back(Entry::Batch(messages, waiter, bytes));
    }
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
        self.push(1, |state| state.add_one(message, waiter)).await
    }

    /// Queues one message if the queue has room now (with [`Queue::push_one`]'s answer);
    /// else gives it back.
    pub(super) fn try_push_one(
        &self,
        message: NewMessage,
        waiter: Option<OffsetTx>,
    ) -> Result<bool, (NewMessage, Option<OffsetTx>)> {
        let mut state = self.lock();
        if !self.has_room(&state, 1) {
            return Err((message, waiter));
        }
        let was_empty = state.entries.is_empty();
        state.add_one(message, waiter);
        Ok(self.wakes(&state, was_empty))
    }

    /// Queues a batch (never split) that counts for `bytes` in the client's publish
    /// buffer, waiting while the queue is full (a batch larger than the queue waits until
    /// the queue is empty); true when the batcher should be woken.
    pub(super) async fn push_batch(
        &self,
        messages: Vec<NewMessage>,
        waiter: Option<OffsetsTx>,
        bytes: usize,
    ) -> bool {
        let n = messages.len();
        self.push(n, |state| state.add_batch(messages, waiter, bytes))
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
            let at = messages.len().saturating_sub(match &waiter {
                Waiter::One(_) => 1,
                Waiter::Loose(n) | Waiter::Batch(n, _) => *n,
            });
            match waiter {
                Waiter::Batch(_, tx) => {
                    let batch = if at == 0 {
                        std::mem::take(&mut messages)
                    } else {
                        messages.split_off(at)
                    };
                    let bytes = buffer::size_of_all(&batch);
                    state.entries.push_front(Entry::Batch(batch, tx, bytes));
                }
                single => {
                    for m in messages.drain(at..).rev() {
                        state.messages.push_front(m);
                    }
                    state.entries.push_front(Entry::Messages(single));
                }
            }
        }
    }

    /// Queues a flush: `done` is answered once everything queued before is settled.
    pub(super) fn push_flush(&self, done: oneshot::Sender<()>) {
        self.lock().entries.push_back(Entry::Flush(done));
        self.ready.notify_one();
    }

    /// Whether `n` more messages fit (anything fits an empty queue).
    fn has_room(&self, state: &State, n: usize) -> bool {
        state.queued == 0 || state.queued + n <= self.capacity
    }

    /// Whether the batcher should be woken after an addition to a queue that was empty
    /// or not.
    fn wakes(&self, state: &State, was_empty: bool) -> bool {
        was_empty || state.queued >= self.wake_at
    }

    async fn push(&self, n: usize, add: impl FnOnce(&mut State)) -> bool {
        let mut add = Some(add);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            {
                let mut state = self.lock();
                if self.has_room(&state, n) {
                    let was_empty = state.entries.is_empty();
                    if let Some(add) = add.take() {
                        add(&mut state);
                    }
                    return self.wakes(&state, was_empty);
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
                Some(Entry::Batch(batch, ..))
                    if !taken.messages.is_empty()
                        && taken.messages.len() + batch.len() > limits.count =>
                {
                    break;
                }
                Some(Entry::Messages(Waiter::Loose(n))) => {
                    if taken.messages.is_empty() {
                        taken.messages.reserve((*n).min(limits.count));
                    }
                    let mut k = 0;
                    while k < *n && taken.messages.len() < limits.count && bytes < limits.bytes {
                        let Some(m) = messages.pop_front() else { break };
                        bytes += m.payload.len();
                        taken.bytes += buffer::size_of(&m);
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
                Some(_) => match entries.pop_front() {
                    Some(Entry::Batch(batch, tx, size)) => {
                        bytes += batch.iter().map(|m| m.payload.len()).sum::<usize>();
                        taken.bytes += size;
                        taken.waiters.push(Waiter::Batch(batch.len(), tx));
                        if taken.messages.is_empty() {
                            taken.messages = batch;
                        } else {
                            taken.messages.extend(batch);
                        }
                    }
                    Some(Entry::Messages(waiter)) => {
                        if let Some(m) = messages.pop_front() {
                            bytes += m.payload.len();
                            taken.bytes += buffer::size_of(&m);
                            taken.messages.push(m);
                        }
                        taken.waiters.push(waiter);
                    }
                    _ => break,
                },
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
            .push_batch(vec![NewMessage::new("b0"), NewMessage::new("b1")], None, 0)
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

    #[tokio::test]
    async fn what_is_put_back_is_taken_again_as_it_was() {
        let queue = Queue::new(100, None);
        queue.push_one(NewMessage::new("a"), None).await;
        let (tx, _rx) = oneshot::channel();
        queue.push_one(NewMessage::new("b"), Some(tx)).await;
        queue
            .push_batch(vec![NewMessage::new("c"), NewMessage::new("d")], None, 0)
            .await;
        queue.push_one(NewMessage::new("e"), None).await;
        let taken = queue.take(limits(10));
        assert_eq!(texts(&taken), ["a", "b", "c", "d", "e"]);
        let shape = |t: &Taken| {
            t.waiters
                .iter()
                .map(|w| match w {
                    Waiter::One(_) => "one".to_owned(),
                    Waiter::Loose(n) => format!("loose {n}"),
                    Waiter::Batch(n, _) => format!("batch {n}"),
                })
                .collect::<Vec<_>>()
        };
        let before = shape(&taken);
        queue.put_back(taken);
        let again = queue.take(limits(10));
        assert_eq!(texts(&again), ["a", "b", "c", "d", "e"]);
        assert_eq!(shape(&again), before);
        assert!(queue.take(limits(10)).messages.is_empty());
    }
}
