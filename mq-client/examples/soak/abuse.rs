//! Garbage and slow-loris connections: bytes that are no protocol, frames announced and
//! then trickled a byte at a time, connections opened and dropped — a hundred at a time,
//! until `total` have been made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections open at once.
const AT_ONCE: usize = 100;

/// What the abuse amounted to.
#[derive(Debug, Default)]
pub(crate) struct Abused {
    pub(crate) opened: u64,
    pub(crate) closed_by_server: u64,
}

pub(crate) async fn run(addr: String, total: usize) -> anyhow::Result<Abused> {
    let opened = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let permits = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let (addr, opened, closed) = (addr.clone(), Arc::clone(&opened), Arc::clone(&closed));
        tasks.push(tokio::spawn(async move {
            if let Ok(socket) = TcpStream::connect(&addr).await {
                opened.fetch_add(1, Ordering::Relaxed);
                if abuse(socket, i).await {
                    closed.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(Abused {
        opened: opened.load(Ordering::Relaxed),
        closed_by_server: closed.load(Ordering::Relaxed),
    })
}

/// One abusive connection; whether the server closed it (rather than this side).
async fn abuse(mut socket: TcpStream, i: usize) -> bool {
    let garbage: Vec<u8> = (0..(i % 200 + 1))
        .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8)
        .collect();
    match i % 3 {
        // Bytes that are no protocol.
        0 => {
            let _ = socket.write_all(&garbage).await;
        }
        // A frame announced, then trickled a byte at a time.
        1 => {
            let _ = socket.write_all(&1000u32.to_be_bytes()).await;
            for b in garbage.iter().take(20) {
                if socket.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Opened and dropped.
        _ => return false,
    }
    let mut sink = [0u8; 4096];
    let until_closed = async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_closed)
        .await
        .is_ok()
}
