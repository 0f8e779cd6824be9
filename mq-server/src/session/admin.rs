//! Administration and inspection: create, delete and describe topics, list and delete
//! groups, stats (listing topics lives with the permission check in `mod.rs`).

use mq_core::{StartPosition, TopicName};
use mq_transport::{ClientMsg, DELIVERED_OVERHEAD, ErrorCode, ServerMsg, WireDelivery};

use super::{Shared, done_or, error};

/// What a change of topics or groups logs once it is done: one line each.
fn change(request: &ClientMsg) -> Option<(&'static str, String, Option<String>)> {
    let named = |what, topic: &TopicName, group: Option<&mq_core::GroupName>| {
        Some((what, topic.to_string(), group.map(ToString::to_string)))
    };
    match request {
        ClientMsg::CreateTopic { topic, .. } => named("topic created", topic, None),
        ClientMsg::DeleteTopic { topic } => named("topic deleted", topic, None),
        ClientMsg::PurgeTopic { topic } => named("topic purged", topic, None),
        ClientMsg::AlterTopic { topic, .. } => named("topic altered", topic, None),
        ClientMsg::DeleteGroup { topic, group } => named("group deleted", topic, Some(group)),
        ClientMsg::CreateGroup { topic, group, .. } => named("group created", topic, Some(group)),
        ClientMsg::SeekGroup { topic, group, .. } => named("group moved", topic, Some(group)),
        _ => None,
    }
}

/// Answers an administrative request; logs the changes it makes.
pub(crate) async fn handle(shared: &Shared, request: ClientMsg) -> ServerMsg {
    let change = change(&request);
    let reply = answer(shared, request).await;
    if let (Some((what, topic, group)), ServerMsg::Done) = (change, &reply) {
        tracing::info!(%topic, group = group.as_deref().unwrap_or("-"), "{what}");
    }
    reply
}

async fn answer(shared: &Shared, request: ClientMsg) -> ServerMsg {
    let broker = &shared.broker;
    match request {
        ClientMsg::CreateTopic { topic, config, .. } => done_or(
            shared
                .durable(move |b| b.create_topic(&topic, config))
                .await,
        ),
        ClientMsg::DeleteTopic { topic } => {
            done_or(shared.durable(move |b| b.delete_topic(&topic)).await)
        }
        ClientMsg::DescribeTopic { topic } => match broker.describe(&topic) {
            Ok(info) => ServerMsg::TopicInfo(Box::new(info)),
            Err(e) => ServerMsg::error(&e),
        },
        ClientMsg::ListGroups { topic } => match broker.groups(&topic) {
            Ok(groups) => ServerMsg::Groups(groups),
            Err(e) => ServerMsg::error(&e),
        },
        ClientMsg::DeleteGroup { topic, group } => done_or(
            shared
                .durable(move |b| b.delete_group(&topic, &group))
                .await,
        ),
        ClientMsg::Peek { topic, from, max } => peek(shared, &topic, from, max),
        ClientMsg::CreateGroup {
            topic,
            group,
            start,
        } => done_or(
            shared
                .durable(move |b| b.create_group(&topic, &group, start))
                .await,
        ),
        ClientMsg::SeekGroup { topic, group, to } => done_or(
            shared
                .durable(move |b| b.seek_group(&topic, &group, to))
                .await,
        ),
        ClientMsg::PurgeTopic { topic } => done_or(
            shared
                .durable(move |b| b.purge_topic(&topic).map(|_| ()))
                .await,
        ),
        ClientMsg::AlterTopic { topic, config, .. } => {
            done_or(shared.durable(move |b| b.alter_topic(&topic, config)).await)
        }
        ClientMsg::Stats { topic: None } => ServerMsg::BrokerStats(shared.broker_stats()),
        ClientMsg::Stats { topic: Some(topic) } => match broker.topic_stats(&topic) {
            Ok(stats) => ServerMsg::TopicStats(Box::new(stats)),
            Err(e) => ServerMsg::error(&e),
        },
        other => error(
            ErrorCode::Internal,
            format!("{other:?} is not an administrative request"),
        ),
    }
}

/// `Peeked`: up to `max` messages from `from`, as many as fit in half a frame.
fn peek(shared: &Shared, topic: &TopicName, from: StartPosition, max: u32) -> ServerMsg {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    match shared.broker.peek(topic, from, max) {
        Ok(found) => {
            let budget = shared.config.max_frame / 2;
            let mut bytes = 0;
            let messages = found
                .iter()
                .take_while(|m| {
                    bytes += m.encoded_size() as usize + DELIVERED_OVERHEAD;
                    bytes <= budget
                })
                .map(|m| WireDelivery::from(m.as_ref()))
                .collect();
            ServerMsg::Peeked { messages }
        }
        Err(e) => ServerMsg::error(&e),
    }
}
