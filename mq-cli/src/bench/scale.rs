//! Workloads of scale and depth: `topics` (many topics published round-robin), `groups`
//! (what idle groups cost), `catchup` (a backlog read from the start by a new group) and
//! `acked` (one message at a time, each waiting for its acknowledgement).

use std::time::Instant;

use mq_client::{
    AckMode, Client, GroupName, NewMessage, Producer, StartPosition, Subscription, TopicName,
};

use super::timing::latency_histogram;
use super::workloads::{finish, fresh_topic, payload, producer_config};
use super::{BenchResult, Plan};

/// A producer for each of `topics` on `client`.
fn producers(client: &Client, topics: &[TopicName], plan: &Plan) -> Vec<Producer> {
    topics
        .iter()
        .map(|t| {
            if plan.plain {
                client.producer(t.clone())
            } else {
                client.producer_with(t.clone(), producer_config(plan))
            }
        })
        .collect()
}

/// Publishes `count` messages through `producers`, a batch (or, plain, a message) to each
/// in turn.
async fn produce_round_robin(
    producers: Vec<Producer>,
    plan: Plan,
    count: u64,
) -> anyhow::Result<()> {
    let body = payload(plan.size);
    let per_batch = if plan.plain { 1 } else { plan.batch as u64 };
    let (mut left, mut next) = (count, 0usize);
    while left > 0 {
        let n = per_batch.min(left);
        let producer = &producers[next % producers.len()];
        if plan.plain {
            producer.publish(NewMessage::new(body.clone())).await?;
        } else {
            producer
                .publish_batch(vec![NewMessage::new(body.clone()); n as usize])
                .await?;
        }
        plan.progress.add(n);
        left -= n;
        next += 1;
    }
    for p in &producers {
        p.flush().await?;
    }
    Ok(())
}

/// `--topics` topics published round-robin by `--producers` clients (connected, with a
/// producer for every topic, before the clock starts).
pub(crate) async fn topics(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let mut topics = Vec::with_capacity(plan.topics);
    for _ in 0..plan.topics {
        topics.push(fresh_topic(&admin, "topics").await?);
    }
    let clients = plan.producers as u64;
    let mut ready = Vec::new();
    for c in 0..clients {
        let client = plan.connect().await?;
        // Each client starts at another topic.
        let mut mine = topics.clone();
        mine.rotate_left(c as usize * topics.len() / clients as usize);
        ready.push((producers(&client, &mine, plan), client));
    }
    plan.progress.start("topics", plan.n);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, (producers, client)) in ready.into_iter().enumerate() {
        let c = c as u64;
        let count = plan.n / clients + u64::from(c < plan.n % clients);
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = client;
            produce_round_robin(producers, plan, count).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    if !plan.keep {
        for t in &topics {
            admin.delete_topic(t).await?;
        }
    }
    Ok(BenchResult::throughput("topics", plan.n, plan.size, secs))
}

/// Creates `-n` durable groups on one topic with no consumer: what an idle group costs
/// is the server's memory growth over this run (the topic stays with `--keep`).
pub(crate) async fn groups(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "groups").await?;
    plan.progress.start("groups", plan.n);
    let start = Instant::now();
    for g in 0..plan.n {
        admin
            .create_group(
                &topic,
                &GroupName::new(format!("idle-{g}"))?,
                StartPosition::Latest,
            )
            .await?;
        plan.progress.add(1);
    }
    let secs = start.elapsed().as_secs_f64();
    finish(plan, &admin, &topic).await?;
    Ok(BenchResult::throughput("groups", plan.n, 0, secs))
}

/// Publishes `-n` messages with nobody consuming, then a new group reads them all from the
/// earliest: `msgs_per_s` is the catch-up rate, `fill_msgs_per_s` the publish rate.
pub(crate) async fn catchup(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "catchup").await?;
    plan.progress.start("fill", plan.n);
    let filled = Instant::now();
    super::workloads::produce_all(plan, &topic).await?;
    let fill_secs = filled.elapsed().as_secs_f64();
    let client = plan.connect().await?;
    let mut consumer = client
        .subscribe(
            Subscription::new(topic.clone())
                .group(GroupName::new("catchup")?)
                .start(StartPosition::Earliest)
                .ack(AckMode::Auto)
                .prefetch(super::workloads::PREFETCH),
        )
        .await?;
    plan.progress.start("catchup", plan.n);
    let start = Instant::now();
    for _ in 0..plan.n {
        consumer.recv().await?;
        plan.progress.add(1);
    }
    let secs = start.elapsed().as_secs_f64();
    drop(consumer);
    finish(plan, &admin, &topic).await?;
    let mut result = BenchResult::throughput("catchup", plan.n, plan.size, secs);
    result.fill_msgs_per_s = Some(plan.n as f64 / fill_secs.max(1e-9));
    Ok(result)
}

/// One producer sends `-n` messages one at a time, each waiting for its acknowledgement
/// (`Producer::send`): the percentiles of that wait.
pub(crate) async fn acked(plan: &Plan) -> anyhow::Result<BenchResult> {
    let admin = plan.connect().await?;
    let topic = fresh_topic(&admin, "acked").await?;
    let producer = admin.producer(topic.clone());
    let body = payload(plan.size);
    let mut histogram = latency_histogram()?;
    plan.progress.start("acked", plan.n);
    let start = Instant::now();
    for _ in 0..plan.n {
        let sent = Instant::now();
        producer.send(NewMessage::new(body.clone())).await?;
        histogram.saturating_record(sent.elapsed().as_micros() as u64);
        plan.progress.add(1);
    }
    let secs = start.elapsed().as_secs_f64();
    finish(plan, &admin, &topic).await?;
    Ok(BenchResult::throughput("acked", plan.n, plan.size, secs).with_percentiles(&histogram))
}
