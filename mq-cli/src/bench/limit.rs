//! The `limit` workload: a raw TCP pipe over loopback carrying frames of the same size as a
//! publish of the same messages, with no broker in between — the floor cost of one hop on
//! this machine, which the other workloads are compared against.

use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{BenchResult, Plan};

/// Bytes a message adds to a publish frame besides its payload (priority, key and header
/// fields, payload length).
const PER_MESSAGE_OVERHEAD: usize = 11;

pub(crate) async fn run(plan: &Plan) -> anyhow::Result<BenchResult> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("limit: cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    let record = plan.size + PER_MESSAGE_OVERHEAD;
    let prefix = u32::try_from(record).context("limit: --size is too large for a frame")?;
    let mut batch = Vec::with_capacity(plan.batch * (record + 4));
    for _ in 0..plan.batch {
        batch.extend_from_slice(&prefix.to_be_bytes());
        batch.extend(std::iter::repeat_n(0x61u8, record));
    }
    let n = plan.n;
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        // Room for at least one whole frame, whatever --size says.
        let mut buf = vec![0u8; (256 * 1024).max(record + 4)];
        let (mut filled, mut seen) = (0usize, 0u64);
        while seen < n {
            let read = socket.read(&mut buf[filled..]).await?;
            anyhow::ensure!(read > 0, "limit: writer closed early");
            filled += read;
            let mut at = 0;
            while filled - at >= 4 {
                let len = u32::from_be_bytes(buf[at..at + 4].try_into()?) as usize;
                if filled - at < 4 + len {
                    break;
                }
                at += 4 + len;
                seen += 1;
            }
            buf.copy_within(at..filled, 0);
            filled -= at;
        }
        anyhow::Ok(Instant::now())
    });
    let mut socket = TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    plan.progress.start("limit", n);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let count = (plan.batch as u64).min(n - sent);
        let bytes = count as usize * (record + 4);
        socket.write_all(&batch[..bytes]).await?;
        sent += count;
        plan.progress.add(count);
    }
    socket.flush().await?;
    let end = reader.await??;
    Ok(BenchResult::throughput(
        "limit",
        n,
        plan.size,
        end.duration_since(start).as_secs_f64(),
    ))
}
