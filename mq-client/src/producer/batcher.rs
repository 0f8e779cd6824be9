//! Sending a producer's batches: [`Sender`] takes what is queued a frame at a time and
//! sends it with a bounded number of batches unacknowledged (pipelining), then reports each
//! batch's outcome to whoever waits for it. Its batcher task ([`Sender::run`]) does this
//! whenever something is queued; a caller that finds the producer idle — no batch on its
//! way, nobody taking one, the connection with room — sends its batch itself, at once
//! ([`Sender::send_now`]), so that no task has to be woken to carry it. While a batch is on
//! its way, what is queued waits for the batcher, so that batches grow with the load. A
//! batch's outcome is settled ([`Settlement`]) by the connection's reader as it reads the
//! reply: no task waits for it.

use std::sync::Arc;

use mq_core::{BatchReceipt, ProducerStamp, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProducerConfig;
use super::buffer::PublishBuffer;
use super::failure::Failure;
use super::queue::{Limits, Queue, Taken, Waiter};
use crate::backend::OnPublished;
use crate::client::Client;
use crate::error::ClientError;

/// What sends one producer's batches, shared by its batcher task and its handles.
pub(super) struct Sender {
    client: Client,
    topic: TopicName,
    config: ProducerConfig,
    limits: Limits,
    /// The producer's id, when its batches are numbered.
    producer: Option<u64>,
    queue: Arc<Queue>,
    in_flight: Arc<Semaphore>,
    failed: Arc<Failure>,
    /// Held by whoever takes a batch from the queue and starts it, so that batches start
    /// in queue order; holds the number of the next batch's first message.
    turn: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender of what `queue` holds, on `runtime`.
    pub(super) fn new(
        client: Client,
        topic: TopicName,
        config: ProducerConfig,
        queue: Arc<Queue>,
        failed: Arc<Failure>,
    ) -> Arc<Self> {
        let limits = Limits {
            count: config.batch_size.max(1),
            bytes: config.batch_bytes.min(client.backend.batch_budget()),
        };
        Arc::new(Self {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            producer: config.idempotent.then(producer_id).flatten(),
            client,
            topic,
            config,
            limits,
            queue,
            failed,
            turn: tokio::sync::Mutex::new(0),
        })
    }

    /// The batcher task: runs until every handle of the producer is gone and what they
    /// queued is sent.
    pub(super) async fn run(self: Arc<Self>) {
        while self.queue.wait().await.is_some() {
            if !self.config.linger.is_zero() {
                linger(&self.queue, self.limits, self.config.linger).await;
            }
            // A free slot first: what is queued meanwhile joins this batch.
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                return;
            };
            let mut seq = self.turn.lock().await;
            let Taken {
                messages,
                waiters,
                flush,
                bytes,
            } = self.queue.take(self.limits);
            if messages.is_empty() {
                drop(permit);
            } else {
                let stamp = self.stamp(*seq);
                *seq += messages.len() as u64;
                let settlement = self.settlement(waiters, bytes, permit);
                self.client
                    .backend
                    .publish_with(&self.topic, messages, stamp, settlement)
                    .await;
            }
            drop(seq);
            if let Some(done) = flush {
                settled(&self.in_flight, &self.config).await;
                let _ = done.send(());
            }
        }
        settled(&self.in_flight, &self.config).await;
        if let Some(e) = self.failed.take() {
            let topic = &self.topic;
            tracing::warn!(%topic, error = %e, "a producer was dropped without flush, and publishing what it had queued failed");
        }
    }

    /// Sends what is queued from the caller, now, when the producer is idle (see the module
    /// docs); true when nothing is left queued for the batcher.
    pub(super) fn send_now(&self) -> bool {
        if !self.config.linger.is_zero() || !self.client.backend.starts_without_waiting() {
            return false;
        }
        // Idle means no batch on its way: while one is, what is queued waits to be batched.
        if self.in_flight.available_permits() < self.config.max_in_flight.max(1) {
            return false;
        }
        let Ok(mut seq) = self.turn.try_lock() else {
            return false;
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return false;
        };
        let taken = self.queue.take(self.limits);
        if taken.flush.is_some() || taken.messages.is_empty() {
            // A flush is the batcher's to answer.
            self.queue.put_back(taken);
            return false;
        }
        let Taken {
            messages,
            waiters,
            flush,
            bytes,
        } = taken;
        let count = messages.len() as u64;
        let settlement = self.settlement(waiters, bytes, permit);
        let stamp = self.stamp(*seq);
        if let Err((messages, settlement)) =
            self.client
                .backend
                .try_publish_with(&self.topic, messages, stamp, settlement)
        {
            let Settlement { waiters, bytes, .. } = settlement;
            self.queue.put_back(Taken {
                messages,
                waiters,
                flush,
                bytes,
            });
            return false;
        }
        *seq += count;
        drop(seq);
        self.queue.is_empty()
    }

    fn stamp(&self, seq: u64) -> Option<ProducerStamp> {
        self.producer
            .map(|producer| ProducerStamp { producer, seq })
    }

    /// What settles a batch of `bytes` whose outcome `waiters` wait for, sent in the slot
    /// `permit` holds.
    fn settlement(
        &self,
        waiters: Vec<Waiter>,
        bytes: usize,
        permit: OwnedSemaphorePermit,
    ) -> Settlement {
        Settlement {
            waiters,
            bytes,
            permit,
            failed: Arc::clone(&self.failed),
            queue: Arc::clone(&self.queue),
            buffer: Arc::clone(&self.client.publish_buffer),
        }
    }
}

/// What a batch on its way leaves to settle once its outcome is known: its waiters to
/// report to, its bytes to give back to the client's publish buffer, its slot to free.
pub(super) struct Settlement {
    waiters: Vec<Waiter>,
    bytes: usize,
    permit: OwnedSemaphorePermit,
    failed: Arc<Failure>,
    queue: Arc<Queue>,
    buffer: Arc<PublishBuffer>,
}

impl OnPublished for Settlement {
    fn published(self, outcome: Result<BatchReceipt, ClientError>) {
        settle(outcome, self.waiters, &self.failed);
        self.queue.settled();
        self.buffer.give_back(self.bytes);
        drop(self.permit);
    }
}

/// Waits up to `linger` for a frame's worth of messages (or a flush) before a batch that
/// is not full is sent.
async fn linger(queue: &Queue, limits: Limits, linger: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + linger;
    while !queue.full(limits) {
        if tokio::time::timeout_at(deadline, queue.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Waits until every batch sent so far is settled (every permit is free).
async fn settled(in_flight: &Semaphore, config: &ProducerConfig) {
    let all = u32::try_from(config.max_in_flight.max(1)).unwrap_or(u32::MAX);
    if let Ok(permits) = in_flight.acquire_many(all).await {
        drop(permits);
    }
}

/// A random producer id (`None` when the OS has no randomness to give: batches are then
/// sent plain).
fn producer_id() -> Option<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Reports a batch's outcome to its waiters (its caller then frees its slot: a flush that
/// sees every slot free knows every earlier outcome is reported).
fn settle(result: Result<BatchReceipt, ClientError>, waiters: Vec<Waiter>, failed: &Failure) {
    match result {
        Ok(receipt) => {
            let mut offsets = receipt.offsets();
            for w in waiters {
                match w {
                    Waiter::One(tx) => {
                        let offset = offsets.next().ok_or_else(ClientError::closed);
                        let _ = tx.send(offset);
                    }
                    Waiter::Loose(n) | Waiter::Batch(n, None) => {
                        offsets.by_ref().take(n).for_each(drop);
                    }
                    Waiter::Batch(n, Some(tx)) => {
                        let _ = tx.send(Ok(offsets.by_ref().take(n).collect()));
                    }
                }
            }
        }
        Err(e) => {
            let mut unreported = false;
            for w in waiters {
                match w {
                    Waiter::One(tx) => {
                        let _ = tx.send(Err(e.clone()));
                    }
                    Waiter::Batch(_, Some(tx)) => {
                        let _ = tx.send(Err(e.clone()));
                    }
                    Waiter::Loose(_) | Waiter::Batch(_, None) => unreported = true,
                }
            }
            if unreported {
                failed.keep(e);
            }
        }
    }
}
