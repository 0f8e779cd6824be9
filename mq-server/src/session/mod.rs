//! [`Session`]: one client connection — handshake, requests in order, subscriptions,
//! goodbye. Each request kind's rules live in their own file; [`Session::handle`] only
//! dispatches.
//!
//! Reading and writing are independent: this task reads and answers requests in order;
//! replies and pushed deliveries go through the connection's outbox — written at once when
//! the connection is idle, else queued (bounded) for its flusher task, which writes them in
//! as few socket writes as it can. A client that stops reading stalls only its own
//! flusher, and its pumps stop taking deliveries once the outbox is full. A write that
//! fails ends the session: its consumers detach and what they had in flight goes back to
//! their groups.

mod admin;
mod handshake;
mod publish;
mod settle;
mod subscription;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use mq_core::{Broker, ProducerStamp};
use mq_transport::{
    BadFrame, ClientMsg, CodecError, Connection, ErrorCode, Frame, FrameRead, Incoming, Outbox,
    RequestId, ServerConnection, ServerMsg, SubscriptionId, TransportError,
};
use tokio::sync::{oneshot, watch};

use self::subscription::Sub;
use crate::attachments::Attachments;
use crate::config::ServerConfig;
use crate::connections::Connections;
use crate::logins::Logins;
use crate::telemetry::Telemetry;
use crate::users::{Action, Login, User, UsersHandle};

/// Frames queued in a connection's outbox before senders wait.
const OUTBOUND_FRAMES: usize = 256;

/// What the request loop decides after a request.
pub(crate) enum Next {
    Continue,
    Close,
}

/// What a session shares with the server.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) broker: Broker,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) logins: Arc<Logins>,
    pub(crate) users: UsersHandle,
    pub(crate) telemetry: Telemetry,
    pub(crate) attachments: Arc<Attachments>,
}

/// One connection's state.
pub(crate) struct Session {
    shared: Shared,
    stop: watch::Receiver<bool>,
    subs: HashMap<SubscriptionId, Sub>,
    next_sub: u32,
    out: Option<Outbox<ServerMsg>>,
    /// Why the flusher stopped, if writing failed.
    write_failed: Option<oneshot::Receiver<TransportError>>,
    /// How this connection logged in; `None` when the server asks for no credentials. The
    /// user is looked up again for every request.
    login: Option<Login>,
    /// The protocol version the handshake picked.
    version: u16,
    /// This connection's number, its peer and the client's name (from Hello).
    connection: u64,
    peer: String,
    client: String,
    /// Since when the connection's socket has refused data, if it does.
    blocked: mq_transport::Blocked,
}

/// An error frame.
pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

/// `Done`, or the error frame of a failed broker call.
pub(crate) fn done_or(result: Result<(), mq_core::Error>) -> ServerMsg {
    match result {
        Ok(()) => ServerMsg::Done,
        Err(e) => ServerMsg::error(&e),
    }
}

impl Session {
    pub(crate) fn new(shared: Shared, stop: watch::Receiver<bool>) -> Self {
        Self {
            shared,
            stop,
            subs: HashMap::new(),
            next_sub: 1,
            out: None,
            write_failed: None,
            login: None,
            version: 0,
            connection: 0,
            peer: String::new(),
            client: String::new(),
            blocked: mq_transport::Blocked::default(),
        }
    }

    /// Serves the connection until either side closes it or the server stops.
    pub(crate) async fn run(mut self, conn: ServerConnection) {
        let Connection {
            mut reader,
            writer,
            peer,
            certificate_name,
        } = conn;
        let connections = Arc::clone(&self.shared.connections);
        let counted = connections.open();
        self.connection = counted.1;
        self.peer.clone_from(&peer);
        let (out, flusher) = mq_transport::outbox(writer, OUTBOUND_FRAMES, |_| false);
        let (failed_tx, failed_rx) = oneshot::channel();
        self.out = Some(out);
        self.write_failed = Some(failed_rx);
        let stall = Some(self.shared.config.stall_timeout);
        let blocked = self.blocked.clone();
        let writer = tokio::spawn(async move {
            if let Err(e) = flusher.run(stall, Some(&blocked)).await {
                let _ = failed_tx.send(e);
            }
        });
        tracing::info!(%peer, connection = self.connection, "connection opened");
        if let Some((id, farewell)) = self
            .serve(reader.as_mut(), &peer, certificate_name.as_deref())
            .await
        {
            self.send(id, farewell).await;
        }
        for (_, sub) in self.subs.drain() {
            drop(sub.stop().await);
        }
        self.out = None;
        let _ = writer.await;
        tracing::info!(%peer, connection = self.connection, client = %self.client, "connection closed");
    }

    /// Sends a frame: written now when the connection is idle, else queued for its flusher.
    pub(crate) async fn send(&self, id: RequestId, msg: ServerMsg) {
        if let ServerMsg::Error { code, .. } = &msg {
            self.shared.telemetry.error(*code);
        }
        if let Some(out) = &self.out {
            let _ = out.send(Frame::new(id, msg)).await;
        }
    }

    /// Runs the handshake and the request loop; returns the last frame to send, if any.
    async fn serve(
        &mut self,
        reader: &mut dyn FrameRead<ClientMsg>,
        peer: &str,
        certificate_name: Option<&str>,
    ) -> Option<(RequestId, ServerMsg)> {
        let last = |msg| Some((RequestId(0), msg));
        let deadline = self.shared.config.handshake_timeout;
        let hello = match tokio::time::timeout(deadline, reader.read_frame()).await {
            Err(_) => return last(handshake::timed_out(deadline)),
            Ok(Ok(Incoming::Frame(frame))) => frame,
            Ok(Ok(Incoming::Bad(bad))) => return Some((bad.id, bad_frame(&bad))),
            Ok(Ok(Incoming::Closed)) => return None,
            Ok(Err(e)) => return transport_farewell(&e, peer).and_then(last),
        };
        let hello_id = hello.id;
        let client = match &hello.msg {
            ClientMsg::Hello { client, .. } => client.clone(),
            _ => String::new(),
        };
        let stopping = *self.stop.borrow();
        match handshake::hello(&self.shared, hello, stopping, certificate_name) {
            Ok((login, welcome)) => {
                self.login = login;
                if let ServerMsg::Welcome { version, .. } = &welcome {
                    self.version = *version;
                }
                self.client = client;
                self.send(hello_id, welcome).await;
            }
            Err(refusal) => {
                if let ServerMsg::Error {
                    code: ErrorCode::Unauthorized,
                    message,
                } = &refusal
                {
                    // Logged, and answered later and later after repeated failures from
                    // one address: guessing is slow; the right token is never delayed.
                    let wait = self.shared.logins.failed(peer);
                    tracing::warn!(%peer, reason = %message, ?wait, "failed login");
                    tokio::time::sleep(wait).await;
                }
                return Some((hello_id, refusal));
            }
        }
        // Version 2 clients send Ping at the heartbeat interval: silence for a few
        // intervals means the peer is gone, subscriptions or not. Version 1 clients know no
        // heartbeat: a connection without subscriptions is closed after the idle timeout.
        let heartbeat = self.shared.config.heartbeat_interval;
        let silence = (self.version >= 2 && !heartbeat.is_zero())
            .then(|| heartbeat * mq_transport::HEARTBEAT_MISSES);
        loop {
            let idle = self.shared.config.idle_timeout;
            let read = tokio::time::timeout(silence.unwrap_or(idle), reader.read_frame());
            let write_failed = async {
                match self.write_failed.as_mut() {
                    Some(failed) => failed.await.ok(),
                    None => None,
                }
            };
            let item = tokio::select! {
                _ = self.stop.changed() => {
                    return last(ServerMsg::Goodbye { reason: "server is shutting down".into() });
                }
                Some(reason) = write_failed => {
                    // A client that exits without a goodbye is ordinary; a stall or another
                    // failure is worth a warning.
                    if reason.is_peer_gone() {
                        tracing::info!(%peer, %reason, "the peer went away while being written to");
                    } else {
                        tracing::warn!(%peer, %reason, "closing the connection: writing to it failed");
                    }
                    return None;
                }
                item = read => item,
            };
            let frame = match item {
                Err(_) if silence.is_some() => return last(handshake::silent(heartbeat)),
                Err(_) if self.subs.is_empty() => return last(handshake::idle(idle)),
                Err(_) => continue,
                Ok(Ok(Incoming::Frame(frame))) => frame,
                Ok(Ok(Incoming::Bad(bad))) => {
                    tracing::debug!(%peer, error = %bad, "bad frame");
                    self.send(bad.id, bad_frame(&bad)).await;
                    continue;
                }
                Ok(Ok(Incoming::Closed)) => return None,
                Ok(Err(e)) => return transport_farewell(&e, peer).and_then(last),
            };
            if let Next::Close = self.handle(frame).await {
                return None;
            }
        }
    }

    /// This connection's user as the server knows it now: `Ok(None)` on a server without
    /// credentials; the refusal when the user was removed since the login.
    fn user(&self) -> Result<Option<User>, ServerMsg> {
        let Some(login) = &self.login else {
            return Ok(None);
        };
        match self.shared.users.current().find(login) {
            Some(user) => Ok(Some(user.clone())),
            None => Err(error(
                ErrorCode::PermissionDenied,
                "this connection's user is no longer known to the server (its users were \
                 reloaded): connect again with current credentials",
            )),
        }
    }

    /// The refusal of `action` on `topic` (in `group`) when the user may not.
    fn denied(
        &self,
        action: Action,
        topic: &mq_core::TopicName,
        group: Option<&mq_core::GroupName>,
    ) -> Option<ServerMsg> {
        let user = match self.user() {
            Ok(user) => user?,
            Err(refusal) => return Some(refusal),
        };
        (!user.allows(action, topic, group))
            .then(|| error(ErrorCode::PermissionDenied, user.refusal(action, topic)))
    }

    /// The permission a request needs, checked: the refusal, if any.
    fn check(&self, request: &ClientMsg) -> Option<ServerMsg> {
        match request {
            ClientMsg::Publish { topic, .. } | ClientMsg::PublishIdempotent { topic, .. } => {
                self.denied(Action::Publish, topic, None)
            }
            ClientMsg::Subscribe(req) => {
                self.denied(Action::Consume, &req.topic, req.group.as_ref())
            }
            ClientMsg::Peek { topic, .. } => self.denied(Action::Consume, topic, None),
            ClientMsg::CreateTopic { topic, .. }
            | ClientMsg::DeleteTopic { topic }
            | ClientMsg::DeleteGroup { topic, .. }
            | ClientMsg::CreateGroup { topic, .. }
            | ClientMsg::SeekGroup { topic, .. }
            | ClientMsg::PurgeTopic { topic }
            | ClientMsg::AlterTopic { topic, .. } => self.denied(Action::Admin, topic, None),
            ClientMsg::DescribeTopic { topic }
            | ClientMsg::ListGroups { topic }
            | ClientMsg::DescribeGroup { topic, .. }
            | ClientMsg::Stats { topic: Some(topic) } => self.denied(Action::Stats, topic, None),
            ClientMsg::Stats { topic: None } => {
                let user = match self.user() {
                    Ok(user) => user?,
                    Err(refusal) => return Some(refusal),
                };
                (!user.allows_everywhere(Action::Stats)).then(|| {
                    error(
                        ErrorCode::PermissionDenied,
                        format!(
                            "user \"{}\" may not read broker-wide stats: that needs stats on \"*\"",
                            user.name
                        ),
                    )
                })
            }
            _ => None,
        }
    }

    /// Answers one request.
    async fn handle(&mut self, frame: Frame<ClientMsg>) -> Next {
        let id = frame.id;
        if self.version >= 2
            && let Some(refusal) = refused_in_version_2(&frame)
        {
            self.send(id, refusal).await;
            return Next::Continue;
        }
        if let Some(refusal) = self.check(&frame.msg) {
            self.send(id, refusal).await;
            return Next::Continue;
        }
        let reply = match frame.msg {
            ClientMsg::Hello { .. } => handshake::again(),
            ClientMsg::Publish { topic, messages } => {
                let start = std::time::Instant::now();
                publish::publish(self, id, topic, messages, None).await;
                self.shared.telemetry.published(start.elapsed());
                return Next::Continue;
            }
            ClientMsg::Subscribe(req) => match self.subscribe(id, req).await {
                Some(refusal) => refusal,
                None => return Next::Continue,
            },
            ClientMsg::Unsubscribe { sub, ack } => self.unsubscribe(sub, ack).await,
            ClientMsg::Ack { sub, offsets } => self.ack(sub, offsets).await,
            ClientMsg::Nack {
                sub,
                delay_ms,
                offsets,
            } => self.nack(sub, delay_ms, offsets).await,
            ClientMsg::Credit { sub, credits } => self.credit(sub, credits),
            ClientMsg::Ping => ServerMsg::Pong,
            ClientMsg::Goodbye => return Next::Close,
            msg if self.version < 2 && version_2_only(&msg) => error(
                ErrorCode::UnknownKind,
                "this request needs protocol version 2: offer version 2 in Hello",
            ),
            ClientMsg::PublishIdempotent {
                topic,
                producer,
                seq,
                messages,
            } => {
                let start = std::time::Instant::now();
                let stamp = Some(ProducerStamp { producer, seq });
                publish::publish(self, id, topic, messages, stamp).await;
                self.shared.telemetry.published(start.elapsed());
                return Next::Continue;
            }
            ClientMsg::DescribeGroup { topic, group } => self.shared.group_report(&topic, &group),
            ClientMsg::ListTopics => {
                let mut topics = self.shared.broker.topics();
                match self.user() {
                    Ok(Some(user)) => {
                        topics.retain(|t| user.allows(Action::Stats, t, None));
                        ServerMsg::Topics { topics }
                    }
                    Ok(None) => ServerMsg::Topics { topics },
                    Err(refusal) => refusal,
                }
            }
            admin => admin::handle(&self.shared, admin).await,
        };
        self.send(id, reply).await;
        Next::Continue
    }
}

impl Shared {
    /// `DescribeGroup`'s reply: the group in detail, its consumers' connections and a
    /// diagnosis.
    pub(crate) fn group_report(
        &self,
        topic: &mq_core::TopicName,
        group: &mq_core::GroupName,
    ) -> ServerMsg {
        match self.report(topic, group) {
            Ok(report) => ServerMsg::GroupReport(Box::new(report)),
            Err(e) => ServerMsg::error(&e),
        }
    }

    /// The group in detail, its consumers' connections and a diagnosis.
    pub(crate) fn report(
        &self,
        topic: &mq_core::TopicName,
        group: &mq_core::GroupName,
    ) -> Result<mq_transport::GroupReport, mq_core::Error> {
        let info = self.broker.describe_group(topic, group)?;
        let connections: Vec<_> = info
            .consumers
            .iter()
            .filter_map(|c| self.attachments.connection(c.id))
            .collect();
        let diagnosis = info.diagnose(self.broker.now(), |id| {
            connections
                .iter()
                .find(|c| c.consumer == id)
                .map(|c| mq_core::ConsumerFacts {
                    place: format!("connection {} ({})", c.connection, c.peer),
                    credits: c.credits,
                    stopped_reading: c.stopped_reading,
                })
        });
        Ok(mq_transport::GroupReport {
            group: info,
            connections,
            diagnosis,
        })
    }

    /// The broker's stats with the connections this server holds.
    pub(crate) fn broker_stats(&self) -> mq_core::BrokerStats {
        let mut stats = self.broker.stats();
        stats.connections = self.connections.current();
        stats
    }

    /// Runs a broker call that may wait for an fsync: on the blocking pool when the
    /// storage fsyncs before confirming (so concurrent sessions share one fsync and no
    /// async worker waits on a disk), inline otherwise.
    pub(crate) async fn durable<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Broker) -> Result<T, mq_core::Error> + Send + 'static,
    ) -> Result<T, mq_core::Error> {
        if !self.broker.waits_for_disk() {
            return call(&self.broker);
        }
        let broker = self.broker.clone();
        match tokio::task::spawn_blocking(move || call(&broker)).await {
            Ok(result) => result,
            Err(e) => Err(mq_core::Error::Storage(mq_core::StorageError {
                context: "waiting for the disk".into(),
                message: e.to_string(),
                kind: None,
            })),
        }
    }
}

/// Why version 2 refuses a request version 1 accepts: id 0 (reserved for what the server
/// pushes, so a reply to it could not be told from a push), a Publish of nothing, or a
/// topic configuration with keys no setting reads (a typo would fall back to a default).
fn refused_in_version_2(frame: &Frame<ClientMsg>) -> Option<ServerMsg> {
    match &frame.msg {
        ClientMsg::Goodbye => None,
        _ if frame.id.0 == 0 => Some(error(
            ErrorCode::Malformed,
            "request id 0 is reserved for frames the server pushes: number requests from 1",
        )),
        ClientMsg::Publish { messages, .. } | ClientMsg::PublishIdempotent { messages, .. }
            if messages.is_empty() =>
        {
            Some(error(
                ErrorCode::Malformed,
                "a Publish needs at least one message",
            ))
        }
        ClientMsg::CreateTopic { unknown_keys, .. }
        | ClientMsg::AlterTopic { unknown_keys, .. }
            if !unknown_keys.is_empty() =>
        {
            Some(error(
                ErrorCode::InvalidConfig,
                format!(
                    "the topic config has keys no setting reads: {}; PROTOCOL.md lists the \
                     keys of TopicConfig",
                    unknown_keys.join(", ")
                ),
            ))
        }
        _ => None,
    }
}

/// Whether `msg` is a request version 1 does not know.
fn version_2_only(msg: &ClientMsg) -> bool {
    matches!(
        msg,
        ClientMsg::DescribeGroup { .. }
            | ClientMsg::PublishIdempotent { .. }
            | ClientMsg::Peek { .. }
            | ClientMsg::CreateGroup { .. }
            | ClientMsg::SeekGroup { .. }
            | ClientMsg::PurgeTopic { .. }
            | ClientMsg::AlterTopic { .. }
    )
}

fn bad_frame(bad: &BadFrame) -> ServerMsg {
    error(bad.code(), bad.to_string())
}

/// The last word on a connection whose stream broke: an oversized frame gets an error
/// frame naming its length and the limit; other failures leave nothing to say.
fn transport_farewell(e: &TransportError, peer: &str) -> Option<ServerMsg> {
    if let Some((len, max)) = e.frame_too_large() {
        tracing::warn!(%peer, len, max, "closing the connection: a frame over the limit");
        return Some(error(
            ErrorCode::FrameTooLarge,
            format!(
                "a frame of {len} bytes exceeds this server's maximum frame size of {max} \
                 bytes: closing the connection"
            ),
        ));
    }
    if let TransportError::Codec(CodecError::ReadBudgetExhausted { .. }) = e {
        tracing::warn!(%peer, error = %e, "closing the connection: read buffers are full");
        return Some(error(ErrorCode::ServerBusy, e.to_string()));
    }
    tracing::debug!(%peer, error = %e, "connection failed");
    None
}
