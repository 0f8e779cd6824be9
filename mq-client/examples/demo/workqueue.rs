//! workqueue: competing consumers in separate OS processes on one group; mixed priorities
//! come out highest first and FIFO within a priority; nothing processed twice, none lost.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use mq_client::{Client, NewMessage, Subscription};
use mq_core::{GroupName, TopicName};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Claims;
use crate::server::Server;

const WORKERS: usize = 3;
const MESSAGES: u32 = 60;
const PRIORITIES: [u8; 3] = [0, 5, 9];

fn topic() -> anyhow::Result<TopicName> {
    Ok(TopicName::new("demo.jobs")?)
}

pub(crate) async fn run(server: &Server, claims: &mut Claims) -> anyhow::Result<()> {
    let client = server.client().await?;
    let batch = (0..MESSAGES)
        .map(|i| {
            let p = PRIORITIES[i as usize % PRIORITIES.len()];
            NewMessage::new(format!("job-{i}")).priority(p)
        })
        .collect();
    client.producer(topic()?).send_batch(batch).await?;
    claims.say(format!(
        "queued {MESSAGES} jobs with priorities {PRIORITIES:?} mixed"
    ));
    let exe = std::env::current_exe().context("cannot find the demo binary")?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let child = tokio::process::Command::new(&exe)
            .args(["--worker", &server.addr])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        workers.push(child);
    }
    claims.say(format!(
        "started {WORKERS} worker processes on group \"workers\" (prefetch 1)"
    ));
    let mut by_worker: BTreeMap<u32, Vec<(u64, u8, u32)>> = BTreeMap::new();
    for mut child in workers {
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await? {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let num = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
            seen.push((num("offset"), num("priority") as u8, num("job") as u32));
        }
        let status = child.wait().await?;
        anyhow::ensure!(status.success(), "worker {pid} failed: {status}");
        by_worker.insert(pid, seen);
    }
    let all: Vec<u64> = by_worker.values().flatten().map(|(o, _, _)| *o).collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    claims.check(all.len() == distinct.len(), "no job was processed twice");
    claims.check(
        distinct.len() == MESSAGES as usize,
        format!(
            "all {MESSAGES} jobs were processed ({} seen)",
            distinct.len()
        ),
    );
    for (pid, seen) in &by_worker {
        let ordered = seen
            .windows(2)
            .all(|w| w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].2 < w[1].2));
        let order: Vec<String> = seen
            .iter()
            .take(6)
            .map(|(_, p, j)| format!("p{p}/job-{j}"))
            .collect();
        claims.check(
            ordered,
            format!("worker {pid} took {} jobs highest priority first, FIFO within a priority (first: {})", seen.len(), order.join(" ")),
        );
    }
    claims.check(
        by_worker.values().filter(|s| !s.is_empty()).count() == WORKERS,
        "every worker process got work",
    );
    Ok(())
}

/// One worker process: takes jobs one at a time, "processes" each, acks it, prints it as a
/// JSON line, and exits once the queue has been empty for a second.
pub(crate) async fn worker(addr: &str) -> anyhow::Result<()> {
    let client = Client::connect(addr).await?;
    let mut consumer = client
        .subscribe(
            Subscription::new(topic()?)
                .group(GroupName::new("workers")?)
                .prefetch(1),
        )
        .await?;
    while let Ok(d) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
        let d = d?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let job: u32 = String::from_utf8_lossy(d.payload())
            .trim_start_matches("job-")
            .parse()?;
        println!(
            "{}",
            serde_json::json!({"offset": d.offset().get(), "priority": d.priority(), "job": job})
        );
        d.ack().await?;
    }
    consumer.unsubscribe().await?;
    Ok(())
}
