//! The server process and what is measured of it: resident memory and open file
//! descriptors from `/proc`, and what a consumer that stops reading costs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use mq_client::{AckMode, Client, GroupName, NewMessage, StartPosition, TopicName};
use mq_transport::{ClientMsg, Frame, PROTOCOL_VERSION, RequestId, SubscribeRequest};

/// The server's memory bound in these runs.
pub(crate) const MAX_MEMORY: u64 = 512 << 20;
/// What the server's resident memory must stay under.
pub(crate) const RSS_BOUND: u64 = 1 << 30;
/// The window of the consumer that stops reading.
pub(crate) const STALL_PREFETCH: u32 = 100;
/// What it may cost: its window of 1 KiB messages, and room for the measuring's noise.
pub(crate) const STALL_BOUND: u64 = STALL_PREFETCH as u64 * 1024 + (8 << 20);

/// A running `mq-server` with a temporary data dir.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: String,
    data_dir: PathBuf,
}

impl ServerProcess {
    pub(crate) fn start(bin: &Path) -> anyhow::Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("mq-soak-{}", std::process::id()));
        std::fs::create_dir_all(&data_dir)?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--handshake-timeout", "2s"])
            .args(["--max-memory", &MAX_MEMORY.to_string(), "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "error")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start mq-server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("mq-server did not start: {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            addr,
            data_dir,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    /// Open sockets now (data files come and go with the storage's bounded file cache).
    pub(crate) fn fds(&self) -> usize {
        self.fd_targets()
            .iter()
            .filter(|t| t.starts_with("socket:"))
            .count()
    }

    /// What each open file descriptor points at (`socket:[…]`, a path).
    pub(crate) fn fd_targets(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }

    /// Waits (at most `limit`) for the descriptors to come back to `baseline`; the count
    /// then.
    pub(crate) async fn fds_settled(&self, baseline: usize, limit: Duration) -> usize {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let now = self.fds();
            if now <= baseline || std::time::Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the process runs (neither gone nor a zombie).
    pub(crate) fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .is_ok_and(|s| !s.contains("State:\tZ"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Resident memory of process `pid`, in bytes.
pub(crate) fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Publishes 40,000 messages of 1 KiB, then attaches a consumer (manual acks, a window of
/// [`STALL_PREFETCH`]) over a raw socket that it never reads, and returns how much the
/// server's resident memory grew once it was served. Checks that the group has exactly its
/// window in flight: the server stops at the window whatever the socket does.
pub(crate) async fn stalled_consumer_cost(
    server: &ServerProcess,
    admin: &Client,
) -> anyhow::Result<u64> {
    let t = TopicName::new("stalled")?;
    let producer = admin.producer(t.clone());
    for _ in 0..40 {
        let batch = (0..1000)
            .map(|_| NewMessage::new(vec![7u8; 1024]))
            .collect();
        producer.send_batch(batch).await?;
    }
    let before = server.rss();
    let mut socket = TcpStream::connect(&server.addr)?;
    let mut buf = BytesMut::new();
    let frames = [
        ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            client: "stalled consumer".into(),
            token: None,
        },
        ClientMsg::Subscribe(SubscribeRequest {
            topic: t.clone(),
            group: Some(GroupName::new("stalled")?),
            start: StartPosition::Earliest,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: false,
            prefetch: STALL_PREFETCH,
        }),
    ];
    for (i, msg) in frames.into_iter().enumerate() {
        let frame = Frame::new(RequestId(i as u32 + 1), msg);
        mq_transport::encode_frame(&frame, mq_transport::DEFAULT_MAX_FRAME, &mut buf)?;
    }
    socket.write_all(&buf)?;
    // Served once its window is in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let in_flight = loop {
        let stats = admin.topic_stats(&t).await?;
        let in_flight = stats
            .groups
            .iter()
            .find(|g| g.name.as_str() == "stalled")
            .map_or(0, |g| g.in_flight);
        if in_flight >= u64::from(STALL_PREFETCH) || std::time::Instant::now() >= deadline {
            break in_flight;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    anyhow::ensure!(
        in_flight == u64::from(STALL_PREFETCH),
        "the stalled consumer has {in_flight} deliveries in flight, its window is {STALL_PREFETCH}"
    );
    let grown = server.rss().saturating_sub(before);
    drop(socket);
    Ok(grown)
}
