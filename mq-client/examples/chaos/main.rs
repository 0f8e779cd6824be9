//! The crash-chaos driver behind `cargo xtask chaos`: a real `mq-server` with file storage,
//! 4 producers and 4 consumers through the SDK (reconnecting), a task creating and deleting
//! topics and groups, and SIGKILLs at random moments — some during start-up — then an
//! audit of everything the clients were told against what the server holds.
//!
//! `chaos --server-bin PATH [--kills N] [--seconds S] [--fsync always|interval]
//! [--power-loss] [--seed N]`
//!
//! With `--power-loss`, after each kill every data file is cut back to what was fsynced
//! (the server records it with `--sync-log`), as a power cut would leave it.

mod audit;
mod load;
mod server;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use mq_client::Client;

use crate::load::{Load, SHARED};
use crate::server::ChaosServer;

/// Crash chaos against a real mq-server.
#[derive(Debug, Parser)]
struct Args {
    /// The mq-server binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// SIGKILLs to deliver.
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Stop killing after this many seconds, whatever the count.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The server's fsync policy.
    #[arg(long, value_parser = ["always", "interval"], default_value = "always")]
    fsync: String,
    /// Cut the data files back to what was fsynced after each kill.
    #[arg(long)]
    power_loss: bool,
    /// Seed of the kill timing.
    #[arg(long)]
    seed: Option<u64>,
}

const PRODUCERS: usize = 4;
const CONSUMERS: usize = 4;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A small deterministic generator for the kill timing.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "chaos: {} kills, fsync {}, power loss {}, seed {seed}",
        args.kills, args.fsync, args.power_loss
    );
    let mut rng = Lcg(seed);
    let mut server = ChaosServer::new(&args.server_bin, &args.fsync, args.power_loss)?;
    server.start()?;
    let admin = Client::connect(&server.addr).await?;
    load::create_topic(&admin).await?;
    let load = Arc::new(Load::default());
    let mut consumers = Vec::new();
    for id in 0..CONSUMERS {
        let client = Client::connect(&server.addr).await?;
        consumers.push(tokio::spawn(load::consume(client, id, Arc::clone(&load))));
    }
    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        let client = Client::connect(&server.addr).await?;
        producers.push(tokio::spawn(load::produce(client, id, Arc::clone(&load))));
    }
    producers.push(tokio::spawn(load::churn(
        Client::connect(&server.addr).await?,
        Arc::clone(&load),
    )));

    let started = Instant::now();
    let mut kills = 0u32;
    let mut in_recovery = 0u32;
    let mut kill_times = Vec::new();
    let mut spot_checked = 0usize;
    let mut spot_wrong = Vec::new();
    while kills < args.kills && started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(350))).await;
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            server.kill()?;
            kills += 1;
            kill_times.push(Instant::now());
            if kills < args.kills && rng.below(8) == 0 {
                server.start_and_kill(Duration::from_millis(rng.below(30)))?;
                kills += 1;
                in_recovery += 1;
                kill_times.push(Instant::now());
            }
            server.start()
        })?;
        let latest = {
            let ledger = load.ledger.lock().unwrap_or_else(|e| e.into_inner());
            audit::latest(&ledger, 20)
        };
        spot_checked += latest.len();
        spot_wrong.extend(audit::spot_check(&admin, &latest).await?);
    }
    let chaos_time = started.elapsed();
    load.stop_producing.store(true, Ordering::Relaxed);
    for p in producers {
        p.await?;
    }
    let groups: HashSet<String> = (0..CONSUMERS)
        .map(|i| format!("fan-{i}"))
        .chain([SHARED.to_owned()])
        .collect();
    let busy = audit::drained(&admin, &groups, Duration::from_secs(120)).await;
    load.stop_consuming.store(true, Ordering::Relaxed);
    for c in consumers {
        c.await?;
    }
    // Every task has ended: the ledger is final.
    let ledger = std::mem::take(&mut *load.ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let findings = audit::read_all(&admin, &ledger).await?;
    let stats = admin
        .topic_stats(&mq_client::TopicName::new(load::TOPIC)?)
        .await?;
    let window = findings
        .missing
        .iter()
        .filter_map(|(_, _, acked)| {
            let kill = kill_times.iter().find(|k| *k >= acked)?;
            Some(kill.duration_since(*acked))
        })
        .max();

    println!(
        "chaos: {kills} kills ({in_recovery} during start-up) in {:.1}s; {} churn cycles",
        chaos_time.as_secs_f64(),
        load.churn_cycles.load(Ordering::Relaxed)
    );
    println!(
        "chaos: {} acknowledged publishes checked, {} stored; {} spot checks after restarts",
        findings.acked, findings.stored, spot_checked
    );
    let acks: usize = ledger.acked.values().map(HashSet::len).sum();
    println!(
        "chaos: {acks} acknowledged consumptions in {} groups",
        ledger.acked.len()
    );
    let lost = findings.missing.len();
    let mut failures = Vec::new();
    let strict = args.fsync == "always" || !args.power_loss;
    if lost > 0 {
        let msg = format!(
            "{lost} acknowledged publishes lost (largest window from ack to power cut: {})",
            window.map_or("-".into(), |w| format!("{} ms", w.as_millis()))
        );
        if strict {
            failures.push(msg);
        } else {
            println!("chaos: {msg}");
        }
    }
    if findings.duplicates > 0 {
        failures.push(format!("{} messages stored twice", findings.duplicates));
    }
    if findings.out_of_order > 0 {
        failures.push(format!(
            "{} messages out of their producer's order",
            findings.out_of_order
        ));
    }
    if strict {
        for r in ledger.redelivered_after_ack.iter().take(5) {
            failures.push(format!("acknowledged consumption delivered again: {r}"));
        }
        for w in spot_wrong.iter().take(5) {
            failures.push(format!("after a restart: {w}"));
        }
    }
    for e in ledger.errors.iter().take(5) {
        failures.push(format!("client error: {e}"));
    }
    for b in &busy {
        failures.push(format!("group not drained: {b}"));
    }
    if stats.retained != findings.stored {
        failures.push(format!(
            "stats say {} retained, {} were read",
            stats.retained, findings.stored
        ));
    }
    println!(
        "{{\"kills\":{kills},\"during_start\":{in_recovery},\"acked_publishes\":{},\"stored\":{},\"acked_consumptions\":{acks},\"lost\":{lost},\"duplicates\":{},\"out_of_order\":{},\"redelivered_after_ack\":{},\"loss_window_ms\":{}}}",
        findings.acked,
        findings.stored,
        findings.duplicates,
        findings.out_of_order,
        ledger.redelivered_after_ack.len(),
        window.map_or(0, |w| w.as_millis())
    );
    for f in &failures {
        println!("chaos: FAILED: {f}");
    }
    if failures.is_empty() {
        println!("chaos: passed");
    }
    Ok(failures.is_empty())
}
