//! The broker's behaviour through the network, one scenario per test.

use std::collections::BTreeSet;
use std::time::Duration;

use mq_client::{AckMode, ClientError, NewMessage, Subscription};
use mq_core::{Offset, TopicConfig};
use mq_transport::{ClientMsg, ErrorCode, ServerMsg};

use super::harness::Server;
use super::{group, topic};

fn text(d: &mq_client::Delivery) -> String {
    String::from_utf8_lossy(d.payload()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_delivers_every_message_to_every_group() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("news");
    let mut consumers = Vec::new();
    for g in ["a", "b", "c"] {
        let c = server.client().await;
        consumers.push(
            c.subscribe(Subscription::new(t.clone()).group(group(g)))
                .await
                .unwrap(),
        );
    }
    let producer = client.producer(t.clone());
    for i in 0..100 {
        producer
            .publish(NewMessage::new(format!("{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    for c in &mut consumers {
        let mut got = Vec::new();
        for _ in 0..100 {
            let d = c.recv().await.unwrap();
            got.push(text(&d));
            d.ack().await.unwrap();
        }
        assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_get_each_message_once() {
    let server = Server::start(&[]);
    let t = topic("jobs");
    let mut workers = Vec::new();
    for _ in 0..3 {
        let c = server.client().await;
        workers.push(
            c.subscribe(Subscription::new(t.clone()).group(group("w")).prefetch(5))
                .await
                .unwrap(),
        );
    }
    let client = server.client().await;
    let offsets = client
        .producer(t.clone())
        .send_batch((0..300).map(|i| NewMessage::new(format!("{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(offsets.len(), 300);
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for mut w in workers {
        let (received, done_tx, mut done_rx) = (received.clone(), done_tx.clone(), done_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let d = tokio::select! {
                    d = w.recv() => d.unwrap(),
                    _ = done_rx.changed() => break,
                };
                seen.push(d.offset().get());
                d.ack_confirmed().await.unwrap();
                if received.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 300 {
                    let _ = done_tx.send(true);
                    break;
                }
            }
            seen
        }));
    }
    let mut all = Vec::new();
    let mut busy = 0;
    for t in tasks {
        let seen = t.await.unwrap();
        busy += usize::from(!seen.is_empty());
        all.extend(seen);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..300).collect::<Vec<_>>(),
        "each message exactly once"
    );
    assert!(busy >= 2, "work was shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highest_priority_is_delivered_first() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("prio");
    let producer = client.producer(t.clone());
    for (p, name) in [
        (0, "low-1"),
        (7, "high-1"),
        (3, "mid"),
        (7, "high-2"),
        (0, "low-2"),
    ] {
        producer
            .send(NewMessage::new(name).priority(p))
            .await
            .unwrap();
    }
    let mut c = client
        .subscribe(Subscription::new(t).group(group("g")))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = c.recv().await.unwrap();
        got.push(text(&d));
        d.ack_confirmed().await.unwrap();
    }
    assert_eq!(got, ["high-1", "high-2", "mid", "low-1", "low-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_exclusive_consumer_is_refused_with_a_clear_error() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("solo");
    let _first = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("only"))
                .exclusive(true),
        )
        .await
        .unwrap();
    let other = server.client().await;
    let err = other
        .subscribe(Subscription::new(t).group(group("only")))
        .await
        .unwrap_err();
    match err {
        ClientError::GroupBusy { message } => {
            assert!(
                message.contains("\"solo\"") && message.contains("\"only\""),
                "{message}"
            );
        }
        other => panic!("expected GroupBusy, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_on_an_empty_topic_returns_nothing_at_once() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let mut c = client
        .subscribe(Subscription::new(topic("empty")))
        .await
        .unwrap();
    assert!(c.poll().unwrap().is_none());
    client
        .producer(topic("empty"))
        .send(NewMessage::new("x"))
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), c.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&d), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_a_killed_consumer_go_to_another() {
    let server = Server::start(&[]);
    let t = topic("handoff");
    let doomed_client = server.client().await;
    let mut doomed = doomed_client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    let producer = server.client().await.producer(t.clone());
    producer.send(NewMessage::new("precious")).await.unwrap();
    // The only consumer gets it and holds it un-acked.
    let d = doomed.recv().await.unwrap();
    assert_eq!(text(&d), "precious");
    let survivor_client = server.client().await;
    let mut survivor = survivor_client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    assert!(survivor.poll().unwrap().is_none());
    // The doomed consumer's connection dies without an ack.
    drop(doomed);
    drop(doomed_client);
    let again = tokio::time::timeout(Duration::from_secs(10), survivor.recv())
        .await
        .expect("redelivered in time")
        .unwrap();
    assert_eq!(text(&again), "precious");
    assert_eq!(again.deliveries(), 2);
    again.ack_confirmed().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_topic_refuses_publishes_until_consumers_catch_up() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("bounded");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(3);
    client.create_topic(&t, config).await.unwrap();
    let mut c = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("g"))
                .ack(AckMode::Manual),
        )
        .await
        .unwrap();
    let producer = client.producer(t.clone());
    for i in 0..3 {
        producer
            .send(NewMessage::new(format!("{i}")))
            .await
            .unwrap();
    }
    let err = producer.send(NewMessage::new("3")).await.unwrap_err();
    assert!(matches!(err, ClientError::TopicFull { .. }), "{err:?}");
    for _ in 0..3 {
        c.recv().await.unwrap().ack_confirmed().await.unwrap();
    }
    // Acked messages make room.
    assert_eq!(
        producer.send(NewMessage::new("3")).await.unwrap(),
        Offset(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_costs_the_server_no_more_than_its_window() {
    let server = Server::start(&[]);
    let t = topic("firehose");
    let slow_client = server.client().await;
    let mut slow = slow_client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("slow"))
                .prefetch(10),
        )
        .await
        .unwrap();
    let producer = server.client().await.producer(t.clone());
    let rss_before = server.rss_kib();
    for i in 0..100_000u32 {
        producer
            .publish(NewMessage::new(vec![(i % 251) as u8; 100]))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    // The pump fills the window as soon as it runs; wait until it has.
    let admin = server.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = admin.topic_stats(&t).await.unwrap();
        if stats.groups[0].in_flight == 10 || tokio::time::Instant::now() > deadline {
            break stats;
        }
        tokio::task::yield_now().await;
    };
    let g = &stats.groups[0];
    assert_eq!(stats.retained, 100_000);
    assert_eq!(g.in_flight, 10, "never more in flight than the window");
    assert_eq!(g.pending, 100_000 - 10);
    let rss_after = server.rss_kib();
    let grown_mib = rss_after.saturating_sub(rss_before) / 1024;
    eprintln!(
        "server RSS {rss_before} KiB -> {rss_after} KiB (+{grown_mib} MiB) for 100,000 retained messages"
    );
    // The log itself holds ~10 MB of payload; nothing like a copy per consumer.
    assert!(grown_mib < 150, "server grew {grown_mib} MiB");
    assert!(slow.poll().unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_with_clients_connected() {
    let server = Server::start(&[]);
    let client = server.client_without_reconnect().await;
    let t = topic("bye");
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    client.producer(t).send(NewMessage::new("x")).await.unwrap();
    c.recv().await.unwrap();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let err = tokio::time::timeout(Duration::from_secs(5), c.recv())
        .await
        .unwrap()
        .unwrap_err();
    match err {
        ClientError::ConnectionClosed { reason } => {
            assert_eq!(reason.as_deref(), Some("server is shutting down"));
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(matches!(
        client.ping().await,
        Err(ClientError::ConnectionClosed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_auth_token_is_refused() {
    let server = Server::start(&["--auth-token", "s3cret"]);
    for token in [None, Some("wrong")] {
        match server.client_with_token(token).await {
            Err(ClientError::Server { code, .. }) => {
                assert_eq!(code, mq_transport::ErrorCode::Unauthorized);
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }
    let ok = server.client_with_token(Some("s3cret")).await.unwrap();
    ok.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_create_list_describe_and_delete() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("admin");
    client
        .create_topic(&t, TopicConfig::default())
        .await
        .unwrap();
    assert!(matches!(
        client.create_topic(&t, TopicConfig::default()).await,
        Err(ClientError::Server {
            code: mq_transport::ErrorCode::TopicExists,
            ..
        })
    ));
    assert_eq!(client.topics().await.unwrap(), vec![t.clone()]);
    let c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    assert_eq!(client.groups(&t).await.unwrap()[0].consumers, 1);
    c.unsubscribe().await.unwrap();
    client.delete_group(&t, &group("g")).await.unwrap();
    let info = client.describe(&t).await.unwrap();
    assert_eq!(info.config, TopicConfig::default());
    client.delete_topic(&t).await.unwrap();
    assert!(client.topics().await.unwrap().is_empty());
    let stats = client.stats().await.unwrap();
    assert!(stats.connections >= 1);
    let names: BTreeSet<_> = client.topics().await.unwrap().into_iter().collect();
    assert!(names.is_empty());
}

/// Subscribes on a raw connection of protocol `version` with `start`; returns the reply.
fn raw_subscribe(addr: &str, version: u16, start: mq_core::StartPosition) -> ServerMsg {
    let (mut raw, _) = super::harness::Raw::speaking(addr, None, version);
    raw.send(
        2,
        ClientMsg::Subscribe(mq_transport::SubscribeRequest {
            topic: topic("kept"),
            group: Some(group("g")),
            start,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: true,
            prefetch: 10,
        }),
    );
    raw.recv().msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_for_an_existing_group_is_ignored_in_version_1_and_refused_in_version_2() {
    let server = Server::start(&[]);
    let client = server.client().await;
    client
        .publish(&topic("kept"), vec![NewMessage::new("x")])
        .await
        .unwrap();
    client
        .create_group(&topic("kept"), &group("g"), mq_core::StartPosition::Latest)
        .await
        .unwrap();
    let start = mq_core::StartPosition::Offset(mq_core::Offset(0));
    assert!(matches!(
        raw_subscribe(&server.addr, 1, start),
        ServerMsg::Subscribed { .. }
    ));
    match raw_subscribe(&server.addr, 2, start) {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::StartConflict);
            assert!(message.contains("mq groups seek"), "{message}");
        }
        other => panic!("expected start_conflict, got {other:?}"),
    }
    assert!(matches!(
        raw_subscribe(&server.addr, 2, mq_core::StartPosition::Resume),
        ServerMsg::Subscribed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_create_a_publish_needs_the_topic_to_exist() {
    let server = Server::start(&["--auto-create-topics", "false"]);
    let client = server.client().await;
    let err = client
        .publish(&topic("later"), vec![NewMessage::new("x")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Server {
                code: ErrorCode::TopicNotFound,
                ..
            }
        ),
        "{err}"
    );
    client
        .create_topic(&topic("later"), TopicConfig::default())
        .await
        .unwrap();
    client
        .publish(&topic("later"), vec![NewMessage::new("x")])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_made_without_waiting_all_reach_the_server() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("queued-acks");
    let mut consumer = client
        .subscribe(Subscription::new(t.clone()).group(group("g")).prefetch(50))
        .await
        .unwrap();
    let producer = client.producer(t.clone());
    for i in 0..2000 {
        producer
            .publish(NewMessage::new(format!("{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    // A window of 50: the 2,000 deliveries come only as the queued acks reach the server.
    for i in 0..2000 {
        let d = consumer.recv().await.unwrap();
        assert_eq!(text(&d), i.to_string());
        d.ack().await.unwrap();
    }
    consumer.flush_acks().await.unwrap();
    let stats = client.groups(&t).await.unwrap();
    assert_eq!((stats[0].acked, stats[0].in_flight), (2000, 0));
    assert!(consumer.poll().unwrap().is_none());
}

#[tokio::test]
async fn acks_not_yet_sent_when_a_consumer_is_dropped_go_with_its_detach() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("dropped-acks");
    let mut consumer = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    let producer = client.producer(t.clone());
    for i in 0..10 {
        producer
            .send(NewMessage::new(format!("{i}")))
            .await
            .unwrap();
    }
    for _ in 0..10 {
        consumer.recv().await.unwrap().ack().await.unwrap();
    }
    // On this one-thread runtime nothing has sent the acks yet: they leave with the detach.
    drop(consumer);
    let stats = client.groups(&t).await.unwrap();
    assert_eq!((stats[0].acked, stats[0].in_flight), (10, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_producer_shared_by_threads_and_tasks_keeps_each_callers_order() {
    // Callers outside the runtime send their own batches when the producer is idle, callers
    // inside it too; the batcher takes the rest. Whoever sends, every caller's messages are
    // stored once, in its order, and `send` answers with the message's own offset.
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("shared");
    let producer = client.producer(t.clone());
    let runtime = tokio::runtime::Handle::current();
    const PER_CALLER: u32 = 500;
    let threads: Vec<_> = (0..3u32)
        .map(|caller| {
            let (producer, runtime) = (producer.clone(), runtime.clone());
            std::thread::spawn(move || {
                for i in 0..PER_CALLER {
                    let body = format!("{caller}:{i}");
                    if i % 50 == 0 {
                        runtime
                            .block_on(producer.send(NewMessage::new(body)))
                            .unwrap();
                    } else {
                        runtime
                            .block_on(producer.publish(NewMessage::new(body)))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (3..5u32)
        .map(|caller| {
            let producer = producer.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0..PER_CALLER {
                    let body = format!("{caller}:{i}");
                    if i % 50 == 0 {
                        sent.push((
                            producer.send(NewMessage::new(body.clone())).await.unwrap(),
                            body,
                        ));
                    } else {
                        producer.publish(NewMessage::new(body)).await.unwrap();
                    }
                }
                sent
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    for thread in threads {
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut consumer = client
        .subscribe(Subscription::new(t.clone()).ack(AckMode::Auto))
        .await
        .unwrap();
    let mut next = [0u32; 5];
    let mut at = std::collections::HashMap::new();
    for _ in 0..5 * PER_CALLER {
        let d = consumer.recv().await.unwrap();
        let body = text(&d);
        let (caller, i) = body.split_once(':').unwrap();
        let (caller, i): (usize, u32) = (caller.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[caller], "caller {caller} out of order");
        next[caller] += 1;
        at.insert(body, d.offset());
    }
    for (offset, body) in sent {
        assert_eq!(at[&body], offset, "send answered another message's offset");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_sharing_a_small_publish_buffer_store_everything_and_give_bytes_back() {
    // A buffer of 4 KiB holds about 48 of these messages across all producers: publishing
    // 2,000 to 20 topics goes through it many times over, and refused publishes give their
    // bytes back too (else the buffer would fill and every later publish wait for ever).
    let server = Server::start(&["--auto-create-topics", "false"]);
    let config = mq_client::ClientConfig {
        publish_buffer: 4096,
        ..mq_client::ClientConfig::default()
    };
    let client = mq_client::Client::connect_with(&server.addr, config)
        .await
        .unwrap();
    let topics: Vec<_> = (0..20).map(|i| topic(&format!("buffered-{i}"))).collect();
    for t in &topics {
        client
            .create_topic(t, TopicConfig::default())
            .await
            .unwrap();
    }
    let producers: Vec<_> = topics.iter().map(|t| client.producer(t.clone())).collect();
    for i in 0..100 {
        for p in &producers {
            p.publish(NewMessage::new(format!("{i:020}")))
                .await
                .unwrap();
        }
    }
    let missing = client.producer(topic("missing"));
    let refused = async {
        for _ in 0..200 {
            assert!(missing.send(NewMessage::new("x".repeat(20))).await.is_err());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), refused)
        .await
        .expect("refused publishes gave their bytes back");
    for p in &producers {
        p.flush().await.unwrap();
    }
    for t in &topics {
        let mut consumer = client
            .subscribe(Subscription::new(t.clone()).ack(AckMode::Auto))
            .await
            .unwrap();
        for i in 0..100 {
            assert_eq!(text(&consumer.recv().await.unwrap()), format!("{i:020}"));
        }
    }
}
