//! `Ack`, `Nack` and `Credit` on a subscription of this session.

use std::sync::Arc;
use std::time::Duration;

use mq_core::Offset;
use mq_transport::{ErrorCode, ServerMsg, SubscriptionId};

use super::{Session, done_or, error};

/// The reply to a request naming a subscription this connection does not have.
pub(crate) fn unknown_sub(sub: SubscriptionId) -> ServerMsg {
    error(
        ErrorCode::UnknownSubscription,
        format!("subscription {sub} is not open on this connection"),
    )
}

impl Session {
    /// Acks deliveries of `sub`.
    pub(crate) async fn ack(&self, sub: SubscriptionId, offsets: Vec<Offset>) -> ServerMsg {
        let Some(s) = self.subs.get(&sub) else {
            return unknown_sub(sub);
        };
        let consumer = Arc::clone(&s.consumer);
        done_or(
            self.shared
                .durable(move |_| consumer.ack_batch(&offsets))
                .await,
        )
    }

    /// Nacks deliveries of `sub`: redelivered after `delay_ms` (0: at once).
    pub(crate) async fn nack(
        &self,
        sub: SubscriptionId,
        delay_ms: u64,
        offsets: Vec<Offset>,
    ) -> ServerMsg {
        let Some(s) = self.subs.get(&sub) else {
            return unknown_sub(sub);
        };
        let delay = (delay_ms > 0).then(|| Duration::from_millis(delay_ms));
        let consumer = Arc::clone(&s.consumer);
        done_or(
            self.shared
                .durable(move |_| consumer.nack_batch(&offsets, delay))
                .await,
        )
    }

    /// Widens the window of `sub`: more credits (auto ack) or a larger prefetch (manual).
    pub(crate) fn credit(&mut self, sub: SubscriptionId, credits: u32) -> ServerMsg {
        let Some(s) = self.subs.get_mut(&sub) else {
            return unknown_sub(sub);
        };
        match &s.credits {
            Some(c) => c.add(credits),
            None => {
                let max = self.shared.config.max_prefetch;
                s.prefetch = s.prefetch.saturating_add(credits).min(max);
                s.consumer.set_prefetch(s.prefetch);
            }
        }
        ServerMsg::Done
    }
}
