//! The file storage through the real server: restarts, crashes (SIGKILL), damage, and the
//! data-dir lock.

use std::collections::HashSet;
use std::time::Duration;

use mq_client::{AckMode, Client, ClientError, NewMessage, Subscription};
use mq_core::{Offset, TopicConfig};

use super::harness::Server;
use super::{group, topic};

fn file_server(dir: &std::path::Path, fsync: &str) -> Server {
    Server::start_with(&["--data-dir", dir.to_str().unwrap(), "--fsync", fsync])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_messages_groups_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("durable");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(1000);
    let server = file_server(dir.path(), "interval");
    let client = server.client().await;
    client.create_topic(&t, config.clone()).await.unwrap();
    let producer = client.producer(t.clone());
    for i in 0..20u8 {
        producer
            .send(
                NewMessage::new(format!("m{i}"))
                    .priority(i % 2)
                    .key(vec![i])
                    .header("i", vec![i]),
            )
            .await
            .unwrap();
    }
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")).prefetch(5))
        .await
        .unwrap();
    let mut acked = Vec::new();
    for _ in 0..8 {
        let d = c.recv().await.unwrap();
        acked.push(d.offset());
        d.ack_confirmed().await.unwrap();
    }
    drop(c);
    let before = client.topic_stats(&t).await.unwrap();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());

    let server = file_server(dir.path(), "interval");
    let client = server.client().await;
    let info = client.describe(&t).await.unwrap();
    assert_eq!(info.config, config);
    assert_eq!(info.stats.next_offset, before.next_offset);
    assert_eq!(info.stats.retained, 20);
    assert_eq!(info.stats.groups[0].pending, 12);
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    let mut rest = Vec::new();
    for _ in 0..12 {
        let d = c.recv().await.unwrap();
        assert!(
            !acked.contains(&d.offset()),
            "acked offset {} came back",
            d.offset()
        );
        let i = d.offset().get() as u8;
        assert_eq!(d.payload(), format!("m{i}").as_bytes());
        assert_eq!(d.priority(), i % 2);
        assert_eq!(d.key().map(|k| k.to_vec()), Some(vec![i]));
        assert_eq!(d.header("i").map(|v| v.to_vec()), Some(vec![i]));
        rest.push(d.offset());
        d.ack_confirmed().await.unwrap();
    }
    assert!(c.poll().unwrap().is_none());
    let mut all: Vec<u64> = acked.iter().chain(&rest).map(|o| o.get()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
}

/// A tiny deterministic generator for kill delays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("crashy");
    let mut rng = Lcg(0x5eed);
    let mut acked_publishes: Vec<u64> = Vec::new();
    let mut acked_by_group: HashSet<Offset> = HashSet::new();
    let mut next = 0u64;
    for round in 0..6 {
        let server = file_server(dir.path(), "always");
        // Each round's clients end with the server: the test counts what they saw acked.
        let producer_client = server.client_without_reconnect().await;
        if round == 0 {
            // Keep consumed messages, so the audit at the end can see every one.
            let mut config = TopicConfig::default();
            config.retention.retain_consumed = Duration::from_secs(3600);
            producer_client.create_topic(&t, config).await.unwrap();
        }
        let consumer_client = server.client_without_reconnect().await;
        let mut consumer = consumer_client
            .subscribe(
                Subscription::new(t.clone())
                    .group(group("workers"))
                    .prefetch(8),
            )
            .await
            .unwrap();
        let producer = producer_client.producer(t.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(80 + rng.next(250));
        let killer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if round < 5 {
                tokio::task::spawn_blocking(move || server.crash())
                    .await
                    .unwrap();
                None
            } else {
                Some(server)
            }
        });
        // Publish one message at a time and consume concurrently until the server dies.
        // (Separate tasks: a send cancelled by a select! would be sent twice.)
        let publishing = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut next = next;
            loop {
                let sent = producer.send(NewMessage::new(next.to_string())).await;
                next += 1;
                match sent {
                    Ok(_) => acked.push(next - 1),
                    Err(_) => return (acked, next),
                }
            }
        });
        let known = acked_by_group.clone();
        let consuming = tokio::spawn(async move {
            let mut acked = Vec::new();
            while let Ok(d) = consumer.recv().await {
                assert!(
                    !known.contains(&d.offset()),
                    "round {round}: acked offset {} redelivered",
                    d.offset()
                );
                if d.ack_confirmed().await.is_ok() {
                    acked.push(d.offset());
                }
            }
            acked
        });
        if let Some(server) = killer.await.unwrap() {
            // The last round ends with a graceful stop.
            let status = tokio::task::spawn_blocking(move || server.terminate())
                .await
                .unwrap();
            assert!(status.success());
        }
        let (published, after) = publishing.await.unwrap();
        acked_publishes.extend(published);
        next = after;
        acked_by_group.extend(consuming.await.unwrap());
        drop((producer_client, consumer_client));
    }
    assert!(
        acked_publishes.len() > 10,
        "only {} publishes were acknowledged",
        acked_publishes.len()
    );
    let server = file_server(dir.path(), "always");
    let client = server.client().await;
    let mut audit = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("audit"))
                .ack(AckMode::Auto),
        )
        .await
        .unwrap();
    let retained = client.topic_stats(&t).await.unwrap().retained;
    let mut seen = Vec::new();
    for _ in 0..retained {
        let d = audit.recv().await.unwrap();
        seen.push(
            String::from_utf8(d.payload().to_vec())
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "messages out of order or duplicated: {seen:?}"
    );
    let present: HashSet<u64> = seen.iter().copied().collect();
    for n in &acked_publishes {
        assert!(present.contains(n), "acknowledged message {n} was lost");
    }
    // The group that acked before the kills never gets those messages again.
    let mut workers = client
        .subscribe(Subscription::new(t.clone()).group(group("workers")))
        .await
        .unwrap();
    while let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(300), workers.recv()).await {
        assert!(
            !acked_by_group.contains(&d.offset()),
            "acked offset {} redelivered after restart",
            d.offset()
        );
        d.ack_confirmed().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_is_cut_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("damaged");
    {
        let server = file_server(dir.path(), "interval");
        let producer = server.client().await.producer(t.clone());
        for i in 0..10 {
            producer
                .send(NewMessage::new(format!("payload {i}")))
                .await
                .unwrap();
        }
        let status = tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap();
        assert!(status.success());
    }
    let seg = std::fs::read_dir(dir.path().join("topics/damaged"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let server = file_server(dir.path(), "interval");
    let client = server.client().await;
    let stats = client.topic_stats(&t).await.unwrap();
    assert_eq!((stats.retained, stats.next_offset), (9, Offset(9)));
    client
        .producer(t)
        .send(NewMessage::new("after repair"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = file_server(dir.path(), "interval");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot use data dir")
            && stderr.contains("in use by another mq-server"),
        "{stderr}"
    );
    let _ = Client::connect("127.0.0.1:1")
        .await
        .map_err(|e| matches!(e, ClientError::ConnectionRefused { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_small_memory_budget_serves_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let t = topic("spill");
    let server = Server::start_with(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--segment-bytes",
        "65536",
        "--resident-bytes",
        "100000",
    ]);
    let client = server.client().await;
    let producer = client.producer(t.clone());
    for i in 0..5000u32 {
        producer
            .publish(NewMessage::new(format!("{i:08}").repeat(16)))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let segments = std::fs::read_dir(dir.path().join("topics/spill"))
        .unwrap()
        .count();
    assert!(segments > 20, "{segments} files");
    let mut late = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("late"))
                .ack(AckMode::Auto),
        )
        .await
        .unwrap();
    for i in 0..5000u32 {
        let d = late.recv().await.unwrap();
        assert_eq!(
            d.payload(),
            format!("{i:08}").repeat(16).as_bytes(),
            "offset {}",
            d.offset()
        );
    }
}

/// The backup procedure of docs/RELIABILITY.md: stop the server, archive the data dir,
/// start again; to restore, unpack the archive into an empty dir and start a server on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_stopped_data_dir_restores_exactly_that_state() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let archive = backup.path().join("mq-backup.tar");
    let t = topic("kept");
    let server = file_server(dir.path(), "interval");
    let client = server.client_without_reconnect().await;
    let batch = (0..10).map(|i| NewMessage::new(format!("m{i}"))).collect();
    client.producer(t.clone()).send_batch(batch).await.unwrap();
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")).prefetch(4))
        .await
        .unwrap();
    for _ in 0..4 {
        c.recv().await.unwrap().ack_confirmed().await.unwrap();
    }
    drop((c, client));
    assert!(
        tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap()
            .success()
    );
    let tar = |args: &[&str]| {
        let status = std::process::Command::new("tar")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "tar {args:?}");
    };
    tar(&[
        "-C",
        dir.path().to_str().unwrap(),
        "-cf",
        archive.to_str().unwrap(),
        ".",
    ]);

    // Life goes on after the backup.
    let server = file_server(dir.path(), "interval");
    let client = server.client_without_reconnect().await;
    let batch = (10..20).map(|i| NewMessage::new(format!("m{i}"))).collect();
    client.producer(t.clone()).send_batch(batch).await.unwrap();
    client.delete_topic(&t).await.unwrap();
    drop(client);
    drop(server);

    let restored = tempfile::tempdir().unwrap();
    tar(&[
        "-C",
        restored.path().to_str().unwrap(),
        "-xf",
        archive.to_str().unwrap(),
    ]);
    let server = file_server(restored.path(), "interval");
    let client = server.client_without_reconnect().await;
    let stats = client.topic_stats(&t).await.unwrap();
    // What the group acked is gone for it, whether or not retention removed it yet.
    assert_eq!(stats.next_offset.get(), 10);
    assert_eq!(stats.groups[0].pending, 6);
    let mut c = client
        .subscribe(Subscription::new(t.clone()).group(group("g")))
        .await
        .unwrap();
    for i in 4..10 {
        let d = c.recv().await.unwrap();
        assert_eq!(d.payload(), format!("m{i}").as_bytes());
        d.ack_confirmed().await.unwrap();
    }
    assert!(
        c.poll().unwrap().is_none(),
        "the later messages were not restored"
    );
}
