//! `cargo xtask bench`: builds release binaries, runs the standard `mq bench` suite against a
//! release `mq-server`, and rewrites the results table in BENCHMARKS.md with the machine,
//! the date and the commands.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::util::{cargo, target_dir, workspace_root};

const START: &str = "<!-- xtask-bench:start -->";
const END: &str = "<!-- xtask-bench:end -->";

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
        let data_dir = std::env::temp_dir().join(format!("mq-xtask-bench-{}", std::process::id()));
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
        if !self.dry_run {
            record(&table)?;
            eprintln!("xtask bench: BENCHMARKS.md updated");
        }
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
    let mut server = Command::new(release.join("mq-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(server_args)
        .env("RUST_LOG", "warn")
        .env("MQ_HTTP", "off")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the release mq-server")?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .context("mq-server did not start")?
        .to_owned();
    // A first run pays for faulting the server's memory in; measure warm runs.
    let warm_up: Vec<&str> = vec!["publish", "-n", n, "--size", "100"];
    let mut rows = Vec::new();
    let mut failure = None;
    for (i, args) in std::iter::once(&warm_up).chain(suite).enumerate() {
        eprintln!(
            "xtask bench: mq-server {} / mq bench {}",
            server_args.join(" "),
            args.join(" ")
        );
        let out = Command::new(release.join("mq"))
            .args(["--server", &addr, "bench"])
            .args(args)
            .args(["--format", "json"])
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run mq bench")?;
        if !out.status.success() {
            failure = Some(format!("mq bench {} failed", args.join(" ")));
            break;
        }
        let result: Value =
            serde_json::from_slice(&out.stdout).context("mq bench printed no JSON")?;
        if i > 0 {
            rows.push((args.join(" "), result));
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    if let Some(failure) = failure {
        bail!(failure);
    }
    Ok(rows)
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

fn record(table: &str) -> anyhow::Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).context("cannot read BENCHMARKS.md")?;
    let section = format!("{START}\n{table}{END}");
    let updated = match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{text}\n## End to end (`cargo xtask bench`)\n\n{section}\n"),
    };
    std::fs::write(&path, updated).context("cannot write BENCHMARKS.md")
}
