//! `cargo xtask bench --targets`: the performance targets — retained memory, cold
//! publishes, the plain SDK against batched calls, latency against the one-hop floor,
//! a backlog larger than memory, many topics and groups, durable storage — each run
//! several times against fresh release servers, reported as median and range.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::server::{BenchServer, mq_bench};

/// Sizes of the target runs.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    /// Repetitions of each figure.
    pub(crate) runs: usize,
    /// Messages of the throughput workloads (100-byte payloads).
    pub(crate) n: u64,
    /// Seconds of each latency run.
    pub(crate) latency_secs: u64,
    /// Seconds a server sits idle before the "after idle" publish.
    pub(crate) idle_secs: u64,
    /// Messages of 1 KiB in the backlog.
    pub(crate) backlog: u64,
    /// Where file-storage servers keep their data.
    pub(crate) data_dir: std::path::PathBuf,
    /// Only this target (1–7), when given.
    pub(crate) only: Option<u8>,
}

/// One figure: what was measured, each run's value, and the unit.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) target: &'static str,
    pub(crate) what: String,
    pub(crate) values: Vec<f64>,
    pub(crate) unit: &'static str,
}

impl Figure {
    fn new(target: &'static str, what: impl Into<String>, unit: &'static str) -> Self {
        Self {
            target,
            what: what.into(),
            values: Vec::new(),
            unit,
        }
    }

    /// The median of the runs.
    pub(crate) fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn range(&self) -> (f64, f64) {
        let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    /// The figure as JSON.
    pub(crate) fn json(&self) -> Value {
        json!({"target": self.target, "what": self.what, "unit": self.unit,
               "median": self.median(), "runs": self.values})
    }
}

fn num(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("mq bench printed no {key}"))
}

/// Runs every target and returns the figures, in the order of the targets.
pub(crate) fn run(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    type Target = fn(&Path, &Sizes) -> anyhow::Result<Vec<Figure>>;
    let targets: [Target; 7] = [memory, cold, sdk, latency, backlog, scale, durable];
    let mut figures = Vec::new();
    for (number, target) in (1u8..).zip(targets) {
        if sizes.only.is_none_or(|only| only == number) {
            figures.extend(target(release, sizes)?);
        }
    }
    Ok(figures)
}

/// Server flags for file storage with `fsync` in the data dir, which is emptied first so
/// that every server so started begins with no topics.
fn fresh_file_args(sizes: &Sizes, fsync: &'static str) -> Vec<String> {
    let dir = sizes.data_dir.to_string_lossy().into_owned();
    let _ = std::fs::remove_dir_all(&sizes.data_dir);
    ["--storage", "file", "--fsync", fsync, "--data-dir", &dir]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Target 1: Server memory growth per retained 100-byte message, both storages.
fn memory(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.n.to_string();
    let mut mem = Figure::new(
        "1 compact log",
        "memory storage: RSS growth per retained message",
        "B",
    );
    let mut file = Figure::new(
        "1 compact log",
        "file storage: RSS growth per retained message",
        "B",
    );
    for _ in 0..sizes.runs {
        for (figure, args) in [
            (&mut mem, vec!["--storage".to_owned(), "memory".to_owned()]),
            (&mut file, fresh_file_args(sizes, "interval")),
        ] {
            let server = BenchServer::start(release, &strs(&args))?;
            let before = server.rss();
            server.bench(&["publish", "-n", &n, "--size", "100", "--plain", "--keep"])?;
            let grown = server.rss().saturating_sub(before);
            figure.values.push(grown as f64 / sizes.n as f64);
        }
    }
    let _ = std::fs::remove_dir_all(&sizes.data_dir);
    Ok(vec![mem, file])
}

/// Target 2: Plain-SDK publishes into a fresh server, back to back, and after an idle spell.
fn cold(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.n.to_string();
    let publish = ["publish", "-n", &n, "--size", "100", "--plain"];
    let target = "2 cold publish";
    let mut fresh = Figure::new(target, "plain SDK publish into a fresh server", "msgs/s");
    let mut warm = Figure::new(target, "the same, back to back (warm)", "msgs/s");
    let mut idle = Figure::new(
        target,
        format!("the same after {} s idle", sizes.idle_secs),
        "msgs/s",
    );
    for _ in 0..sizes.runs {
        let server = BenchServer::start(release, &["--storage", "memory"])?;
        fresh
            .values
            .push(num(&server.bench(&publish)?, "msgs_per_s")?);
        warm.values
            .push(num(&server.bench(&publish)?, "msgs_per_s")?);
        std::thread::sleep(Duration::from_secs(sizes.idle_secs));
        idle.values
            .push(num(&server.bench(&publish)?, "msgs_per_s")?);
    }
    Ok(vec![fresh, warm, idle])
}

/// Target 3: The SDK used the plain way against batched calls, interleaved on one server.
fn sdk(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.n.to_string();
    let target = "3 SDK at full speed";
    let mut figures = vec![
        Figure::new(
            target,
            "publish, batched (`publish_batch` of 500)",
            "msgs/s",
        ),
        Figure::new(
            target,
            "publish, plain (`publish` per message, then `flush`)",
            "msgs/s",
        ),
        Figure::new(
            target,
            "work queue, 4 consumers, acks batched by hand",
            "msgs/s",
        ),
        Figure::new(
            target,
            "work queue, 4 consumers, `ack()` per delivery",
            "msgs/s",
        ),
    ];
    let server = BenchServer::start(release, &["--storage", "memory"])?;
    server.bench(&["publish", "-n", &n, "--size", "100"])?;
    for _ in 0..sizes.runs {
        let runs: [&[&str]; 4] = [
            &["publish", "-n", &n, "--size", "100"],
            &["publish", "-n", &n, "--size", "100", "--plain"],
            &["workqueue", "-n", &n, "--size", "100"],
            &["workqueue", "-n", &n, "--size", "100", "--plain"],
        ];
        for (figure, args) in figures.iter_mut().zip(runs) {
            figure.values.push(num(&server.bench(args)?, "msgs_per_s")?);
        }
    }
    Ok(figures)
}

/// Target 4: End-to-end latency through the plain SDK at 10,000 msgs/s against the one-hop floor,
/// interleaved, a fresh server per run.
fn latency(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = (sizes.latency_secs * 10_000).to_string();
    let args = ["-n", &n, "--size", "100", "--rate", "10000"];
    let target = "4 latency";
    let mut figures = vec![
        Figure::new(target, "raw TCP one hop: p50", "µs"),
        Figure::new(target, "raw TCP one hop: p99", "µs"),
        Figure::new(target, "producer → broker → consumer, plain SDK: p50", "µs"),
        Figure::new(target, "producer → broker → consumer, plain SDK: p99", "µs"),
    ];
    for _ in 0..sizes.runs {
        let hop = mq_bench(release, "127.0.0.1:1", &[&["hop"], &args[..]].concat())?;
        let server = BenchServer::start(release, &["--storage", "memory"])?;
        let end = server.bench(&[&["latency", "--plain"], &args[..]].concat())?;
        for (figure, (v, key)) in figures.iter_mut().zip([
            (&hop, "p50_us"),
            (&hop, "p99_us"),
            (&end, "p50_us"),
            (&end, "p99_us"),
        ]) {
            figure.values.push(num(v, key)?);
        }
    }
    Ok(figures)
}

/// Target 5: A backlog of 1 KiB messages on file storage with a memory bound, read from the start.
fn backlog(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.backlog.to_string();
    let target = "5 backlog";
    let mut fill = Figure::new(
        target,
        format!(
            "publish {} × 1 KiB, no consumer (file storage, fsync interval)",
            sizes.backlog
        ),
        "msgs/s",
    );
    let mut catchup = Figure::new(target, "a new group reads it from the earliest", "msgs/s");
    let mut peak = Figure::new(
        target,
        "server RSS, peak over the run (--max-memory 256MiB)",
        "MiB",
    );
    // The backlog is large: one run.
    let mut args = fresh_file_args(sizes, "interval");
    args.extend(["--max-memory".to_owned(), (256u64 << 20).to_string()]);
    let server = BenchServer::start(release, &strs(&args))?;
    let watch = server.watch_rss();
    let result = server.bench(&["catchup", "-n", &n, "--size", "1024", "--producers", "2"])?;
    peak.values.push(watch.peak() as f64 / (1024.0 * 1024.0));
    fill.values.push(num(&result, "fill_msgs_per_s")?);
    catchup.values.push(num(&result, "msgs_per_s")?);
    drop(server);
    let _ = std::fs::remove_dir_all(&sizes.data_dir);
    Ok(vec![fill, catchup, peak])
}

/// Target 6: Many topics, many idle groups, fan-out to many groups.
fn scale(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.n.to_string();
    let target = "6 topics and groups";
    let mut one = Figure::new(target, "one topic, 4 producers", "msgs/s");
    let mut many = Figure::new(target, "1,000 topics round-robin, 4 producers", "msgs/s");
    let mut groups = Figure::new(
        target,
        "10,000 idle groups on one topic: memory per group",
        "B",
    );
    let mut fan = Figure::new(target, "fan-out to 100 groups", "deliveries/s");
    let fan_n = (sizes.n / 10).to_string();
    for _ in 0..sizes.runs {
        let server = BenchServer::start(release, &["--storage", "memory"])?;
        server.bench(&["publish", "-n", &n, "--size", "100"])?;
        one.values.push(num(
            &server.bench(&["publish", "-n", &n, "--size", "100", "--producers", "4"])?,
            "msgs_per_s",
        )?);
        many.values.push(num(
            &server.bench(&[
                "topics",
                "-n",
                &n,
                "--size",
                "100",
                "--producers",
                "4",
                "--topics",
                "1000",
            ])?,
            "msgs_per_s",
        )?);
        fan.values.push(num(
            &server.bench(&[
                "fanout",
                "-n",
                &fan_n,
                "--size",
                "100",
                "--consumers",
                "100",
            ])?,
            "msgs_per_s",
        )?);
        drop(server);
        let server = BenchServer::start(release, &["--storage", "memory"])?;
        let before = server.rss();
        server.bench(&["groups", "-n", "10000", "--keep"])?;
        groups
            .values
            .push(server.rss().saturating_sub(before) as f64 / 10_000.0);
    }
    Ok(vec![one, many, groups, fan])
}

/// Target 7: File storage against memory storage, and acknowledged sends under fsync `always`
/// against the machine's fsync time.
fn durable(release: &Path, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let n = sizes.n.to_string();
    let target = "7 durable";
    let workloads: [(&str, Vec<&str>); 3] = [
        ("publish", vec!["publish", "-n", &n, "--size", "100"]),
        (
            "fan-out to 4 groups",
            vec!["fanout", "-n", &n, "--size", "100", "--consumers", "4"],
        ),
        (
            "work queue, 4 consumers",
            vec!["workqueue", "-n", &n, "--size", "100"],
        ),
    ];
    let mut figures = Vec::new();
    for (what, _) in &workloads {
        figures.push(Figure::new(
            target,
            format!("{what}: memory storage"),
            "msgs/s",
        ));
        figures.push(Figure::new(
            target,
            format!("{what}: file storage, fsync interval"),
            "msgs/s",
        ));
    }
    for _ in 0..sizes.runs {
        for (storage, args) in [
            (0, vec!["--storage".to_owned(), "memory".to_owned()]),
            (1, fresh_file_args(sizes, "interval")),
        ] {
            let server = BenchServer::start(release, &strs(&args))?;
            server.bench(&["publish", "-n", &n, "--size", "100"])?;
            for (i, (_, w)) in workloads.iter().enumerate() {
                figures[2 * i + storage]
                    .values
                    .push(num(&server.bench(w)?, "msgs_per_s")?);
            }
        }
    }
    let mut acked_p50 = Figure::new(target, "fsync always, one message at a time: ack p50", "µs");
    let mut acked_p99 = Figure::new(target, "fsync always, one message at a time: ack p99", "µs");
    let mut fsync_p50 = Figure::new(
        target,
        "this machine's fsync (write 100 B + fdatasync): p50",
        "µs",
    );
    let mut fsync_p99 = Figure::new(
        target,
        "this machine's fsync (write 100 B + fdatasync): p99",
        "µs",
    );
    for _ in 0..sizes.runs {
        let args = fresh_file_args(sizes, "always");
        let server = BenchServer::start(release, &strs(&args))?;
        let acked = server.bench(&["acked", "-n", "2000", "--size", "100"])?;
        acked_p50.values.push(num(&acked, "p50_us")?);
        acked_p99.values.push(num(&acked, "p99_us")?);
        drop(server);
        let (p50, p99) = fsync_time(&sizes.data_dir, 2000)?;
        fsync_p50.values.push(p50);
        fsync_p99.values.push(p99);
    }
    let _ = std::fs::remove_dir_all(&sizes.data_dir);
    figures.extend([acked_p50, acked_p99, fsync_p50, fsync_p99]);
    Ok(figures)
}

/// Percentiles 50 and 99 of appending 100 bytes to a file and `fdatasync`ing it, `n`
/// times, in `dir`: the floor of an acknowledged durable publish.
fn fsync_time(dir: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        file.write_all(&[0x61; 100])?;
        file.sync_data()?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort_by(f64::total_cmp);
    Ok((times[n / 2], times[n * 99 / 100]))
}

/// The figures as a Markdown table.
pub(crate) fn render(figures: &[Figure]) -> String {
    let mut out =
        String::from("| target | what | median | range (runs) |\n| --- | --- | ---: | --- |\n");
    for f in figures {
        let (lo, hi) = f.range();
        let fmt = |x: f64| {
            if x >= 100_000.0 {
                format!("{:.2} M", x / 1e6)
            } else if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} {} | {}–{} ({}) |\n",
            f.target,
            f.what,
            fmt(f.median()),
            f.unit,
            fmt(lo),
            fmt(hi),
            f.values.len()
        ));
    }
    out
}
