//! The protocol's messages: what a client sends ([`ClientMsg`]), what a server sends
//! ([`ServerMsg`]), and the limits both sides respect. Their kind bytes ([`kind`],
//! [`KINDS`]) and the wire [`ErrorCode`]s are declared in their own modules and re-exported
//! here. PROTOCOL.md documents the byte layout of each.

use std::fmt;

use bytes::Bytes;
use mq_core::{
    AckMode, BrokerStats, Durability, GroupName, GroupStats, Header, NewMessage, Offset,
    StartPosition, Timestamp, TopicConfig, TopicInfo, TopicName, TopicStats,
};

pub use crate::error_code::ErrorCode;
pub use crate::kinds::{KINDS, kind};

/// The newest protocol version this crate speaks: what a client offers in `Hello`.
pub const PROTOCOL_VERSION: u16 = 2;

/// The oldest protocol version this crate speaks: a server accepts every version from
/// this one up and answers in the lower of the client's and its own.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Heartbeat intervals a version-2 connection may stay silent before the server closes it.
pub const HEARTBEAT_MISSES: u32 = 3;

/// The default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Bytes a `Deliveries` frame carrying one message adds to the message's
/// [`mq_core::Message::encoded_size`], counted as the frame's `length` field counts: kind
/// (1), request id (4), subscription (4), count (4), then per message offset (8), timestamp
/// (8), priority (1), delivery count (4) and the lengths of key (4), header count (2) and
/// payload (4).
pub const DELIVERY_FRAME_OVERHEAD: usize = 13 + DELIVERED_OVERHEAD;

/// Bytes one message adds to its `encoded_size` inside a `Deliveries` frame.
pub const DELIVERED_OVERHEAD: usize = 8 + 8 + 1 + 4 + 4 + 2 + 4;

/// The largest [`mq_core::NewMessage::encoded_size`] a server with frame limit `max_frame`
/// accepts: one such message fits a `Deliveries` frame even after it gains the headers of a
/// dead letter ([`mq_core::dlq::RESERVE`]). PROTOCOL.md states the formula.
pub fn max_message_size(max_frame: usize) -> u64 {
    (max_frame as u64).saturating_sub(DELIVERY_FRAME_OVERHEAD as u64 + mq_core::dlq::RESERVE)
}

/// Identifies a request; its reply carries the same id. Server-pushed frames use 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u32);

/// Identifies one subscription on one connection, chosen by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u32);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One frame: a request id and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<M> {
    /// The request id (0 for server pushes).
    pub id: RequestId,
    /// The message.
    pub msg: M,
}

impl<M> Frame<M> {
    /// A frame with id `id`.
    pub fn new(id: RequestId, msg: M) -> Self {
        Self { id, msg }
    }
}

/// What a subscriber asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The topic.
    pub topic: TopicName,
    /// The durable group, or `None` for an ephemeral one.
    pub group: Option<GroupName>,
    /// Where a new group starts.
    pub start: StartPosition,
    /// The ack mode, or `None` for the group's / topic default.
    pub ack: Option<AckMode>,
    /// Refuse other consumers in the group.
    pub exclusive: bool,
    /// Version 2: create the topic when it does not exist (version 1 always does).
    pub create_topic: bool,
    /// Prefetch window; 0 takes the topic default.
    pub prefetch: u32,
}

/// A message as delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireDelivery {
    /// Offset in its topic.
    pub offset: Offset,
    /// When the broker appended it.
    pub timestamp: Timestamp,
    /// Its priority.
    pub priority: u8,
    /// How many times this group has delivered it, this time included.
    pub deliveries: u32,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Ordered headers.
    pub headers: Vec<Header>,
    /// The payload.
    pub payload: Bytes,
}

impl From<&mq_core::Message> for WireDelivery {
    /// The wire form of a message read without a group (`deliveries` 0).
    fn from(m: &mq_core::Message) -> Self {
        Self {
            offset: m.offset,
            timestamp: m.timestamp,
            priority: m.priority,
            deliveries: 0,
            key: m.key.clone(),
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        }
    }
}

impl From<&mq_core::Delivery> for WireDelivery {
    /// The wire form of a core delivery; the payload, key and header values are shared,
    /// not copied.
    fn from(d: &mq_core::Delivery) -> Self {
        let m = &d.message;
        Self {
            offset: m.offset,
            timestamp: m.timestamp,
            priority: m.priority,
            deliveries: d.deliveries,
            key: m.key.clone(),
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        }
    }
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    /// The first frame of a connection.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// A name for logs.
        client: String,
        /// Auth token, when the server requires one.
        token: Option<String>,
    },
    /// Append a batch (all or nothing).
    Publish {
        /// The topic (auto-created).
        topic: TopicName,
        /// The messages, in order.
        messages: Vec<NewMessage>,
    },
    /// Append a batch numbered by an idempotent producer (version 2): a batch whose numbers
    /// the topic already stored for `producer` is answered with its first offsets, not
    /// stored again.
    PublishIdempotent {
        /// The topic (auto-created).
        topic: TopicName,
        /// The producer's id.
        producer: u64,
        /// The number of the first message; message `i` has `seq + i`.
        seq: u64,
        /// The messages, in order.
        messages: Vec<NewMessage>,
    },
    /// Attach a consumer.
    Subscribe(SubscribeRequest),
    /// Detach a consumer, first acking `ack` with no delivery in between (so a consumer
    /// that wants exactly N messages gets no extra ones pushed when its last acks reopen
    /// its window).
    Unsubscribe {
        /// The subscription.
        sub: SubscriptionId,
        /// Offsets to ack before detaching.
        ack: Vec<Offset>,
    },
    /// Ack deliveries.
    Ack {
        /// The subscription.
        sub: SubscriptionId,
        /// Offsets delivered to it.
        offsets: Vec<Offset>,
    },
    /// Give deliveries back for redelivery.
    Nack {
        /// The subscription.
        sub: SubscriptionId,
        /// Redeliver after this many milliseconds (0: at once).
        delay_ms: u64,
        /// Offsets delivered to it.
        offsets: Vec<Offset>,
    },
    /// Grant more deliveries (flow control).
    Credit {
        /// The subscription.
        sub: SubscriptionId,
        /// How many more.
        credits: u32,
    },
    /// Create a topic.
    CreateTopic {
        /// The topic.
        topic: TopicName,
        /// Its config.
        config: TopicConfig,
        /// Keys of the JSON config no field reads (typos): version 2 refuses them.
        unknown_keys: Vec<String>,
    },
    /// Delete a topic.
    DeleteTopic {
        /// The topic.
        topic: TopicName,
    },
    /// List topic names.
    ListTopics,
    /// A topic's config and stats.
    DescribeTopic {
        /// The topic.
        topic: TopicName,
    },
    /// A topic's groups.
    ListGroups {
        /// The topic.
        topic: TopicName,
    },
    /// A group in detail, with a diagnosis (version 2).
    DescribeGroup {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// Read retained messages without a group (version 2).
    Peek {
        /// The topic.
        topic: TopicName,
        /// Where to start.
        from: StartPosition,
        /// Most messages to return (the server returns at most 1000).
        max: u32,
    },
    /// Create a durable group without attaching (version 2).
    CreateGroup {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
        /// Where it starts.
        start: StartPosition,
    },
    /// Move a group (version 2).
    SeekGroup {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
        /// Where it moves to.
        to: StartPosition,
    },
    /// Drop everything a topic retains (version 2).
    PurgeTopic {
        /// The topic.
        topic: TopicName,
    },
    /// Replace a topic's configuration (version 2).
    AlterTopic {
        /// The topic.
        topic: TopicName,
        /// The new configuration.
        config: TopicConfig,
        /// Keys of the JSON config no field reads (typos): refused.
        unknown_keys: Vec<String>,
    },
    /// Delete a group.
    DeleteGroup {
        /// The topic.
        topic: TopicName,
        /// The group.
        group: GroupName,
    },
    /// Stats of one topic, or of the broker.
    Stats {
        /// The topic, or `None` for broker-wide stats.
        topic: Option<TopicName>,
    },
    /// Liveness check.
    Ping,
    /// The client is closing the connection.
    Goodbye,
}

/// Frames a server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// Reply to `Hello`.
    Welcome {
        /// The protocol version of the connection: the lower of the client's and the
        /// server's newest. It decides the layout of this frame.
        version: u16,
        /// Server software and version.
        server: String,
        /// Largest frame the server accepts.
        max_frame: u32,
        /// Storage kind: `memory` or `file`.
        storage: String,
        /// Version 2 on: how often the client sends `Ping` (milliseconds; 0 for never). A
        /// connection that sends nothing for [`HEARTBEAT_MISSES`] intervals is closed. Not
        /// on the wire in version 1 (decoded as 0).
        heartbeat_ms: u32,
        /// Version 2 on: the largest message the server accepts (its `encoded_size`,
        /// PROTOCOL.md "Message size limit"). Not on the wire in version 1 (decoded as 0).
        max_message: u64,
    },
    /// Reply to `Publish`: message `i` of the batch has offset `first + i`.
    Published {
        /// Offset of the first message.
        first: Offset,
        /// Messages appended.
        count: u32,
        /// How durable they are now.
        durability: Durability,
    },
    /// Reply to `Subscribe`.
    Subscribed {
        /// The subscription's id on this connection.
        sub: SubscriptionId,
        /// The group (a generated name for an ephemeral group).
        group: GroupName,
        /// The group's ack mode.
        ack: AckMode,
        /// The prefetch window in force: at most this many deliveries un-acked (manual) or
        /// uncredited (auto) at once.
        prefetch: u32,
    },
    /// Server push: messages for a subscription.
    Deliveries {
        /// The subscription.
        sub: SubscriptionId,
        /// The messages.
        messages: Vec<WireDelivery>,
    },
    /// Success without data.
    Done,
    /// Reply to `ListTopics`.
    Topics {
        /// Topic names, sorted.
        topics: Vec<TopicName>,
    },
    /// Reply to `DescribeTopic`.
    TopicInfo(Box<TopicInfo>),
    /// Reply to `DescribeGroup`.
    GroupReport(Box<crate::report::GroupReport>),
    /// Reply to `ListGroups`.
    Groups(Vec<GroupStats>),
    /// Reply to `Peek`: the messages, in offset order (`deliveries` 0).
    Peeked {
        /// The messages.
        messages: Vec<WireDelivery>,
    },
    /// Reply to `Stats` with a topic.
    TopicStats(Box<TopicStats>),
    /// Reply to `Stats` without a topic.
    BrokerStats(BrokerStats),
    /// Reply to `Ping`.
    Pong,
    /// Server push: a subscription ended (its topic was deleted).
    SubscriptionEnded {
        /// The subscription.
        sub: SubscriptionId,
        /// Why.
        code: ErrorCode,
        /// What happened, for humans.
        message: String,
    },
    /// A request failed, or the connection is about to be closed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// What happened and what to do.
        message: String,
    },
    /// The server is closing the connection.
    Goodbye {
        /// Why.
        reason: String,
    },
}

impl ServerMsg {
    /// The error frame for a core error.
    pub fn error(e: &mq_core::Error) -> Self {
        ServerMsg::Error {
            code: e.into(),
            message: e.to_string(),
        }
    }
}
