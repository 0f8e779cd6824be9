//! Dead letters: how a message a group gave up on is copied to `<topic>.dlq`.
//!
//! The copy keeps the original priority, key, headers and payload, and appends headers that
//! say where it came from and why it was given up on. A message dead-lettered again (from a
//! dead-letter topic) has its earlier `x-mq-dlq-*` headers replaced, so a copy never grows
//! by more than [`RESERVE`] bytes: a message the broker accepted always fits its
//! dead-letter topic's frames too.

use std::sync::Arc;
use std::task::Waker;

use crate::error::Error;
use crate::group::DeadLetter;
use crate::message::{Header, Message, NewMessage, Offset};
use crate::name::{GroupName, TopicName};
use crate::registry::Registry;
use crate::topic::Topic;

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

/// Prefix of the headers the broker adds to a dead-letter copy.
pub const HEADER_PREFIX: &str = "x-mq-dlq-";

/// Most [`crate::NewMessage::encoded_size`] bytes the headers of a dead-letter copy add:
/// six headers, with topic and group values up to 256 bytes (the longest names are 200,
/// and a dead-letter topic's name 204), the offset and delivery count in decimal.
pub const RESERVE: u64 = {
    let names = (HEADER_REASON.len()
        + HEADER_LAST_FAILURE.len()
        + HEADER_TOPIC.len()
        + HEADER_GROUP.len()
        + HEADER_OFFSET.len()
        + HEADER_DELIVERIES.len()) as u64;
    // "max_deliveries", "consumer_detached", topic, group, u64, u32.
    let values = 14 + 17 + 256 + 256 + 20 + 10;
    names + values + 6 * crate::message::HEADER_FRAMING
};

/// The messages of `dead`, read back where needed, each with why it is dead; those no
/// longer retained are left out.
///
/// # Errors
/// [`Error::Storage`] when one cannot be read back.
pub(crate) fn letters(
    topic: &Topic,
    dead: Vec<DeadLetter>,
) -> Result<Vec<(Arc<Message>, DeadLetter)>, Error> {
    if dead.is_empty() {
        return Ok(Vec::new());
    }
    let offsets: Vec<Offset> = dead.iter().map(|d| d.offset).collect();
    let messages = topic.fetch(&offsets)?;
    Ok(messages
        .into_iter()
        .zip(dead)
        .filter_map(|(m, d)| m.map(|m| (m, d)))
        .collect())
}

/// Appends dead letters of `group` on `topic` to `<topic>.dlq`, then tells the group:
/// copied messages are done; those the dead-letter topic refused go back to waiting, so
/// nothing is lost.
///
/// # Errors
/// Why the dead-letter topic refused them (full, storage).
pub(crate) fn route(
    registry: &Registry,
    topic: &Topic,
    group: &GroupName,
    letters: Vec<(Arc<Message>, DeadLetter)>,
) -> Result<(), Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let batch = letters
        .iter()
        .map(|(message, letter)| dead_letter_message(&topic.name, group, message, *letter))
        .collect();
    // No size check: a copy exceeds the limit by at most RESERVE, which the limit leaves
    // room for.
    let copied = registry
        .append(&topic.name.dead_letter(), batch, true)
        .map(|_| ());
    let offsets: Vec<Offset> = letters.iter().map(|(_, d)| d.offset).collect();
    let mut wakers = Vec::new();
    let sync = {
        let mut state = topic.lock();
        let state = &mut *state;
        match state.groups.get_mut(group) {
            Some(g) => {
                g.settle_dead(&offsets, copied.is_ok());
                g.take_wakers(&mut wakers);
                state.persist_groups()?
            }
            None => None,
        }
    };
    wakers.into_iter().for_each(Waker::wake);
    if let Some(sync) = sync {
        sync.wait()?;
    }
    copied
}

/// The dead-letter copy of `message`.
fn dead_letter_message(
    topic: &TopicName,
    group: &GroupName,
    message: &Arc<Message>,
    letter: DeadLetter,
) -> NewMessage {
    let mut headers: Vec<Header> = message
        .headers
        .iter()
        .filter(|h| !h.name.starts_with(HEADER_PREFIX))
        .cloned()
        .collect();
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
