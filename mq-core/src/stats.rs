//! Counters the broker reports (`mq stats`; PROTOCOL.md, "JSON schemas"), serializable
//! with serde.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::{AckMode, TopicConfig};
use crate::consumer_id::ConsumerId;
use crate::message::Offset;
use crate::name::{GroupName, TopicName};
use crate::storage::QuarantinedTopic;

/// One group's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// The group's name.
    pub name: GroupName,
    /// Consumers attached now.
    pub consumers: u64,
    /// Messages waiting: never delivered, or due for redelivery.
    pub pending: u64,
    /// Messages never delivered to the group (the part of `pending` that is not waiting
    /// for a redelivery).
    #[serde(default)]
    pub lag: u64,
    /// Deliveries not yet acked or nacked.
    pub in_flight: u64,
    /// Deliveries made, redeliveries included.
    pub delivered: u64,
    /// Messages acked (auto-acked included).
    pub acked: u64,
    /// Redeliveries made.
    pub redelivered: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// When the oldest message waiting for the group was published (milliseconds since
    /// the epoch). Absent when nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<Timestamp>,
}

/// One topic's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStats {
    /// The topic's name.
    pub topic: TopicName,
    /// Messages appended since the topic was created.
    pub published: u64,
    /// Messages retained now.
    pub retained: u64,
    /// Bytes retained now (payload, key, headers).
    pub retained_bytes: u64,
    /// The first retained offset (equal to `next_offset` when nothing is retained).
    pub first_offset: Offset,
    /// The offset the next message will get.
    pub next_offset: Offset,
    /// Retained offsets whose messages the storage lost to damage (docs/STORAGE.md): every
    /// group counts them as settled. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<LostRange>,
    /// The topic's groups, by name.
    pub groups: Vec<GroupStats>,
}

/// Offsets `first` to `last` (inclusive) of a topic, lost to damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostRange {
    /// The first lost offset.
    pub first: Offset,
    /// The last lost offset.
    pub last: Offset,
}

/// A group in detail: its counters, settings and consumers, as `groups describe` shows
/// them (the server adds each consumer's connection and a diagnosis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The topic.
    pub topic: TopicName,
    /// The group's counters.
    pub stats: GroupStats,
    /// The group's ack mode.
    pub ack: AckMode,
    /// Whether an exclusive consumer holds the group.
    pub exclusive: bool,
    /// Milliseconds a manual-ack delivery may stay un-acked before it is redelivered.
    pub ack_timeout_ms: u64,
    /// Where the group started: offsets before it were never its to consume.
    pub start: Offset,
    /// The topic's first retained offset.
    pub first_offset: Offset,
    /// The offset the topic's next message gets.
    pub next_offset: Offset,
    /// The topic's `retain_consumed`, in milliseconds: how long messages every group has
    /// acked are kept.
    pub retain_consumed_ms: u64,
    /// When the first message waiting for a nack delay becomes due, if one waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_delayed: Option<Timestamp>,
    /// The consumers attached, in the order they attached.
    pub consumers: Vec<ConsumerInfo>,
}

/// One consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// The consumer's id.
    pub id: ConsumerId,
    /// Its prefetch window.
    pub prefetch: u32,
    /// Deliveries to it not yet acked or nacked.
    pub in_flight: u32,
    /// When it was last handed messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<Timestamp>,
    /// When it last acked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack: Option<Timestamp>,
    /// Its oldest deliveries not yet acked (at most five), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oldest_unacked: Vec<Unacked>,
}

/// A delivery not yet acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unacked {
    /// The message's offset.
    pub offset: Offset,
    /// When it was delivered.
    pub since: Timestamp,
}

/// A topic's configuration and counters, as `describe` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The configuration.
    pub config: TopicConfig,
    /// The counters.
    pub stats: TopicStats,
}

/// Broker-wide counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStats {
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Connections open now: filled in by the server that holds them (0 in-process).
    pub connections: u64,
    /// Topics that exist.
    pub topics: u64,
    /// Messages appended since start.
    pub messages_in: u64,
    /// Deliveries made since start.
    pub messages_out: u64,
    /// Topics found in storage that cannot be served (docs/STORAGE.md). Absent when there
    /// are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantinedTopic>,
    /// Topic creations refused at the broker's topic limit. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_topics: u64,
    /// Group creations refused at the broker's per-topic group limit. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_groups: u64,
    /// Bytes of messages held in memory across all topics (encoded record sizes).
    #[serde(default)]
    pub memory_bytes: u64,
    /// The bound on `memory_bytes`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// Appends refused because the memory bound was reached. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_memory: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
