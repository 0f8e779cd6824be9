//! [`Outbox`]: the frames one connection sends, shared by the server's sessions and the
//! client. A frame sent while the connection is idle is written to the socket by the
//! sender itself, at once (flush on idle): no other task is woken to carry it. Frames sent
//! while a write is under way queue behind it, and the connection's [`Flusher`] task writes
//! them in as few socket writes as the queue allows; it also finishes a write the socket
//! did not take at once. With a stall deadline, a peer whose socket takes nothing within it
//! is given up on.
//!
//! A sender never waits on the socket: it encodes its frame and offers it to the socket
//! once, without blocking, so dropping a sender's future never leaves half a frame behind.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::protocol::Frame;
use crate::transport::{FrameWrite, TransportError};

/// Bytes the flusher encodes before it writes them out, when more are queued.
const WRITE_CHUNK: usize = 64 * 1024;

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

/// The outbox is closed: the connection's writing ended (it failed, or its last frame was
/// sent). Carries the frame that was not sent.
#[derive(Debug)]
pub struct OutboxClosed<M>(pub Frame<M>);

impl<M> std::fmt::Display for OutboxClosed<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection no longer sends: its writing ended")
    }
}

impl<M: std::fmt::Debug> std::error::Error for OutboxClosed<M> {}

/// Why [`Outbox::try_send`] did not take a frame; the frame comes back.
#[derive(Debug)]
pub enum TrySendError<M> {
    /// As many frames as the outbox holds are queued.
    Full(Frame<M>),
    /// The connection's writing ended.
    Closed(Frame<M>),
}

struct State<M> {
    /// The connection's writer, when nobody is writing with it.
    writer: Option<Box<dyn FrameWrite<M>>>,
    /// Frames waiting for the write under way.
    queue: VecDeque<Frame<M>>,
    /// The writer holds bytes the socket did not take at once: the flusher finishes them.
    unflushed: bool,
    /// A frame that ends the connection was sent: nothing more is taken.
    last_sent: bool,
    /// Why writing failed, until the flusher reports it.
    failed: Option<TransportError>,
    /// Writing ended (failed or closed): senders are refused.
    ended: bool,
}

struct Shared<M> {
    state: Mutex<State<M>>,
    /// Wakes the flusher: frames queued, bytes left unflushed, or the last sender gone.
    work: Notify,
    /// Wakes senders waiting for room in the queue.
    room: Notify,
    /// Frames queued before senders wait.
    limit: usize,
    /// Live [`Outbox`] handles: when none is left the flusher closes the connection.
    senders: AtomicUsize,
    /// Whether a frame is the connection's last.
    is_last: fn(&M) -> bool,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle to send frames on one connection. Cheap to clone; the connection's sending
/// direction is closed once every handle is dropped and what they sent is written.
pub struct Outbox<M> {
    shared: Arc<Shared<M>>,
}

/// The task side of an [`Outbox`]: writes what senders queued, finishes writes the socket
/// did not take at once, reports a failure, and closes the sending direction at the end.
pub struct Flusher<M> {
    shared: Arc<Shared<M>>,
}

/// An outbox over `writer` holding up to `limit` queued frames, and the flusher to run for
/// it. `is_last` says which frame ends the connection (its goodbye): nothing is sent after
/// it, and the sending direction is closed once it is written.
pub fn outbox<M: Send + 'static>(
    writer: Box<dyn FrameWrite<M>>,
    limit: usize,
    is_last: fn(&M) -> bool,
) -> (Outbox<M>, Flusher<M>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            writer: Some(writer),
            queue: VecDeque::new(),
            unflushed: false,
            last_sent: false,
            failed: None,
            ended: false,
        }),
        work: Notify::new(),
        room: Notify::new(),
        limit: limit.max(1),
        senders: AtomicUsize::new(1),
        is_last,
    });
    (
        Outbox {
            shared: Arc::clone(&shared),
        },
        Flusher { shared },
    )
}

impl<M> Clone for Outbox<M> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> Drop for Outbox<M> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.work.notify_one();
        }
    }
}

impl<M> std::fmt::Debug for Outbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl<M: Send + 'static> Outbox<M> {
    /// Sends `frame`: written to the socket now when the connection is idle, else queued
    /// behind the write under way. Waits only while the queue is full.
    ///
    /// # Errors
    /// [`OutboxClosed`] (with the frame) once the connection's writing has ended.
    pub async fn send(&self, frame: Frame<M>) -> Result<(), OutboxClosed<M>> {
        loop {
            let mut room = pin!(self.shared.room.notified());
            room.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.ended || state.last_sent || state.queue.len() < self.shared.limit {
                    break;
                }
            }
            room.await;
        }
        self.push(frame, false).map_err(|e| match e {
            TrySendError::Full(frame) | TrySendError::Closed(frame) => OutboxClosed(frame),
        })
    }

    /// Sends `frame` as [`Outbox::send`] does, without waiting: from any thread, async or
    /// not.
    ///
    /// # Errors
    /// [`TrySendError`] (with the frame) when the queue is full or writing has ended.
    pub fn try_send(&self, frame: Frame<M>) -> Result<(), TrySendError<M>> {
        self.push(frame, true)
    }

    /// Writes or queues `frame`; with `bounded`, refuses it while the queue is full (a
    /// [`Outbox::send`] that waited for room takes it whatever came meanwhile).
    fn push(&self, frame: Frame<M>, bounded: bool) -> Result<(), TrySendError<M>> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.ended || state.last_sent || state.failed.is_some() {
            return Err(TrySendError::Closed(frame));
        }
        if bounded && state.queue.len() >= shared.limit {
            return Err(TrySendError::Full(frame));
        }
        let last = (shared.is_last)(&frame.msg);
        state.last_sent = last;
        let idle = state.queue.is_empty() && !state.unflushed;
        let writer = if idle { state.writer.take() } else { None };
        let Some(mut writer) = writer else {
            // A write is under way (or the flusher holds the writer): queue behind it.
            state.queue.push_back(frame);
            drop(state);
            shared.work.notify_one();
            return Ok(());
        };
        drop(state);
        let written = write_now(writer.as_mut(), frame);
        let mut state = shared.lock();
        state.writer = Some(writer);
        match written {
            Ok(true) if state.queue.is_empty() && !last => {}
            Ok(done) => {
                state.unflushed |= !done;
                drop(state);
                shared.work.notify_one();
            }
            Err(e) => {
                state.failed = Some(e);
                drop(state);
                shared.work.notify_one();
            }
        }
        Ok(())
    }
}

/// Feeds `frame` and offers what is buffered to the socket once, without waiting: true when
/// the socket took all of it.
fn write_now<M>(writer: &mut dyn FrameWrite<M>, frame: Frame<M>) -> Result<bool, TransportError> {
    writer.feed(frame)?;
    match writer.poll_flush(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(done) => done.map(|()| true),
        Poll::Pending => Ok(false),
    }
}

impl<M: Send + 'static> Flusher<M> {
    /// Writes until every [`Outbox`] handle is gone or the last frame is written, then
    /// closes the sending direction; senders are refused once it returns (or its task is
    /// aborted). With `stall`, a write the socket has not taken within
    /// it (counted from when the socket first refused more) ends writing with
    /// [`TransportError::Stalled`]. `blocked` (if given) says while the socket refuses.
    ///
    /// # Errors
    /// The [`TransportError`] that stopped writing; frames still queued are not sent, and
    /// senders are refused from then on.
    pub async fn run(
        self,
        stall: Option<Duration>,
        blocked: Option<&Blocked>,
    ) -> Result<(), TransportError> {
        self.write_all(stall, blocked).await
    }

    async fn write_all(
        &self,
        stall: Option<Duration>,
        blocked: Option<&Blocked>,
    ) -> Result<(), TransportError> {
        loop {
            let (mut writer, closing) = self.next_work().await?;
            if closing {
                return writer.close().await;
            }
            loop {
                let fed = self.feed_queued(writer.as_mut());
                self.shared.room.notify_waiters();
                fed?;
                flush(writer.as_mut(), stall, blocked).await?;
                let mut state = self.shared.lock();
                if state.queue.is_empty() {
                    state.unflushed = false;
                    state.writer = Some(writer);
                    break;
                }
            }
        }
    }

    /// Waits until there is work, and takes the writer for it: true when the connection is
    /// to be closed (every handle gone, or the last frame written).
    async fn next_work(&self) -> Result<(Box<dyn FrameWrite<M>>, bool), TransportError> {
        loop {
            let mut work = pin!(self.shared.work.notified());
            work.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if let Some(e) = state.failed.take() {
                    return Err(e);
                }
                if state.writer.is_some() {
                    let pending = !state.queue.is_empty() || state.unflushed;
                    let gone = self.shared.senders.load(Ordering::Acquire) == 0;
                    if pending || gone || state.last_sent {
                        let closing = !pending;
                        if let Some(writer) = state.writer.take() {
                            return Ok((writer, closing));
                        }
                    }
                }
            }
            work.await;
        }
    }

    /// Feeds queued frames until about [`WRITE_CHUNK`] bytes are buffered.
    fn feed_queued(&self, writer: &mut dyn FrameWrite<M>) -> Result<(), TransportError> {
        while writer.buffered() < WRITE_CHUNK {
            let Some(frame) = self.shared.lock().queue.pop_front() else {
                break;
            };
            writer.feed(frame)?;
        }
        Ok(())
    }
}

impl<M> Drop for Flusher<M> {
    /// Writing has ended (done, failed, or the task was aborted): senders are refused from
    /// now on, and the writer is dropped.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.ended = true;
        state.queue.clear();
        let writer = state.writer.take();
        drop(state);
        drop(writer);
        self.shared.room.notify_waiters();
    }
}

/// Flushes `writer`; the stall deadline (a timer) is only armed for a write the socket did
/// not take at once.
async fn flush<M>(
    writer: &mut dyn FrameWrite<M>,
    stall: Option<Duration>,
    blocked: Option<&Blocked>,
) -> Result<(), TransportError> {
    let mut flushed = pin!(writer.flush());
    if let Poll::Ready(done) = futures::poll!(flushed.as_mut()) {
        return done;
    }
    if let Some(b) = blocked {
        b.set(true);
    }
    let done = match stall {
        None => flushed.await,
        Some(deadline) => tokio::time::timeout(deadline, flushed)
            .await
            .map_err(|_| TransportError::Stalled(deadline))?,
    };
    if let Some(b) = blocked {
        b.set(false);
    }
    done
}
