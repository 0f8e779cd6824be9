//! [`Remote`]: the connection to a server shared by every handle made from a client. It
//! outlives the TCP connection under it: when that is lost, the reconnect supervisor
//! ([`crate::reconnect`]) dials again, subscribes again and resends what can be resent.
//!
//! Per TCP connection frames go out through an [`Outbox`] (a request made while the
//! connection is idle is written by its caller; the connection's flusher task writes what
//! queues behind a write under way), and one task reads, routing each reply to the oneshot
//! its request registered — or, for a request made with [`OnReply`] (a producer's
//! batches), handing it to that function right there, so that no task is woken to carry
//! it — and each pushed delivery batch to its subscription's channel. Reading and writing
//! never wait on each other.
//!
//! Requests are of two kinds when the connection is lost: *replayable* ones (numbered
//! publishes, which the broker never stores twice) stay registered and are sent again, in
//! their first order, on the next connection; the others fail with
//! [`ClientError::ConnectionClosed`] (they may or may not have been done). Requests made
//! while reconnecting wait for the new connection (replayable ones are queued for it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mq_transport::{
    ClientConnection, ClientMsg, Frame, FrameRead, Incoming, Outbox, RequestId, ServerMsg,
    SubscribeRequest, SubscriptionId, TrySendError, WireDelivery,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::ClientError;
use crate::reconnect::{Redial, supervise};

/// Counts the TCP connections under one [`Remote`]: a subscription id or a delivery is
/// meaningful only on the connection of its generation.
pub(crate) type Generation = u32;

/// A reader's report that its connection ended: its generation, and why.
pub(crate) type Lost = (Generation, Option<String>);

/// Replayable requests due on a new connection, and its outbox.
pub(crate) type Replay = (Outbox<ClientMsg>, Vec<Frame<ClientMsg>>);

/// Frames queued in a connection's outbox before requests wait.
const OUTBOUND_FRAMES: usize = 1024;

/// What a subscription's channel carries.
#[derive(Debug)]
pub(crate) enum SubEvent {
    /// Deliveries, with the generation of the connection they came over.
    Deliveries(Generation, Vec<WireDelivery>),
    /// The connection was lost: what was delivered over it and not yet taken will be
    /// delivered again after the subscription is renewed.
    Reset,
    /// The subscription ended.
    Ended(ClientError),
}

/// The subscription a consumer holds now: its id, and the generation of the connection
/// that id belongs to (ids are per connection).
#[derive(Debug, Default)]
pub(crate) struct SubSlot(AtomicU64);

impl SubSlot {
    /// The subscription's id and the generation of its connection.
    pub(crate) fn get(&self) -> (SubscriptionId, Generation) {
        let v = self.0.load(Ordering::Acquire);
        (SubscriptionId(v as u32), (v >> 32) as Generation)
    }

    fn set(&self, sub: SubscriptionId, generation: Generation) {
        self.0.store(
            (u64::from(generation) << 32) | u64::from(sub.0),
            Ordering::Release,
        );
    }
}

/// A subscription as the connection keeps it: where its deliveries go, and how to renew
/// it after a reconnect.
#[derive(Debug, Clone)]
pub(crate) struct SubEntry {
    pub(crate) tx: mpsc::UnboundedSender<SubEvent>,
    pub(crate) request: SubscribeRequest,
    pub(crate) slot: Arc<SubSlot>,
}

/// Takes a request's reply in place of a caller waiting for it: the connection's reader
/// calls it with the reply as it reads it (or with why none will come), so no task has to
/// be woken to carry the reply. Keep it short: the reader reads nothing else meanwhile. A
/// reply overdue by the client's request timeout drops the connection, as for a waiting
/// caller ([`Inner::expire_overdue`]).
pub(crate) trait OnReply: Send + 'static {
    /// Called once, with the reply or the error that ended the request.
    fn reply(self: Box<Self>, reply: Result<ServerMsg, ClientError>);
}

/// Where a request's reply goes.
enum ReplyTo {
    /// To a caller waiting in [`Inner::finish`].
    Waiter(oneshot::Sender<Result<ServerMsg, ClientError>>),
    /// Into a function, called by whoever answers.
    Call(Box<dyn OnReply>),
}

impl ReplyTo {
    /// A reply target a caller waits on, and the caller's end.
    fn waiter(replayable: bool) -> (Self, PendingReply) {
        let (tx, rx) = oneshot::channel();
        (ReplyTo::Waiter(tx), PendingReply { rx, replayable })
    }

    fn answer(self, reply: Result<ServerMsg, ClientError>) {
        match self {
            ReplyTo::Waiter(tx) => {
                let _ = tx.send(reply);
            }
            ReplyTo::Call(f) => f.reply(reply),
        }
    }
}

/// Gives each reply to its target, outside the routes' lock (a function may take others).
fn answer_all(replies: Vec<(ReplyTo, Result<ServerMsg, ClientError>)>) {
    for (to, reply) in replies {
        to.answer(reply);
    }
}

struct Pending {
    reply: ReplyTo,
    /// For a Subscribe: the subscription to register when `Subscribed` arrives, before any
    /// delivery for it can be routed.
    sub: Option<SubEntry>,
    /// For a replayable request: the request, to send again on the next connection.
    replay: Option<ClientMsg>,
    /// The generation of the connection it was last sent on, and when.
    sent_on: Generation,
    sent_at: Instant,
}

/// One TCP connection.
struct Conn {
    out: Outbox<ClientMsg>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Conn {
    fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Where the connection stands, for requests waiting on a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    Connected,
    Reconnecting,
    Closed,
}

#[derive(Default)]
struct Routes {
    /// Set once the connection is closed for good: why.
    closed: Option<ClientError>,
    conn: Option<Conn>,
    reconnecting: bool,
    pending: HashMap<u32, Pending>,
    subs: HashMap<SubscriptionId, SubEntry>,
    /// Subscriptions of a lost connection, waiting to be renewed.
    detached: Vec<SubEntry>,
}

/// What the tasks of a connection share.
pub(crate) struct Inner {
    routes: Mutex<Routes>,
    next_id: AtomicU32,
    /// Bumped for every new TCP connection.
    generation: AtomicU32,
    pub(crate) timeout: Duration,
    /// The server's frame limit, from Welcome.
    max_frame: AtomicUsize,
    /// The protocol version agreed in the handshake.
    version: AtomicU16,
    state: watch::Sender<LinkState>,
    /// Readers report here that their connection ended (its generation, why).
    lost: mpsc::UnboundedSender<Lost>,
    /// How to renew the connection when it is lost: set once the first handshake is done
    /// (a refused first handshake is the caller's error, not a reason to dial again).
    redial: Mutex<Option<Redial>>,
    /// Whether the connection is renewed when lost.
    pub(crate) reconnects: std::sync::atomic::AtomicBool,
}

/// A reply on its way.
pub(crate) struct PendingReply {
    rx: oneshot::Receiver<Result<ServerMsg, ClientError>>,
    replayable: bool,
}

/// A live connection, renewed when lost if the client reconnects.
pub(crate) struct Remote {
    inner: Arc<Inner>,
    supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// Starts the tasks of an established connection (not yet handshaken); it is renewed
    /// when lost once [`Remote::reconnect_with`] says how.
    pub(crate) fn start(conn: ClientConnection, timeout: Duration) -> Self {
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            routes: Mutex::new(Routes::default()),
            next_id: AtomicU32::new(1),
            generation: AtomicU32::new(0),
            timeout,
            max_frame: AtomicUsize::new(mq_transport::DEFAULT_MAX_FRAME),
            version: AtomicU16::new(mq_transport::MIN_PROTOCOL_VERSION),
            state: watch::Sender::new(LinkState::Connected),
            lost,
            redial: Mutex::new(None),
            reconnects: std::sync::atomic::AtomicBool::new(false),
        });
        inner.install(conn);
        let supervisor = tokio::spawn(supervise(Arc::clone(&inner), lost_rx));
        Self { inner, supervisor }
    }

    /// From now on, a lost connection is renewed as `redial` says.
    pub(crate) fn reconnect_with(&self, redial: Redial) {
        *self
            .inner
            .redial
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(redial);
        self.inner.reconnects.store(true, Ordering::Release);
    }

    /// The server's frame limit.
    pub(crate) fn max_frame(&self) -> usize {
        self.inner.max_frame.load(Ordering::Relaxed)
    }

    /// The protocol version agreed with the server.
    pub(crate) fn version(&self) -> u16 {
        self.inner.version.load(Ordering::Relaxed)
    }

    /// Records what the server's Welcome said.
    pub(crate) fn welcomed(&self, version: u16, max_frame: u32) {
        self.inner.welcomed(version, max_frame);
    }

    /// The generation of the current TCP connection.
    pub(crate) fn generation(&self) -> Generation {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Queues a request; the frame is in the connection's outbox (or, while reconnecting, in the
    /// replay queue) when this returns, so requests started one after another reach the
    /// server in that order. A `replayable` request is sent again after a reconnect.
    pub(crate) async fn start_request(
        &self,
        msg: ClientMsg,
        sub: Option<SubEntry>,
        replayable: bool,
    ) -> Result<PendingReply, ClientError> {
        let replayable = replayable && self.inner.reconnects.load(Ordering::Acquire);
        let (to, pending) = ReplyTo::waiter(replayable);
        self.inner.start(msg, sub, replayable, None, to).await?;
        Ok(pending)
    }

    /// Queues a request as [`Remote::start_request`] does, its reply going to `on_reply`
    /// (also when the request cannot be sent: with why).
    pub(crate) async fn start_request_with(
        &self,
        msg: ClientMsg,
        replayable: bool,
        on_reply: Box<dyn OnReply>,
    ) {
        let replayable = replayable && self.inner.reconnects.load(Ordering::Acquire);
        let _ = self
            .inner
            .start(msg, None, replayable, None, ReplyTo::Call(on_reply))
            .await;
    }

    /// Sends a request now, without waiting, if the connection is open and its outbox has
    /// room: the caller's thread writes it when the connection is idle, and its reply goes
    /// to `on_reply`. Gives both back otherwise (reconnecting, closed, or the outbox full),
    /// for [`Remote::start_request_with`].
    pub(crate) fn try_start_request_with<R: OnReply>(
        &self,
        msg: ClientMsg,
        replayable: bool,
        on_reply: R,
    ) -> Result<(), (Box<ClientMsg>, R)> {
        let replayable = replayable && self.inner.reconnects.load(Ordering::Acquire);
        self.inner.try_start(msg, replayable, on_reply)
    }

    /// Sends a request that only makes sense on connection `generation` (it names a
    /// subscription of that connection) and waits for its reply;
    /// [`ClientError::Redelivered`] (without offsets) when that connection is gone.
    pub(crate) async fn request_on(
        &self,
        generation: Generation,
        msg: ClientMsg,
    ) -> Result<ServerMsg, ClientError> {
        let (to, pending) = ReplyTo::waiter(false);
        self.inner
            .start(msg, None, false, Some(generation), to)
            .await?;
        self.finish(pending).await
    }

    /// Waits for a reply. On timeout the connection is dropped (a late reply could not be
    /// matched safely); a replayable request then goes on waiting for its replay on the next
    /// connection.
    pub(crate) async fn finish(&self, pending: PendingReply) -> Result<ServerMsg, ClientError> {
        self.inner.finish(pending).await
    }

    /// Sends a request and waits for its reply.
    pub(crate) async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, ClientError> {
        let pending = self.start_request(msg, None, false).await?;
        self.finish(pending).await
    }

    /// Sends a frame whose reply nobody waits for (credits, pings); false if it could not
    /// be queued (full, or no connection right now).
    pub(crate) fn fire(&self, msg: ClientMsg) -> bool {
        let id = self.inner.next_id();
        let routes = self.inner.lock();
        match &routes.conn {
            Some(conn) if !routes.reconnecting => conn.out.try_send(Frame::new(id, msg)).is_ok(),
            _ => false,
        }
    }

    /// Like [`Remote::fire`], only if the current connection is `generation`.
    pub(crate) fn fire_on(&self, generation: Generation, msg: ClientMsg) -> bool {
        self.generation() == generation && self.fire(msg)
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

    /// Forgets a subscription.
    pub(crate) fn forget_sub(&self, slot: &Arc<SubSlot>) {
        let mut routes = self.inner.lock();
        let (sub, _) = slot.get();
        if routes
            .subs
            .get(&sub)
            .is_some_and(|e| Arc::ptr_eq(&e.slot, slot))
        {
            routes.subs.remove(&sub);
        }
        routes.detached.retain(|e| !Arc::ptr_eq(&e.slot, slot));
    }

    /// Whether the connection is closed for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Closes the connection for good: pending requests and subscriptions fail.
    pub(crate) fn close(&self, reason: Option<String>) {
        self.inner
            .fail_all(ClientError::ConnectionClosed { reason });
        self.supervisor.abort();
    }

    /// Says goodbye and closes.
    pub(crate) async fn goodbye(&self) {
        let out = self.inner.lock().conn.as_ref().map(|c| c.out.clone());
        if let Some(out) = out {
            let _ = out.send(Frame::new(RequestId(0), ClientMsg::Goodbye)).await;
        }
        self.supervisor.abort();
        let err = ClientError::ConnectionClosed {
            reason: Some("closed by this client".into()),
        };
        // The flusher sends the goodbye and closes; the reader stops with the socket.
        if let Some(conn) = self.inner.shut(err) {
            conn.reader.abort();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.supervisor.abort();
        let mut routes = self.inner.lock();
        if let Some(conn) = routes.conn.take() {
            let _ = conn
                .out
                .try_send(Frame::new(RequestId(0), ClientMsg::Goodbye));
            conn.reader.abort();
        }
    }
}

impl Inner {
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

    /// Records what the server's Welcome said.
    pub(crate) fn welcomed(&self, version: u16, max_frame: u32) {
        self.version.store(version, Ordering::Relaxed);
        self.max_frame.store(
            usize::try_from(max_frame).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether the connection is closed for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// How to renew the connection, once the first handshake is done.
    pub(crate) fn redial(&self) -> Option<Redial> {
        self.redial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts the tasks of a new TCP connection and makes it the current one; returns its
    /// generation. Requests other than the supervisor's wait until it is open for them.
    pub(crate) fn install(self: &Arc<Self>, conn: ClientConnection) -> Generation {
        let mut routes = self.lock();
        let generation = self
            .generation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        let goodbye = |msg: &ClientMsg| matches!(msg, ClientMsg::Goodbye);
        let (out, flusher) = mq_transport::outbox(conn.writer, OUTBOUND_FRAMES, goodbye);
        let writer = tokio::spawn(async move {
            let _ = flusher.run(None, None).await;
        });
        let reader = tokio::spawn(read_frames(conn.reader, Arc::clone(self), generation));
        if let Some(old) = routes.conn.replace(Conn {
            out,
            reader,
            writer,
        }) {
            old.abort();
        }
        if routes.closed.is_some()
            && let Some(conn) = routes.conn.take()
        {
            conn.abort();
        }
        generation
    }

    /// Registers a request and queues its frame. `internal` requests (the supervisor's
    /// handshake and renewed subscriptions) go out while reconnecting; others wait for the
    /// connection to open, except replayable ones, which are queued for the replay. A
    /// request `only_on` a connection fails with [`ClientError::Redelivered`] on any other.
    async fn start(
        &self,
        msg: ClientMsg,
        sub: Option<SubEntry>,
        replayable: bool,
        only_on: Option<Generation>,
        to: ReplyTo,
    ) -> Result<(), ClientError> {
        self.start_as(msg, sub, replayable, only_on, false, to)
            .await
    }

    /// A request of the reconnect supervisor: goes out while reconnecting.
    pub(crate) async fn start_internal(
        &self,
        msg: ClientMsg,
        sub: Option<SubEntry>,
    ) -> Result<PendingReply, ClientError> {
        let (to, pending) = ReplyTo::waiter(false);
        self.start_as(msg, sub, false, None, true, to).await?;
        Ok(pending)
    }

    async fn start_as(
        &self,
        msg: ClientMsg,
        sub: Option<SubEntry>,
        replayable: bool,
        only_on: Option<Generation>,
        internal: bool,
        to: ReplyTo,
    ) -> Result<(), ClientError> {
        let mut state = self.state.subscribe();
        let mut sub = sub;
        let mut to = Some(to);
        // The request cannot be sent: its reply target learns why, and so does the caller.
        let refuse = |to: &mut Option<ReplyTo>, e: ClientError| {
            if let Some(to) = to.take() {
                to.answer(Err(e.clone()));
            }
            Err(e)
        };
        loop {
            let id = self.next_id();
            let out = {
                let mut routes = self.lock();
                if let Some(e) = &routes.closed {
                    let e = e.clone();
                    drop(routes);
                    return refuse(&mut to, e);
                }
                let current = self.generation.load(Ordering::Acquire);
                // A subscription's request goes out on its own connection as soon as that
                // connection is up (its subscription is renewed), or not at all.
                let on_own = match only_on {
                    Some(g) if g != current || routes.conn.is_none() => {
                        drop(routes);
                        let e = ClientError::Redelivered {
                            offsets: Vec::new(),
                        };
                        return refuse(&mut to, e);
                    }
                    Some(_) => true,
                    None => false,
                };
                let open = internal || on_own || !routes.reconnecting;
                if open || replayable {
                    let out = if open {
                        routes.conn.as_ref().map(|c| c.out.clone())
                    } else {
                        None
                    };
                    if let Some(reply) = to.take() {
                        routes.pending.insert(
                            id.0,
                            Pending {
                                reply,
                                sub: sub.take(),
                                replay: replayable.then(|| msg.clone()),
                                sent_on: if out.is_some() { current } else { 0 },
                                sent_at: Instant::now(),
                            },
                        );
                    }
                    Some(out)
                } else {
                    None
                }
            };
            match out {
                Some(Some(out)) => {
                    // A send into a connection lost meanwhile is answered by the loss.
                    let _ = out.send(Frame::new(id, msg)).await;
                    return Ok(());
                }
                Some(None) => return Ok(()),
                None => {
                    // Wait for the reconnect to end, then try again.
                    let _ = state.wait_for(|s| *s != LinkState::Reconnecting).await;
                }
            }
        }
    }

    /// See [`Remote::try_start_request_with`]. The request is handed to the outbox and
    /// registered under the routes' lock, so that its reply (routed under that lock) finds
    /// it registered, and a full outbox leaves nothing registered.
    fn try_start<R: OnReply>(
        &self,
        msg: ClientMsg,
        replayable: bool,
        on_reply: R,
    ) -> Result<(), (Box<ClientMsg>, R)> {
        let mut routes = self.lock();
        let out = match &routes.conn {
            Some(conn) if routes.closed.is_none() && !routes.reconnecting => conn.out.clone(),
            _ => return Err((Box::new(msg), on_reply)),
        };
        let id = self.next_id();
        let replay = replayable.then(|| msg.clone());
        match out.try_send(Frame::new(id, msg)) {
            // A send into a connection lost meanwhile is answered by the loss.
            Ok(()) | Err(TrySendError::Closed(_)) => {
                routes.pending.insert(
                    id.0,
                    Pending {
                        reply: ReplyTo::Call(Box::new(on_reply)),
                        sub: None,
                        replay,
                        sent_on: self.generation.load(Ordering::Acquire),
                        sent_at: Instant::now(),
                    },
                );
                Ok(())
            }
            Err(TrySendError::Full(frame)) => Err((Box::new(frame.msg), on_reply)),
        }
    }

    /// Waits for a reply: see [`Remote::finish`].
    pub(crate) async fn finish(&self, mut pending: PendingReply) -> Result<ServerMsg, ClientError> {
        loop {
            match tokio::time::timeout(self.timeout, &mut pending.rx).await {
                Ok(Ok(reply)) => return reply,
                Ok(Err(_)) => return Err(self.closed_error()),
                Err(_) => {
                    if self.time_out() && pending.replayable {
                        continue;
                    }
                    return Err(ClientError::Timeout {
                        after: self.timeout,
                    });
                }
            }
        }
    }

    /// Drops the connection when a reply an [`OnReply`] waits for is overdue by the request
    /// timeout, as [`Inner::finish`] does for a waiting caller (the reconnect supervisor
    /// calls this every quarter of the timeout): replayable requests are sent again on the
    /// next connection, the others fail.
    pub(crate) fn expire_overdue(&self) {
        let overdue = {
            let routes = self.lock();
            let generation = self.generation.load(Ordering::Acquire);
            routes.conn.is_some()
                && routes.pending.values().any(|p| {
                    matches!(p.reply, ReplyTo::Call(_))
                        && p.sent_on == generation
                        && p.sent_at.elapsed() >= self.timeout
                })
        };
        if overdue {
            self.time_out();
        }
    }

    /// A reply is overdue: the connection is dropped (a late reply could not be matched
    /// safely) and renewed when the client reconnects — true then — else closed for good.
    fn time_out(&self) -> bool {
        let reason = format!("request timed out after {:?}", self.timeout);
        let renewed = self.reconnects.load(Ordering::Acquire);
        if renewed {
            self.drop_connection(reason);
        } else {
            self.fail_all(ClientError::ConnectionClosed {
                reason: Some(reason),
            });
        }
        renewed
    }

    fn closed_error(&self) -> ClientError {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(ClientError::closed)
    }

    /// Drops the current TCP connection as lost (the supervisor renews it).
    fn drop_connection(&self, reason: String) {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(conn) = self.lock().conn.take() {
            conn.abort();
        }
        let _ = self.lost.send((generation, Some(reason)));
    }

    /// Whether `generation` is the current connection's.
    pub(crate) fn is_current(&self, generation: Generation) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    /// The current connection is lost and is about to be renewed: requests that cannot be
    /// resent fail, subscriptions wait to be renewed, requests wait.
    pub(crate) fn detach(&self, reason: Option<String>) {
        let mut routes = self.lock();
        if routes.closed.is_some() {
            return;
        }
        routes.reconnecting = true;
        self.state.send_replace(LinkState::Reconnecting);
        if let Some(conn) = routes.conn.take() {
            conn.abort();
        }
        let why = match &reason {
            Some(r) => format!("{r}; reconnecting, the request may or may not have been done"),
            None => "the server closed the connection; reconnecting, the request may or may \
                     not have been done"
                .into(),
        };
        let lost: Vec<u32> = routes
            .pending
            .iter()
            .filter(|(_, p)| p.replay.is_none())
            .map(|(id, _)| *id)
            .collect();
        let failed = lost
            .into_iter()
            .filter_map(|id| routes.pending.remove(&id))
            .map(|p| {
                let why = ClientError::ConnectionClosed {
                    reason: Some(why.clone()),
                };
                (p.reply, Err(why))
            })
            .collect();
        let subs: Vec<SubEntry> = routes.subs.drain().map(|(_, e)| e).collect();
        for entry in subs {
            let _ = entry.tx.send(SubEvent::Reset);
            routes.detached.push(entry);
        }
        drop(routes);
        answer_all(failed);
    }

    /// Subscriptions waiting to be renewed.
    pub(crate) fn take_detached(&self) -> Vec<SubEntry> {
        std::mem::take(&mut self.lock().detached)
    }

    /// Puts subscriptions back to wait for the next connection.
    pub(crate) fn put_back(&self, entries: Vec<SubEntry>) {
        self.lock().detached.extend(entries);
    }

    /// The next replayable requests not yet sent on connection `generation`, in their first
    /// order, marked as sent; when there are none left, opens the connection to everyone
    /// and returns `None`. `Err` when the connection was lost meanwhile.
    pub(crate) fn next_replay(&self, generation: Generation) -> Result<Option<Replay>, ()> {
        let mut routes = self.lock();
        if !self.is_current(generation) || routes.closed.is_some() {
            return Err(());
        }
        let Some(out) = routes.conn.as_ref().map(|c| c.out.clone()) else {
            return Err(());
        };
        let mut due: Vec<(u32, ClientMsg)> = routes
            .pending
            .iter_mut()
            .filter(|(_, p)| p.sent_on != generation)
            .filter_map(|(id, p)| {
                let msg = p.replay.clone()?;
                p.sent_on = generation;
                p.sent_at = Instant::now();
                Some((*id, msg))
            })
            .collect();
        if due.is_empty() {
            routes.reconnecting = false;
            self.state.send_replace(LinkState::Connected);
            return Ok(None);
        }
        due.sort_unstable_by_key(|(id, _)| id.wrapping_sub(self.next_id.load(Ordering::Relaxed)));
        let frames = due
            .into_iter()
            .map(|(id, msg)| Frame::new(RequestId(id), msg))
            .collect();
        Ok(Some((out, frames)))
    }

    /// Closes for good with `err`.
    pub(crate) fn fail_all(&self, err: ClientError) {
        if let Some(conn) = self.shut(err) {
            conn.abort();
        }
    }

    /// Closes for good with `err` — every request and subscription fails with it — and
    /// hands back the current TCP connection's tasks, still running.
    fn shut(&self, err: ClientError) -> Option<Conn> {
        let mut routes = self.lock();
        let conn = routes.conn.take();
        let err = routes.closed.get_or_insert(err).clone();
        let failed = routes
            .pending
            .drain()
            .map(|(_, p)| (p.reply, Err(err.clone())))
            .collect();
        for (_, s) in routes.subs.drain() {
            let _ = s.tx.send(SubEvent::Ended(err.clone()));
        }
        for s in routes.detached.drain(..) {
            let _ = s.tx.send(SubEvent::Ended(err.clone()));
        }
        drop(routes);
        answer_all(failed);
        self.state.send_replace(LinkState::Closed);
        conn
    }

    /// Routes one frame of connection `generation`; returns a reason when it ends the
    /// connection.
    fn route(&self, generation: Generation, frame: Frame<ServerMsg>) -> Option<String> {
        let mut routes = self.lock();
        match frame.msg {
            ServerMsg::Deliveries { sub, messages } => {
                if let Some(entry) = routes.subs.get(&sub) {
                    let _ = entry.tx.send(SubEvent::Deliveries(generation, messages));
                }
                None
            }
            ServerMsg::SubscriptionEnded { sub, code, message } => {
                if let Some(entry) = routes.subs.remove(&sub) {
                    let _ = entry
                        .tx
                        .send(SubEvent::Ended(ClientError::from_server(code, message)));
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
                    ServerMsg::Error { code, message } => {
                        Err(ClientError::from_server(code, message))
                    }
                    ServerMsg::Subscribed {
                        sub,
                        group,
                        ack,
                        prefetch,
                    } => {
                        if let Some(entry) = pending.sub {
                            entry.slot.set(sub, generation);
                            routes.subs.insert(sub, entry);
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
                drop(routes);
                pending.reply.answer(reply);
                None
            }
        }
    }
}

async fn read_frames(
    mut reader: Box<dyn FrameRead<ServerMsg>>,
    inner: Arc<Inner>,
    generation: Generation,
) {
    let reason = loop {
        let frame = match reader.read_frame().await {
            Ok(Incoming::Frame(frame)) => frame,
            Ok(Incoming::Bad(bad)) => break Some(format!("the server sent a bad frame: {bad}")),
            Ok(Incoming::Closed) => break None,
            Err(e) => break Some(e.to_string()),
        };
        if let Some(reason) = inner.route(generation, frame) {
            break Some(reason);
        }
    };
    let _ = inner.lost.send((generation, reason));
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
