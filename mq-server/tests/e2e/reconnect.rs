//! Clients across server restarts: the SDK reconnects, producers resend what was not
//! acknowledged (stored once), consumers go on where their group is, and a client that
//! cannot reconnect gives up with a typed error.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mq_client::{
    AckMode, Client, ClientConfig, ClientError, NewMessage, Reconnect, StartPosition, Subscription,
    TopicConfig,
};

use crate::harness::Server;
use crate::{group, topic};

fn file_args(dir: &std::path::Path) -> Vec<String> {
    ["--data-dir", dir.to_str().unwrap(), "--fsync", "always"]
        .map(str::to_owned)
        .to_vec()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_and_a_consumer_carry_on_across_server_crashes() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let args = file_args(dir.path());
    let mut server = Server::start_with(&as_strs(&args));
    let addr = server.addr.clone();
    let client = Client::connect(&addr).await.unwrap();
    let t = topic("resilient");
    let mut config = TopicConfig::default();
    // Keep what was consumed, so that the count at the end shows every copy stored.
    config.retention.retain_consumed = Duration::from_secs(3600);
    client.create_topic(&t, config).await.unwrap();
    let mut consumer = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("workers"))
                .ack(AckMode::Manual)
                .prefetch(64),
        )
        .await
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let consuming = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut payloads = HashSet::new();
            let mut acked = HashSet::new();
            while payloads.len() < N {
                let d = consumer.recv().await.expect("the consumer goes on");
                assert!(
                    !acked.contains(&d.offset()),
                    "offset {} was acked and delivered again",
                    d.offset()
                );
                payloads.insert(String::from_utf8(d.payload().to_vec()).unwrap());
                match d.ack_confirmed().await {
                    Ok(()) => {
                        acked.insert(d.offset());
                    }
                    // Delivered over a connection lost since: it comes again.
                    Err(ClientError::Redelivered { .. } | ClientError::ConnectionClosed { .. }) => {
                    }
                    Err(e) => panic!("ack failed: {e}"),
                }
                seen.store(payloads.len(), Ordering::Relaxed);
                let _ = progress_tx.send(payloads.len());
            }
            payloads
        })
    };
    let producing = {
        let producer = client.producer(t.clone());
        tokio::spawn(async move {
            for i in 0..N {
                producer
                    .publish(NewMessage::new(format!("m{i}")))
                    .await
                    .expect("publish goes on");
            }
            producer.flush().await
        })
    };
    // Two crashes, each once the consumer is a third further.
    for third in 1..=2 {
        progress
            .wait_for(|n| *n >= third * N / 3)
            .await
            .expect("consumer running");
        server.crash();
        server = Server::start_on(&addr, &as_strs(&args));
    }
    producing
        .await
        .unwrap()
        .expect("every publish acknowledged");
    let payloads = tokio::time::timeout(Duration::from_secs(120), consuming)
        .await
        .expect("the consumer sees every message")
        .unwrap();
    assert_eq!(payloads.len(), N);
    let stats = client.topic_stats(&t).await.unwrap();
    assert_eq!(stats.retained, N as u64, "each message stored exactly once");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resubscribes_where_its_group_is_and_never_rewinds() {
    let dir = tempfile::tempdir().unwrap();
    let args = file_args(dir.path());
    let server = Server::start_with(&as_strs(&args));
    let addr = server.addr.clone();
    let client = Client::connect(&addr).await.unwrap();
    let t = topic("resume");
    let producer = client.producer(t.clone());
    for i in 0..10 {
        producer
            .send(NewMessage::new(format!("m{i}")))
            .await
            .unwrap();
    }
    // Subscribed from the earliest offset: a renewal with that start would read m0 again.
    let mut consumer = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("g"))
                .start(StartPosition::Earliest)
                .prefetch(1),
        )
        .await
        .unwrap();
    for i in 0..5 {
        let d = consumer.recv().await.unwrap();
        assert_eq!(&d.payload()[..], format!("m{i}").as_bytes());
        d.ack_confirmed().await.unwrap();
    }
    server.crash();
    let _server = Server::start_on(&addr, &as_strs(&args));
    let mut rest = Vec::new();
    while rest.len() < 5 {
        let d = consumer.recv().await.unwrap();
        let text = String::from_utf8(d.payload().to_vec()).unwrap();
        if d.ack_confirmed().await.is_ok() {
            rest.push(text);
        }
    }
    assert_eq!(rest, ["m5", "m6", "m7", "m8", "m9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_reconnect_gives_up_with_a_typed_error() {
    let server = Server::start(&[]);
    let config = ClientConfig {
        reconnect: Reconnect {
            max_wait: Duration::from_millis(400),
            ..Reconnect::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&server.addr, config).await.unwrap();
    let producer = client.producer(topic("gone"));
    producer.send(NewMessage::new("before")).await.unwrap();
    server.crash();
    let sent = tokio::time::timeout(Duration::from_secs(10), producer.send(NewMessage::new("x")))
        .await
        .expect("the send ends once the client gives up");
    match sent {
        Err(ClientError::ReconnectFailed { attempts, .. }) => assert!(attempts >= 1),
        other => panic!("expected ReconnectFailed, got {other:?}"),
    }
    let pinged = tokio::time::timeout(Duration::from_secs(10), client.ping())
        .await
        .expect("bounded");
    let err = pinged.unwrap_err();
    assert!(
        matches!(err, ClientError::ReconnectFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("could not reconnect"), "{err}");
}

/// Sends `signal` to the server's process (by its id).
fn signal(server: &Server, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Stops the server's process and returns once every one of its threads has stopped: the
/// signal stops the thread it wakes first, which then stops the others, and until then a
/// busy machine may let another thread still answer a request.
fn stop(server: &Server) {
    signal(server, "-STOP");
    let tasks = format!("/proc/{}/task", server.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    let stopped = |entry: std::fs::DirEntry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    while !std::fs::read_dir(&tasks)
        .expect("the server's threads are listed")
        .flatten()
        .all(stopped)
    {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::yield_now();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_reply_never_comes_fails_after_the_request_timeout() {
    let server = Server::start(&[]);
    let config = ClientConfig {
        reconnect: Reconnect::disabled(),
        request_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&server.addr, config).await.unwrap();
    let producer = client.producer(topic("stalled"));
    producer.send(NewMessage::new("before")).await.unwrap();
    // The server stops answering but keeps the connection: nobody waits on the publish's
    // reply, yet flush must not wait for ever.
    stop(&server);
    producer.publish(NewMessage::new("lost")).await.unwrap();
    let flushed = tokio::time::timeout(Duration::from_secs(10), producer.flush()).await;
    signal(&server, "-CONT");
    let err = flushed
        .expect("flush ends once the reply is overdue")
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionClosed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
}
