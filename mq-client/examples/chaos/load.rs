//! The load: producers that number their messages, consumers that ack each delivery in a
//! group of their own (fan-out) and in one shared group, and a task that creates and
//! deletes topics and groups — all through the SDK with its reconnecting on, and every
//! acknowledgement written down in the [`Ledger`] for the audit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mq_client::{
    AckMode, Client, ClientError, GroupName, NewMessage, Offset, StartPosition, Subscription,
    TopicConfig, TopicName,
};

/// The topic the producers write and the consumers read.
pub(crate) const TOPIC: &str = "chaos";
/// The group every consumer shares.
pub(crate) const SHARED: &str = "shared";
/// Messages per batch.
const BATCH: usize = 5;
/// A producer sends a batch this often: the consumers, acking each delivery in five groups
/// with an fsync per ack, keep up.
const EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// Batches a producer keeps unacknowledged.
const IN_FLIGHT: usize = 4;

/// What the clients were told.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Per producer: each acknowledged message's number, offset and when it was acked.
    pub(crate) published: HashMap<usize, Vec<(u64, Offset, Instant)>>,
    /// Per group: offsets whose ack the server confirmed.
    pub(crate) acked: HashMap<String, HashSet<Offset>>,
    /// Acknowledged consumption delivered again to its group.
    pub(crate) redelivered_after_ack: Vec<String>,
    /// Errors the SDK returned where it should have carried on.
    pub(crate) errors: Vec<String>,
}

/// The shared state of the load.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) stop_producing: AtomicBool,
    pub(crate) stop_consuming: AtomicBool,
    pub(crate) churn_cycles: AtomicU64,
}

impl Load {
    fn error(&self, what: String) {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(what);
    }
}

/// Creates the topic (keeping what was consumed, so that the audit can read everything).
pub(crate) async fn create_topic(client: &Client) -> anyhow::Result<()> {
    let mut config = TopicConfig::default();
    config.retention.retain_consumed = std::time::Duration::from_secs(24 * 3600);
    client.create_topic(&TopicName::new(TOPIC)?, config).await?;
    Ok(())
}

/// One producer: batches of numbered messages `p{id}:{n}`, a few unacknowledged at once,
/// until told to stop; then waits for what it queued.
pub(crate) async fn produce(client: Client, id: usize, load: Arc<Load>) {
    let producer = client.producer(TopicName::new(TOPIC).unwrap_or_else(|_| unreachable!()));
    let mut waiting = VecDeque::new();
    let mut next = 0u64;
    let mut ticks = tokio::time::interval(EVERY);
    while !load.stop_producing.load(Ordering::Relaxed) {
        ticks.tick().await;
        let batch: Vec<NewMessage> = (next..next + BATCH as u64)
            .map(|n| NewMessage::new(format!("p{id}:{n}")))
            .collect();
        match producer.queue_batch(batch).await {
            Ok(queued) => waiting.push_back((next, queued)),
            Err(e) => load.error(format!("producer {id}: queue: {e}")),
        }
        next += BATCH as u64;
        if waiting.len() >= IN_FLIGHT
            && let Some((first, queued)) = waiting.pop_front()
        {
            settle(&load, id, first, queued.offsets().await);
        }
    }
    for (first, queued) in waiting {
        settle(&load, id, first, queued.offsets().await);
    }
}

fn settle(load: &Load, id: usize, first: u64, result: Result<Vec<Offset>, ClientError>) {
    match result {
        Ok(offsets) => {
            let now = Instant::now();
            let mut ledger = load.ledger.lock().unwrap_or_else(|e| e.into_inner());
            let mine = ledger.published.entry(id).or_default();
            mine.extend((first..).zip(offsets).map(|(n, o)| (n, o, now)));
        }
        Err(e) => load.error(format!("producer {id}: batch from {first}: {e}")),
    }
}

/// One consumer: its own group (every message) and the shared group (its share), acking
/// each delivery, until told to stop.
pub(crate) async fn consume(client: Client, id: usize, load: Arc<Load>) {
    let topic = TopicName::new(TOPIC).unwrap_or_else(|_| unreachable!());
    let sub = |group: String| {
        Subscription::new(topic.clone())
            .group(GroupName::new(group).unwrap_or_else(|_| unreachable!()))
            .ack(AckMode::Manual)
            .start(StartPosition::Resume)
            .prefetch(100)
    };
    let own = format!("fan-{id}");
    let mut mine = match client.subscribe(sub(own.clone())).await {
        Ok(c) => c,
        Err(e) => return load.error(format!("consumer {id}: subscribe: {e}")),
    };
    let mut shared = match client.subscribe(sub(SHARED.to_owned())).await {
        Ok(c) => c,
        Err(e) => return load.error(format!("consumer {id}: subscribe: {e}")),
    };
    while !load.stop_consuming.load(Ordering::Relaxed) {
        let (group, got) = tokio::select! {
            d = mine.recv() => (own.as_str(), d),
            d = shared.recv() => (SHARED, d),
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => continue,
        };
        let delivery = match got {
            Ok(d) => d,
            Err(e) => return load.error(format!("consumer {id}: {group}: {e}")),
        };
        let offset = delivery.offset();
        {
            let mut ledger = load.ledger.lock().unwrap_or_else(|e| e.into_inner());
            if ledger.acked.get(group).is_some_and(|a| a.contains(&offset)) {
                ledger
                    .redelivered_after_ack
                    .push(format!("group {group}: offset {offset}"));
            }
        }
        match delivery.ack_confirmed().await {
            Ok(()) => {
                let mut ledger = load.ledger.lock().unwrap_or_else(|e| e.into_inner());
                ledger
                    .acked
                    .entry(group.to_owned())
                    .or_default()
                    .insert(offset);
            }
            // Delivered over a connection lost since, or lost on the way: it comes again.
            Err(ClientError::Redelivered { .. } | ClientError::ConnectionClosed { .. }) => {}
            Err(e) => load.error(format!("consumer {id}: ack in {group}: {e}")),
        }
    }
}

/// Creates a topic, publishes to it, creates a group and reads from it, deletes both, over
/// and over: crashes land in the middle of each step. Failures of a step are expected (a
/// request lost with its connection); the next cycle starts clean.
pub(crate) async fn churn(client: Client, load: Arc<Load>) {
    let mut cycle = 0u64;
    while !load.stop_producing.load(Ordering::Relaxed) {
        cycle += 1;
        let Ok(topic) = TopicName::new(format!("churn-{}", cycle % 4)) else {
            return;
        };
        let _ = client.delete_topic(&topic).await;
        let done = async {
            client.create_topic(&topic, TopicConfig::default()).await?;
            let batch = (0..20).map(|i| NewMessage::new(format!("c{i}"))).collect();
            client.producer(topic.clone()).send_batch(batch).await?;
            let group = GroupName::new("g")?;
            client
                .create_group(&topic, &group, StartPosition::Earliest)
                .await?;
            let mut consumer = client
                .subscribe(Subscription::new(topic.clone()).group(group.clone()))
                .await?;
            consumer.recv().await?.ack_confirmed().await?;
            consumer.unsubscribe().await?;
            client.delete_group(&topic, &group).await?;
            client.delete_topic(&topic).await?;
            Ok::<(), anyhow::Error>(())
        };
        if done.await.is_ok() {
            load.churn_cycles.fetch_add(1, Ordering::Relaxed);
        }
    }
}
