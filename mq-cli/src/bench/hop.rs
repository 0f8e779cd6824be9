//! The `hop` workload: the latency floor. Messages of `--size` bytes, stamped with the time
//! they are written, cross one raw TCP connection over loopback at `--rate` per second, with
//! no broker in between, paced and handed to the runtime the way `latency` publishes; the
//! percentiles of their one-hop latency are what `latency` (two hops: producer → broker →
//! consumer) is compared against.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{BenchResult, Plan};

pub(crate) async fn run(plan: &Plan) -> anyhow::Result<BenchResult> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("hop: cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    let size = plan.size.max(8);
    let (n, progress) = (plan.n, plan.progress.clone());
    let base = Instant::now();
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut message = vec![0u8; size];
        for _ in 0..n {
            socket.read_exact(&mut message).await?;
            let sent = u64::from_be_bytes(message[..8].try_into()?);
            let now = base.elapsed().as_nanos() as u64;
            histogram.saturating_record(now.saturating_sub(sent) / 1000);
            progress.add(1);
        }
        anyhow::Ok(histogram)
    });
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    plan.progress.start("hop", n);
    let rate = plan.rate;
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    // A thread paces the writes and hands each to the runtime, exactly as the `latency`
    // workload paces its publishes: the floor includes that handoff, not the broker.
    let pacer = std::thread::spawn(move || -> anyhow::Result<()> {
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let mut body = vec![0x61u8; size];
        for i in 0..n {
            let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            body[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
            handle.block_on(socket.write_all(&body))?;
        }
        Ok(())
    });
    let histogram = reader.await??;
    let secs = start.elapsed().as_secs_f64();
    tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("hop: the pacing thread panicked"))??;
    let mut result = BenchResult::throughput("hop", n, plan.size, secs);
    result.p50_us = Some(histogram.value_at_quantile(0.50) as f64);
    result.p99_us = Some(histogram.value_at_quantile(0.99) as f64);
    result.p999_us = Some(histogram.value_at_quantile(0.999) as f64);
    Ok(result)
}
