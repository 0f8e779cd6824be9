//! `DescribeGroup` against the real server: each consumer with its connection, and the
//! diagnosis of why a group is (or is not) getting messages — one test per case.

use std::time::Duration;

use mq_client::{AckMode, Client, GroupReport, NewMessage, Subscription, TopicConfig};
use mq_core::StartPosition;
use mq_transport::{ClientMsg, ServerMsg, SubscribeRequest};

use super::harness::{Raw, Server};
use super::{group, topic};

async fn publish(client: &Client, t: &str, n: usize) {
    let batch = (0..n).map(|i| NewMessage::new(format!("m{i}"))).collect();
    client.publish(&topic(t), batch).await.unwrap();
}

async fn report(client: &Client, t: &str, g: &str) -> GroupReport {
    client.describe_group(&topic(t), &group(g)).await.unwrap()
}

/// Waits until the group's report satisfies `done` (deliveries reach the client
/// asynchronously).
async fn report_when(
    client: &Client,
    t: &str,
    g: &str,
    done: impl Fn(&GroupReport) -> bool,
) -> GroupReport {
    loop {
        let r = report(client, t, g).await;
        if done(&r) {
            return r;
        }
        tokio::task::yield_now().await;
    }
}

fn manual(t: &str, g: &str, prefetch: u32) -> Subscription {
    Subscription::new(topic(t))
        .group(group(g))
        .ack(AckMode::Manual)
        .prefetch(prefetch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consumer_attached() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let sub = client.subscribe(manual("t", "g", 10)).await.unwrap();
    sub.unsubscribe().await.unwrap();
    publish(&client, "t", 3).await;
    let r = report(&client, "t", "g").await;
    assert!(r.group.consumers.is_empty());
    assert_eq!(r.diagnosis, "no consumer is attached: 3 messages waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_consumer_at_its_prefetch_window() {
    let server = Server::start(&[]);
    let client = server.client().await;
    publish(&client, "t", 5).await;
    let mut sub = client.subscribe(manual("t", "g", 2)).await.unwrap();
    let first = sub.recv().await.unwrap();
    let r = report_when(&client, "t", "g", |r| r.group.stats.in_flight == 2).await;
    let c = &r.group.consumers[0];
    assert_eq!((c.prefetch, c.in_flight), (2, 2));
    assert_eq!(c.oldest_unacked[0].offset, first.offset());
    let k = &r.connections[0];
    assert_eq!(k.consumer, c.id);
    assert!(k.peer.starts_with("127.0.0.1:"), "{}", k.peer);
    assert!(k.client.starts_with("mq-client"), "{}", k.client);
    assert!(
        r.diagnosis.starts_with(
            "every consumer is at its prefetch window with 3 messages waiting: 2 deliveries \
             un-acked, the oldest (offset 0) delivered"
        ),
        "{}",
        r.diagnosis
    );
    assert!(
        r.diagnosis
            .contains(&format!("on connection {} ({})", k.connection, k.peer)),
        "{}",
        r.diagnosis
    );
    first.ack_confirmed().await.unwrap();
    let r = report_when(&client, "t", "g", |r| {
        r.group.consumers[0].last_ack.is_some()
    })
    .await;
    assert!(r.group.stats.acked >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_nack_delay() {
    let server = Server::start(&[]);
    let client = server.client().await;
    publish(&client, "t", 1).await;
    let mut sub = client.subscribe(manual("t", "g", 10)).await.unwrap();
    sub.recv()
        .await
        .unwrap()
        .nack(Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    let r = report(&client, "t", "g").await;
    assert!(r.group.next_delayed.is_some());
    assert!(
        r.diagnosis
            .starts_with("messages wait for a nack delay until 20"),
        "{}",
        r.diagnosis
    );
    assert!(r.diagnosis.ends_with("from now)"), "{}", r.diagnosis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_has_nothing_new_and_says_what_retention_deleted() {
    let server = Server::start(&[]);
    let client = server.client().await;
    client
        .create_topic(&topic("t"), TopicConfig::default())
        .await
        .unwrap();
    let mut first = client
        .subscribe(manual("t", "first", 10).start(StartPosition::Earliest))
        .await
        .unwrap();
    publish(&client, "t", 2).await;
    for _ in 0..2 {
        first.recv().await.unwrap().ack_confirmed().await.unwrap();
    }
    let r = report(&client, "t", "first").await;
    assert_eq!(
        r.diagnosis,
        "the topic has nothing new: the group has everything up to offset 2"
    );
    // The cleaner deletes what every group acked (retain_consumed 0); a group created
    // afterwards from earliest gets nothing, and is told why.
    loop {
        let stats = client.topic_stats(&topic("t")).await.unwrap();
        if stats.first_offset.get() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _late = client
        .subscribe(manual("t", "late", 10).start(StartPosition::Earliest))
        .await
        .unwrap();
    let r = report(&client, "t", "late").await;
    assert!(
        r.diagnosis.contains(
            "messages before offset 2 were deleted once the other groups had acked them \
             (retain_consumed is 0s"
        ),
        "{}",
        r.diagnosis
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_group_names_the_connection_holding_it() {
    let server = Server::start(&[]);
    let client = server.client().await;
    publish(&client, "t", 3).await;
    let mut sub = client
        .subscribe(manual("t", "g", 1).exclusive(true))
        .await
        .unwrap();
    let _held = sub.recv().await.unwrap();
    let r = report_when(&client, "t", "g", |r| r.group.stats.in_flight == 1).await;
    assert!(r.group.exclusive);
    let k = &r.connections[0];
    assert!(
        r.diagnosis.starts_with(&format!(
            "the group is exclusive and held by connection {} ({}): every consumer is at its \
             prefetch window",
            k.connection, k.peer
        )),
        "{}",
        r.diagnosis
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stopped_reading_is_named() {
    let server = Server::start(&[]);
    let client = server.client().await;
    // A raw client subscribes and never reads: its socket fills up.
    let mut raw = Raw::handshaken(&server.addr, None);
    raw.send(
        2,
        ClientMsg::Subscribe(SubscribeRequest {
            topic: topic("big"),
            group: Some(group("g")),
            start: StartPosition::Earliest,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: true,
            prefetch: 10_000,
        }),
    );
    assert!(matches!(raw.recv().msg, ServerMsg::Subscribed { .. }));
    let payload = vec![b'x'; 64 * 1024];
    for _ in 0..8 {
        let batch = (0..64).map(|_| NewMessage::new(payload.clone())).collect();
        client.publish(&topic("big"), batch).await.unwrap();
    }
    let r = report_when(&client, "big", "g", |r| {
        r.connections.first().is_some_and(|k| k.stopped_reading)
    })
    .await;
    assert!(
        r.diagnosis
            .contains("stopped reading: nothing more can be sent to it"),
        "{}",
        r.diagnosis
    );
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_group_is_consuming() {
    let server = Server::start(&[]);
    let client = server.client().await;
    publish(&client, "t", 4).await;
    let mut sub = client.subscribe(manual("t", "g", 100)).await.unwrap();
    sub.recv().await.unwrap().ack_confirmed().await.unwrap();
    let r = report_when(&client, "t", "g", |r| r.group.stats.in_flight == 3).await;
    assert!(
        r.diagnosis
            .starts_with("consuming: 0 waiting, 3 in flight, last delivery"),
        "{}",
        r.diagnosis
    );
}
