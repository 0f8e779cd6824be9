//! [`write_queued`]: the writer loop of a connection, shared by the server's sessions and
//! the client: frames queued on a channel are written in order, in as few socket writes as
//! the queue allows (everything queued is fed, then flushed once).

use tokio::sync::mpsc;

use crate::protocol::Frame;
use crate::transport::{FrameWrite, TransportError};

/// Writes the frames queued on `rx` until the channel closes or `is_last` says a frame
/// was the last one, then closes the sending direction.
///
/// # Errors
/// The [`TransportError`] that stopped writing; frames still queued are not sent.
pub async fn write_queued<M>(
    writer: &mut dyn FrameWrite<M>,
    rx: &mut mpsc::Receiver<Frame<M>>,
    is_last: impl Fn(&M) -> bool + Send,
) -> Result<(), TransportError> {
    'frames: while let Some(frame) = rx.recv().await {
        let mut last = is_last(&frame.msg);
        writer.feed(frame).await?;
        while !last && let Ok(frame) = rx.try_recv() {
            last = is_last(&frame.msg);
            writer.feed(frame).await?;
        }
        writer.flush().await?;
        if last {
            break 'frames;
        }
    }
    writer.close().await
}
