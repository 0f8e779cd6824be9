//! [`Producer`]: publishes to one topic, batching what is queued and keeping a bounded
//! number of batches unacknowledged at once (pipelining).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mq_core::{NewMessage, Offset, ProducerStamp, TopicName};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::Client;
use crate::error::ClientError;

/// How a producer batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Most messages in one publish frame.
    pub batch_size: usize,
    /// Most payload bytes gathered into one publish frame from separate `send`/`publish`
    /// calls (a `send_batch`/`publish_batch` is never split: it is all or nothing).
    pub batch_bytes: usize,
    /// How long to wait for more messages before sending a batch that is not full (0: send
    /// what is queued at once).
    pub linger: Duration,
    /// Most batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// Messages queued before `send`/`publish` wait.
    pub queue: usize,
    /// Number the batches (the producer gets a random id) so that the server stores each
    /// once, however often it is sent: after a reconnect the batches not yet acknowledged
    /// are sent again. Needs a server speaking protocol version 2; without it batches are
    /// sent plain and one in flight when a connection is lost fails instead.
    pub idempotent: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_size: 512,
            batch_bytes: 256 * 1024,
            linger: Duration::ZERO,
            max_in_flight: 8,
            queue: 8192,
            idempotent: true,
        }
    }
}

enum Item {
    Message(
        NewMessage,
        Option<oneshot::Sender<Result<Offset, ClientError>>>,
    ),
    Batch(
        Vec<NewMessage>,
        Option<oneshot::Sender<Result<Vec<Offset>, ClientError>>>,
    ),
    Flush(oneshot::Sender<()>),
}

/// A batch queued by [`Producer::queue_batch`], waiting for its acknowledgement.
#[derive(Debug)]
pub struct QueuedBatch(oneshot::Receiver<Result<Vec<Offset>, ClientError>>);

impl QueuedBatch {
    /// Waits for the batch's offsets.
    ///
    /// # Errors
    /// [`ClientError::TopicFull`] when the topic refused it; connection errors.
    pub async fn offsets(self) -> Result<Vec<Offset>, ClientError> {
        self.0.await.map_err(|_| ClientError::closed())?
    }
}

/// Publishes to one topic. Cheap to clone; clones share the batching. Dropping every
/// handle still sends what was queued, in the background: call [`Producer::flush`] to
/// know it arrived (a failure nobody flushed for is logged as a warning).
///
/// ```no_run
/// # async fn example(client: mq_client::Client) -> Result<(), mq_client::ClientError> {
/// use mq_client::NewMessage;
/// let producer = client.producer(mq_core::TopicName::new("events")?);
/// let offset = producer.send(NewMessage::new("one").priority(3)).await?; // waits for the ack
/// for i in 0..1000 {
///     producer.publish(NewMessage::new(format!("event {i}"))).await?; // pipelined
/// }
/// producer.flush().await?; // every publish above is acknowledged, or the first error
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    topic: TopicName,
    tx: mpsc::Sender<Item>,
    /// The first error of a `publish` since the last `flush`.
    failed: Arc<Mutex<Option<ClientError>>>,
    /// Why this producer cannot publish at all (made outside a runtime).
    unusable: Option<ClientError>,
}

impl Producer {
    pub(crate) fn new(client: Client, topic: TopicName, config: ProducerConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let failed = Arc::new(Mutex::new(None));
        let unusable = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(batcher(
                    client,
                    topic.clone(),
                    config,
                    rx,
                    Arc::clone(&failed),
                ));
                None
            }
            // Nothing can batch for it: every call says why instead of a panic here.
            Err(_) => Some(ClientError::NoRuntime {
                what: "Client::producer",
            }),
        };
        Self {
            topic,
            tx,
            failed,
            unusable,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    fn closed(&self) -> ClientError {
        self.unusable.clone().unwrap_or_else(ClientError::closed)
    }

    /// Publishes one message and waits until the server acknowledges it.
    ///
    /// # Errors
    /// [`ClientError::TopicFull`] when the topic refuses it; connection errors.
    pub async fn send(&self, message: NewMessage) -> Result<Offset, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Item::Message(message, Some(tx)))
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Publishes a batch (all or nothing) and waits for its offsets.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Offset>, ClientError> {
        self.queue_batch(messages).await?.offsets().await
    }

    /// Queues a batch (all or nothing) and returns at once with a handle on its offsets:
    /// batches queued one after another are published in that order, and many can wait
    /// for their acknowledgements at the same time.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn queue_batch(&self, messages: Vec<NewMessage>) -> Result<QueuedBatch, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Item::Batch(messages, Some(tx)))
            .await
            .map_err(|_| self.closed())?;
        Ok(QueuedBatch(rx))
    }

    /// Queues a batch (all or nothing) without waiting for its acknowledgement, like
    /// [`Producer::publish`].
    ///
    /// # Errors
    /// An earlier publish's failure not yet reported; connection errors.
    pub async fn publish_batch(&self, messages: Vec<NewMessage>) -> Result<(), ClientError> {
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        self.tx
            .send(Item::Batch(messages, None))
            .await
            .map_err(|_| self.closed())
    }

    /// Queues a message without waiting for its acknowledgement; waits only when the queue
    /// is full. A failure is reported by the next [`Producer::flush`] (and by `publish`
    /// calls after it happened).
    ///
    /// # Errors
    /// An earlier publish's failure not yet reported; connection errors.
    pub async fn publish(&self, message: NewMessage) -> Result<(), ClientError> {
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        self.tx
            .send(Item::Message(message, None))
            .await
            .map_err(|_| self.closed())
    }

    /// Waits until everything queued so far is acknowledged.
    ///
    /// # Errors
    /// The first failure of a `publish` since the last flush.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Item::Flush(tx))
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?;
        match self.take_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn take_failure(&self) -> Option<ClientError> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Where each message of a batch reports its result.
enum Waiter {
    One(Option<oneshot::Sender<Result<Offset, ClientError>>>),
    Many(
        usize,
        Option<oneshot::Sender<Result<Vec<Offset>, ClientError>>>,
    ),
}

async fn batcher(
    client: Client,
    topic: TopicName,
    config: ProducerConfig,
    mut rx: mpsc::Receiver<Item>,
    failed: Arc<Mutex<Option<ClientError>>>,
) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let batch_bytes = config.batch_bytes.min(client.backend.batch_budget());
    let producer = config.idempotent.then(producer_id).flatten();
    let mut seq = 0u64;
    let mut next = None;
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => {
                    report_unflushed(&topic, &config, &in_flight, &failed).await;
                    return;
                }
            },
        };
        let mut batch = Gathered::default();
        batch.take(item);
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.flush.is_none()
            && batch.messages.len() < config.batch_size
            && batch.bytes < batch_bytes
        {
            let more = match rx.try_recv() {
                Ok(item) => Some(item),
                Err(_) if config.linger.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            match more {
                Some(Item::Batch(ms, w))
                    if !batch.messages.is_empty()
                        && batch.messages.len() + ms.len() > config.batch_size =>
                {
                    next = Some(Item::Batch(ms, w));
                    break;
                }
                Some(item) => batch.take(item),
                None => break,
            }
        }
        let Gathered {
            messages,
            waiters,
            flush,
            ..
        } = batch;
        if !messages.is_empty() {
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            let stamp = producer.map(|producer| ProducerStamp { producer, seq });
            seq += messages.len() as u64;
            let wait = client.start_publish(&topic, messages, stamp).await;
            let failed = Arc::clone(&failed);
            tokio::spawn(async move {
                let result = match wait {
                    Ok(wait) => wait.wait().await,
                    Err(e) => Err(e),
                };
                drop(permit);
                settle(result, waiters, &failed);
            });
        }
        if let Some(done) = flush {
            // Every permit free means every batch sent before this flush is settled.
            let all = u32::try_from(config.max_in_flight.max(1)).unwrap_or(u32::MAX);
            if let Ok(permits) = in_flight.acquire_many(all).await {
                drop(permits);
            }
            let _ = done.send(());
        }
    }
}

/// A random producer id (`None` when the OS has no randomness to give: batches are then
/// sent plain).
fn producer_id() -> Option<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Every handle of the producer is gone: what was queued has been sent; once it is
/// settled, a failure nobody will ask `flush` about is logged rather than lost silently.
async fn report_unflushed(
    topic: &TopicName,
    config: &ProducerConfig,
    in_flight: &Semaphore,
    failed: &Mutex<Option<ClientError>>,
) {
    let all = u32::try_from(config.max_in_flight.max(1)).unwrap_or(u32::MAX);
    if let Ok(permits) = in_flight.acquire_many(all).await {
        drop(permits);
    }
    if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
        tracing::warn!(%topic, error = %e, "a producer was dropped without flush, and publishing what it had queued failed");
    }
}

/// What the batcher gathered for one publish frame.
#[derive(Default)]
struct Gathered {
    messages: Vec<NewMessage>,
    bytes: usize,
    waiters: Vec<Waiter>,
    flush: Option<oneshot::Sender<()>>,
}

impl Gathered {
    fn take(&mut self, item: Item) {
        match item {
            Item::Message(m, w) => {
                self.bytes += m.payload.len();
                self.messages.push(m);
                self.waiters.push(Waiter::One(w));
            }
            Item::Batch(ms, w) => {
                self.bytes += ms.iter().map(|m| m.payload.len()).sum::<usize>();
                self.waiters.push(Waiter::Many(ms.len(), w));
                self.messages.extend(ms);
            }
            Item::Flush(w) => self.flush = Some(w),
        }
    }
}

fn settle(
    result: Result<mq_core::BatchReceipt, ClientError>,
    waiters: Vec<Waiter>,
    failed: &Mutex<Option<ClientError>>,
) {
    match result {
        Ok(receipt) => {
            let mut offsets = receipt.offsets();
            for w in waiters {
                match w {
                    Waiter::One(Some(tx)) => {
                        let offset = offsets.next().ok_or_else(ClientError::closed);
                        let _ = tx.send(offset);
                    }
                    Waiter::One(None) => {
                        offsets.next();
                    }
                    Waiter::Many(n, Some(tx)) => {
                        let _ = tx.send(Ok(offsets.by_ref().take(n).collect()));
                    }
                    Waiter::Many(n, None) => {
                        offsets.by_ref().take(n).for_each(drop);
                    }
                }
            }
        }
        Err(e) => {
            let mut unreported = false;
            for w in waiters {
                match w {
                    Waiter::One(Some(tx)) => {
                        let _ = tx.send(Err(e.clone()));
                    }
                    Waiter::Many(_, Some(tx)) => {
                        let _ = tx.send(Err(e.clone()));
                    }
                    Waiter::One(None) | Waiter::Many(_, None) => unreported = true,
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
}

#[cfg(test)]
mod tests {
    use mq_core::{Broker, NewMessage, TopicName};

    use crate::{Client, ClientError};

    #[test]
    fn a_producer_made_outside_a_runtime_says_so_instead_of_panicking() {
        let client = Client::embedded(Broker::new());
        let producer = client.producer(TopicName::new("t").unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sent = runtime.block_on(producer.send(NewMessage::new("x")));
        match sent {
            Err(e @ ClientError::NoRuntime { .. }) => {
                assert!(e.to_string().contains("outside a tokio runtime"), "{e}");
            }
            other => panic!("expected NoRuntime, got {other:?}"),
        }
    }
}
