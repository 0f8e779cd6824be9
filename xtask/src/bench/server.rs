//! A release `mq-server` started for a benchmark, and `mq bench` runs against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// A running release server; stopped (SIGTERM) when dropped.
pub(crate) struct BenchServer {
    child: Child,
    addr: String,
    release: PathBuf,
}

impl BenchServer {
    /// Starts `release/mq-server` on a free loopback port with `args`.
    pub(crate) fn start(release: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_under(release, &[], args)
    }

    /// Starts `release/mq-server` as [`BenchServer::start`] does, run by `wrapper` (a
    /// program and its arguments, such as valgrind's) when it is not empty.
    pub(crate) fn start_under(
        release: &Path,
        wrapper: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let server = release.join("mq-server");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&server);
                c
            }
            None => Command::new(&server),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the release mq-server {}", wrapper.join(" ")))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("mq-server {} did not start", args.join(" "));
        };
        Ok(Self {
            addr: addr.to_owned(),
            child,
            release: release.to_path_buf(),
        })
    }

    /// The server's resident memory now, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Samples the server's resident memory every 50 ms until the returned watch is
    /// stopped; the watch holds the peak.
    pub(crate) fn watch_rss(&self) -> RssWatch {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let pid = self.child.id();
        let thread = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        RssWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// Runs `mq bench <args> --format json` against the server and returns its JSON.
    pub(crate) fn bench(&self, args: &[&str]) -> anyhow::Result<Value> {
        mq_bench(&self.release, &self.addr, args)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The peak resident memory of a server while it is watched.
pub(crate) struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    /// Stops watching; the peak seen, in bytes.
    pub(crate) fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Resident memory of process `pid` in bytes (0 when it cannot be read).
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs `mq bench <args> --format json` against `addr` (any address for the workloads
/// that need no server) and returns its JSON.
pub(crate) fn mq_bench(release: &Path, addr: &str, args: &[&str]) -> anyhow::Result<Value> {
    eprintln!("xtask bench: mq bench {}", args.join(" "));
    let out = Command::new(release.join("mq"))
        .args(["--server", addr, "bench"])
        .args(args)
        .args(["--format", "json"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run mq bench")?;
    if !out.status.success() {
        bail!("mq bench {} failed", args.join(" "));
    }
    serde_json::from_slice(&out.stdout).context("mq bench printed no JSON")
}
