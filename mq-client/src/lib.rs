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
//! Messages are built with [`NewMessage`]: payload, priority, key, headers.
//!
//! ```
//! use mq_client::{Client, NewMessage};
//! use mq_core::{Broker, GroupName, Subscription, TopicName};
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

mod client;
mod connection;
mod consumer;
mod error;
mod producer;

pub use client::{Client, ClientConfig};
pub use consumer::{AckHandle, Consumer, Delivery, Handler, HandlerError};
pub use error::ClientError;
pub use mq_core::{AckMode, NewMessage, StartPosition, Subscription};
pub use producer::{Producer, ProducerConfig, QueuedBatch};
