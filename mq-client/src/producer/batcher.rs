//! The batcher: the task that takes a producer's queued messages a frame at a time, sends
//! them with a bounded number of batches unacknowledged (pipelining), and reports each
//! batch's outcome to whoever waits for it.

use std::sync::{Arc, Mutex, PoisonError};

use mq_core::{BatchReceipt, ProducerStamp, TopicName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProducerConfig;
use super::queue::{Limits, Queue, Taken, Waiter};
use crate::client::Client;
use crate::error::ClientError;

/// Runs until every handle of the producer is gone and what they queued is sent.
pub(super) async fn run(
    client: Client,
    topic: TopicName,
    config: ProducerConfig,
    queue: Arc<Queue>,
    failed: Arc<Mutex<Option<ClientError>>>,
) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let limits = Limits {
        count: config.batch_size.max(1),
        bytes: config.batch_bytes.min(client.backend.batch_budget()),
    };
    let producer = config.idempotent.then(producer_id).flatten();
    let mut seq = 0u64;
    while queue.wait().await.is_some() {
        if !config.linger.is_zero() {
            linger(&queue, limits, config.linger).await;
        }
        // A free slot first: what is queued meanwhile joins this batch.
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let Taken {
            messages,
            waiters,
            flush,
        } = queue.take(limits);
        if messages.is_empty() {
            drop(permit);
        } else {
            let stamp = producer.map(|producer| ProducerStamp { producer, seq });
            seq += messages.len() as u64;
            let wait = client.start_publish(&topic, messages, stamp).await;
            let failed = Arc::clone(&failed);
            tokio::spawn(async move {
                let result = match wait {
                    Ok(wait) => wait.wait().await,
                    Err(e) => Err(e),
                };
                settle(result, waiters, &failed, permit);
            });
        }
        if let Some(done) = flush {
            settled(&in_flight, &config).await;
            let _ = done.send(());
        }
    }
    settled(&in_flight, &config).await;
    if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
        tracing::warn!(%topic, error = %e, "a producer was dropped without flush, and publishing what it had queued failed");
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

/// Reports a batch's outcome to its waiters, then frees its slot: a flush that sees every
/// slot free knows every earlier outcome is reported.
fn settle(
    result: Result<BatchReceipt, ClientError>,
    waiters: Vec<Waiter>,
    failed: &Mutex<Option<ClientError>>,
    permit: OwnedSemaphorePermit,
) {
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
                failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
            }
        }
    }
    drop(permit);
}
