//! [`Attachments`]: which connection each consumer on this server is attached through, so
//! that `DescribeGroup` can name it (connection number, peer, client name), show its
//! credits and tell whether it stopped reading.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mq_core::ConsumerId;
use mq_transport::{Blocked, ConsumerConnection};

use crate::pump::Credits;

/// How long a socket must refuse data before its client counts as stopped reading.
const STOPPED_READING: Duration = Duration::from_secs(1);

/// The connection behind one consumer.
pub(crate) struct Attachment {
    pub(crate) connection: u64,
    pub(crate) peer: String,
    pub(crate) client: String,
    pub(crate) credits: Option<Arc<Credits>>,
    /// Since when the connection's socket has refused data.
    pub(crate) blocked: Blocked,
}

/// Every consumer attached through this server.
#[derive(Default)]
pub(crate) struct Attachments(Mutex<HashMap<ConsumerId, Attachment>>);

impl Attachments {
    /// Records `consumer`'s connection until the returned guard is dropped.
    pub(crate) fn add(self: &Arc<Self>, consumer: ConsumerId, attachment: Attachment) -> Attached {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(consumer, attachment);
        Attached {
            attachments: Arc::clone(self),
            consumer,
        }
    }

    /// What is known of `consumer`'s connection.
    pub(crate) fn connection(&self, consumer: ConsumerId) -> Option<ConsumerConnection> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let a = map.get(&consumer)?;
        Some(ConsumerConnection {
            consumer,
            connection: a.connection,
            peer: a.peer.clone(),
            client: a.client.clone(),
            credits: a.credits.as_ref().map(|c| c.available()),
            stopped_reading: a
                .blocked
                .for_how_long()
                .is_some_and(|d| d >= STOPPED_READING),
        })
    }
}

/// Keeps a consumer's attachment recorded.
pub(crate) struct Attached {
    attachments: Arc<Attachments>,
    consumer: ConsumerId,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.attachments
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.consumer);
    }
}
