//! [`AckQueue`]: a manual-ack subscription's acks, sent without waiting for each one.
//!
//! An ack is sent at once when none of the subscription's acks is on its way (flush on
//! idle); acks made while one is on its way wait and leave together when it is answered,
//! so a consumer acking each delivery sends one request per round trip, however fast it
//! acks. A task drains the queue while it is not empty and ends when it is.

use std::sync::{Arc, Mutex, PoisonError};

use mq_core::Offset;
use mq_transport::ClientMsg;
use tokio::sync::Notify;

use crate::backend::EmbeddedSub;
use crate::connection::{Generation, Remote, SubSlot, expect_done};
use crate::error::ClientError;

/// Most offsets one Ack request carries.
const MAX_BATCH: usize = 16 * 1024;

/// Where a subscription's acks go.
#[derive(Debug)]
pub(crate) enum AckTarget {
    /// A subscription over a connection: its id is in the slot.
    Remote(Arc<Remote>, Arc<SubSlot>),
    /// A consumer of a broker in this process.
    Embedded(Arc<EmbeddedSub>),
}

/// The acks of one subscription not yet answered.
#[derive(Debug)]
pub(crate) struct AckQueue {
    target: AckTarget,
    state: Mutex<State>,
    /// Woken each time the queue becomes empty with nothing on its way.
    idle: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Acks not sent yet, with the generation of the connection each delivery came over.
    pending: Vec<(Offset, Generation)>,
    /// Whether a task is sending (an ack is on its way).
    sending: bool,
    /// The first failure since the last flush.
    failure: Option<ClientError>,
}

impl AckQueue {
    /// An empty queue for acks of `target`.
    pub(crate) fn new(target: AckTarget) -> Self {
        Self {
            target,
            state: Mutex::default(),
            idle: Notify::new(),
        }
    }

    /// Where the acks go.
    pub(crate) fn target(&self) -> &AckTarget {
        &self.target
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an ack of `offset`, delivered over connection `generation`.
    ///
    /// # Errors
    /// [`ClientError::Redelivered`] when that connection is gone: the delivery went back to
    /// its group and comes again.
    pub(crate) fn push(
        self: &Arc<Self>,
        offset: Offset,
        generation: Generation,
    ) -> Result<(), ClientError> {
        if let AckTarget::Remote(_, slot) = &self.target
            && slot.get().1 != generation
        {
            return Err(ClientError::Redelivered {
                offsets: vec![offset],
            });
        }
        let mut state = self.lock();
        state.pending.push((offset, generation));
        if !state.sending {
            state.sending = true;
            drop(state);
            tokio::spawn(Arc::clone(self).drain());
        }
        Ok(())
    }

    /// Sends what is queued, batch after batch, until nothing is.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch = {
                let mut state = self.lock();
                if state.pending.is_empty() {
                    state.sending = false;
                    drop(state);
                    self.idle.notify_waiters();
                    return;
                }
                let take = state.pending.len().min(MAX_BATCH);
                state.pending.drain(..take).collect::<Vec<_>>()
            };
            if let Err(e) = self.send(batch).await {
                tracing::debug!(error = %e, "a queued ack failed: its deliveries come again");
                self.lock().failure.get_or_insert(e);
            }
        }
    }

    async fn send(&self, batch: Vec<(Offset, Generation)>) -> Result<(), ClientError> {
        match &self.target {
            AckTarget::Remote(remote, slot) => {
                let (sub, on) = slot.get();
                let (current, stale): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|&(_, g)| g == on);
                let offsets: Vec<Offset> = current.into_iter().map(|(o, _)| o).collect();
                let sent = if offsets.is_empty() {
                    Ok(())
                } else {
                    match remote
                        .request_on(
                            on,
                            ClientMsg::Ack {
                                sub,
                                offsets: offsets.clone(),
                            },
                        )
                        .await
                    {
                        Ok(reply) => expect_done(reply),
                        Err(ClientError::Redelivered { .. }) => {
                            Err(ClientError::Redelivered { offsets })
                        }
                        Err(e) => Err(e),
                    }
                };
                match (sent, stale.is_empty()) {
                    (Err(e), _) => Err(e),
                    (Ok(()), true) => Ok(()),
                    (Ok(()), false) => Err(ClientError::Redelivered {
                        offsets: stale.into_iter().map(|(o, _)| o).collect(),
                    }),
                }
            }
            AckTarget::Embedded(sub) => {
                let offsets: Vec<Offset> = batch.into_iter().map(|(o, _)| o).collect();
                sub.ack_batch(offsets).await
            }
        }
    }

    /// Waits until every ack queued so far is answered.
    ///
    /// # Errors
    /// The first failure of a queued ack since the last flush.
    pub(crate) async fn flush(&self) -> Result<(), ClientError> {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.sending && state.pending.is_empty() {
                    return state.failure.take().map_or(Ok(()), Err);
                }
            }
            idle.await;
        }
    }

    /// Takes the acks not sent yet of deliveries over connection `generation` (the others
    /// are moot: their deliveries went back to the group).
    pub(crate) fn take_unsent(&self, generation: Generation) -> Vec<Offset> {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        pending
            .into_iter()
            .filter(|&(_, g)| g == generation)
            .map(|(o, _)| o)
            .collect()
    }
}
