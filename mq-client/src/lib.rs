//! `mq-client`: the async SDK of mq.
//!
//! - [`Client`]: connect over TCP ([`Client::connect`]) or use a broker in this process
//!   ([`Client::embedded`]) — the same API either way;
//! - [`Producer`]: `send` (waits for the offset), `send_batch`, pipelined `publish` +
//!   `flush`, with batching and a bound on unacknowledged batches;
//! - [`Consumer`]: a `Stream` of [`Delivery`]s, `recv`, a non-blocking `poll`, and
//!   [`Consumer::run`] with a [`Handler`] (ack on success, nack on error);
//! - [`ClientError`]: errors a caller can match on.
//!
//! Messages are built with [`NewMessage`]: payload, priority, key, headers. Every type an
//! application names — topic and group names, offsets, topic configs, stats, defaults, and
//! the [`Broker`] to embed — is re-exported here, so this is the only mq crate it needs.
//!
//! ```
//! use mq_client::{Broker, Client, GroupName, NewMessage, Subscription, TopicName};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mq_client::ClientError> {
//! let client = Client::embedded(Broker::new());
//! let topic = TopicName::new("greetings")?;
//! let mut consumer = client
//!     .subscribe(Subscription::new(topic.clone()).group(GroupName::new("readers")?))
//!     .await?;
//! client.producer(topic).send(NewMessage::new("hello").header("lang", "en")).await?;
//! let delivery = consumer.recv().await?;
//! assert_eq!(&delivery.payload()[..], b"hello");
//! delivery.ack().await?;
//! assert!(consumer.poll()?.is_none());
//! # Ok(())
//! # }
//! ```

mod acks;
mod backend;
mod client;
mod connection;
mod consumer;
mod embedded;
mod error;
mod producer;
mod reconnect;

pub use client::{Client, ClientConfig};
pub use consumer::{AckHandle, Consumer, Delivery, Handler, HandlerError};
pub use error::ClientError;
pub use mq_core::{
    AckMode, Broker, BrokerBuilder, BrokerStats, ConsumerInfo, DEFAULT_ACK_TIMEOUT,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_DELIVERIES, DEFAULT_PREFETCH, DLQ_SUFFIX, Durability,
    FileOptions, FileStorage, FsyncPolicy, GroupDefaults, GroupInfo, GroupName, GroupStats, Header,
    LostRange, MAX_NAME_LEN, NameError, NewMessage, Offset, Overflow, QuarantinedTopic,
    RetentionConfig, StartPosition, Subscription, Timestamp, TopicConfig, TopicInfo, TopicName,
    TopicStats, Unacked, dlq,
};
pub use mq_transport::{ClientTls, ConsumerConnection, GroupReport, WireDelivery};
pub use producer::{Producer, ProducerConfig, QueuedBatch};
pub use reconnect::Reconnect;

/// The README's Rust examples (the embedded core and this SDK), compiled and run as doc
/// tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
