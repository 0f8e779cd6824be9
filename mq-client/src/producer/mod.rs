//! [`Producer`]: publishes to one topic, batching what is queued and keeping a bounded
//! number of batches unacknowledged at once (pipelining). A call that finds the producer
//! idle sends its message at once, from the caller.

mod batcher;
mod buffer;
mod failure;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use mq_core::{NewMessage, Offset, TopicName};
use tokio::sync::oneshot;

use crate::client::Client;
use crate::error::ClientError;
use batcher::Sender;
pub(crate) use buffer::PublishBuffer;
use failure::Failure;
use queue::{OffsetTx, OffsetsTx, Queue};

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
    queue: Arc<Queue>,
    /// Closes the queue when the last handle is dropped.
    _handles: Arc<Handles>,
    /// The first error of a `publish` since the last `flush`.
    failed: Arc<Failure>,
    /// Sends its batches; `None` when it cannot publish at all.
    sender: Option<Arc<Sender>>,
    /// Why this producer cannot publish at all (made outside a runtime).
    unusable: Option<ClientError>,
    /// The client's publish buffer, shared with its other producers.
    buffer: Arc<PublishBuffer>,
}

/// Shared by a producer's handles: the last one dropped closes the queue, and the batcher
/// then sends what is queued and ends.
#[derive(Debug)]
struct Handles(Arc<Queue>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Producer {
    pub(crate) fn new(client: Client, topic: TopicName, config: ProducerConfig) -> Self {
        let wake_at = (!config.linger.is_zero()).then_some(config.batch_size.max(1));
        let queue = Arc::new(Queue::new(config.queue, wake_at));
        let failed = Arc::new(Failure::default());
        let buffer = Arc::clone(&client.publish_buffer);
        let (sender, unusable) = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let sender = Sender::new(
                    client,
                    topic.clone(),
                    config,
                    Arc::clone(&queue),
                    Arc::clone(&failed),
                );
                runtime.spawn(Arc::clone(&sender).run());
                (Some(sender), None)
            }
            // Nothing can batch for it: every call says why instead of a panic here.
            Err(_) => (
                None,
                Some(ClientError::NoRuntime {
                    what: "Client::producer",
                }),
            ),
        };
        Self {
            topic,
            _handles: Arc::new(Handles(Arc::clone(&queue))),
            queue,
            failed,
            sender,
            unusable,
            buffer,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    fn usable(&self) -> Result<(), ClientError> {
        match &self.unusable {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Publishes one message and waits until the server acknowledges it (a round trip per
    /// call: to publish many, use [`Producer::publish`] and [`Producer::flush`]).
    ///
    /// # Errors
    /// [`ClientError::TopicFull`] when the topic refuses it; connection errors.
    pub async fn send(&self, message: NewMessage) -> Result<Offset, ClientError> {
        self.usable()?;
        let (tx, rx) = oneshot::channel();
        let wake = self.queue_one(message, Some(tx)).await;
        self.start(wake);
        rx.await.map_err(|_| ClientError::closed())?
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
        self.usable()?;
        let (tx, rx) = oneshot::channel();
        let wake = self.queue_many(messages, Some(tx)).await;
        self.start(wake);
        Ok(QueuedBatch(rx))
    }

    /// Queues a batch (all or nothing) without waiting for its acknowledgement, like
    /// [`Producer::publish`].
    ///
    /// # Errors
    /// An earlier publish's failure not yet reported; connection errors.
    pub async fn publish_batch(&self, messages: Vec<NewMessage>) -> Result<(), ClientError> {
        self.usable()?;
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        let wake = self.queue_many(messages, None).await;
        self.start(wake);
        Ok(())
    }

    /// Queues a message without waiting for its acknowledgement; waits only when the queue
    /// is full. The producer sends what is queued as soon as its connection is free, as
    /// many messages per frame as have been queued meanwhile, so a loop of `publish` calls
    /// is as fast as batches built by hand. A failure is reported by the next
    /// [`Producer::flush`] (and by `publish` calls after it happened).
    ///
    /// # Errors
    /// An earlier publish's failure not yet reported; connection errors.
    pub async fn publish(&self, message: NewMessage) -> Result<(), ClientError> {
        self.usable()?;
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        let wake = self.queue_one(message, None).await;
        self.start(wake);
        Ok(())
    }

    /// Waits until everything queued so far is acknowledged.
    ///
    /// # Errors
    /// The first failure of a `publish` since the last flush.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.usable()?;
        // With nothing queued and nothing unsettled there is nothing to wait for (and no
        // task to wake: a program that flushes many idle producers pays nothing for them).
        if !self.queue.is_idle() {
            let (tx, rx) = oneshot::channel();
            self.queue.push_flush(tx);
            rx.await.map_err(|_| ClientError::closed())?;
        }
        match self.take_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gets what was just queued on its way: sent from here when the producer is idle,
    /// else by the batcher, woken when `wake` says it needs to be.
    fn start(&self, wake: bool) {
        let sent = self.sender.as_ref().is_some_and(|s| s.send_now());
        if wake && !sent {
            self.queue.wake();
        }
    }

    /// Queues one message: at once when the client's publish buffer and the queue have
    /// room (the common case, without a future in between), else once they do.
    async fn queue_one(&self, message: NewMessage, waiter: Option<OffsetTx>) -> bool {
        let size = buffer::size_of(&message);
        let (held, message, waiter) = match self.buffer.try_hold(size) {
            Some(held) => match self.queue.try_push_one(message, waiter) {
                Ok(wake) => {
                    held.keep();
                    return wake;
                }
                Err((message, waiter)) => (held, message, waiter),
            },
            None => (self.buffer.take(size).await, message, waiter),
        };
        let wake = self.queue.push_one(message, waiter).await;
        held.keep();
        wake
    }

    /// Queues a batch, once the client's publish buffer has room for it.
    async fn queue_many(&self, messages: Vec<NewMessage>, waiter: Option<OffsetsTx>) -> bool {
        let size = buffer::size_of_all(&messages);
        let held = self.buffer.take(size).await;
        let wake = self.queue.push_batch(messages, waiter, size).await;
        held.keep();
        wake
    }

    fn take_failure(&self) -> Option<ClientError> {
        self.failed.take()
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
