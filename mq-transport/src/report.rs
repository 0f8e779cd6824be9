//! [`GroupReport`]: the reply to `DescribeGroup` (protocol version 2): a group in detail,
//! the connection behind each of its consumers, and a diagnosis in plain words of why it
//! is (or is not) getting messages.

use mq_core::{ConsumerId, GroupInfo};
use serde::{Deserialize, Serialize};

/// A group in detail, as `mq groups describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    /// The group's counters, settings and consumers.
    pub group: GroupInfo,
    /// The connection behind each consumer.
    pub connections: Vec<ConsumerConnection>,
    /// One line saying why the group is or is not getting messages.
    pub diagnosis: String,
}

/// The connection a consumer of a group is attached through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerConnection {
    /// The consumer (as in [`GroupInfo::consumers`]).
    pub consumer: ConsumerId,
    /// The connection's number on the server (as its logs show it).
    pub connection: u64,
    /// The peer's address.
    pub peer: String,
    /// The name the client gave in Hello.
    pub client: String,
    /// For an auto-ack subscription: how many more messages the client accepts now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<u64>,
    /// Whether the connection's socket has refused data for a second or more: the client
    /// stopped reading.
    pub stopped_reading: bool,
}
