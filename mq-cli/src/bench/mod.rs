//! `mq bench`: the standard workloads against the server at `--server`, with a progress
//! bar, latency percentiles from an HDR histogram, and a table or JSON at the end.

mod hop;
mod limit;
mod scale;
mod timing;
mod workloads;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mq_client::{Client, ClientConfig};
use serde::Serialize;

use crate::args::{BenchArgs, Cli, Format, Workload};
use crate::format::table;

/// One workload's figures, with the JSON field names README documents.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchResult {
    pub(crate) workload: &'static str,
    pub(crate) msgs: u64,
    pub(crate) payload_bytes: usize,
    pub(crate) secs: f64,
    pub(crate) msgs_per_s: f64,
    pub(crate) mb_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p999_us: Option<f64>,
    /// Throughput as a fraction of the `limit` workload's, where meaningful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ratio_to_limit: Option<f64>,
    /// `catchup`: the rate at which the backlog was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fill_msgs_per_s: Option<f64>,
}

impl BenchResult {
    pub(crate) fn throughput(
        workload: &'static str,
        msgs: u64,
        payload_bytes: usize,
        secs: f64,
    ) -> Self {
        let msgs_per_s = msgs as f64 / secs.max(1e-9);
        Self {
            workload,
            msgs,
            payload_bytes,
            secs,
            msgs_per_s,
            mb_per_s: msgs_per_s * payload_bytes as f64 / 1e6,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            ratio_to_limit: None,
            fill_msgs_per_s: None,
        }
    }
}

/// Settings every workload gets.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) addr: String,
    pub(crate) token: Option<String>,
    pub(crate) tls: Option<mq_client::ClientTls>,
    pub(crate) n: u64,
    pub(crate) size: usize,
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) rate: u64,
    pub(crate) batch: usize,
    /// The SDK used the plain way (see `mq bench --plain`).
    pub(crate) plain: bool,
    /// Leave each run's topic and its messages on the server.
    pub(crate) keep: bool,
    /// Topics of the `topics` workload.
    pub(crate) topics: usize,
    pub(crate) progress: Progress,
}

impl Plan {
    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            name: "mq bench".into(),
            token: self.token.clone(),
            tls: self.tls.clone(),
            ..ClientConfig::default()
        };
        Client::connect_with(&self.addr, config)
            .await
            .with_context(|| format!("benchmark could not connect to {}", self.addr))
    }
}

/// A counter shown as a progress bar by a ticker task.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    bar: ProgressBar,
}

impl Progress {
    fn new(visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Self {
            done: Arc::new(AtomicU64::new(0)),
            bar,
        }
    }

    /// Starts a phase of `len` steps.
    pub(crate) fn start(&self, name: &'static str, len: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.bar.set_message(name);
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    /// Counts `n` steps.
    pub(crate) fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn tick(&self) {
        self.bar.set_position(self.done.load(Ordering::Relaxed));
    }

    fn finish(&self) {
        self.tick();
        self.bar.finish_and_clear();
    }
}

pub(crate) async fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    let addr = cli.server.clone();
    let progress = Progress::new(args.format == Format::Text);
    let ticker = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                progress.tick();
            }
        })
    };
    let plan = Plan {
        addr,
        token: cli.token.clone(),
        tls: cli.tls(),
        n: args.n.unwrap_or(
            if matches!(args.workload, Workload::Latency | Workload::Hop) {
                50_000
            } else {
                1_000_000
            },
        ),
        size: args.size,
        producers: args.producers.max(1),
        consumers: args.consumers.max(1),
        rate: args.rate.max(1),
        batch: args.batch.max(1),
        plain: args.plain,
        keep: args.keep,
        topics: args.topics.max(1),
        progress: progress.clone(),
    };
    let result = match args.workload {
        Workload::Publish => workloads::publish(&plan).await,
        Workload::Fanout => workloads::fanout(&plan).await,
        Workload::Workqueue => workloads::workqueue(&plan).await,
        Workload::Latency => workloads::latency(&plan).await,
        Workload::Limit => limit::run(&plan).await,
        Workload::Hop => hop::run(&plan).await,
        Workload::Topics => scale::topics(&plan).await,
        Workload::Groups => scale::groups(&plan).await,
        Workload::Catchup => scale::catchup(&plan).await,
        Workload::Acked => scale::acked(&plan).await,
    };
    let result = match result {
        Ok(mut r)
            if matches!(
                args.workload,
                Workload::Publish | Workload::Fanout | Workload::Workqueue
            ) =>
        {
            let floor = limit::run(&plan).await?;
            r.ratio_to_limit = Some(r.msgs_per_s / floor.msgs_per_s);
            Ok(r)
        }
        other => other,
    };
    ticker.abort();
    progress.finish();
    let result = result?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&result)?),
        Format::Text => println!("{}", text(&result)),
    }
    Ok(())
}

fn text(r: &BenchResult) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    table(
        &[
            "WORKLOAD", "MSGS", "BYTES", "SECS", "MSGS/S", "MB/S", "P50_US", "P99_US", "P999_US",
            "VS_LIMIT",
        ],
        &[vec![
            r.workload.to_owned(),
            r.msgs.to_string(),
            r.payload_bytes.to_string(),
            format!("{:.3}", r.secs),
            format!("{:.0}", r.msgs_per_s),
            format!("{:.1}", r.mb_per_s),
            opt(r.p50_us),
            opt(r.p99_us),
            opt(r.p999_us),
            r.ratio_to_limit
                .map_or_else(|| "-".to_owned(), |v| format!("{:.0}%", v * 100.0)),
        ]],
    )
}
