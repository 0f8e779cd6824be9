//! Criterion benchmarks of the core hot paths with 100-byte payloads: append, the
//! append → deliver → ack pipeline, fan-out to 1 and 16 groups, and a 10-level priority mix
//! against plain FIFO. Figures are recorded in BENCHMARKS.md.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mq_core::{
    AckMode, Broker, Consumer, GroupName, NewMessage, Overflow, Subscription, TopicConfig,
    TopicName,
};

const BATCH: usize = 100;

/// A topic bounded in count, so a long benchmark run holds steady memory: acked messages are
/// dropped first when the bound is reached, then the oldest.
fn bounded_topic(broker: &Broker, name: &str) -> TopicName {
    let topic = TopicName::new(name).expect("valid name");
    let mut config = TopicConfig::default();
    config.retention.max_bytes = None;
    config.retention.max_messages = Some(100_000);
    config.retention.overflow = Overflow::DropOldest;
    broker.create_topic(&topic, config).expect("new topic");
    topic
}

fn batch(payload: &Bytes, priorities: u8) -> Vec<NewMessage> {
    (0..BATCH)
        .map(|i| NewMessage::new(payload.clone()).priority((i % usize::from(priorities)) as u8))
        .collect()
}

fn subscribe(broker: &Broker, topic: &TopicName, group: &str, ack: AckMode) -> Consumer {
    broker
        .subscribe(
            Subscription::new(topic.clone())
                .group(GroupName::new(group).expect("valid name"))
                .ack(ack)
                .prefetch(10_000),
        )
        .expect("subscribe")
}

fn append(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 100]);
    let broker = Broker::new();
    let topic = bounded_topic(&broker, "append");
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch_100", |b| {
        b.iter_batched(
            || batch(&payload, 1),
            |msgs| black_box(broker.publish_batch(&topic, msgs).expect("append")),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Append a batch, deliver it through one manual-ack group, ack it.
fn pipeline(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 100]);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, priorities) in [("fifo", 1u8), ("priority_10_levels", 10)] {
        let broker = Broker::new();
        let topic = bounded_topic(&broker, name);
        let consumer = subscribe(&broker, &topic, "g", AckMode::Manual);
        let mut out = Vec::with_capacity(BATCH);
        let mut offsets = Vec::with_capacity(BATCH);
        g.bench_function(name, |b| {
            b.iter_batched(
                || batch(&payload, priorities),
                |msgs| {
                    broker.publish_batch(&topic, msgs).expect("append");
                    out.clear();
                    consumer.poll_batch(BATCH, &mut out).expect("poll");
                    offsets.clear();
                    offsets.extend(out.iter().map(|d| d.offset()));
                    consumer.ack_batch(&offsets).expect("ack");
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

/// Append a batch and deliver it to every one of `groups` auto-ack groups; throughput is
/// per delivered message.
fn fanout(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 100]);
    let mut g = c.benchmark_group("fanout");
    for groups in [1usize, 16] {
        let broker = Broker::new();
        let topic = bounded_topic(&broker, &format!("fanout{groups}"));
        let consumers: Vec<_> = (0..groups)
            .map(|i| subscribe(&broker, &topic, &format!("g{i}"), AckMode::Auto))
            .collect();
        let mut out = Vec::with_capacity(BATCH);
        g.throughput(Throughput::Elements((BATCH * groups) as u64));
        g.bench_function(format!("groups_{groups}"), |b| {
            b.iter_batched(
                || batch(&payload, 1),
                |msgs| {
                    broker.publish_batch(&topic, msgs).expect("append");
                    for consumer in &consumers {
                        out.clear();
                        consumer.poll_batch(BATCH, &mut out).expect("poll");
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

/// Append batches of 100 through the file storage (fsync `interval`, so the flusher thread
/// syncs in the background as it would in the server).
fn file_append(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 100]);
    let dir = std::env::temp_dir().join(format!("mq-bench-{}", std::process::id()));
    let storage =
        mq_core::FileStorage::open(&dir, mq_core::FileOptions::default()).expect("data dir");
    let broker = Broker::builder().storage(storage).build().expect("broker");
    let topic = bounded_topic(&broker, "file");
    let mut g = c.benchmark_group("file");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("append_batch_100", |b| {
        b.iter_batched(
            || batch(&payload, 1),
            |msgs| black_box(broker.publish_batch(&topic, msgs).expect("append")),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, append, pipeline, fanout, file_append);
criterion_main!(benches);
