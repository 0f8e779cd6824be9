//! [`write_queued`]: the writer loop of a connection, shared by the server's sessions and
//! the client: frames queued on a channel are written in order, in as few socket writes as
//! the queue allows (everything queued is fed, then flushed once). With a stall deadline,
//! a peer whose socket does not take a batch within it is given up on.

use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::protocol::Frame;
use crate::transport::{FrameWrite, TransportError};

/// Writes the frames queued on `rx` until the channel closes or `is_last` says a frame
/// was the last one, then closes the sending direction. With `stall`, a batch the socket
/// has not taken within it (counted from when the socket first refused more) ends writing
/// with [`TransportError::Stalled`].
///
/// # Errors
/// The [`TransportError`] that stopped writing; frames still queued are not sent.
pub async fn write_queued<M>(
    writer: &mut dyn FrameWrite<M>,
    rx: &mut mpsc::Receiver<Frame<M>>,
    is_last: impl Fn(&M) -> bool + Send,
    stall: Option<Duration>,
) -> Result<(), TransportError> {
    while let Some(frame) = rx.recv().await {
        let mut batch = std::pin::pin!(write_batch(writer, rx, frame, &is_last));
        // Most batches go straight into the socket buffer: the deadline (a timer) is only
        // armed for one the socket did not take at once.
        let last = match futures::poll!(batch.as_mut()) {
            Poll::Ready(done) => done?,
            Poll::Pending => match stall {
                None => batch.await?,
                Some(deadline) => tokio::time::timeout(deadline, batch)
                    .await
                    .map_err(|_| TransportError::Stalled(deadline))??,
            },
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
