//! `Subscribe` and `Unsubscribe`: a consumer attached to its group, with a pump that pushes
//! its deliveries, for as long as the subscription lives.

use std::sync::Arc;

use mq_core::{AckMode, Consumer, Offset, Subscription};
use mq_transport::{ErrorCode, RequestId, ServerMsg, SubscribeRequest, SubscriptionId};
use tokio::task::JoinHandle;

use super::settle::unknown_sub;
use super::{Session, done_or, error};
use crate::attachments::{Attached, Attachment};
use crate::pump::{Credits, Pump};

/// One subscription of a session.
pub(crate) struct Sub {
    pub(crate) consumer: Arc<Consumer>,
    /// Keeps the consumer's connection known to `DescribeGroup` while it is attached.
    _attached: Attached,
    pub(crate) credits: Option<Arc<Credits>>,
    pub(crate) prefetch: u32,
    pump: JoinHandle<()>,
}

impl Sub {
    /// Stops the pump; dropping the returned consumer detaches it (its deliveries in flight
    /// go back to the group).
    pub(crate) async fn stop(self) -> Arc<Consumer> {
        self.pump.abort();
        let _ = self.pump.await;
        self.consumer
    }
}

impl Session {
    /// Attaches a consumer and starts its pump; replies `Subscribed` itself and returns
    /// `None`, or returns the refusal to send.
    pub(crate) async fn subscribe(
        &mut self,
        id: RequestId,
        req: SubscribeRequest,
    ) -> Option<ServerMsg> {
        let limits = &self.shared.config;
        if self.subs.len() >= limits.max_subscriptions {
            return Some(error(
                ErrorCode::TooManySubscriptions,
                format!(
                    "this connection holds {} subscriptions, the server's limit \
                     (--max-subscriptions): unsubscribe one or open another connection",
                    self.subs.len()
                ),
            ));
        }
        // A window larger than the server allows is granted at the maximum: Subscribed says
        // what the consumer got.
        let requested = if req.prefetch > 0 {
            req.prefetch
        } else {
            self.shared
                .broker
                .describe(&req.topic)
                .map_or(mq_core::DEFAULT_PREFETCH, |i| i.config.groups.prefetch)
        };
        let prefetch = requested.min(limits.max_prefetch);
        let mut sub = Subscription::new(req.topic.clone())
            .start(req.start)
            .exclusive(req.exclusive)
            .prefetch(prefetch);
        sub.group = req.group;
        sub.ack = req.ack;
        // Version 1 always sends a start, and an existing group ignores it; version 1
        // always creates a missing topic.
        sub.start_if_new = self.version < 2;
        sub.create_topic = req.create_topic || self.version < 2;
        let consumer = match self.shared.durable(move |b| b.subscribe(sub)).await {
            Ok(c) => Arc::new(c),
            Err(e) => return Some(ServerMsg::error(&e)),
        };
        let sub_id = SubscriptionId(self.next_sub);
        self.next_sub = self.next_sub.wrapping_add(1).max(1);
        let credits =
            (consumer.ack_mode() == AckMode::Auto).then(|| Arc::new(Credits::new(prefetch)));
        // The reply goes out before the pump starts, so it precedes the first delivery.
        self.send(
            id,
            ServerMsg::Subscribed {
                sub: sub_id,
                group: consumer.group().clone(),
                ack: consumer.ack_mode(),
                prefetch,
            },
        )
        .await;
        let out = self.out.clone()?;
        let attached = self.shared.attachments.add(
            consumer.id(),
            Attachment {
                connection: self.connection,
                peer: self.peer.clone(),
                client: self.client.clone(),
                credits: credits.clone(),
                blocked: self.blocked.clone(),
            },
        );
        let pump = Pump {
            sub: sub_id,
            consumer: Arc::clone(&consumer),
            credits: credits.clone(),
            out,
            frame_budget: self.shared.config.max_frame / 2,
        };
        let pump = tokio::spawn(pump.run());
        self.subs.insert(
            sub_id,
            Sub {
                consumer,
                _attached: attached,
                credits,
                prefetch,
                pump,
            },
        );
        None
    }

    /// Ends a subscription: stops its deliveries, acks `ack`, then detaches (what is still
    /// in flight goes back to the group).
    pub(crate) async fn unsubscribe(&mut self, sub: SubscriptionId, ack: Vec<Offset>) -> ServerMsg {
        let Some(s) = self.subs.remove(&sub) else {
            return unknown_sub(sub);
        };
        // Stop the pump first: the acks then reopen the window with nobody to fill it.
        let consumer = s.stop().await;
        done_or(self.shared.durable(move |_| consumer.ack_batch(&ack)).await)
    }
}
