//! [`Remote`]: one connection to a server, shared by every handle made from a client.
//!
//! One task writes frames (fed by a bounded channel), one task reads them and routes each
//! reply to the oneshot its request registered, and each pushed delivery batch to its
//! subscription's channel. Reading and writing never wait on each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mq_transport::{
    ClientConnection, ClientMsg, Frame, FrameRead, FrameWrite, Incoming, RequestId, ServerMsg,
    SubscriptionId, WireDelivery, write_queued,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::ClientError;

/// Frames queued for the writer before requests wait.
const OUTBOUND_FRAMES: usize = 1024;

/// What a subscription's channel carries.
#[derive(Debug)]
pub(crate) enum SubEvent {
    Deliveries(Vec<WireDelivery>),
    Ended(ClientError),
}

struct Pending {
    reply: oneshot::Sender<Result<ServerMsg, ClientError>>,
    /// For a Subscribe: the channel to register when `Subscribed` arrives, before any
    /// delivery for it can be routed.
    sub_channel: Option<mpsc::UnboundedSender<SubEvent>>,
}

#[derive(Default)]
struct Routes {
    closed: Option<Option<String>>,
    pending: HashMap<u32, Pending>,
    subs: HashMap<SubscriptionId, mpsc::UnboundedSender<SubEvent>>,
}

/// A reply on its way.
pub(crate) struct PendingReply {
    rx: oneshot::Receiver<Result<ServerMsg, ClientError>>,
}

/// A live connection.
pub(crate) struct Remote {
    out: mpsc::Sender<Frame<ClientMsg>>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU32,
    timeout: Duration,
    /// The server's frame limit, from Welcome.
    max_frame: AtomicUsize,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// Starts the reader and writer tasks of an established connection.
    pub(crate) fn start(conn: ClientConnection, timeout: Duration) -> Self {
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (out, rx) = mpsc::channel(OUTBOUND_FRAMES);
        let writer = tokio::spawn(write_frames(conn.writer, rx));
        let reader = tokio::spawn(read_frames(conn.reader, Arc::clone(&routes)));
        Self {
            out,
            routes,
            next_id: AtomicU32::new(1),
            timeout,
            max_frame: AtomicUsize::new(mq_transport::DEFAULT_MAX_FRAME),
            reader,
            writer,
        }
    }

    /// The server's frame limit.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// Records the server's frame limit (from Welcome).
    pub(crate) fn set_max_frame(&self, max_frame: usize) {
        self.max_frame.store(max_frame, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(&self) -> RequestId {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return RequestId(id);
            }
        }
    }

    fn closed_error(&self) -> ClientError {
        ClientError::ConnectionClosed {
            reason: self.lock().closed.clone().flatten(),
        }
    }

    /// Queues a request; the frame is in the writer's queue when this returns, so requests
    /// started one after another reach the server in that order.
    pub(crate) async fn start_request(
        &self,
        msg: ClientMsg,
        sub_channel: Option<mpsc::UnboundedSender<SubEvent>>,
    ) -> Result<PendingReply, ClientError> {
        let id = self.next_id();
        let (reply, rx) = oneshot::channel();
        {
            let mut routes = self.lock();
            if let Some(reason) = &routes.closed {
                return Err(ClientError::ConnectionClosed {
                    reason: reason.clone(),
                });
            }
            routes.pending.insert(id.0, Pending { reply, sub_channel });
        }
        if self.out.send(Frame::new(id, msg)).await.is_err() {
            return Err(self.closed_error());
        }
        Ok(PendingReply { rx })
    }

    /// Waits for a reply; on timeout the connection is closed.
    pub(crate) async fn finish(&self, pending: PendingReply) -> Result<ServerMsg, ClientError> {
        match tokio::time::timeout(self.timeout, pending.rx).await {
            Err(_) => {
                self.close(Some(format!("request timed out after {:?}", self.timeout)));
                Err(ClientError::Timeout {
                    after: self.timeout,
                })
            }
            Ok(Err(_)) => Err(self.closed_error()),
            Ok(Ok(reply)) => reply,
        }
    }

    /// Sends a request and waits for its reply.
    pub(crate) async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, ClientError> {
        let pending = self.start_request(msg, None).await?;
        self.finish(pending).await
    }

    /// Sends a frame whose reply nobody waits for (credits); false if the queue is full.
    pub(crate) fn fire(&self, msg: ClientMsg) -> bool {
        let id = self.next_id();
        self.out.try_send(Frame::new(id, msg)).is_ok()
    }

    /// Sends `Ping` every `interval` (the heartbeat the server announced) until the
    /// connection is closed or dropped; the `Pong`s are dropped like any reply nobody
    /// waits for.
    pub(crate) fn keep_alive(remote: &Arc<Self>, interval: Duration) {
        let remote = Arc::downgrade(remote);
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match remote.upgrade() {
                    Some(remote) if !remote.is_closed() => {
                        remote.fire(ClientMsg::Ping);
                    }
                    _ => return,
                }
            }
        });
    }

    /// Forgets a subscription's channel.
    pub(crate) fn forget_sub(&self, sub: SubscriptionId) {
        self.lock().subs.remove(&sub);
    }

    /// Whether the connection is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some() || self.reader.is_finished()
    }

    /// Closes the connection: pending requests and subscriptions fail.
    pub(crate) fn close(&self, reason: Option<String>) {
        fail_all(&self.routes, reason);
        self.reader.abort();
        self.writer.abort();
    }

    /// Says goodbye and closes.
    pub(crate) async fn goodbye(&self) {
        let _ = self
            .out
            .send(Frame::new(RequestId(0), ClientMsg::Goodbye))
            .await;
        fail_all(&self.routes, Some("closed by this client".into()));
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self
            .out
            .try_send(Frame::new(RequestId(0), ClientMsg::Goodbye));
        self.reader.abort();
    }
}

fn fail_all(routes: &Mutex<Routes>, reason: Option<String>) {
    let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    if routes.closed.is_none() {
        routes.closed = Some(reason.clone());
    }
    let err = ClientError::ConnectionClosed { reason };
    for (_, p) in routes.pending.drain() {
        let _ = p.reply.send(Err(err.clone()));
    }
    for (_, s) in routes.subs.drain() {
        let _ = s.send(SubEvent::Ended(err.clone()));
    }
}

async fn read_frames(mut reader: Box<dyn FrameRead<ServerMsg>>, routes: Arc<Mutex<Routes>>) {
    let reason = loop {
        let frame = match reader.read_frame().await {
            Ok(Incoming::Frame(frame)) => frame,
            Ok(Incoming::Bad(bad)) => break Some(format!("the server sent a bad frame: {bad}")),
            Ok(Incoming::Closed) => break None,
            Err(e) => break Some(e.to_string()),
        };
        if let Some(reason) = route(&routes, frame) {
            break Some(reason);
        }
    };
    fail_all(&routes, reason);
}

/// Routes one frame; returns a reason when it ends the connection.
fn route(routes: &Mutex<Routes>, frame: Frame<ServerMsg>) -> Option<String> {
    let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    match frame.msg {
        ServerMsg::Deliveries { sub, messages } => {
            if let Some(tx) = routes.subs.get(&sub) {
                let _ = tx.send(SubEvent::Deliveries(messages));
            }
            None
        }
        ServerMsg::SubscriptionEnded { sub, code, message } => {
            if let Some(tx) = routes.subs.remove(&sub) {
                let _ = tx.send(SubEvent::Ended(ClientError::from_server(code, message)));
            }
            None
        }
        ServerMsg::Goodbye { reason } if frame.id.0 == 0 => Some(reason),
        ServerMsg::Error { code, message } if frame.id.0 == 0 => {
            Some(format!("{message} [{code}]"))
        }
        msg => {
            // A reply nobody waits for (a credit grant, an abandoned request) is dropped.
            let pending = routes.pending.remove(&frame.id.0)?;
            let reply = match msg {
                ServerMsg::Error { code, message } => Err(ClientError::from_server(code, message)),
                ServerMsg::Subscribed {
                    sub,
                    group,
                    ack,
                    prefetch,
                } => {
                    if let Some(tx) = pending.sub_channel {
                        routes.subs.insert(sub, tx);
                    }
                    Ok(ServerMsg::Subscribed {
                        sub,
                        group,
                        ack,
                        prefetch,
                    })
                }
                other => Ok(other),
            };
            let _ = pending.reply.send(reply);
            None
        }
    }
}

/// Writes requests until the goodbye (or until the client is gone).
async fn write_frames(
    mut writer: Box<dyn FrameWrite<ClientMsg>>,
    mut rx: mpsc::Receiver<Frame<ClientMsg>>,
) {
    let goodbye = |msg: &ClientMsg| matches!(msg, ClientMsg::Goodbye);
    let _ = write_queued(writer.as_mut(), &mut rx, goodbye, None, None).await;
}

/// An unexpected reply.
pub(crate) fn unexpected(what: &str, got: &ServerMsg) -> ClientError {
    ClientError::Protocol {
        message: format!("expected {what}, got {got:?}"),
    }
}

/// Maps a reply that should be `Done`.
pub(crate) fn expect_done(reply: ServerMsg) -> Result<(), ClientError> {
    match reply {
        ServerMsg::Done => Ok(()),
        other => Err(unexpected("Done", &other)),
    }
}
