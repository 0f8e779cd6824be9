//! The `hop` workload: the latency floor. Messages of `--size` bytes, stamped with the time
//! they are written, cross one raw TCP connection over loopback at `--rate` per second, with
//! no broker in between, paced and handed to the runtime the way `latency` publishes; the
//! percentiles of their one-hop latency are what `latency` (two hops: producer → broker →
//! consumer) is compared against.

use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::timing::{latency_histogram, pace, record_arrival};
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
        let mut histogram = latency_histogram()?;
        let mut message = vec![0u8; size];
        for _ in 0..n {
            socket.read_exact(&mut message).await?;
            record_arrival(&mut histogram, base, &message)?;
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
    let pacer = std::thread::spawn(move || {
        pace(n, rate, size, (start, base), |body| {
            Ok(handle.block_on(socket.write_all(body))?)
        })
    });
    let histogram = reader.await??;
    let secs = start.elapsed().as_secs_f64();
    tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("hop: the pacing thread panicked"))??;
    Ok(BenchResult::throughput("hop", n, plan.size, secs).with_percentiles(&histogram))
}
