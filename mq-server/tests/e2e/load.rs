//! Many connections at once.

use std::collections::HashSet;
use std::time::Duration;

use mq_client::{NewMessage, Subscription};

use super::harness::Server;
use super::{group, topic};

const CONNECTIONS: usize = 500;
const PER_PRODUCER: usize = 20;

/// 250 producer connections and 250 consumer connections in one group: every message is
/// received exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_connections_publish_and_consume_everything() {
    let server = Server::start(&[]);
    let t = topic("crowd");
    let producers = CONNECTIONS / 2;
    let total = producers * PER_PRODUCER;
    let mut consumers = Vec::new();
    for _ in 0..CONNECTIONS - producers {
        let client = server.client().await;
        let consumer = client
            .subscribe(
                Subscription::new(t.clone())
                    .group(group("crowd"))
                    .prefetch(4),
            )
            .await
            .unwrap();
        consumers.push((client, consumer));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut consumer_tasks = Vec::new();
    for (client, mut consumer) in consumers {
        let tx = tx.clone();
        consumer_tasks.push(tokio::spawn(async move {
            let _keep = client;
            loop {
                let d = consumer.recv().await.unwrap();
                tx.send(String::from_utf8(d.payload().to_vec()).unwrap())
                    .unwrap();
                d.ack().await.unwrap();
            }
        }));
    }
    drop(tx);
    let mut producer_tasks = Vec::new();
    for p in 0..producers {
        let client = server.client().await;
        let t = t.clone();
        producer_tasks.push(tokio::spawn(async move {
            let producer = client.producer(t);
            for i in 0..PER_PRODUCER {
                producer
                    .send(NewMessage::new(format!("{p}:{i}")))
                    .await
                    .unwrap();
            }
            client
        }));
    }
    let mut producer_clients = Vec::new();
    for task in producer_tasks {
        producer_clients.push(task.await.unwrap());
    }
    let mut seen = HashSet::new();
    while seen.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("messages keep arriving")
            .expect("consumers alive");
        assert!(seen.insert(m.clone()), "{m} received twice");
    }
    let stats = server.client().await.stats().await.unwrap();
    assert!(
        stats.connections as usize >= CONNECTIONS,
        "{} connections",
        stats.connections
    );
    for task in consumer_tasks {
        task.abort();
        let _ = task.await;
    }
    drop(producer_clients);
}
