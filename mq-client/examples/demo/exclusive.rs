//! exclusive: a topic auto-created on first use, `poll` returning nothing on an empty topic,
//! a second exclusive consumer refused with a clear error, and a handle used after the
//! server closed its connection failing with a clear error.

use mq_client::{ClientError, NewMessage, Subscription};
use mq_core::{GroupName, TopicName};

use crate::Claims;
use crate::server::Server;

pub(crate) async fn run(server: Server, claims: &mut Claims) -> anyhow::Result<()> {
    let client = server.client().await?;
    let topic = TopicName::new("demo.solo")?;
    let group = GroupName::new("owner")?;
    claims.check(
        client.topics().await?.is_empty(),
        "the broker starts with no topics",
    );
    let mut owner = client
        .subscribe(
            Subscription::new(topic.clone())
                .group(group.clone())
                .exclusive(true),
        )
        .await?;
    claims.check(
        client.topics().await? == vec![topic.clone()],
        "subscribing created demo.solo on first use",
    );
    claims.check(
        owner.poll()?.is_none(),
        "poll on the empty topic returned nothing, at once",
    );

    let rival_client = server.client().await?;
    match rival_client
        .subscribe(
            Subscription::new(topic.clone())
                .group(group.clone())
                .exclusive(true),
        )
        .await
    {
        Err(ClientError::GroupBusy { message }) => {
            claims.say(format!("second consumer refused: {message}"));
            claims.check(
                true,
                "a second exclusive consumer was refused, naming topic and group",
            );
        }
        other => claims.check(
            false,
            format!("a second exclusive consumer was refused (got {other:?})"),
        ),
    }

    client
        .producer(topic.clone())
        .send(NewMessage::new("only for the owner"))
        .await?;
    let d = owner.recv().await?;
    d.ack().await?;
    claims.check(
        &d.payload()[..] == b"only for the owner",
        "the owner received the message",
    );

    let status = tokio::task::spawn_blocking(move || server.stop()).await??;
    claims.check(status.success(), "the server shut down gracefully (exit 0)");
    match client.ping().await {
        Err(e @ ClientError::ConnectionClosed { .. }) => {
            claims.say(format!("using the old handle: {e}"));
            claims.check(
                true,
                "a handle used after the server closed its connection failed clearly",
            );
        }
        other => claims.check(
            false,
            format!("a handle used after close fails (got {other:?})"),
        ),
    }
    Ok(())
}
