//! Topic and subscription settings, with their defaults (README, "the model").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::message::Offset;

/// Default `max_bytes` of a topic: 1 GiB, so a server never grows without bound by default.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default ack timeout of a group.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of deliveries before a message is dead-lettered.
pub const DEFAULT_MAX_DELIVERIES: u32 = 10;
/// Default prefetch window (credits) of a consumer.
pub const DEFAULT_PREFETCH: u32 = 1000;

/// When a group counts a message as acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// Acked as soon as it is handed to a consumer: at-most-once.
    Auto,
    /// Acked when the consumer says so: at-least-once. The default.
    #[default]
    Manual,
}

/// What a topic does when an append would exceed `max_messages` or `max_bytes` and dropping
/// messages every group has acked does not make enough room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Refuse the append with [`crate::Error::TopicFull`]: backpressure, nothing silently
    /// lost.
    #[default]
    Reject,
    /// Delete the oldest messages, acked or not.
    DropOldest,
}

/// Where a group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// Where the group is; the first retained message for a group created now. The
    /// default: re-subscribing never moves a group.
    #[default]
    Resume,
    /// The first retained message.
    Earliest,
    /// Only messages appended after the group is created.
    Latest,
    /// The message at this offset (or the first retained one after it).
    Offset(Offset),
    /// The first message published at or after this time.
    Time(Timestamp),
}

/// What a topic keeps and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// A message acked by every group is deleted once it is older than this. Default 0:
    /// queue semantics.
    #[serde(deserialize_with = "crate::duration_form::deserialize")]
    pub retain_consumed: Duration,
    /// A message older than this is deleted even if not yet consumed. Default: none.
    #[serde(deserialize_with = "crate::duration_form::deserialize_opt")]
    pub max_age: Option<Duration>,
    /// Most messages the topic retains. Default: no bound.
    pub max_messages: Option<u64>,
    /// Most bytes (payload, key, headers) the topic retains. Default 1 GiB.
    pub max_bytes: Option<u64>,
    /// What happens when an append would exceed the bounds. Default `reject`.
    pub overflow: Overflow,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retain_consumed: Duration::ZERO,
            max_age: None,
            max_messages: None,
            max_bytes: Some(DEFAULT_MAX_BYTES),
            overflow: Overflow::Reject,
        }
    }
}

/// Settings every group of a topic gets when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupDefaults {
    /// Ack mode of a group whose subscriber does not choose one. Default `manual`.
    pub ack: AckMode,
    /// An un-acked delivery is redelivered after this. Default 30 s.
    #[serde(deserialize_with = "crate::duration_form::deserialize")]
    pub ack_timeout: Duration,
    /// After this many deliveries a message goes to `<topic>.dlq`. Default 10; `None`
    /// redelivers forever.
    pub max_deliveries: Option<u32>,
    /// Prefetch window of a consumer that does not choose one. Default 1000.
    pub prefetch: u32,
}

impl Default for GroupDefaults {
    fn default() -> Self {
        Self {
            ack: AckMode::Manual,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_deliveries: Some(DEFAULT_MAX_DELIVERIES),
            prefetch: DEFAULT_PREFETCH,
        }
    }
}

/// The keys of a topic configuration in JSON that no [`TopicConfig`] field reads (as
/// dotted paths, like `groups.ack_timout`): a client's typo would otherwise silently fall
/// back to a default.
pub fn unknown_config_keys(config: &serde_json::Value) -> Vec<String> {
    fn walk(given: &serde_json::Value, known: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        let (Some(given), Some(known)) = (given.as_object(), known.as_object()) else {
            return;
        };
        for (key, value) in given {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match known.get(key) {
                None => out.push(path),
                Some(k) if k.is_object() => walk(value, k, &path, out),
                Some(_) => {}
            }
        }
    }
    let known = serde_json::to_value(TopicConfig::default()).unwrap_or_default();
    let mut out = Vec::new();
    walk(config, &known, "", &mut out);
    out
}

/// A topic's configuration: retention and limits, and the defaults of its groups.
///
/// ```
/// use std::time::Duration;
/// use mq_core::{Overflow, TopicConfig};
///
/// let mut config = TopicConfig::default();
/// config.retention.max_messages = Some(10_000);
/// config.retention.overflow = Overflow::DropOldest;
/// config.groups.ack_timeout = Duration::from_secs(5);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    /// Retention and limits.
    pub retention: RetentionConfig,
    /// Defaults of the topic's groups.
    pub groups: GroupDefaults,
}

/// Why a [`TopicConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {reason}")]
pub struct InvalidConfig {
    /// What is wrong.
    pub reason: String,
}

impl TopicConfig {
    /// Checks that the settings make sense together.
    ///
    /// # Errors
    /// [`InvalidConfig`] for a zero ack timeout, zero `max_deliveries`, zero prefetch, or a
    /// zero `max_messages` / `max_bytes`.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |reason: &str| {
            Err(InvalidConfig {
                reason: reason.to_owned(),
            })
        };
        if self.groups.ack_timeout.is_zero() {
            return invalid("ack_timeout must be greater than zero");
        }
        if self.groups.max_deliveries == Some(0) {
            return invalid("max_deliveries must be at least 1 (or unset for no limit)");
        }
        if self.groups.prefetch == 0 {
            return invalid("prefetch must be at least 1");
        }
        if self.retention.max_messages == Some(0) {
            return invalid("max_messages must be at least 1 (or unset for no limit)");
        }
        if self.retention.max_bytes == Some(0) {
            return invalid("max_bytes must be at least 1 (or unset for no limit)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = TopicConfig::default();
        assert_eq!(c.retention.retain_consumed, Duration::ZERO);
        assert_eq!(c.retention.max_age, None);
        assert_eq!(c.retention.max_bytes, Some(1 << 30));
        assert_eq!(c.retention.max_messages, None);
        assert_eq!(c.retention.overflow, Overflow::Reject);
        assert_eq!(c.groups.ack, AckMode::Manual);
        assert_eq!(c.groups.ack_timeout, Duration::from_secs(30));
        assert_eq!(c.groups.max_deliveries, Some(10));
        assert_eq!(c.groups.prefetch, 1000);
    }

    #[test]
    fn validate_rejects_zero_limits() {
        let mut c = TopicConfig::default();
        c.groups.max_deliveries = Some(0);
        assert!(c.validate().is_err());
        let mut c = TopicConfig::default();
        c.groups.ack_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
    }

    #[test]
    fn durations_are_read_in_every_form_and_written_in_the_old_one() {
        let old = r#"{"retention":{"retain_consumed":{"secs":5,"nanos":0}},"groups":{"ack_timeout":{"secs":30,"nanos":0}}}"#;
        let ms = r#"{"retention":{"retain_consumed":5000,"max_age":60000},"groups":{"ack_timeout":30000}}"#;
        let text = r#"{"retention":{"retain_consumed":"5s","max_age":"1m"},"groups":{"ack_timeout":"30s"}}"#;
        for json in [old, ms, text] {
            let c: TopicConfig = serde_json::from_str(json).unwrap();
            assert_eq!(
                c.retention.retain_consumed,
                Duration::from_secs(5),
                "{json}"
            );
            assert_eq!(c.groups.ack_timeout, Duration::from_secs(30), "{json}");
        }
        let c: TopicConfig = serde_json::from_str(text).unwrap();
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(60)));
        let written = serde_json::to_value(&c).unwrap();
        assert_eq!(written["groups"]["ack_timeout"]["secs"], 30);
        let bad = serde_json::from_str::<TopicConfig>(r#"{"groups":{"ack_timeout":"soon"}}"#)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("is not a duration"), "{bad}");
    }
}
