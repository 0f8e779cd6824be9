//! The load and soak driver behind `cargo xtask soak`: a real `mq-server` (file storage,
//! `--max-memory 512MiB`) under many client connections publishing and consuming, a stream
//! of garbage and slow-loris connections, and meanwhile one clean producer/consumer pair
//! that must move every message exactly once; the server's memory and file descriptors are
//! sampled throughout, and a consumer that stops reading is checked to cost no more than
//! its window.
//!
//! `soak --server-bin PATH [--minutes M] [--clients N] [--garbage N] [--messages N]`

mod abuse;
mod probe;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mq_client::{AckMode, Client, GroupName, NewMessage, Subscription, TopicName};

use crate::probe::ServerProcess;

/// Load and soak against a real mq-server.
#[derive(Debug, Parser)]
struct Args {
    /// The mq-server binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// How long the background load runs at least (it also runs until the clean pair is done).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Concurrent client connections publishing and consuming.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Garbage and slow-loris connections over the run.
    #[arg(long, default_value_t = 10_000)]
    garbage: usize,
    /// Messages the clean pair moves.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Topics the background clients spread over.
const TOPICS: usize = 50;

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap_or_else(|e| unreachable!("{e}"))
}

fn group(name: &str) -> GroupName {
    GroupName::new(name).unwrap_or_else(|e| unreachable!("{e}"))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let server = ServerProcess::start(&args.server_bin)?;
    let admin = Client::connect(&server.addr).await?;
    // Every topic and group exists before the baseline: their files count in it.
    for t in 0..TOPICS {
        let name = topic(&format!("load-{t}"));
        admin
            .producer(name.clone())
            .send(NewMessage::new("warm"))
            .await?;
        let c = admin
            .subscribe(Subscription::new(name).group(group("g")).ack(AckMode::Auto))
            .await?;
        c.unsubscribe().await?;
    }
    admin
        .create_topic(&topic("clean"), mq_client::TopicConfig::default())
        .await?;
    let mut failures = Vec::new();
    let window = probe::stalled_consumer_cost(&server, &admin).await?;
    println!(
        "soak: a consumer that stops reading (prefetch {}, 1 KiB messages) held {} KiB of server memory",
        probe::STALL_PREFETCH,
        window / 1024
    );
    if window > probe::STALL_BOUND {
        failures.push(format!(
            "a stalled consumer held {window} bytes, over {} bytes",
            probe::STALL_BOUND
        ));
    }
    let targets_before = server.fd_targets();
    let fds_before = server.fds();
    println!(
        "soak: server RSS {} MiB, {fds_before} sockets ({} descriptors) before the load",
        server.rss() >> 20,
        targets_before.len()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(server.rss()));
    let sampler = {
        let (stop, peak, pid) = (Arc::clone(&stop), Arc::clone(&peak), server.pid());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(probe::rss_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let ready = Arc::new(AtomicU64::new(0));
    let mut background = Vec::new();
    for i in 0..args.clients {
        let addr = server.addr.clone();
        let (stop, ready) = (Arc::clone(&stop), Arc::clone(&ready));
        background.push(tokio::spawn(async move {
            load_client(addr, i, stop, ready).await
        }));
    }
    let abuse = tokio::spawn(abuse::run(server.addr.clone(), args.garbage));
    // The clean pair starts once every load client publishes and consumes.
    let all = args.clients as u64;
    while ready.load(Ordering::Relaxed) < all && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "soak: {} of {all} load clients running after {:.1}s; the clean pair starts",
        ready.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let pair = clean_pair(&server.addr, args.messages, Arc::clone(&moved)).await;
    let min = Duration::from_secs_f64(args.minutes * 60.0);
    while started.elapsed() < min {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut connected = 0;
    let mut client_errors = Vec::new();
    for b in background {
        match b.await? {
            Ok(()) => connected += 1,
            Err(e) => client_errors.push(e.to_string()),
        }
    }
    let abused = abuse.await??;
    let elapsed = started.elapsed();
    sampler.await?;
    let fds_after = server
        .fds_settled(fds_before, Duration::from_secs(30))
        .await;
    let peak = peak.load(Ordering::Relaxed);

    println!(
        "soak: {connected} of {} clients ran for {:.0}s; {} garbage and slow-loris connections ({} closed by the server)",
        args.clients,
        elapsed.as_secs_f64(),
        abused.opened,
        abused.closed_by_server
    );
    match &pair {
        Ok(report) => println!(
            "soak: the clean pair moved {} messages in {:.1}s: {} lost, {} duplicated",
            report.received, report.seconds, report.lost, report.duplicated
        ),
        Err(e) => println!("soak: the clean pair failed: {e}"),
    }
    println!(
        "soak: server RSS peak {} MiB; sockets {fds_before} before, {fds_after} after",
        peak >> 20
    );
    let (lost, duplicated) = pair
        .as_ref()
        .map_or((args.messages, 0), |r| (r.lost, r.duplicated));
    match pair {
        Ok(r) if r.lost == 0 && r.duplicated == 0 && r.received == args.messages => {}
        Ok(r) => failures.push(format!(
            "the clean pair: {} received, {} lost, {} duplicated",
            r.received, r.lost, r.duplicated
        )),
        Err(e) => failures.push(format!("the clean pair: {e}")),
    }
    if peak > probe::RSS_BOUND {
        failures.push(format!(
            "server RSS peaked at {} MiB, over 1 GiB",
            peak >> 20
        ));
    }
    if fds_after > fds_before {
        let new: Vec<String> = server
            .fd_targets()
            .into_iter()
            .filter(|t| !targets_before.contains(t))
            .collect();
        failures.push(format!(
            "sockets: {fds_before} before, {fds_after} after (new descriptors: {new:?})"
        ));
    }
    for e in client_errors.iter().take(5) {
        failures.push(format!("a load client failed: {e}"));
    }
    if !server.alive() {
        failures.push("the server died".into());
    }
    println!(
        "{{\"clients\":{},\"garbage\":{},\"messages\":{},\"lost\":{},\"duplicated\":{},\"rss_peak_mib\":{},\"sockets_before\":{fds_before},\"sockets_after\":{fds_after},\"stalled_consumer_kib\":{}}}",
        connected,
        abused.opened,
        moved.load(Ordering::Relaxed),
        lost,
        duplicated,
        peak >> 20,
        window / 1024
    );
    for f in &failures {
        println!("soak: FAILED: {f}");
    }
    if failures.is_empty() {
        println!("soak: passed");
    }
    Ok(failures.is_empty())
}

/// One background client: publishes a message every 100 ms to its topic and consumes its
/// topic in a shared group, until told to stop.
async fn load_client(
    addr: String,
    i: usize,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let client = Client::connect(&addr).await?;
    let t = topic(&format!("load-{}", i % TOPICS));
    let producer = client.producer(t.clone());
    let mut consumer = client
        .subscribe(
            Subscription::new(t)
                .group(group("g"))
                .ack(AckMode::Auto)
                .prefetch(10),
        )
        .await?;
    ready.fetch_add(1, Ordering::Relaxed);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        producer.publish(NewMessage::new(format!("c{i}"))).await?;
        while consumer.poll()?.is_some() {}
    }
    producer.flush().await?;
    consumer.unsubscribe().await?;
    client.close().await;
    Ok(())
}

/// What the clean pair saw.
struct PairReport {
    received: u64,
    lost: u64,
    duplicated: u64,
    seconds: f64,
}

/// Acks the clean consumer sends at once.
const ACK_BATCH: usize = 500;

/// One producer and one consumer (manual acks, in batches) moving `n` numbered messages:
/// every one must arrive once.
async fn clean_pair(addr: &str, n: u64, moved: Arc<AtomicU64>) -> anyhow::Result<PairReport> {
    let started = Instant::now();
    let t = topic("clean");
    let consumer_client = Client::connect(addr).await?;
    let mut consumer = consumer_client
        .subscribe(Subscription::new(t.clone()).group(group("pair")))
        .await?;
    let producer_client = Client::connect(addr).await?;
    let producing = tokio::spawn(async move {
        let producer = producer_client.producer(t);
        for i in 0..n {
            producer
                .publish(NewMessage::new(i.to_le_bytes().to_vec()))
                .await?;
        }
        producer.flush().await?;
        Ok::<(), mq_client::ClientError>(())
    });
    let mut seen = HashSet::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut unacked = Vec::with_capacity(ACK_BATCH);
    let mut duplicated = 0;
    while (seen.len() as u64) < n {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| anyhow::anyhow!("nothing arrived for 60 s"))??;
        let mut number = [0u8; 8];
        number.copy_from_slice(d.payload().get(..8).unwrap_or(&[0; 8]));
        if !seen.insert(u64::from_le_bytes(number)) {
            duplicated += 1;
        }
        moved.fetch_add(1, Ordering::Relaxed);
        unacked.push(d.offset());
        if unacked.len() == ACK_BATCH {
            consumer.ack_batch(&unacked).await?;
            unacked.clear();
        }
    }
    consumer.ack_batch(&unacked).await?;
    producing.await??;
    let received = seen.len() as u64;
    Ok(PairReport {
        received,
        lost: n - received,
        duplicated,
        seconds: started.elapsed().as_secs_f64(),
    })
}
