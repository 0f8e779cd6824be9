//! [`Client`]: a handle on a broker, over the network ([`Client::connect`]) or in the same
//! process ([`Client::embedded`]), with the same API either way.

use std::sync::Arc;
use std::time::Duration;

use mq_core::{
    BatchReceipt, Broker, BrokerStats, GroupName, GroupStats, NewMessage, StartPosition,
    Subscription, TopicConfig, TopicInfo, TopicName, TopicStats,
};
use mq_transport::{
    ClientMsg, ClientTls, GroupReport, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ServerMsg,
    TcpTransport, Transport, WireDelivery,
};

use crate::backend::Backend;
use crate::connection::{Remote, expect_done, unexpected};
use crate::consumer::Consumer;
use crate::embedded::Embedded;
use crate::error::ClientError;
use crate::producer::{Producer, ProducerConfig, PublishBuffer};
use crate::reconnect::{Reconnect, Redial, dial, hello};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A name the server logs.
    pub name: String,
    /// The server's auth token, if it requires one.
    pub token: Option<String>,
    /// How long a request waits for its reply before the connection is dropped (a
    /// producer's batches, which no caller waits on, are checked every quarter of it: one
    /// overdue by this much drops the connection within another quarter).
    pub request_timeout: Duration,
    /// The transport (default: TCP).
    pub transport: Arc<dyn Transport>,
    /// Speak TLS over TCP, trusting and presenting what this says (the `transport` is
    /// then TCP with TLS).
    pub tls: Option<ClientTls>,
    /// Whether and how to reconnect when the connection is lost (default: on).
    pub reconnect: Reconnect,
    /// Bytes the client's producers hold, all together, queued or sent and not yet
    /// acknowledged, before a publish waits (default: 8 MiB). A message counts its payload,
    /// key and headers plus 64 bytes; a batch larger than the whole buffer is taken once
    /// nothing else is held.
    pub publish_buffer: usize,
}

/// The default [`ClientConfig::publish_buffer`].
const DEFAULT_PUBLISH_BUFFER: usize = 8 * 1024 * 1024;

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name: format!("mq-client {}", env!("CARGO_PKG_VERSION")),
            token: None,
            request_timeout: Duration::from_secs(30),
            transport: Arc::new(TcpTransport::default()),
            tls: None,
            reconnect: Reconnect::default(),
            publish_buffer: DEFAULT_PUBLISH_BUFFER,
        }
    }
}

/// A handle on a broker. Cheap to clone; clones share one connection.
///
/// ```no_run
/// use mq_client::{Client, NewMessage};
/// use mq_core::TopicName;
///
/// # async fn example() -> Result<(), mq_client::ClientError> {
/// let client = Client::connect("127.0.0.1:9800").await?;
/// let producer = client.producer(TopicName::new("orders")?);
/// let offset = producer.send(NewMessage::new("hello")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) backend: Backend,
    /// What the client's producers hold, together.
    pub(crate) publish_buffer: Arc<PublishBuffer>,
}

impl Client {
    /// Connects over TCP to a server at `addr` (like `127.0.0.1:9800`).
    ///
    /// # Errors
    /// [`ClientError::ConnectionRefused`] when nothing listens there; the server's refusal
    /// (wrong token, unsupported version) as [`ClientError::Server`].
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with explicit settings.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(addr: &str, config: ClientConfig) -> Result<Self, ClientError> {
        let conn = dial(addr, &config).await?;
        let remote = Arc::new(Remote::start(conn, config.request_timeout));
        match remote.request(hello(&config)).await {
            Ok(ServerMsg::Welcome {
                version,
                heartbeat_ms,
                max_frame,
                ..
            }) if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) => {
                remote.welcomed(version, max_frame);
                if config.reconnect.enabled {
                    remote.reconnect_with(Redial {
                        addr: addr.to_owned(),
                        config: config.clone(),
                    });
                }
                if heartbeat_ms > 0 {
                    Remote::keep_alive(&remote, Duration::from_millis(u64::from(heartbeat_ms)));
                }
                Ok(Self {
                    backend: Backend::Remote(remote),
                    publish_buffer: Arc::new(PublishBuffer::new(config.publish_buffer)),
                })
            }
            Ok(other) => {
                remote.close(None);
                Err(unexpected("Welcome", &other))
            }
            Err(e) => {
                remote.close(None);
                Err(e)
            }
        }
    }

    /// A client of a broker in this process: no socket, same API.
    pub fn embedded(broker: Broker) -> Self {
        Self {
            backend: Backend::Embedded(Embedded::new(broker)),
            publish_buffer: Arc::new(PublishBuffer::new(DEFAULT_PUBLISH_BUFFER)),
        }
    }

    /// Whether the connection is closed (never, for an embedded client).
    pub fn is_closed(&self) -> bool {
        self.backend.is_closed()
    }

    /// Says goodbye to the server. Handles made from this client fail from then on.
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// A producer for `topic` with default batching.
    pub fn producer(&self, topic: TopicName) -> Producer {
        Producer::new(self.clone(), topic, ProducerConfig::default())
    }

    /// A producer for `topic` with explicit batching.
    pub fn producer_with(&self, topic: TopicName, config: ProducerConfig) -> Producer {
        Producer::new(self.clone(), topic, config)
    }

    /// Attaches a consumer.
    ///
    /// # Errors
    /// [`ClientError::GroupBusy`] for an exclusive group that has a consumer; others as
    /// the server says.
    pub async fn subscribe(&self, sub: Subscription) -> Result<Consumer, ClientError> {
        Consumer::subscribe(self.clone(), sub).await
    }

    /// Publishes a batch (all or nothing) and waits for its receipt.
    ///
    /// # Errors
    /// [`ClientError::TopicFull`] when the topic refuses it; connection errors.
    pub async fn publish(
        &self,
        topic: &TopicName,
        messages: Vec<NewMessage>,
    ) -> Result<BatchReceipt, ClientError> {
        self.backend
            .start_publish(topic, messages, None)
            .await?
            .wait()
            .await
    }

    async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, ClientError> {
        self.backend.request(msg).await
    }

    /// Creates a topic with `config`.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_exists` or `invalid_config`.
    pub async fn create_topic(
        &self,
        topic: &TopicName,
        config: TopicConfig,
    ) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::CreateTopic {
                topic: topic.clone(),
                config,
                unknown_keys: Vec::new(),
            })
            .await?,
        )
    }

    /// Deletes a topic.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn delete_topic(&self, topic: &TopicName) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::DeleteTopic {
                topic: topic.clone(),
            })
            .await?,
        )
    }

    /// Topic names, sorted.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn topics(&self) -> Result<Vec<TopicName>, ClientError> {
        match self.request(ClientMsg::ListTopics).await? {
            ServerMsg::Topics { topics } => Ok(topics),
            other => Err(unexpected("Topics", &other)),
        }
    }

    /// A topic's config and stats.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn describe(&self, topic: &TopicName) -> Result<TopicInfo, ClientError> {
        match self
            .request(ClientMsg::DescribeTopic {
                topic: topic.clone(),
            })
            .await?
        {
            ServerMsg::TopicInfo(info) => Ok(*info),
            other => Err(unexpected("TopicInfo", &other)),
        }
    }

    /// A topic's groups.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn groups(&self, topic: &TopicName) -> Result<Vec<GroupStats>, ClientError> {
        match self
            .request(ClientMsg::ListGroups {
                topic: topic.clone(),
            })
            .await?
        {
            ServerMsg::Groups(groups) => Ok(groups),
            other => Err(unexpected("Groups", &other)),
        }
    }

    /// A group in detail: counters, settings, each consumer with its connection and its
    /// oldest un-acked deliveries, and a one-line diagnosis of why it is (or is not)
    /// getting messages. Needs a server speaking protocol version 2.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found` or `group_not_found`.
    pub async fn describe_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
    ) -> Result<GroupReport, ClientError> {
        match self
            .request(ClientMsg::DescribeGroup {
                topic: topic.clone(),
                group: group.clone(),
            })
            .await?
        {
            ServerMsg::GroupReport(report) => Ok(*report),
            other => Err(unexpected("GroupReport", &other)),
        }
    }

    /// Up to `max` retained messages of `topic` from `from` on (the server returns at most
    /// 1000, and no more than fit in a frame), without a group and without changing any
    /// delivery state. `deliveries` is 0 in each.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn peek(
        &self,
        topic: &TopicName,
        from: StartPosition,
        max: u32,
    ) -> Result<Vec<WireDelivery>, ClientError> {
        match self
            .request(ClientMsg::Peek {
                topic: topic.clone(),
                from,
                max,
            })
            .await?
        {
            ServerMsg::Peeked { messages } => Ok(messages),
            other => Err(unexpected("Peeked", &other)),
        }
    }

    /// Creates a durable group that reads from `start`, without attaching a consumer.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found` or `group_exists`.
    pub async fn create_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
        start: StartPosition,
    ) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::CreateGroup {
                topic: topic.clone(),
                group: group.clone(),
                start,
            })
            .await?,
        )
    }

    /// Moves a group to `to`: deliveries in flight go back, consumers stay attached and
    /// receive from there.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found` or `group_not_found`.
    pub async fn seek_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
        to: StartPosition,
    ) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::SeekGroup {
                topic: topic.clone(),
                group: group.clone(),
                to,
            })
            .await?,
        )
    }

    /// Drops everything `topic` retains; its groups move past it.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn purge_topic(&self, topic: &TopicName) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::PurgeTopic {
                topic: topic.clone(),
            })
            .await?,
        )
    }

    /// Replaces `topic`'s configuration in place.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found` or `invalid_config`.
    pub async fn alter_topic(
        &self,
        topic: &TopicName,
        config: TopicConfig,
    ) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::AlterTopic {
                topic: topic.clone(),
                config,
                unknown_keys: Vec::new(),
            })
            .await?,
        )
    }

    /// Deletes a group.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `group_not_found` or `group_in_use`.
    pub async fn delete_group(
        &self,
        topic: &TopicName,
        group: &GroupName,
    ) -> Result<(), ClientError> {
        expect_done(
            self.request(ClientMsg::DeleteGroup {
                topic: topic.clone(),
                group: group.clone(),
            })
            .await?,
        )
    }

    /// A topic's stats.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `topic_not_found`.
    pub async fn topic_stats(&self, topic: &TopicName) -> Result<TopicStats, ClientError> {
        match self
            .request(ClientMsg::Stats {
                topic: Some(topic.clone()),
            })
            .await?
        {
            ServerMsg::TopicStats(stats) => Ok(*stats),
            other => Err(unexpected("TopicStats", &other)),
        }
    }

    /// Broker-wide stats.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn stats(&self) -> Result<BrokerStats, ClientError> {
        match self.request(ClientMsg::Stats { topic: None }).await? {
            ServerMsg::BrokerStats(stats) => Ok(stats),
            other => Err(unexpected("BrokerStats", &other)),
        }
    }

    /// Checks the server answers.
    ///
    /// # Errors
    /// Connection errors and timeouts.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(ClientMsg::Ping).await? {
            ServerMsg::Pong => Ok(()),
            other => Err(unexpected("Pong", &other)),
        }
    }
}
