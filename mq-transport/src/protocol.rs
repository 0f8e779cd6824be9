//! The protocol's messages: what a client sends ([`ClientMsg`]), what a server sends
//! ([`ServerMsg`]), their kind bytes, and the wire error codes. PROTOCOL.md documents the
//! byte layout of each.

use std::fmt;

use bytes::Bytes;
use mq_core::{
    AckMode, BrokerStats, Durability, GroupName, GroupStats, Header, NewMessage, Offset,
    StartPosition, Timestamp, TopicConfig, TopicInfo, TopicName, TopicStats,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

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

/// Bytes before a frame's body: length (4), kind (1), request id (4).
pub const HEADER_LEN: usize = 9;

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
    /// Prefetch window; 0 takes the topic default.
    pub prefetch: u32,
}

/// A message as delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMessage {
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

impl From<&mq_core::Delivery> for DeliveredMessage {
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
        /// Protocol version the server speaks.
        version: u16,
        /// Server software and version.
        server: String,
        /// Largest frame the server accepts.
        max_frame: u32,
        /// Storage kind: `memory` or `file`.
        storage: String,
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
        messages: Vec<DeliveredMessage>,
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
    /// Reply to `ListGroups`.
    Groups(Vec<GroupStats>),
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

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// Typed error codes carried by `Error` frames.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
            /// A code this version does not know.
            Unknown(u16),
        }

        impl ErrorCode {
            /// The code's number on the wire.
            pub fn as_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $code,)*
                    ErrorCode::Unknown(c) => c,
                }
            }

            /// The code for a number read from the wire.
            pub fn from_u16(code: u16) -> Self {
                match code {
                    $($code => ErrorCode::$name,)*
                    c => ErrorCode::Unknown(c),
                }
            }

            /// The code's name, as PROTOCOL.md lists it.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                    ErrorCode::Unknown(_) => "unknown",
                }
            }

            /// Every known code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

error_codes! {
    /// The frame could not be decoded.
    Malformed = 1, "malformed";
    /// The frame kind is unknown.
    UnknownKind = 2, "unknown_kind";
    /// The frame exceeds the maximum frame size.
    FrameTooLarge = 3, "frame_too_large";
    /// A request came before the handshake, or a second handshake.
    HandshakeRequired = 4, "handshake_required";
    /// The client's protocol version is not supported.
    UnsupportedVersion = 5, "unsupported_version";
    /// The auth token is missing or wrong.
    Unauthorized = 6, "unauthorized";
    /// A topic or group name is invalid.
    InvalidName = 10, "invalid_name";
    /// The topic does not exist.
    TopicNotFound = 11, "topic_not_found";
    /// The topic already exists.
    TopicExists = 12, "topic_exists";
    /// The topic was deleted.
    TopicDeleted = 13, "topic_deleted";
    /// The group does not exist.
    GroupNotFound = 14, "group_not_found";
    /// The group is exclusive and has a consumer.
    GroupBusy = 15, "group_busy";
    /// The group has consumers attached.
    GroupInUse = 16, "group_in_use";
    /// The group uses another ack mode.
    AckModeMismatch = 17, "ack_mode_mismatch";
    /// The topic is full and refuses appends.
    TopicFull = 18, "topic_full";
    /// Acked or nacked offsets that are not in flight to this subscription.
    NotInFlight = 19, "not_in_flight";
    /// A configuration value is invalid.
    InvalidConfig = 20, "invalid_config";
    /// The subscription id is unknown on this connection.
    UnknownSubscription = 21, "unknown_subscription";
    /// The topic's files could not be read at start; it is set aside until repaired.
    TopicQuarantined = 22, "topic_quarantined";
    /// Storage failed.
    Storage = 30, "storage";
    /// The server has too many connections.
    ServerBusy = 31, "server_busy";
    /// The server is shutting down.
    ShuttingDown = 32, "shutting_down";
    /// The peer took too long (handshake deadline, idle timeout).
    Timeout = 33, "timeout";
    /// An unexpected server failure.
    Internal = 34, "internal";
    /// The disk is (almost) full: publishes are refused until space returns.
    DiskFull = 35, "disk_full";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

impl From<&mq_core::Error> for ErrorCode {
    fn from(e: &mq_core::Error) -> Self {
        use mq_core::Error as E;
        match e {
            E::InvalidName(_) => ErrorCode::InvalidName,
            E::TopicNotFound { .. } => ErrorCode::TopicNotFound,
            E::TopicExists { .. } => ErrorCode::TopicExists,
            E::TopicDeleted { .. } => ErrorCode::TopicDeleted,
            E::GroupNotFound { .. } => ErrorCode::GroupNotFound,
            E::GroupBusy { .. } => ErrorCode::GroupBusy,
            E::GroupInUse { .. } => ErrorCode::GroupInUse,
            E::AckModeMismatch { .. } => ErrorCode::AckModeMismatch,
            E::TopicFull { .. } => ErrorCode::TopicFull,
            E::NotInFlight { .. } => ErrorCode::NotInFlight,
            E::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            E::MessageTooLarge { .. } => ErrorCode::FrameTooLarge,
            E::TopicQuarantined { .. } => ErrorCode::TopicQuarantined,
            E::StoredMessageTooLarge { .. } => ErrorCode::Internal,
            E::Storage(s) if s.kind == Some(std::io::ErrorKind::StorageFull) => ErrorCode::DiskFull,
            E::Storage(_) => ErrorCode::Storage,
        }
    }
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

/// Kind bytes of every frame, with their names: client frames below 0x80, server frames from
/// 0x80.
pub const KINDS: &[(u8, &str)] = &[
    (kind::HELLO, "Hello"),
    (kind::PUBLISH, "Publish"),
    (kind::SUBSCRIBE, "Subscribe"),
    (kind::UNSUBSCRIBE, "Unsubscribe"),
    (kind::ACK, "Ack"),
    (kind::NACK, "Nack"),
    (kind::CREDIT, "Credit"),
    (kind::CREATE_TOPIC, "CreateTopic"),
    (kind::DELETE_TOPIC, "DeleteTopic"),
    (kind::LIST_TOPICS, "ListTopics"),
    (kind::DESCRIBE_TOPIC, "DescribeTopic"),
    (kind::LIST_GROUPS, "ListGroups"),
    (kind::DELETE_GROUP, "DeleteGroup"),
    (kind::STATS, "Stats"),
    (kind::PING, "Ping"),
    (kind::GOODBYE, "Goodbye"),
    (kind::WELCOME, "Welcome"),
    (kind::PUBLISHED, "Published"),
    (kind::SUBSCRIBED, "Subscribed"),
    (kind::DELIVERIES, "Deliveries"),
    (kind::DONE, "Done"),
    (kind::TOPICS, "Topics"),
    (kind::TOPIC_INFO, "TopicInfo"),
    (kind::GROUPS, "Groups"),
    (kind::TOPIC_STATS, "TopicStats"),
    (kind::BROKER_STATS, "BrokerStats"),
    (kind::PONG, "Pong"),
    (kind::SUBSCRIPTION_ENDED, "SubscriptionEnded"),
    (kind::ERROR, "Error"),
    (kind::SERVER_GOODBYE, "ServerGoodbye"),
];

/// The kind bytes.
pub mod kind {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0x01;
    pub const PUBLISH: u8 = 0x02;
    pub const SUBSCRIBE: u8 = 0x03;
    pub const UNSUBSCRIBE: u8 = 0x04;
    pub const ACK: u8 = 0x05;
    pub const NACK: u8 = 0x06;
    pub const CREDIT: u8 = 0x07;
    pub const CREATE_TOPIC: u8 = 0x08;
    pub const DELETE_TOPIC: u8 = 0x09;
    pub const LIST_TOPICS: u8 = 0x0A;
    pub const DESCRIBE_TOPIC: u8 = 0x0B;
    pub const LIST_GROUPS: u8 = 0x0C;
    pub const DELETE_GROUP: u8 = 0x0D;
    pub const STATS: u8 = 0x0E;
    pub const PING: u8 = 0x0F;
    pub const GOODBYE: u8 = 0x10;
    pub const WELCOME: u8 = 0x81;
    pub const PUBLISHED: u8 = 0x82;
    pub const SUBSCRIBED: u8 = 0x83;
    pub const DELIVERIES: u8 = 0x84;
    pub const DONE: u8 = 0x85;
    pub const TOPICS: u8 = 0x86;
    pub const TOPIC_INFO: u8 = 0x87;
    pub const GROUPS: u8 = 0x88;
    pub const TOPIC_STATS: u8 = 0x89;
    pub const BROKER_STATS: u8 = 0x8A;
    pub const PONG: u8 = 0x8B;
    pub const SUBSCRIPTION_ENDED: u8 = 0x8C;
    pub const ERROR: u8 = 0x8E;
    pub const SERVER_GOODBYE: u8 = 0x8F;
}
