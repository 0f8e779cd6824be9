//! Dead letters: how a message a group gave up on is copied to `<topic>.dlq`.
//!
//! The copy keeps the original priority, key, headers and payload, and appends headers that
//! say where it came from and why it was given up on.

use std::sync::Arc;

use crate::group::DeadLetter;
use crate::message::{Header, Message, NewMessage};
use crate::name::{GroupName, TopicName};

/// Header naming why the message was dead-lettered (`max_deliveries`).
pub const HEADER_REASON: &str = "x-mq-dlq-reason";
/// Header naming how the last delivery failed: `nack`, `ack_timeout` or `consumer_detached`.
pub const HEADER_LAST_FAILURE: &str = "x-mq-dlq-last-failure";
/// Header naming the topic the message came from.
pub const HEADER_TOPIC: &str = "x-mq-dlq-topic";
/// Header naming the group that gave up on it.
pub const HEADER_GROUP: &str = "x-mq-dlq-group";
/// Header holding its offset in the original topic, in decimal.
pub const HEADER_OFFSET: &str = "x-mq-dlq-offset";
/// Header holding how many times the group delivered it, in decimal.
pub const HEADER_DELIVERIES: &str = "x-mq-dlq-deliveries";

/// The dead-letter copy of `message`.
pub(crate) fn dead_letter_message(
    topic: &TopicName,
    group: &GroupName,
    message: &Arc<Message>,
    letter: DeadLetter,
) -> NewMessage {
    let mut headers = message.headers.clone();
    headers.extend([
        Header::new(HEADER_REASON, "max_deliveries"),
        Header::new(HEADER_LAST_FAILURE, letter.failure.as_str()),
        Header::new(HEADER_TOPIC, topic.as_str().to_owned()),
        Header::new(HEADER_GROUP, group.as_str().to_owned()),
        Header::new(HEADER_OFFSET, message.offset.to_string()),
        Header::new(HEADER_DELIVERIES, letter.deliveries.to_string()),
    ]);
    NewMessage {
        priority: message.priority,
        key: message.key.clone(),
        headers,
        payload: message.payload.clone(),
    }
}
