//! The broker workloads: `publish`, `fanout`, `workqueue` and `latency`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use mq_client::{AckMode, Client, NewMessage, ProducerConfig, Subscription};
use mq_client::{GroupName, TopicConfig, TopicName};
use tokio::sync::watch;

use super::timing::{latency_histogram, pace, record_arrival};
use super::{BenchResult, Plan};

/// Prefetch window of benchmark consumers.
pub(crate) const PREFETCH: u32 = 4000;
/// Acks sent per request by workqueue consumers.
const ACK_BATCH: usize = 256;
/// Payload bytes per publish frame at most: large frames cost more to buffer than they save.
const BATCH_BYTES: usize = 256 * 1024;

/// Creates a topic for one run, unbounded in bytes so the run never hits `topic full`.
pub(crate) async fn fresh_topic(client: &Client, workload: &str) -> anyhow::Result<TopicName> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic = TopicName::new(format!("bench.{workload}.{}.{nanos}", std::process::id()))?;
    let mut config = TopicConfig::default();
    config.retention.max_bytes = None;
    client.create_topic(&topic, config).await?;
    Ok(topic)
}

/// Deletes the run's topic, unless the run keeps it (`--keep`).
pub(crate) async fn finish(plan: &Plan, admin: &Client, topic: &TopicName) -> anyhow::Result<()> {
    if !plan.keep {
        admin.delete_topic(topic).await?;
    }
    Ok(())
}

pub(crate) fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0x61u8; size])
}

pub(crate) fn producer_config(plan: &Plan) -> ProducerConfig {
    ProducerConfig {
        batch_size: plan.batch,
        max_in_flight: 16,
        ..ProducerConfig::default()
    }
}

/// Publishes `count` messages in batches, pipelined, and waits for every ack.
async fn produce(client: Client, topic: TopicName, plan: Plan, count: u64) -> anyhow::Result<()> {
    let body = payload(plan.size);
    if plan.plain {
        let producer = client.producer(topic);
        for _ in 0..count {
            producer.publish(NewMessage::new(body.clone())).await?;
            plan.progress.add(1);
        }
        producer.flush().await?;
        return Ok(());
    }
    let producer = client.producer_with(topic, producer_config(&plan));
    let per_batch = plan.batch.min((BATCH_BYTES / plan.size.max(1)).max(1)) as u64;
    let mut left = count;
    while left > 0 {
        let n = per_batch.min(left);
        producer
            .publish_batch(vec![NewMessage::new(body.clone()); n as usize])
            .await?;
        plan.progress.add(n);
        left -= n;
    }
    producer.flush().await?;
    Ok(())
}

/// Splits `n` messages over `producers` and publishes them all.
pub(crate) async fn produce_all(plan: &Plan, topic: &TopicName) -> anyhow::Result<()> {
    let producers = plan.producers as u64;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let count = plan.n / producers + u64::from(p < plan.n % producers);
        let client = plan.connect().await?;
        tasks.push(tokio::spawn(produce(
            client,
            topic.clone(),
            plan.clone(),
            count,
        )));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

pub(crate) async fn publish(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "publish").await?;
    plan.progress.start("publish", plan.n);
    let start = Instant::now();
    produce_all(plan, &topic).await?;
    let secs = start.elapsed().as_secs_f64();
    finish(plan, &admin, &topic).await?;
    Ok(BenchResult::throughput("publish", plan.n, plan.size, secs))
}

pub(crate) async fn fanout(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "fanout").await?;
    let mut readers = Vec::new();
    for g in 0..plan.consumers {
        let client = plan.connect().await?;
        let mut consumer = client
            .subscribe(
                Subscription::new(topic.clone())
                    .group(GroupName::new(format!("fan{g}"))?)
                    .ack(AckMode::Auto)
                    .prefetch(PREFETCH),
            )
            .await?;
        let (n, progress) = (plan.n, plan.progress.clone());
        readers.push(tokio::spawn(async move {
            let _keep = client;
            for _ in 0..n {
                consumer.recv().await?;
                progress.add(1);
            }
            anyhow::Ok(Instant::now())
        }));
    }
    plan.progress
        .start("fanout", plan.n * plan.consumers as u64);
    let start = Instant::now();
    produce_all(plan, &topic).await?;
    let mut last = start;
    for r in readers {
        last = last.max(r.await??);
    }
    finish(plan, &admin, &topic).await?;
    let delivered = plan.n * plan.consumers as u64;
    Ok(BenchResult::throughput(
        "fanout",
        delivered,
        plan.size,
        last.duration_since(start).as_secs_f64(),
    ))
}

pub(crate) async fn workqueue(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "workqueue").await?;
    let group = GroupName::new("work")?;
    let received = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let mut workers = Vec::new();
    for _ in 0..plan.consumers {
        let client = plan.connect().await?;
        let subscription = Subscription::new(topic.clone())
            .group(group.clone())
            .ack(AckMode::Manual);
        let mut consumer = client
            .subscribe(if plan.plain {
                subscription
            } else {
                subscription.prefetch(PREFETCH)
            })
            .await?;
        let (received, done_tx, mut done_rx) =
            (Arc::clone(&received), Arc::clone(&done_tx), done_rx.clone());
        let (n, progress) = (plan.n, plan.progress.clone());
        if plan.plain {
            workers.push(tokio::spawn(async move {
                let _keep = client;
                loop {
                    let delivery = tokio::select! {
                        d = consumer.recv() => d?,
                        _ = done_rx.changed() => break,
                    };
                    delivery.ack().await?;
                    progress.add(1);
                    if received.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                        let _ = done_tx.send(true);
                        break;
                    }
                }
                consumer.flush_acks().await?;
                anyhow::Ok(())
            }));
            continue;
        }
        workers.push(tokio::spawn(async move {
            let _keep = client;
            let acker = consumer.ack_handle();
            let mut offsets = Vec::with_capacity(ACK_BATCH);
            let mut acks = Vec::new();
            loop {
                let delivery = match consumer.poll()? {
                    Some(d) => d,
                    None => {
                        if !offsets.is_empty() {
                            let (a, o) = (acker.clone(), std::mem::take(&mut offsets));
                            acks.push(tokio::spawn(async move { a.ack_batch(&o).await }));
                        }
                        tokio::select! {
                            d = consumer.recv() => d?,
                            _ = done_rx.changed() => break,
                        }
                    }
                };
                offsets.push(delivery.offset());
                progress.add(1);
                if offsets.len() >= ACK_BATCH {
                    let (a, o) = (acker.clone(), std::mem::take(&mut offsets));
                    acks.push(tokio::spawn(async move { a.ack_batch(&o).await }));
                }
                if received.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                    let _ = done_tx.send(true);
                    break;
                }
            }
            if !offsets.is_empty() {
                acker.ack_batch(&offsets).await?;
            }
            for a in acks {
                a.await??;
            }
            anyhow::Ok(())
        }));
    }
    plan.progress.start("workqueue", plan.n);
    let start = Instant::now();
    produce_all(plan, &topic).await?;
    for w in workers {
        w.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = admin.groups(&topic).await?;
    let work = stats
        .iter()
        .find(|g| g.name == group)
        .context("work group vanished")?;
    if work.acked != plan.n || work.redelivered != 0 {
        bail!(
            "workqueue: {} of {} messages acked, {} redelivered",
            work.acked,
            plan.n,
            work.redelivered
        );
    }
    finish(plan, &admin, &topic).await?;
    Ok(BenchResult::throughput(
        "workqueue",
        plan.n,
        plan.size,
        secs,
    ))
}

pub(crate) async fn latency(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "latency").await?;
    let consumer_client = plan.connect().await?;
    let mut consumer = consumer_client
        .subscribe(
            Subscription::new(topic.clone())
                .ack(AckMode::Auto)
                .prefetch(PREFETCH),
        )
        .await?;
    let base = Instant::now();
    let n = plan.n;
    let progress = plan.progress.clone();
    let reader = tokio::spawn(async move {
        let mut histogram = latency_histogram()?;
        for _ in 0..n {
            let d = consumer.recv().await?;
            record_arrival(&mut histogram, base, d.payload())?;
            progress.add(1);
        }
        anyhow::Ok(histogram)
    });
    let config = if plan.plain {
        ProducerConfig::default()
    } else {
        ProducerConfig {
            batch_size: 1,
            ..ProducerConfig::default()
        }
    };
    let producer = plan.connect().await?.producer_with(topic.clone(), config);
    let (rate, size) = (plan.rate, plan.size);
    plan.progress.start("latency", n);
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    let pacer = std::thread::spawn(move || -> anyhow::Result<()> {
        pace(n, rate, size, (start, base), |body| {
            Ok(handle.block_on(producer.publish(NewMessage::new(body.to_vec())))?)
        })?;
        handle.block_on(producer.flush())?;
        Ok(())
    });
    let histogram = reader.await??;
    let secs = start.elapsed().as_secs_f64();
    tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("latency: the pacing thread panicked"))??;
    drop(consumer_client);
    finish(plan, &admin, &topic).await?;
    Ok(BenchResult::throughput("latency", n, plan.size, secs).with_percentiles(&histogram))
}
