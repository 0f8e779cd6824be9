//! `Publish` and `PublishIdempotent`: a batch appended all or nothing; the reply says how
//! durable it is. When the storage fsyncs before confirming, the append runs on the
//! blocking pool and that thread sends the reply itself, once the disk has it: no task has
//! to be woken to carry it (the session waits for the call either way, so replies keep
//! their order).

use mq_core::{Broker, NewMessage, ProducerStamp, TopicName};
use mq_transport::{ErrorCode, Frame, RequestId, ServerMsg, TrySendError};

use super::{Session, error};

/// Appends `messages` to `topic` and answers request `id` with `Published` or the error.
pub(crate) async fn publish(
    session: &Session,
    id: RequestId,
    topic: TopicName,
    messages: Vec<NewMessage>,
    stamp: Option<ProducerStamp>,
) {
    let shared = &session.shared;
    if !shared.broker.waits_for_disk() {
        let reply = append(&shared.broker, &topic, messages, stamp);
        session.send(id, reply).await;
        return;
    }
    let out = session.out.clone();
    let telemetry = shared.telemetry.clone();
    let unsent = shared
        .durable(move |broker| {
            let reply = append(broker, &topic, messages, stamp);
            let Some(out) = out else {
                return Ok(Some(reply));
            };
            let code = match &reply {
                ServerMsg::Error { code, .. } => Some(*code),
                _ => None,
            };
            match out.try_send(Frame::new(id, reply)) {
                Ok(()) | Err(TrySendError::Closed(_)) => {
                    if let Some(code) = code {
                        telemetry.error(code);
                    }
                    Ok(None)
                }
                // The connection is busy: the session queues it.
                Err(TrySendError::Full(frame)) => Ok(Some(frame.msg)),
            }
        })
        .await;
    match unsent {
        Ok(None) => {}
        Ok(Some(reply)) => session.send(id, reply).await,
        Err(e) => session.send(id, ServerMsg::error(&e)).await,
    }
}

/// Appends the batch; the reply that says how it went.
fn append(
    broker: &Broker,
    topic: &TopicName,
    messages: Vec<NewMessage>,
    stamp: Option<ProducerStamp>,
) -> ServerMsg {
    let receipt = match stamp {
        Some(stamp) => broker.publish_idempotent(topic, stamp, messages),
        None => broker.publish_batch(topic, messages),
    };
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
