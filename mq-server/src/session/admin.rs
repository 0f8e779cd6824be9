//! Administration and inspection: create, delete and describe topics, list and delete
//! groups, stats (listing topics lives with the permission check in `mod.rs`).

use mq_transport::{ClientMsg, ErrorCode, ServerMsg};

use super::{Shared, done_or, error};

/// Answers an administrative request.
pub(crate) async fn handle(shared: &Shared, request: ClientMsg) -> ServerMsg {
    let broker = &shared.broker;
    match request {
        ClientMsg::CreateTopic { topic, config } => done_or(
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
