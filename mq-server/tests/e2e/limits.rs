//! The limits that protect the server (connections, deadlines, read buffers), its
//! configuration sources, the handler loop, and the in-process transport.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mq_client::{
    AckMode, Client, ClientConfig, ClientError, Delivery, Handler, HandlerError, NewMessage,
    Subscription,
};
use mq_core::{Broker, TopicConfig};
use mq_transport::{
    ClientMsg, ErrorCode, InProcessTransport, ServerMsg, SubscribeRequest, Transport,
};

use super::harness::{Raw, Server};
use super::{group, topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_server_busy() {
    let server = Server::start(&["--max-connections", "1"]);
    let first = server.client().await;
    match Client::connect(&server.addr).await {
        Err(ClientError::ConnectionClosed {
            reason: Some(reason),
        }) => {
            assert!(reason.contains("limit of 1 connections"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    first.ping().await.unwrap();
}

#[test]
fn a_connection_without_a_handshake_is_closed_at_the_deadline() {
    let server = Server::start(&["--handshake-timeout", "200ms"]);
    let mut raw = Raw::connect(&server.addr);
    match raw.recv().msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::Timeout);
            assert!(message.contains("no handshake within 200ms"), "{message}");
        }
        other => panic!("expected a timeout error, got {other:?}"),
    }
    assert!(raw.closed_by_server());
}

#[test]
fn an_idle_version_1_connection_without_subscriptions_is_closed() {
    let server = Server::start(&["--idle-timeout", "300ms"]);
    let (mut raw, welcome) = Raw::speaking(&server.addr, None, 1);
    assert!(matches!(
        welcome,
        ServerMsg::Welcome {
            version: 1,
            heartbeat_ms: 0,
            ..
        }
    ));
    raw.send(2, ClientMsg::Ping);
    assert_eq!(raw.recv().msg, ServerMsg::Pong);
    match raw.recv().msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::Timeout);
            assert!(message.contains("idle for 300ms"), "{message}");
        }
        other => panic!("expected an idle timeout, got {other:?}"),
    }
    assert!(raw.closed_by_server());
}

#[test]
fn a_version_2_connection_that_stops_sending_pings_is_closed_even_with_a_subscription() {
    let server = Server::start(&["--heartbeat-interval", "200ms"]);
    let (mut raw, welcome) = Raw::speaking(&server.addr, None, 2);
    assert!(matches!(
        welcome,
        ServerMsg::Welcome {
            version: 2,
            heartbeat_ms: 200,
            ..
        }
    ));
    raw.send(
        2,
        ClientMsg::Subscribe(SubscribeRequest {
            topic: topic("quiet"),
            group: None,
            start: mq_core::StartPosition::Earliest,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: true,
            prefetch: 10,
        }),
    );
    assert!(matches!(raw.recv().msg, ServerMsg::Subscribed { .. }));
    match raw.recv().msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::Timeout);
            assert!(
                message.contains("3 heartbeat intervals of 200ms"),
                "{message}"
            );
        }
        other => panic!("expected a heartbeat timeout, got {other:?}"),
    }
    assert!(raw.closed_by_server());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_sdk_consumer_is_kept_alive_by_its_heartbeats() {
    let server = Server::start(&["--heartbeat-interval", "100ms", "--idle-timeout", "100ms"]);
    let client = server.client().await;
    let mut sub = client
        .subscribe(Subscription::new(topic("later")).group(group("g")))
        .await
        .unwrap();
    // Ten silent intervals later (the server closes after three), the connection still
    // serves: the SDK pinged on its own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!client.is_closed());
    client
        .publish(&topic("later"), vec![NewMessage::new("still here")])
        .await
        .unwrap();
    assert_eq!(sub.recv().await.unwrap().payload(), &b"still here"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_the_config_file_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("mq-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mq.toml");
    std::fs::write(
        &file,
        "auth_token = \"from-file\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    // --listen (given by the harness) wins over the file's listen; the token comes from the file.
    let config = ["--storage", "memory", "--config", file.to_str().unwrap()];
    let server = Server::start_with(&config);
    assert!(server.client_with_token(Some("from-file")).await.is_ok());
    assert!(server.client_with_token(None).await.is_err());
    drop(server);
    // The environment wins over the file, and a flag over both.
    let env = [("MQ_AUTH_TOKEN", "from-env")];
    let server = Server::start_with_env(&env, &config);
    assert!(server.client_with_token(Some("from-env")).await.is_ok());
    assert!(server.client_with_token(Some("from-file")).await.is_err());
    drop(server);
    let flagged = [&config[..], &["--auth-token", "from-flag"]].concat();
    let server = Server::start_with_env(&env, &flagged);
    assert!(server.client_with_token(Some("from-flag")).await.is_ok());
    assert!(server.client_with_token(Some("from-env")).await.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

struct FailOdd;

#[async_trait]
impl Handler for FailOdd {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let n: u32 = std::str::from_utf8(delivery.payload())?.parse()?;
        if n % 2 == 1 {
            return Err(format!("cannot handle odd {n}").into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_nacks_until_the_message_is_dead_lettered() {
    let server = Server::start(&[]);
    let client = server.client().await;
    let t = topic("tasks");
    let mut config = TopicConfig::default();
    config.groups.max_deliveries = Some(3);
    client.create_topic(&t, config).await.unwrap();
    let producer = client.producer(t.clone());
    for i in 0..4 {
        producer.send(NewMessage::new(i.to_string())).await.unwrap();
    }
    let mut consumer = client
        .subscribe(Subscription::new(t.clone()).group(group("h")))
        .await
        .unwrap();
    let run = tokio::spawn(async move { consumer.run(&FailOdd).await });
    let mut dlq = client
        .subscribe(Subscription::new(topic("tasks.dlq")).group(group("inspect")))
        .await
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(10), dlq.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            d.header("x-mq-dlq-deliveries").map(|v| &v[..]),
            Some(&b"3"[..])
        );
        dead.push(String::from_utf8(d.payload().to_vec()).unwrap());
        d.ack_confirmed().await.unwrap();
    }
    dead.sort();
    assert_eq!(dead, ["1", "3"]);
    // The handler's acks of the valid messages may still be on their way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = client.groups(&t).await.unwrap();
        if stats[0].acked == 2 || tokio::time::Instant::now() > deadline {
            break stats;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!((stats[0].acked, stats[0].dead_lettered), (2, 2));
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_run_over_the_in_process_transport() {
    let transport = InProcessTransport::new();
    let listener = transport.bind("").await.unwrap();
    let addr = listener.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mq_server::run(
        listener,
        Broker::new(),
        mq_server::ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let config = ClientConfig {
        transport: std::sync::Arc::new(transport),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&addr, config).await.unwrap();
    let t = topic("local");
    let mut c = client
        .subscribe(Subscription::new(t.clone()))
        .await
        .unwrap();
    client
        .producer(t)
        .send(NewMessage::new("no socket"))
        .await
        .unwrap();
    assert_eq!(&c.recv().await.unwrap().payload()[..], b"no socket");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_client_has_the_same_api() {
    let client = Client::embedded(Broker::new());
    let t = topic("embedded");
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    assert!(c.poll().unwrap().is_none());
    let offsets = client
        .producer(t.clone())
        .send_batch(vec![NewMessage::new("a"), NewMessage::new("b")])
        .await
        .unwrap();
    assert_eq!(offsets.len(), 2);
    let d = c.next().await.unwrap().unwrap();
    d.nack(None).await.unwrap();
    // "b" was already buffered; the nacked "a" comes back after it.
    let b = c.recv().await.unwrap();
    assert_eq!(&b.payload()[..], b"b");
    let again = c.recv().await.unwrap();
    assert_eq!((again.offset(), again.deliveries()), (d.offset(), 2));
    assert_eq!(client.describe(&t).await.unwrap().stats.published, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_an_embedded_consumer_detaches_it_while_its_deliveries_live_on() {
    let client = Client::embedded(Broker::new());
    let t = topic("embedded-detach");
    let exclusive = || {
        Subscription::new(t.clone())
            .group(group("g"))
            .exclusive(true)
    };
    let mut c = client.subscribe(exclusive()).await.unwrap();
    client
        .producer(t.clone())
        .send(NewMessage::new("held"))
        .await
        .unwrap();
    let held = c.recv().await.unwrap();
    c.unsubscribe().await.unwrap();
    let groups = client.groups(&t).await.unwrap();
    assert_eq!((groups[0].consumers, groups[0].in_flight), (0, 0));
    // The exclusive group is free again, and the delivery still held went back to it.
    let mut again = client.subscribe(exclusive()).await.unwrap();
    let d = again.recv().await.unwrap();
    assert_eq!((d.offset(), d.deliveries()), (held.offset(), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_broker_cleans_up_like_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let storage = mq_core::FileStorage::open(
        dir.path(),
        mq_core::FileOptions {
            fsync: mq_core::FsyncPolicy::Always,
            ..mq_core::FileOptions::default()
        },
    )
    .unwrap();
    let client = Client::embedded(Broker::builder().storage(storage).build().unwrap());
    let t = topic("cleaned");
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    client
        .producer(t.clone())
        .send(NewMessage::new("done soon"))
        .await
        .unwrap();
    c.recv().await.unwrap().ack_confirmed().await.unwrap();
    // Nobody calls tick: the embedded client's cleaner removes what every group acked.
    let cleaned = async {
        while client.topic_stats(&t).await.unwrap().retained > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), cleaned)
        .await
        .expect("retention runs in-process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_server_refuses_to_serve_beyond_loopback() {
    // The check comes before anything is bound.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args(["--listen", "0.0.0.0:0", "--storage", "memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-anonymous"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let server = Server::start(&["--auth-token-file", file.to_str().unwrap()]);
    assert!(server.client_with_token(Some("from-a-file")).await.is_ok());
    assert!(server.client_with_token(None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_past_the_read_buffer_pool_closes_only_its_connection() {
    let server = Server::start(&["--max-read-buffers", "100000"]);
    let honest = server.client().await;
    let mut raw = Raw::handshaken(&server.addr, None);
    // A frame announcing 1 MiB: only the 110,000 bytes that arrive are charged, and they
    // are more than the pool holds.
    let mut partial = (1u32 << 20).to_be_bytes().to_vec();
    partial.resize(4 + 110_000, 0);
    raw.write(&partial);
    match raw.recv().msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::ServerBusy);
            assert!(message.contains("partially received frames"), "{message}");
        }
        other => panic!("expected server_busy, got {other:?}"),
    }
    assert!(raw.closed_by_server());
    honest.ping().await.unwrap();
    // The refused connection gave its bytes back: a whole large frame gets through now.
    let t = topic("read-buffers");
    honest
        .create_topic(&t, TopicConfig::default())
        .await
        .unwrap();
    honest
        .producer(t)
        .send(NewMessage::new(vec![7u8; 90_000]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_socket_takes_nothing_is_closed_and_its_deliveries_go_back() {
    const MESSAGES: usize = 400;
    let server = Server::start(&["--stall-timeout", "300ms"]);
    let client = server.client().await;
    let t = topic("stalled");
    client
        .create_topic(&t, TopicConfig::default())
        .await
        .unwrap();
    // A manual-ack consumer that subscribes and then never reads its socket.
    let mut raw = Raw::handshaken(&server.addr, None);
    raw.send(
        2,
        ClientMsg::Subscribe(SubscribeRequest {
            topic: t.clone(),
            group: Some(group("g")),
            start: mq_core::StartPosition::Earliest,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: true,
            prefetch: 10_000,
        }),
    );
    assert!(matches!(raw.recv().msg, ServerMsg::Subscribed { .. }));
    // 25 MiB of deliveries: more than the socket buffers between them hold.
    let producer = client.producer(t.clone());
    for _ in 0..MESSAGES {
        producer
            .send(NewMessage::new(vec![0u8; 64 * 1024]))
            .await
            .unwrap();
    }
    // Another consumer of the group gets every message, those that were in flight to the
    // stalled one included, once the server has closed it (well before the 30 s ack
    // timeout would send them back).
    let mut consumer = client
        .subscribe(Subscription::new(t).group(group("g")).ack(AckMode::Manual))
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let all = async {
        while seen.len() < MESSAGES {
            let d = consumer.recv().await.unwrap();
            seen.insert(d.offset());
            d.ack_confirmed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("the stalled consumer's deliveries come back");
    drop(raw);
}

/// Publishes 4 KiB messages round-robin to 20 topics, `per_topic` each, until one is
/// refused; returns how many were stored and the refusal.
async fn fill_twenty_topics(client: &Client, per_topic: usize) -> (usize, Option<ClientError>) {
    let payload = vec![b'x'; 4096];
    for i in 0..20 * per_topic {
        let t = topic(&format!("bound-{}", i % 20));
        if let Err(e) = client
            .publish(&t, vec![NewMessage::new(payload.clone())])
            .await
        {
            return (i, Some(e));
        }
    }
    (20 * per_topic, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_memory_topics_cannot_exceed_one_memory_bound() {
    let bound: u64 = 4 << 20;
    let server = Server::start(&["--max-memory", &bound.to_string()]);
    let client = server.client().await;
    let before = server.rss_kib();
    let (stored, refused) = fill_twenty_topics(&client, 750).await;
    match refused {
        Some(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::MemoryFull);
            assert!(message.contains("--max-memory"), "{message}");
        }
        other => panic!("expected memory_full after {stored}, got {other:?}"),
    }
    let stats = client.stats().await.unwrap();
    assert!(
        stats.memory_bytes <= bound,
        "{} bytes held",
        stats.memory_bytes
    );
    assert_eq!(stats.memory_limit, Some(bound));
    assert!(
        stored < 1100,
        "{stored} messages of 4 KiB stored under a 4 MiB bound"
    );
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 24 << 10, "the server grew by {grown} KiB");

    // Consumers go on at the bound, and what they ack makes room again.
    let mut sub = client
        .subscribe(
            Subscription::new(topic("bound-0"))
                .group(group("g"))
                .ack(AckMode::Manual),
        )
        .await
        .unwrap();
    let first = sub.recv().await.unwrap();
    first.ack_confirmed().await.unwrap();
    let mut again = Err(ClientError::ConnectionClosed { reason: None });
    for _ in 0..100 {
        again = client
            .publish(&topic("bound-1"), vec![NewMessage::new("after")])
            .await;
        if again.is_ok() {
            break;
        }
        let d = sub.recv().await.unwrap();
        d.ack_confirmed().await.unwrap();
    }
    again.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_file_topics_keep_one_memory_bound_and_serve_everything() {
    let dir = tempfile::tempdir().unwrap();
    let bound: u64 = 4 << 20;
    let server = Server::start_with(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--fsync",
        "never",
        "--max-memory",
        &bound.to_string(),
    ]);
    let client = server.client().await;
    let before = server.rss_kib();
    let (stored, refused) = fill_twenty_topics(&client, 750).await;
    assert!(refused.is_none(), "{refused:?} after {stored}");
    let stats = client.stats().await.unwrap();
    assert!(
        stats.memory_bytes <= bound,
        "{} bytes held",
        stats.memory_bytes
    );
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 24 << 10,
        "the server grew by {grown} KiB for 60 MiB stored"
    );
    let mut sub = client
        .subscribe(Subscription::new(topic("bound-7")).ack(AckMode::Auto))
        .await
        .unwrap();
    for _ in 0..750 {
        assert_eq!(sub.recv().await.unwrap().payload().len(), 4096);
    }
    let stats = client.stats().await.unwrap();
    assert!(
        stats.memory_bytes <= bound,
        "{} bytes held",
        stats.memory_bytes
    );
}
