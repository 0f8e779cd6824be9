//! [`Subscription`] (how to attach) and [`Consumer`] (an attached consumer): poll, wait,
//! ack and nack.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::config::{AckMode, StartPosition};
use crate::dlq;
use crate::error::Error;
use crate::group::{ConsumerId, DeadLetter, Delivery};
use crate::message::{Message, Offset};
use crate::name::{GroupName, TopicName};
use crate::registry::Registry;
use crate::topic::Topic;

/// How a consumer attaches to a topic.
///
/// ```
/// use mq_core::{AckMode, GroupName, StartPosition, Subscription, TopicName};
/// let sub = Subscription::new(TopicName::new("orders")?)
///     .group(GroupName::new("billing")?)
///     .start(StartPosition::Latest)
///     .ack(AckMode::Manual)
///     .prefetch(100);
/// # Ok::<(), mq_core::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic; created with default config if it does not exist.
    pub topic: TopicName,
    /// The durable group to join; `None` makes an ephemeral group for this consumer alone.
    pub group: Option<GroupName>,
    /// Where the group starts: [`StartPosition::Resume`] (the default) takes an existing
    /// group where it is and starts a new one at the earliest message; any other start
    /// creates the group there, and for an existing group is refused
    /// ([`Error::StartConflict`]) unless `start_if_new`.
    pub start: StartPosition,
    /// Apply `start` only when the group is created, keeping an existing group where it is
    /// whatever `start` says (the rule of protocol version 1).
    pub start_if_new: bool,
    /// Create the topic (default config) when it does not exist (the default); without,
    /// subscribing to a missing topic is refused with [`Error::TopicNotFound`], so a
    /// mistyped name is not waited on forever (`mq consume` turns it off unless `--create`).
    pub create_topic: bool,
    /// The ack mode; `None` takes the group's (or, for a new group, the topic default).
    pub ack: Option<AckMode>,
    /// Refuse other consumers while attached (and refuse to attach beside others).
    pub exclusive: bool,
    /// Prefetch window; `None` takes the topic default.
    pub prefetch: Option<u32>,
}

impl Subscription {
    /// An ephemeral, non-exclusive subscription from the earliest message.
    pub fn new(topic: TopicName) -> Self {
        Self {
            topic,
            group: None,
            start: StartPosition::Resume,
            ack: None,
            exclusive: false,
            prefetch: None,
            start_if_new: false,
            create_topic: true,
        }
    }

    /// Joins the durable group `group`.
    #[must_use]
    pub fn group(mut self, group: GroupName) -> Self {
        self.group = Some(group);
        self
    }

    /// Sets where a new group starts.
    #[must_use]
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Sets the ack mode.
    #[must_use]
    pub fn ack(mut self, ack: AckMode) -> Self {
        self.ack = Some(ack);
        self
    }

    /// Creates the topic if it does not exist.
    #[must_use]
    pub fn create_topic(mut self, create: bool) -> Self {
        self.create_topic = create;
        self
    }

    /// Makes the consumer exclusive.
    #[must_use]
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Sets the prefetch window.
    #[must_use]
    pub fn prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = Some(prefetch);
        self
    }
}

/// A consumer attached to one group of one topic. Detaches when dropped: its deliveries in
/// flight go back to the group, and an ephemeral group is deleted.
///
/// `Consumer` is `Send + Sync`: one thread may receive while another acks.
#[derive(Debug)]
pub struct Consumer {
    pub(crate) registry: Arc<Registry>,
    pub(crate) topic: Arc<Topic>,
    pub(crate) group: GroupName,
    pub(crate) id: ConsumerId,
    pub(crate) ack: AckMode,
    /// Set by the first [`Consumer::detach`] (or the drop).
    pub(crate) detached: AtomicBool,
}

impl Consumer {
    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic.name
    }

    /// The group (a generated name for an ephemeral group).
    pub fn group(&self) -> &GroupName {
        &self.group
    }

    /// This consumer's id.
    pub fn id(&self) -> ConsumerId {
        self.id
    }

    /// The group's ack mode.
    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    /// Takes the next waiting message, or `None` at once if nothing waits (or the prefetch
    /// window is full).
    ///
    /// # Errors
    /// [`Error::TopicDeleted`] when the topic was deleted.
    pub fn poll(&self) -> Result<Option<Delivery>, Error> {
        let mut out = Vec::with_capacity(1);
        self.deliver(1, &mut out, None)?;
        Ok(out.pop())
    }

    /// Takes up to `max` waiting messages into `out`, returning how many; never waits.
    ///
    /// # Errors
    /// [`Error::TopicDeleted`] when the topic was deleted.
    pub fn poll_batch(&self, max: usize, out: &mut Vec<Delivery>) -> Result<usize, Error> {
        self.deliver(max, out, None)
    }

    /// Like [`Consumer::poll_batch`], but when nothing is ready registers `cx`'s waker to be
    /// woken once something may be, and returns `Pending`. Works on any executor.
    ///
    /// # Errors
    /// [`Error::TopicDeleted`] when the topic was deleted.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> Poll<Result<usize, Error>> {
        match self.deliver(max, out, Some(cx.waker())) {
            Ok(0) => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    /// Waits for the next message.
    ///
    /// Redeliveries after an ack timeout or a delayed nack become ready when the broker's
    /// [`crate::Broker::tick`] runs (or at the next receive after they are due).
    pub fn recv(&self) -> Recv<'_> {
        Recv { consumer: self }
    }

    /// Waits until at least one message is ready and takes up to `max`.
    pub fn recv_batch(&self, max: usize) -> RecvBatch<'_> {
        RecvBatch {
            consumer: self,
            max,
        }
    }

    fn deliver(
        &self,
        max: usize,
        out: &mut Vec<Delivery>,
        waker: Option<&Waker>,
    ) -> Result<usize, Error> {
        let now = self.registry.now();
        let mut wakers = Vec::new();
        let mut dead = Vec::new();
        let mut picks = Vec::new();
        let resident;
        let mut pin = None;
        let before = out.len();
        {
            let mut state = self.topic.lock();
            let state = &mut *state;
            let group = match state.groups.get_mut(&self.group) {
                Some(group) if !state.deleted => group,
                _ => return Err(self.deleted()),
            };
            if group.expire(now, &mut dead) {
                group.take_wakers(&mut wakers);
            }
            state.pick(&self.group, self.id, now, max, &mut picks);
            if picks.is_empty()
                && let Some(waker) = waker
                && let Some(group) = state.groups.get_mut(&self.group)
            {
                group.set_waker(self.id, waker);
            }
            // Delivery counts are journaled without waiting for the fsync: losing the last
            // few only means a message may be delivered a little more often than
            // `max_deliveries` after a crash.
            let _sync = state.persist_groups()?;
            // What is in memory is taken now, in order, up to the first message that is not.
            resident = state.take_resident(&picks, out);
            if resident < picks.len() {
                pin = state.pin(picks[resident..].iter().map(|&(o, _)| o));
            }
        }
        // The rest is read back without the topic's lock, pinned so that being counted
        // consumed (auto-ack) does not remove it meanwhile; a message an age or size bound
        // removed meanwhile is not delivered (the group no longer holds it either).
        if let Some(pin) = pin {
            let rest = &picks[resident..];
            let offsets: Vec<Offset> = rest.iter().map(|&(o, _)| o).collect();
            let fetched = self.topic.fetch_pinned(&offsets, pin)?;
            for (message, &(_, deliveries)) in fetched.into_iter().zip(rest) {
                if let Some(message) = message {
                    out.push(Delivery {
                        message,
                        deliveries,
                    });
                }
            }
        }
        let n = out.len() - before;
        self.registry.count_out(n);
        let letters = dlq::letters(&self.topic, dead)?;
        self.finish(wakers, letters)?;
        Ok(n)
    }

    fn deleted(&self) -> Error {
        Error::TopicDeleted {
            topic: self.topic.name.clone(),
        }
    }

    /// Acks one delivery.
    ///
    /// # Errors
    /// [`Error::NotInFlight`] if it is not in flight to this consumer.
    pub fn ack(&self, offset: Offset) -> Result<(), Error> {
        self.ack_batch(&[offset])
    }

    /// Acks deliveries. Those in flight to this consumer are acked even when others are not.
    ///
    /// # Errors
    /// [`Error::NotInFlight`] naming the offsets that were not in flight to this consumer.
    pub fn ack_batch(&self, offsets: &[Offset]) -> Result<(), Error> {
        self.settle(offsets, None, false)
    }

    /// Gives one delivery back for redelivery, at once or after `delay`.
    ///
    /// # Errors
    /// [`Error::NotInFlight`] if it is not in flight to this consumer.
    pub fn nack(&self, offset: Offset, delay: Option<Duration>) -> Result<(), Error> {
        self.nack_batch(&[offset], delay)
    }

    /// Gives deliveries back for redelivery, at once or after `delay`. A message that has
    /// reached the group's `max_deliveries` goes to the dead-letter topic instead.
    ///
    /// # Errors
    /// [`Error::NotInFlight`] naming the offsets that were not in flight to this consumer.
    pub fn nack_batch(&self, offsets: &[Offset], delay: Option<Duration>) -> Result<(), Error> {
        self.settle(offsets, delay, true)
    }

    fn settle(&self, offsets: &[Offset], delay: Option<Duration>, nack: bool) -> Result<(), Error> {
        let now = self.registry.now();
        let mut unknown = Vec::new();
        let mut dead = Vec::new();
        let mut wakers = Vec::new();
        let sync = {
            let mut state = self.topic.lock();
            let state = &mut *state;
            let group = match state.groups.get_mut(&self.group) {
                Some(group) if !state.deleted => group,
                _ => return Err(self.deleted()),
            };
            if nack {
                group.nack(self.id, offsets, delay, now, &mut unknown, &mut dead);
            } else {
                group.ack(self.id, offsets, now, &mut unknown);
            }
            group.take_wakers(&mut wakers);
            state.persist_groups()?
        };
        if let Some(sync) = sync {
            sync.wait()?;
        }
        let letters = dlq::letters(&self.topic, dead)?;
        self.finish(wakers, letters)?;
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::NotInFlight {
                topic: self.topic.name.clone(),
                group: self.group.clone(),
                offsets: unknown,
            })
        }
    }

    /// Changes this consumer's prefetch window (its credits).
    pub fn set_prefetch(&self, prefetch: u32) {
        let mut wakers = Vec::new();
        let mut state = self.topic.lock();
        if let Some(group) = state.groups.get_mut(&self.group) {
            group.set_prefetch(self.id, prefetch);
            group.take_wakers(&mut wakers);
        }
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes other consumers and moves dead letters to the dead-letter topic; called after
    /// the topic's lock is released.
    fn finish(
        &self,
        wakers: Vec<Waker>,
        letters: Vec<(Arc<Message>, DeadLetter)>,
    ) -> Result<(), Error> {
        wakers.into_iter().for_each(Waker::wake);
        if letters.is_empty() {
            return Ok(());
        }
        dlq::route(&self.registry, &self.topic, &self.group, letters)
    }
}

impl Consumer {
    /// Detaches now rather than when the last handle is dropped: deliveries in flight go
    /// back to the group (or to the dead-letter topic, when that was their last delivery);
    /// an ephemeral group is deleted with its last consumer. From then on the consumer
    /// receives nothing, and acks of its deliveries are refused (`not_in_flight`). Only the
    /// first call (or the drop) does anything.
    pub fn detach(&self) {
        if self.detached.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = self.registry.now();
        let mut dead = Vec::new();
        let mut wakers = Vec::new();
        {
            let mut state = self.topic.lock();
            let state = &mut *state;
            let Some(group) = state.groups.get_mut(&self.group) else {
                return;
            };
            group.detach(self.id, now, &mut dead);
            group.take_wakers(&mut wakers);
            if self.group.is_ephemeral() && group.consumer_count() == 0 {
                state.groups.remove(&self.group);
            }
            // Best effort: a failed journal write only means a restart redelivers these.
            let _ = state.persist_groups();
        };
        wakers.into_iter().for_each(Waker::wake);
        // Nobody to report a failed read-back to: the messages stay in the log.
        let letters = dlq::letters(&self.topic, dead).unwrap_or_default();
        // A consumer being dropped has nobody to report to; what the dead-letter topic
        // refuses stays in the group.
        let _ = dlq::route(&self.registry, &self.topic, &self.group, letters);
    }
}

impl Drop for Consumer {
    /// Detaches (see [`Consumer::detach`]).
    fn drop(&mut self) {
        self.detach();
    }
}

/// Future of [`Consumer::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a> {
    consumer: &'a Consumer,
}

impl Future for Recv<'_> {
    type Output = Result<Delivery, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut out = Vec::with_capacity(1);
        match self.consumer.poll_recv(cx, 1, &mut out) {
            Poll::Ready(Ok(_)) => match out.pop() {
                Some(delivery) => Poll::Ready(Ok(delivery)),
                None => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Future of [`Consumer::recv_batch`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct RecvBatch<'a> {
    consumer: &'a Consumer,
    max: usize,
}

impl Future for RecvBatch<'_> {
    type Output = Result<Vec<Delivery>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut out = Vec::new();
        self.consumer
            .poll_recv(cx, self.max, &mut out)
            .map(|r| r.map(|_| out))
    }
}
