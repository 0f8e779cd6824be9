//! [`Backend`]: where a client's requests go — a connection to a server, or a broker in
//! this process. The fork between the two lives here alone: the client, its producers and
//! its consumers speak requests and replies, and a subscription is a [`Source`] of
//! deliveries with a [`Settler`] for its acks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mq_core::{
    AckMode, BatchReceipt, GroupName, NewMessage, Offset, ProducerStamp, Subscription, TopicName,
};
use mq_transport::{ClientMsg, ServerMsg, SubscribeRequest, WireDelivery};
use tokio::sync::mpsc;

use crate::acks::{AckQueue, AckTarget};
use crate::connection::{
    Generation, OnReply, PendingReply, Remote, SubEntry, SubEvent, SubSlot, expect_done, unexpected,
};
use crate::embedded::Embedded;
use crate::error::ClientError;

/// Most deliveries an embedded consumer takes from the broker at once.
const EMBEDDED_BATCH: usize = 64;

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Remote(Arc<Remote>),
    Embedded(Embedded),
}

/// Takes a publish's outcome in place of a caller waiting for it: over a connection, the
/// connection's reader calls it as it reads the reply (see [`OnReply`]).
pub(crate) trait OnPublished: Send + 'static {
    /// Called once, with the batch's receipt or why it failed.
    fn published(self, outcome: Result<BatchReceipt, ClientError>);
}

/// A publish's [`OnPublished`] as the connection calls it.
struct PublishReply<P>(P);

impl<P: OnPublished> OnReply for PublishReply<P> {
    fn reply(self: Box<Self>, reply: Result<ServerMsg, ClientError>) {
        self.0.published(reply.and_then(receipt));
    }
}

/// The receipt a `Published` reply carries.
fn receipt(reply: ServerMsg) -> Result<BatchReceipt, ClientError> {
    match reply {
        ServerMsg::Published {
            first,
            count,
            durability,
        } => Ok(BatchReceipt {
            first,
            count: u64::from(count),
            durability,
        }),
        other => Err(unexpected("Published", &other)),
    }
}

/// The request that publishes `messages` to `topic`: numbered (and resent after a
/// reconnect) when `stamp` is given and the server speaks version 2; whether it is.
fn publish_request(
    topic: &TopicName,
    messages: Vec<NewMessage>,
    stamp: Option<ProducerStamp>,
    version: u16,
) -> (ClientMsg, bool) {
    let topic = topic.clone();
    match stamp {
        Some(s) if version >= 2 => (
            ClientMsg::PublishIdempotent {
                topic,
                producer: s.producer,
                seq: s.seq,
                messages,
            },
            true,
        ),
        _ => (ClientMsg::Publish { topic, messages }, false),
    }
}

/// A pending publish: the batch is already queued in order when this exists.
pub(crate) enum PublishWait {
    Ready(Result<BatchReceipt, ClientError>),
    Remote(Arc<Remote>, PendingReply),
}

impl PublishWait {
    /// The batch's receipt.
    pub(crate) async fn wait(self) -> Result<BatchReceipt, ClientError> {
        match self {
            PublishWait::Ready(r) => r,
            PublishWait::Remote(remote, pending) => receipt(remote.finish(pending).await?),
        }
    }
}

/// A subscription as the backend made it.
pub(crate) struct Subscribed {
    pub(crate) group: GroupName,
    pub(crate) ack: AckMode,
    pub(crate) source: Source,
}

impl Backend {
    /// Sends a request and waits for its reply.
    pub(crate) async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, ClientError> {
        match self {
            Backend::Remote(r) => r.request(msg).await,
            Backend::Embedded(e) => e.answer(msg).await,
        }
    }

    /// Queues a batch for publishing; the returned wait yields its receipt. A batch with a
    /// `stamp` (from an idempotent producer) is stored once however often it is sent, so it
    /// is sent again after a reconnect.
    pub(crate) async fn start_publish(
        &self,
        topic: &TopicName,
        messages: Vec<NewMessage>,
        stamp: Option<ProducerStamp>,
    ) -> Result<PublishWait, ClientError> {
        match self {
            Backend::Embedded(e) => {
                let topic = topic.clone();
                let receipt = e
                    .call(move |b| match stamp {
                        Some(stamp) => b.publish_idempotent(&topic, stamp, messages),
                        None => b.publish_batch(&topic, messages),
                    })
                    .await;
                Ok(PublishWait::Ready(receipt))
            }
            Backend::Remote(r) => {
                check_sizes(topic, &messages, r.max_frame())?;
                let (msg, replayable) = publish_request(topic, messages, stamp, r.version());
                let pending = r.start_request(msg, None, replayable).await?;
                Ok(PublishWait::Remote(Arc::clone(r), pending))
            }
        }
    }

    /// Queues a batch for publishing as [`Backend::start_publish`] does; its outcome goes
    /// to `done` (also when it cannot be sent: with why).
    pub(crate) async fn publish_with<P: OnPublished>(
        &self,
        topic: &TopicName,
        messages: Vec<NewMessage>,
        stamp: Option<ProducerStamp>,
        done: P,
    ) {
        match self {
            Backend::Remote(r) => {
                if let Err(e) = check_sizes(topic, &messages, r.max_frame()) {
                    done.published(Err(e));
                    return;
                }
                let (msg, replayable) = publish_request(topic, messages, stamp, r.version());
                r.start_request_with(msg, replayable, Box::new(PublishReply(done)))
                    .await;
            }
            Backend::Embedded(_) => match self.start_publish(topic, messages, stamp).await {
                Ok(wait) => done.published(wait.wait().await),
                Err(e) => done.published(Err(e)),
            },
        }
    }

    /// Whether [`Backend::try_publish_with`] can ever start a publish (over a connection).
    pub(crate) fn starts_without_waiting(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Like [`Backend::publish_with`], but without waiting: over a connection that is open
    /// and has room, the frame is handed to it (and written at once when it is idle), and
    /// the reply goes to `done` from the connection's reader. Gives the messages and `done`
    /// back otherwise, and always for an embedded broker (whose call may wait for the
    /// disk).
    pub(crate) fn try_publish_with<P: OnPublished>(
        &self,
        topic: &TopicName,
        messages: Vec<NewMessage>,
        stamp: Option<ProducerStamp>,
        done: P,
    ) -> Result<(), (Vec<NewMessage>, P)> {
        let Backend::Remote(r) = self else {
            return Err((messages, done));
        };
        if let Err(e) = check_sizes(topic, &messages, r.max_frame()) {
            done.published(Err(e));
            return Ok(());
        }
        let (msg, replayable) = publish_request(topic, messages, stamp, r.version());
        match r.try_start_request_with(msg, replayable, PublishReply(done)) {
            Ok(()) => Ok(()),
            Err((msg, PublishReply(done))) => match *msg {
                ClientMsg::Publish { messages, .. }
                | ClientMsg::PublishIdempotent { messages, .. } => Err((messages, done)),
                other => {
                    done.published(Err(ClientError::Protocol {
                        message: format!("a publish became another request: {other:?}"),
                    }));
                    Ok(())
                }
            },
        }
    }

    /// Attaches a consumer.
    pub(crate) async fn subscribe(&self, sub: Subscription) -> Result<Subscribed, ClientError> {
        match self {
            Backend::Embedded(e) => {
                let consumer = e.call(move |b| b.subscribe(sub)).await?;
                Ok(Subscribed {
                    group: consumer.group().clone(),
                    ack: consumer.ack_mode(),
                    source: Source::embedded(Arc::new(EmbeddedSub {
                        embedded: e.clone(),
                        consumer,
                    })),
                })
            }
            Backend::Remote(remote) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let request = SubscribeRequest {
                    topic: sub.topic,
                    group: sub.group,
                    start: sub.start,
                    ack: sub.ack,
                    exclusive: sub.exclusive,
                    create_topic: sub.create_topic,
                    prefetch: sub.prefetch.unwrap_or(0),
                };
                let slot = Arc::new(SubSlot::default());
                let entry = SubEntry {
                    tx,
                    request: request.clone(),
                    slot: Arc::clone(&slot),
                };
                let msg = ClientMsg::Subscribe(request);
                let pending = remote.start_request(msg, Some(entry), false).await?;
                match remote.finish(pending).await? {
                    ServerMsg::Subscribed {
                        group,
                        ack,
                        prefetch,
                        ..
                    } => Ok(Subscribed {
                        group,
                        ack,
                        source: Source::Remote {
                            remote: Arc::clone(remote),
                            generation: slot.get().1,
                            acks: Arc::new(AckQueue::new(AckTarget::Remote(
                                Arc::clone(remote),
                                Arc::clone(&slot),
                            ))),
                            slot,
                            rx,
                            buffer: VecDeque::new(),
                            consumed: 0,
                            window: prefetch.max(1),
                        },
                    }),
                    other => Err(unexpected("Subscribed", &other)),
                }
            }
        }
    }

    /// Most bytes of messages one publish may carry: half the server's frame limit (no
    /// limit in-process).
    pub(crate) fn batch_budget(&self) -> usize {
        match self {
            Backend::Remote(r) => r.max_frame() / 2,
            Backend::Embedded(_) => usize::MAX,
        }
    }

    /// Whether the connection is closed (never, in-process).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Backend::Remote(r) => r.is_closed(),
            Backend::Embedded(_) => false,
        }
    }

    /// Says goodbye to the server.
    pub(crate) async fn close(&self) {
        if let Backend::Remote(r) = self {
            r.goodbye().await;
        }
    }
}

/// Where a subscription's deliveries come from.
pub(crate) enum Source {
    Remote {
        remote: Arc<Remote>,
        /// The subscription's id on the current connection.
        slot: Arc<SubSlot>,
        /// The generation of the connection the buffered deliveries came over.
        generation: Generation,
        acks: Arc<AckQueue>,
        rx: mpsc::UnboundedReceiver<SubEvent>,
        buffer: VecDeque<WireDelivery>,
        /// For auto-ack subscriptions: deliveries taken since the last credit grant.
        consumed: u32,
        window: u32,
    },
    Embedded {
        sub: Arc<EmbeddedSub>,
        acks: Arc<AckQueue>,
        buffer: VecDeque<mq_core::Delivery>,
    },
}

/// A consumer of an embedded broker, shared by its source and its settlers.
#[derive(Debug)]
pub(crate) struct EmbeddedSub {
    embedded: Embedded,
    consumer: mq_core::Consumer,
}

impl EmbeddedSub {
    /// Acks `offsets` in the broker.
    pub(crate) async fn ack_batch(
        self: &Arc<Self>,
        offsets: Vec<Offset>,
    ) -> Result<(), ClientError> {
        let shared = Arc::clone(self);
        self.embedded
            .call(move |_| shared.consumer.ack_batch(&offsets))
            .await
    }
}

impl Source {
    fn embedded(sub: Arc<EmbeddedSub>) -> Self {
        Source::Embedded {
            acks: Arc::new(AckQueue::new(AckTarget::Embedded(Arc::clone(&sub)))),
            sub,
            buffer: VecDeque::new(),
        }
    }

    /// The next delivery; `Ready(None)` when the subscription ended without an error. For
    /// an auto-ack subscription (`auto`), returns credits to the server as it consumes.
    /// Inlined into the consumer's poll: a delivery is then moved once, not three times.
    #[inline]
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        auto: bool,
    ) -> Poll<Option<Result<WireDelivery, ClientError>>> {
        match self {
            Source::Remote {
                remote,
                slot,
                generation,
                rx,
                buffer,
                consumed,
                window,
                ..
            } => loop {
                if let Some(message) = buffer.pop_front() {
                    if auto {
                        *consumed += 1;
                        let (sub, on) = slot.get();
                        if *consumed >= (*window / 2).max(1)
                            && remote.fire_on(
                                on,
                                ClientMsg::Credit {
                                    sub,
                                    credits: *consumed,
                                },
                            )
                        {
                            *consumed = 0;
                        }
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(SubEvent::Deliveries(on, messages))) => {
                        if on != *generation {
                            buffer.clear();
                            *consumed = 0;
                            *generation = on;
                        }
                        buffer.extend(messages);
                    }
                    Poll::Ready(Some(SubEvent::Reset)) => {
                        buffer.clear();
                        *consumed = 0;
                    }
                    Poll::Ready(Some(SubEvent::Ended(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            },
            Source::Embedded { sub, buffer, .. } => loop {
                if let Some(d) = buffer.pop_front() {
                    return Poll::Ready(Some(Ok(WireDelivery::from(&d))));
                }
                let mut taken = Vec::new();
                match sub.consumer.poll_recv(cx, EMBEDDED_BATCH, &mut taken) {
                    Poll::Ready(Ok(_)) => buffer.extend(taken),
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }

    /// What settles this subscription's deliveries (`Auto` for an auto-ack group).
    pub(crate) fn settler(&self, ack: AckMode) -> Settler {
        if ack == AckMode::Auto {
            return Settler::Auto;
        }
        match self {
            Source::Remote {
                acks, generation, ..
            } => Settler::Manual(Arc::clone(acks), *generation),
            Source::Embedded { acks, .. } => Settler::Manual(Arc::clone(acks), 0),
        }
    }

    /// The subscription's queued acks.
    pub(crate) fn acks(&self) -> &Arc<AckQueue> {
        match self {
            Source::Remote { acks, .. } | Source::Embedded { acks, .. } => acks,
        }
    }

    /// Acks `offsets` and detaches.
    pub(crate) async fn unsubscribe(&self, offsets: &[Offset]) -> Result<(), ClientError> {
        match self {
            Source::Remote { remote, slot, .. } => {
                let (sub, on) = slot.get();
                remote.forget_sub(slot);
                let msg = ClientMsg::Unsubscribe {
                    sub,
                    ack: offsets.to_vec(),
                };
                match remote.request_on(on, msg).await {
                    Ok(reply) => expect_done(reply),
                    // Its connection is gone, and the subscription with it.
                    Err(ClientError::Redelivered { .. }) if offsets.is_empty() => Ok(()),
                    Err(ClientError::Redelivered { .. }) => Err(ClientError::Redelivered {
                        offsets: offsets.to_vec(),
                    }),
                    Err(e) => Err(e),
                }
            }
            Source::Embedded { sub, .. } => {
                let acked = sub.ack_batch(offsets.to_vec()).await;
                // Deliveries still held elsewhere keep the consumer alive: detach it now,
                // as the server does on `Unsubscribe`.
                sub.consumer.detach();
                acked
            }
        }
    }

    /// Detaches without waiting (the consumer was dropped); acks queued and not sent yet
    /// go with the detach.
    pub(crate) fn detach(&self) {
        if let Source::Remote {
            remote, slot, acks, ..
        } = self
        {
            let (sub, on) = slot.get();
            remote.forget_sub(slot);
            remote.fire_on(
                on,
                ClientMsg::Unsubscribe {
                    sub,
                    ack: acks.take_unsent(on),
                },
            );
        }
    }
}

/// Acks and nacks deliveries of one subscription.
#[derive(Debug, Clone)]
pub(crate) enum Settler {
    /// A manual-ack subscription, for deliveries of connection generation [`Generation`]
    /// (0 in-process).
    Manual(Arc<AckQueue>, Generation),
    /// An auto-ack group: nothing to settle.
    Auto,
}

impl Settler {
    /// Queues an ack of `offset` (see [`AckQueue`]).
    ///
    /// # Errors
    /// [`ClientError::Redelivered`] when the delivery's connection is gone.
    pub(crate) fn queue_ack(&self, offset: Offset) -> Result<(), ClientError> {
        match self {
            Settler::Auto => Ok(()),
            Settler::Manual(acks, generation) => acks.push(offset, *generation),
        }
    }

    /// Acks (`nack` = `None`) or nacks `offsets`, the latter after an optional delay, and
    /// waits for the answer.
    pub(crate) async fn settle(
        &self,
        offsets: &[Offset],
        nack: Option<Option<Duration>>,
    ) -> Result<(), ClientError> {
        let Settler::Manual(acks, generation) = self else {
            return Ok(());
        };
        match acks.target() {
            AckTarget::Embedded(sub) => {
                let (shared, offsets) = (Arc::clone(sub), offsets.to_vec());
                sub.embedded
                    .call(move |_| match nack {
                        None => shared.consumer.ack_batch(&offsets),
                        Some(delay) => shared.consumer.nack_batch(&offsets, delay),
                    })
                    .await
            }
            AckTarget::Remote(r, slot) => {
                let (sub, on) = slot.get();
                if on != *generation {
                    return Err(ClientError::Redelivered {
                        offsets: offsets.to_vec(),
                    });
                }
                let msg = match nack {
                    None => ClientMsg::Ack {
                        sub,
                        offsets: offsets.to_vec(),
                    },
                    Some(delay) => ClientMsg::Nack {
                        sub,
                        delay_ms: delay
                            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        offsets: offsets.to_vec(),
                    },
                };
                match r.request_on(on, msg).await {
                    Ok(reply) => expect_done(reply),
                    Err(ClientError::Redelivered { .. }) => Err(ClientError::Redelivered {
                        offsets: offsets.to_vec(),
                    }),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Bytes a Publish frame adds to each message's `encoded_size`: priority (1), the key's
/// presence and length (5), the header count (2) and the payload length (4).
const PUBLISH_PER_MESSAGE: u64 = 12;

/// Refuses, before sending, a message over the server's message limit or a batch over its
/// frame limit (the server would close the connection over it), naming which and by how
/// much.
fn check_sizes(
    topic: &TopicName,
    messages: &[NewMessage],
    max_frame: usize,
) -> Result<(), ClientError> {
    let limit = mq_transport::max_message_size(max_frame);
    if let Some((i, m)) = messages
        .iter()
        .enumerate()
        .find(|(_, m)| m.encoded_size() > limit)
    {
        return Err(ClientError::TooLarge {
            message: format!(
                "message {} of the batch for topic \"{topic}\" is {} bytes (payload, key and \
                 headers), over the server's limit of {limit} bytes (its --max-frame is \
                 {max_frame}): nothing was sent",
                i + 1,
                m.encoded_size()
            ),
        });
    }
    let frame = 4
        + 1
        + 4
        + 2
        + topic.as_str().len() as u64
        + 4
        + messages
            .iter()
            .map(|m| m.encoded_size() + PUBLISH_PER_MESSAGE)
            .sum::<u64>();
    if frame > max_frame as u64 {
        return Err(ClientError::TooLarge {
            message: format!(
                "a batch of {} messages for topic \"{topic}\" makes a {frame}-byte frame, over \
                 the server's --max-frame of {max_frame} bytes: send it in smaller batches \
                 (nothing was sent)",
                messages.len()
            ),
        });
    }
    Ok(())
}
