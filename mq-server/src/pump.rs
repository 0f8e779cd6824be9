//! The delivery pump of one subscription: waits for messages in the core (within the
//! consumer's window) and sends them on the connection in batches (written straight to the
//! socket when the connection is idle).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mq_core::{Consumer, Delivery};
use mq_transport::{
    DELIVERED_OVERHEAD, ErrorCode, Frame, Outbox, RequestId, ServerMsg, SubscriptionId,
    WireDelivery,
};
use tokio::sync::Notify;

/// Most deliveries taken from the core per wake-up.
const MAX_BATCH: usize = 512;

/// Credits of an auto-ack subscription: how many more messages the client accepts.
/// (Manual-ack subscriptions are bounded by the core's prefetch window instead.)
#[derive(Debug)]
pub(crate) struct Credits {
    available: AtomicU64,
    /// The window granted: credits never add up beyond it.
    window: u64,
    notify: Notify,
}

impl Credits {
    /// A window of `window` credits, all available.
    pub(crate) fn new(window: u32) -> Self {
        Self {
            available: AtomicU64::new(u64::from(window)),
            window: u64::from(window),
            notify: Notify::new(),
        }
    }

    /// Returns `n` credits, up to the window.
    pub(crate) fn add(&self, n: u32) {
        let window = self.window;
        let _ = self
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                Some(a.saturating_add(u64::from(n)).min(window))
            });
        self.notify.notify_one();
    }

    /// Credits available now.
    pub(crate) fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire)
    }

    async fn wait(&self) -> u64 {
        loop {
            let notified = self.notify.notified();
            let n = self.available.load(Ordering::Acquire);
            if n > 0 {
                return n;
            }
            notified.await;
        }
    }

    fn take(&self, n: u64) {
        self.available.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What a pump needs.
pub(crate) struct Pump {
    pub(crate) sub: SubscriptionId,
    pub(crate) consumer: Arc<Consumer>,
    /// `Some` for auto-ack subscriptions.
    pub(crate) credits: Option<Arc<Credits>>,
    pub(crate) out: Outbox<ServerMsg>,
    /// Bytes one delivery frame may carry.
    pub(crate) frame_budget: usize,
}

impl Pump {
    /// Runs until the connection's outbox is closed or the subscription ends.
    pub(crate) async fn run(self) {
        let mut taken: Vec<Delivery> = Vec::with_capacity(MAX_BATCH);
        loop {
            let max = match &self.credits {
                Some(credits) => credits.wait().await.min(MAX_BATCH as u64) as usize,
                None => MAX_BATCH,
            };
            let polled = poll_fn(|cx| self.consumer.poll_recv(cx, max, &mut taken)).await;
            if let Err(e) = polled {
                let ended = ServerMsg::SubscriptionEnded {
                    sub: self.sub,
                    code: ErrorCode::from(&e),
                    message: e.to_string(),
                };
                let _ = self.out.send(Frame::new(RequestId(0), ended)).await;
                return;
            }
            if let Some(credits) = &self.credits {
                credits.take(taken.len() as u64);
            }
            if !self.send(&mut taken).await {
                return;
            }
        }
    }

    /// Sends `taken` in frames of at most `frame_budget` bytes; false once the outbox is
    /// closed.
    async fn send(&self, taken: &mut Vec<Delivery>) -> bool {
        let mut batch = Vec::with_capacity(taken.len());
        let mut bytes = 0;
        for d in taken.drain(..) {
            let size = d.message.encoded_size() as usize + DELIVERED_OVERHEAD;
            if !batch.is_empty() && bytes + size > self.frame_budget {
                let full = std::mem::take(&mut batch);
                if !self.push(full).await {
                    return false;
                }
                bytes = 0;
            }
            bytes += size;
            batch.push(WireDelivery::from(&d));
        }
        batch.is_empty() || self.push(batch).await
    }

    async fn push(&self, messages: Vec<WireDelivery>) -> bool {
        let frame = Frame::new(
            RequestId(0),
            ServerMsg::Deliveries {
                sub: self.sub,
                messages,
            },
        );
        self.out.send(frame).await.is_ok()
    }
}
