//! [`write_queued`]: the writer loop of a connection, shared by the server's sessions and
//! the client: frames queued on a channel are written in order, in as few socket writes as
//! the queue allows (everything queued is fed, then flushed once). With a stall deadline,
//! a peer whose socket does not take a batch within it is given up on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::protocol::Frame;
use crate::transport::{FrameWrite, TransportError};

/// Since when a connection's socket has refused to take more (shared with whoever wants to
/// know: the server's `DescribeGroup`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Blocked(Arc<AtomicU64>);

impl Blocked {
    /// How long the socket has been refusing data, if it is now.
    pub fn for_how_long(&self) -> Option<Duration> {
        let since = self.0.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_millis(now_ms().saturating_sub(since)))
    }

    fn set(&self, blocked: bool) {
        self.0
            .store(if blocked { now_ms().max(1) } else { 0 }, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes the frames queued on `rx` until the channel closes or `is_last` says a frame
/// was the last one, then closes the sending direction. With `stall`, a batch the socket
/// has not taken within it (counted from when the socket first refused more) ends writing
/// with [`TransportError::Stalled`]. `blocked` (if given) says while the socket refuses.
///
/// # Errors
/// The [`TransportError`] that stopped writing; frames still queued are not sent.
pub async fn write_queued<M>(
    writer: &mut dyn FrameWrite<M>,
    rx: &mut mpsc::Receiver<Frame<M>>,
    is_last: impl Fn(&M) -> bool + Send,
    stall: Option<Duration>,
    blocked: Option<&Blocked>,
) -> Result<(), TransportError> {
    while let Some(frame) = rx.recv().await {
        let mut batch = std::pin::pin!(write_batch(writer, rx, frame, &is_last));
        // Most batches go straight into the socket buffer: the deadline (a timer) is only
        // armed for one the socket did not take at once.
        let last = match futures::poll!(batch.as_mut()) {
            Poll::Ready(done) => done?,
            Poll::Pending => {
                if let Some(b) = blocked {
                    b.set(true);
                }
                let done = match stall {
                    None => batch.await?,
                    Some(deadline) => tokio::time::timeout(deadline, batch)
                        .await
                        .map_err(|_| TransportError::Stalled(deadline))??,
                };
                if let Some(b) = blocked {
                    b.set(false);
                }
                done
            }
        };
        if last {
            break;
        }
    }
    writer.close().await
}

/// Writes `first` and everything queued behind it, then flushes; true when the last frame
/// was written.
async fn write_batch<M>(
    writer: &mut dyn FrameWrite<M>,
    rx: &mut mpsc::Receiver<Frame<M>>,
    first: Frame<M>,
    is_last: &(impl Fn(&M) -> bool + Send),
) -> Result<bool, TransportError> {
    let mut last = is_last(&first.msg);
    writer.feed(first).await?;
    while !last && let Ok(frame) = rx.try_recv() {
        last = is_last(&frame.msg);
        writer.feed(frame).await?;
    }
    writer.flush().await?;
    Ok(last)
}
