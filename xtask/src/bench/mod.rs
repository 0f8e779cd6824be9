//! `cargo xtask bench`: builds release binaries, runs the standard `mq bench` suite against a
//! release `mq-server`, and rewrites the results table in BENCHMARKS.md with the machine,
//! the date and the commands.

mod instructions;
mod server;
mod targets;

use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use self::server::BenchServer;
use crate::util::{cargo, target_dir, workspace_root};

/// Where in BENCHMARKS.md each table goes.
const SUITE: (&str, &str) = ("<!-- xtask-bench:start -->", "<!-- xtask-bench:end -->");
const TARGETS: (&str, &str) = ("<!-- xtask-targets:start -->", "<!-- xtask-targets:end -->");
const INSTRUCTIONS: (&str, &str) = (
    "<!-- xtask-instructions:start -->",
    "<!-- xtask-instructions:end -->",
);

/// Runs the benchmark suite and records it in BENCHMARKS.md.
#[derive(Debug, clap::Args)]
pub(crate) struct Bench {
    /// Messages per 100-byte workload
    #[arg(short = 'n', long = "messages", default_value_t = 1_000_000)]
    n: u64,
    /// Messages per 10 KiB workload
    #[arg(long, default_value_t = 100_000)]
    large_n: u64,
    /// Print the table without rewriting BENCHMARKS.md
    #[arg(long)]
    dry_run: bool,
    /// Run the performance targets instead (memory, cold publishes, plain SDK, latency,
    /// backlog, topics and groups, durable storage), each several times
    #[arg(long)]
    targets: bool,
    /// Repetitions of each target figure
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of each latency run (targets)
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Seconds a server sits idle before the "after idle" publish (targets)
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Messages of 1 KiB in the backlog target
    #[arg(long, default_value_t = 8_000_000)]
    backlog: u64,
    /// Run only this target (1–7); the table is then printed, not recorded
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=7))]
    only: Option<u8>,
    /// Count the server's instructions per published and per delivered message with
    /// valgrind's callgrind instead (repeatable on a noisy machine)
    #[arg(long)]
    instructions: bool,
}

impl Bench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        cargo(&[
            "build",
            "--release",
            "--quiet",
            "-p",
            "mq-server",
            "-p",
            "mq-cli",
        ])?;
        let release = target_dir().join("release");
        let data_dir = std::env::temp_dir().join(format!("mq-xtask-bench-{}", std::process::id()));
        if self.instructions {
            let table = instructions::run(&release)?;
            println!("{table}");
            return self.record(INSTRUCTIONS, &table);
        }
        if self.targets {
            let sizes = targets::Sizes {
                runs: self.runs.max(1),
                n: self.n,
                latency_secs: self.latency_secs,
                idle_secs: self.idle_secs,
                backlog: self.backlog,
                data_dir,
                only: self.only,
            };
            let figures = targets::run(&release, &sizes)?;
            let json = Value::Array(figures.iter().map(targets::Figure::json).collect());
            let out = target_dir().join("bench-targets.json");
            std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
            eprintln!("xtask bench: figures written to {}", out.display());
            let table = format!(
                "Measured {} on {} by `cargo xtask bench --targets --runs {} --latency-secs {} \
                 --idle-secs {} --backlog {}`: fresh release servers on 127.0.0.1, client and \
                 server sharing the machine's cores, 100-byte payloads unless said; figures \
                 also in `target/bench-targets.json`.\n\n{}",
                command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
                machine(),
                sizes.runs,
                sizes.latency_secs,
                sizes.idle_secs,
                sizes.backlog,
                targets::render(&figures)
            );
            println!("{table}");
            if self.only.is_some() {
                return Ok(());
            }
            return self.record(TARGETS, &table);
        }
        let (n, large) = (self.n.to_string(), self.large_n.to_string());
        // Latency on a server of its own, first: the throughput runs leave the machine busy
        // reclaiming memory for a while, which shows in the tail.
        let latency_suite: Vec<Vec<&str>> = vec![vec![
            "latency", "-n", "50000", "--size", "100", "--rate", "10000",
        ]];
        let memory_suite: Vec<Vec<&str>> = vec![
            vec!["limit", "-n", &n, "--size", "100"],
            vec!["publish", "-n", &n, "--size", "100"],
            vec!["fanout", "-n", &n, "--size", "100", "--consumers", "4"],
            vec!["workqueue", "-n", &n, "--size", "100", "--consumers", "4"],
            vec!["limit", "-n", &large, "--size", "10240"],
            vec!["publish", "-n", &large, "--size", "10240"],
            vec![
                "fanout",
                "-n",
                &large,
                "--size",
                "10240",
                "--consumers",
                "4",
            ],
        ];
        let interval_suite: Vec<Vec<&str>> = vec![
            vec!["publish", "-n", &n, "--size", "100"],
            vec!["fanout", "-n", &n, "--size", "100", "--consumers", "4"],
            vec!["workqueue", "-n", &n, "--size", "100", "--consumers", "4"],
        ];
        let always_suite: Vec<Vec<&str>> = vec![vec![
            "publish",
            "-n",
            &n,
            "--size",
            "100",
            "--producers",
            "8",
        ]];
        let data = data_dir.to_str().unwrap_or("/tmp/mq-xtask-bench");
        let setups: Vec<Setup<'_>> = vec![
            ("memory", vec!["--storage", "memory"], &latency_suite),
            ("memory", vec!["--storage", "memory"], &memory_suite),
            (
                "file, fsync interval",
                vec![
                    "--storage",
                    "file",
                    "--fsync",
                    "interval",
                    "--data-dir",
                    data,
                ],
                &interval_suite,
            ),
            (
                "file, fsync always",
                vec!["--storage", "file", "--fsync", "always", "--data-dir", data],
                &always_suite,
            ),
        ];
        let mut rows = Vec::new();
        for (storage, server_args, suite) in setups {
            let _ = std::fs::remove_dir_all(&data_dir);
            let result = run_suite(&release, &server_args, &n, suite);
            let _ = std::fs::remove_dir_all(&data_dir);
            for (args, value) in result? {
                rows.push((storage, args, value));
            }
        }
        let table = render(&rows);
        println!("{table}");
        self.record(SUITE, &table)
    }

    /// Writes `table` between `markers` in BENCHMARKS.md, unless a dry run.
    fn record(&self, markers: (&str, &str), table: &str) -> anyhow::Result<()> {
        if self.dry_run {
            return Ok(());
        }
        record(markers, table)?;
        eprintln!("xtask bench: BENCHMARKS.md updated");
        Ok(())
    }
}

/// One server configuration: its label, its flags, and the workloads run against it.
type Setup<'a> = (&'a str, Vec<&'a str>, &'a Vec<Vec<&'a str>>);

/// Starts a release server with `server_args`, warms it up with one discarded run, runs
/// `suite` against it, and stops it.
fn run_suite(
    release: &std::path::Path,
    server_args: &[&str],
    n: &str,
    suite: &[Vec<&str>],
) -> anyhow::Result<Vec<(String, Value)>> {
    let server = BenchServer::start(release, server_args)?;
    // A first run pays for faulting the server's memory in; measure warm runs.
    server.bench(&["publish", "-n", n, "--size", "100"])?;
    suite
        .iter()
        .map(|args| Ok((args.join(" "), server.bench(args)?)))
        .collect()
}

fn cell(v: &Value, key: &str, digits: usize) -> String {
    v.get(key)
        .and_then(Value::as_f64)
        .map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn render(rows: &[(&str, String, Value)]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Measured {} on {} by `cargo xtask bench`: a release `mq-server` on 127.0.0.1 with \
         the storage of each row, warmed up by one discarded `publish` run, and \
         `mq --server ADDR bench … --format json` for each row (client and server share the \
         machine's cores).\n\n",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine()
    ));
    out.push_str("| storage | command (`mq bench …`) | msgs | secs | msgs/s | MB/s | p50 µs | p99 µs | p99.9 µs | vs limit |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (storage, args, v) in rows {
        let ratio = v
            .get("ratio_to_limit")
            .and_then(Value::as_f64)
            .map_or_else(|| "–".to_owned(), |r| format!("{:.0}%", r * 100.0));
        out.push_str(&format!(
            "| {storage} | `{args}` | {} | {} | {} | {} | {} | {} | {} | {ratio} |\n",
            cell(v, "msgs", 0),
            cell(v, "secs", 3),
            cell(v, "msgs_per_s", 0),
            cell(v, "mb_per_s", 1),
            cell(v, "p50_us", 0),
            cell(v, "p99_us", 0),
            cell(v, "p999_us", 0),
        ));
    }
    out
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({model}){mem_gib}")
}

fn record((start, end): (&str, &str), table: &str) -> anyhow::Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).context("cannot read BENCHMARKS.md")?;
    let section = format!("{start}\n{table}{end}");
    let updated = match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(&path, updated).context("cannot write BENCHMARKS.md")
}
