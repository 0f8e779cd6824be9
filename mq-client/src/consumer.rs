//! [`Consumer`]: receives a subscription's deliveries as a `Stream`, by `recv`, or by a
//! non-blocking `poll`; [`Delivery`] acks or nacks one; [`Handler`] and
//! [`Consumer::run`] process them in a loop, acking on success and nacking on error.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use mq_core::{AckMode, GroupName, Header, Offset, Subscription, Timestamp, TopicName};
use mq_transport::WireDelivery;

use crate::backend::{Settler, Source};
use crate::client::Client;
use crate::error::ClientError;

/// An error a [`Handler`] returns; the message is then nacked.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Processes deliveries for [`Consumer::run`].
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles one delivery. `Ok` acks it; `Err` nacks it for redelivery (it reaches the
    /// dead-letter topic after the group's `max_deliveries`).
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// Acks and nacks a consumer's deliveries from anywhere: cloneable and `Send`, so acks
/// can be sent from other tasks while the consumer keeps receiving.
#[derive(Debug, Clone)]
pub struct AckHandle(Settler);

impl AckHandle {
    /// Acks several deliveries in one request.
    ///
    /// # Errors
    /// As [`Consumer::ack_batch`].
    pub async fn ack_batch(&self, offsets: &[Offset]) -> Result<(), ClientError> {
        self.0.settle(offsets, None).await
    }

    /// Nacks several deliveries in one request.
    ///
    /// # Errors
    /// As [`Consumer::ack_batch`].
    pub async fn nack_batch(
        &self,
        offsets: &[Offset],
        delay: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.0.settle(offsets, Some(delay)).await
    }
}

/// One message delivered to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    message: WireDelivery,
    settler: Settler,
}

impl Delivery {
    /// The message as it came over the wire.
    pub fn message(&self) -> &WireDelivery {
        &self.message
    }

    /// The message's offset in its topic.
    pub fn offset(&self) -> Offset {
        self.message.offset
    }

    /// When the broker appended it.
    pub fn timestamp(&self) -> Timestamp {
        self.message.timestamp
    }

    /// Its priority.
    pub fn priority(&self) -> u8 {
        self.message.priority
    }

    /// How many times the group has delivered it, this time included.
    pub fn deliveries(&self) -> u32 {
        self.message.deliveries
    }

    /// Its key.
    pub fn key(&self) -> Option<&Bytes> {
        self.message.key.as_ref()
    }

    /// Its headers, in order.
    pub fn headers(&self) -> &[Header] {
        &self.message.headers
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.message
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// Its payload.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// Acks it (a no-op for auto-ack subscriptions) without waiting for the server: the
    /// ack is sent at once when none of this consumer's acks is on its way, else with the
    /// next batch of acks, one request per round trip. An ack the server never gets (its
    /// connection was lost, or the delivery had timed out) means the message is delivered
    /// again, never that it is lost; [`Consumer::flush_acks`] waits for every queued ack
    /// and reports such failures, and [`Delivery::ack_confirmed`] waits for this one.
    ///
    /// # Errors
    /// [`ClientError::Redelivered`] when the connection the delivery came over is gone
    /// (it went back to its group and comes again).
    pub async fn ack(&self) -> Result<(), ClientError> {
        self.settler.queue_ack(self.offset())
    }

    /// Acks it and waits until the server confirms: once this returns `Ok`, the group
    /// never delivers the message again.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_in_flight` when it was already settled or timed
    /// out; [`ClientError::Redelivered`] when its connection is gone; connection errors.
    pub async fn ack_confirmed(&self) -> Result<(), ClientError> {
        self.settler.settle(&[self.offset()], None).await
    }

    /// Gives it back for redelivery, at once or after `delay`.
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn nack(&self, delay: Option<Duration>) -> Result<(), ClientError> {
        self.settler.settle(&[self.offset()], Some(delay)).await
    }
}

/// A consumer attached to one group of one topic. Dropping it detaches it: its un-acked
/// deliveries go back to the group.
pub struct Consumer {
    topic: TopicName,
    group: GroupName,
    ack: AckMode,
    source: Source,
    ended: bool,
    detached: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("ack", &self.ack)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) async fn subscribe(client: Client, sub: Subscription) -> Result<Self, ClientError> {
        let topic = sub.topic.clone();
        let subscribed = client.backend.subscribe(sub).await?;
        Ok(Self {
            topic,
            group: subscribed.group,
            ack: subscribed.ack,
            source: subscribed.source,
            ended: false,
            detached: false,
        })
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The group (a generated name for an ephemeral group).
    pub fn group(&self) -> &GroupName {
        &self.group
    }

    /// The group's ack mode.
    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    fn settler(&self) -> Settler {
        self.source.settler(self.ack)
    }

    /// Takes a buffered delivery without waiting: `None` at once when nothing is buffered
    /// .
    ///
    /// # Errors
    /// [`ClientError::ConnectionClosed`] once the connection is gone.
    pub fn poll(&mut self) -> Result<Option<Delivery>, ClientError> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match self.poll_delivery(&mut cx) {
            Poll::Ready(Some(r)) => r.map(Some),
            Poll::Ready(None) => Err(ClientError::closed()),
            Poll::Pending => Ok(None),
        }
    }

    /// Waits for the next delivery. Cancel-safe: dropping the future loses nothing.
    ///
    /// # Errors
    /// [`ClientError::ConnectionClosed`] once the connection is gone; the server's reason
    /// when the subscription ended (its topic was deleted).
    pub async fn recv(&mut self) -> Result<Delivery, ClientError> {
        std::future::poll_fn(|cx| self.poll_delivery(cx))
            .await
            .unwrap_or_else(|| Err(ClientError::closed()))
    }

    fn poll_delivery(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, ClientError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.source.poll_next(cx, self.ack == AckMode::Auto) {
            Poll::Ready(Some(Ok(message))) => {
                // Made after the poll: it names the connection the delivery came over.
                let settler = self.settler();
                Poll::Ready(Some(Ok(Delivery { message, settler })))
            }
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(ClientError::closed())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A handle that acks and nacks this consumer's deliveries from other tasks.
    pub fn ack_handle(&self) -> AckHandle {
        AckHandle(self.settler())
    }

    /// Waits until every ack queued by [`Delivery::ack`] so far is answered.
    ///
    /// # Errors
    /// The first failure of a queued ack since the last flush: [`ClientError::Server`] with
    /// `not_in_flight` (the delivery had timed out or was settled before),
    /// [`ClientError::Redelivered`] or a connection error (the deliveries come again).
    pub async fn flush_acks(&self) -> Result<(), ClientError> {
        self.source.acks().flush().await
    }

    /// Acks several deliveries in one request and waits for the answer.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_in_flight` naming offsets that were not; the
    /// others are acked.
    pub async fn ack_batch(&self, offsets: &[Offset]) -> Result<(), ClientError> {
        self.settler().settle(offsets, None).await
    }

    /// Nacks several deliveries in one request.
    ///
    /// # Errors
    /// As [`Consumer::ack_batch`].
    pub async fn nack_batch(
        &self,
        offsets: &[Offset],
        delay: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.settler().settle(offsets, Some(delay)).await
    }

    /// Runs `handler` on every delivery until the subscription ends: acks each message the
    /// handler accepts (queued, as [`Delivery::ack`]), nacks each it fails on.
    ///
    /// # Errors
    /// Why the subscription ended (connection closed, topic deleted), or a failed ack.
    pub async fn run<H: Handler + ?Sized>(&mut self, handler: &H) -> Result<(), ClientError> {
        loop {
            let delivery = self.recv().await?;
            match handler.handle(&delivery).await {
                Ok(()) => delivery.ack().await?,
                Err(error) => {
                    tracing::debug!(offset = %delivery.offset(), %error, "handler failed; nacking");
                    delivery.nack(None).await?;
                }
            }
        }
    }

    /// Sends the acks queued so far, detaches from the group and waits for the server to
    /// confirm; un-acked deliveries go back to the group.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn unsubscribe(self) -> Result<(), ClientError> {
        self.ack_and_unsubscribe(&[]).await
    }

    /// Acks `offsets` and detaches, with no delivery in between: a consumer that wants
    /// exactly N messages acks the last ones this way so that no further message is pushed
    /// to it (and handed back) when the acks reopen its window.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_in_flight` for offsets that were not (the
    /// consumer is detached all the same); connection errors.
    pub async fn ack_and_unsubscribe(mut self, offsets: &[Offset]) -> Result<(), ClientError> {
        self.detached = true;
        if let Err(e) = self.flush_acks().await {
            tracing::debug!(error = %e, "queued acks failed before unsubscribing: their deliveries go back to the group");
        }
        self.source.unsubscribe(offsets).await
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.detached {
            self.source.detach();
        }
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_delivery(cx)
    }
}
