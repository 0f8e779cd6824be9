//! `Publish` and `PublishIdempotent`: a batch appended all or nothing; the reply says how
//! durable it is.

use mq_core::{NewMessage, ProducerStamp, TopicName};
use mq_transport::{ErrorCode, ServerMsg};

use super::{Shared, error};

/// Appends `messages` to `topic` and replies `Published` or the error.
pub(crate) async fn publish(
    shared: &Shared,
    topic: TopicName,
    messages: Vec<NewMessage>,
    stamp: Option<ProducerStamp>,
) -> ServerMsg {
    let receipt = shared
        .durable(move |broker| match stamp {
            Some(stamp) => broker.publish_idempotent(&topic, stamp, messages),
            None => broker.publish_batch(&topic, messages),
        })
        .await;
    match receipt {
        Ok(r) => match u32::try_from(r.count) {
            Ok(count) => ServerMsg::Published {
                first: r.first,
                count,
                durability: r.durability,
            },
            Err(_) => error(
                ErrorCode::Internal,
                format!(
                    "{} messages were appended: more than a reply can count",
                    r.count
                ),
            ),
        },
        Err(e) => ServerMsg::error(&e),
    }
}
