//! [`Session`]: one client connection — handshake, requests, subscriptions, goodbye.
//!
//! Reading and writing are independent: this task reads and answers requests in order;
//! replies and pushed deliveries go through a bounded channel to a writer task, which
//! batches them into as few socket writes as it can. A client that stops reading stalls
//! only its own writer, and its pumps stop taking deliveries once the channel is full.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mq_core::{AckMode, Broker, Consumer, Subscription};
use mq_transport::codec::CodecError;
use mq_transport::{
    BadFrame, ClientMsg, Connection, ErrorCode, Frame, FrameRead, FrameWrite, PROTOCOL_VERSION,
    RequestId, ServerConnection, ServerMsg, SubscribeRequest, SubscriptionId, TransportError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::pump::{Credits, Pump};

/// Frames queued for the writer before senders wait.
const OUTBOUND_FRAMES: usize = 256;

/// One subscription of a session.
struct Sub {
    consumer: Arc<Consumer>,
    credits: Option<Arc<Credits>>,
    prefetch: u32,
    pump: JoinHandle<()>,
}

impl Sub {
    /// Stops the pump; dropping the returned consumer detaches it (its deliveries in flight
    /// go back to the group).
    async fn stop(self) -> Arc<Consumer> {
        self.pump.abort();
        let _ = self.pump.await;
        self.consumer
    }
}

/// What the request loop decided.
enum Next {
    Continue,
    Close,
}

/// One connection's state.
pub(crate) struct Session {
    broker: Broker,
    config: Arc<ServerConfig>,
    stop: watch::Receiver<bool>,
    subs: HashMap<SubscriptionId, Sub>,
    next_sub: u32,
    out: Option<mpsc::Sender<Frame<ServerMsg>>>,
    /// Says why the writer stopped, if writing failed.
    write_failed: Option<oneshot::Receiver<String>>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

impl Session {
    pub(crate) fn new(
        broker: Broker,
        config: Arc<ServerConfig>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            broker,
            config,
            stop,
            subs: HashMap::new(),
            next_sub: 1,
            out: None,
            write_failed: None,
        }
    }

    /// Serves the connection until either side closes it or the server stops.
    pub(crate) async fn run(mut self, conn: ServerConnection) {
        let Connection {
            mut reader,
            writer,
            peer,
        } = conn;
        let _counted = self.broker.track_connection();
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_FRAMES);
        let (failed_tx, failed_rx) = oneshot::channel();
        self.out = Some(out_tx);
        self.write_failed = Some(failed_rx);
        let writer = tokio::spawn(write_frames(writer, out_rx, failed_tx));
        tracing::debug!(%peer, "connection opened");
        if let Some((id, farewell)) = self.serve(reader.as_mut(), &peer).await {
            self.send(id, farewell).await;
        }
        for (_, sub) in self.subs.drain() {
            drop(sub.stop().await);
        }
        self.out = None;
        let _ = writer.await;
        tracing::debug!(%peer, "connection closed");
    }

    async fn send(&self, id: RequestId, msg: ServerMsg) {
        if let Some(out) = &self.out {
            let _ = out.send(Frame::new(id, msg)).await;
        }
    }

    /// Runs the handshake and the request loop; returns the last frame to send, if any.
    async fn serve(
        &mut self,
        reader: &mut dyn FrameRead<ClientMsg>,
        peer: &str,
    ) -> Option<(RequestId, ServerMsg)> {
        let last = |msg| Some((RequestId(0), msg));
        let first = tokio::time::timeout(self.config.handshake_timeout, reader.read_frame()).await;
        let hello = match first {
            Err(_) => {
                return last(error(
                    ErrorCode::Timeout,
                    format!(
                        "no handshake within {}: send Hello first",
                        humantime::format_duration(self.config.handshake_timeout)
                    ),
                ));
            }
            Ok(Ok(Some(Ok(frame)))) => frame,
            Ok(Ok(Some(Err(bad)))) => return Some((bad.id, bad_frame(&bad))),
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => return transport_farewell(&e, peer).and_then(last),
        };
        let hello_id = hello.id;
        match self.handshake(hello) {
            Ok(welcome) => self.send(hello_id, welcome).await,
            Err(refusal) => return Some((hello_id, refusal)),
        }
        loop {
            let read = tokio::time::timeout(self.config.idle_timeout, reader.read_frame());
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
                    // Nothing more can reach this client: end the session, so that its
                    // consumers detach and their deliveries in flight go back to the groups.
                    tracing::warn!(%peer, %reason, "closing the connection: writing to it failed");
                    return None;
                }
                item = read => item,
            };
            let frame = match item {
                Err(_) if self.subs.is_empty() => {
                    return last(error(
                        ErrorCode::Timeout,
                        format!(
                            "idle for {}: closing the connection",
                            humantime::format_duration(self.config.idle_timeout)
                        ),
                    ));
                }
                Err(_) => continue,
                Ok(Ok(Some(Ok(frame)))) => frame,
                Ok(Ok(Some(Err(bad)))) => {
                    tracing::debug!(%peer, error = %bad, "bad frame");
                    self.send(bad.id, bad_frame(&bad)).await;
                    continue;
                }
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => return transport_farewell(&e, peer).and_then(last),
            };
            if let Next::Close = self.handle(frame).await {
                return None;
            }
        }
    }

    fn handshake(&self, frame: Frame<ClientMsg>) -> Result<ServerMsg, ServerMsg> {
        let ClientMsg::Hello {
            version,
            client,
            token,
        } = frame.msg
        else {
            return Err(error(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello: see PROTOCOL.md, handshake",
            ));
        };
        if version != PROTOCOL_VERSION {
            return Err(error(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported: this server speaks {PROTOCOL_VERSION}"
                ),
            ));
        }
        if let Some(expected) = &self.config.auth_token
            && token.as_deref() != Some(expected.as_str())
        {
            let what = if token.is_some() { "wrong" } else { "missing" };
            return Err(error(
                ErrorCode::Unauthorized,
                format!("auth token {what}: pass the server's token (MQ_AUTH_TOKEN)"),
            ));
        }
        tracing::debug!(%client, "handshake done");
        Ok(ServerMsg::Welcome {
            version: PROTOCOL_VERSION,
            server: format!("mq-server {}", env!("CARGO_PKG_VERSION")),
            max_frame: u32::try_from(self.config.max_frame).unwrap_or(u32::MAX),
            storage: self.broker.storage_kind().to_owned(),
        })
    }

    async fn handle(&mut self, frame: Frame<ClientMsg>) -> Next {
        let id = frame.id;
        let reply = match frame.msg {
            ClientMsg::Hello { .. } => error(
                ErrorCode::HandshakeRequired,
                "this connection has already completed its handshake",
            ),
            ClientMsg::Publish { topic, messages } => match self
                .durable(move |broker| broker.publish_batch(&topic, messages))
                .await
            {
                Ok(r) => ServerMsg::Published {
                    first: r.first,
                    count: r.count as u32,
                    durability: r.durability,
                },
                Err(e) => ServerMsg::error(&e),
            },
            ClientMsg::Subscribe(req) => match self.subscribe(id, req).await {
                Some(refusal) => refusal,
                None => return Next::Continue,
            },
            ClientMsg::Unsubscribe { sub, ack } => match self.subs.remove(&sub) {
                Some(s) => {
                    // Stop the pump first: the acks then reopen the window with nobody to
                    // fill it.
                    let consumer = s.stop().await;
                    done_or(self.durable(move |_| consumer.ack_batch(&ack)).await)
                }
                None => unknown_sub(sub),
            },
            ClientMsg::Ack { sub, offsets } => match self.subs.get(&sub) {
                Some(s) => {
                    let consumer = Arc::clone(&s.consumer);
                    done_or(self.durable(move |_| consumer.ack_batch(&offsets)).await)
                }
                None => unknown_sub(sub),
            },
            ClientMsg::Nack {
                sub,
                delay_ms,
                offsets,
            } => match self.subs.get(&sub) {
                Some(s) => {
                    let delay = (delay_ms > 0).then(|| Duration::from_millis(delay_ms));
                    let consumer = Arc::clone(&s.consumer);
                    done_or(
                        self.durable(move |_| consumer.nack_batch(&offsets, delay))
                            .await,
                    )
                }
                None => unknown_sub(sub),
            },
            ClientMsg::Credit { sub, credits } => match self.subs.get_mut(&sub) {
                Some(s) => {
                    match &s.credits {
                        Some(c) => c.add(credits),
                        None => {
                            s.prefetch = s.prefetch.saturating_add(credits);
                            s.consumer.set_prefetch(s.prefetch);
                        }
                    }
                    ServerMsg::Done
                }
                None => unknown_sub(sub),
            },
            ClientMsg::CreateTopic { topic, config } => done_or(
                self.durable(move |broker| broker.create_topic(&topic, config))
                    .await,
            ),
            ClientMsg::DeleteTopic { topic } => done_or(
                self.durable(move |broker| broker.delete_topic(&topic))
                    .await,
            ),
            ClientMsg::ListTopics => ServerMsg::Topics {
                topics: self.broker.topics(),
            },
            ClientMsg::DescribeTopic { topic } => match self.broker.describe(&topic) {
                Ok(info) => ServerMsg::TopicInfo(Box::new(info)),
                Err(e) => ServerMsg::error(&e),
            },
            ClientMsg::ListGroups { topic } => match self.broker.groups(&topic) {
                Ok(groups) => ServerMsg::Groups(groups),
                Err(e) => ServerMsg::error(&e),
            },
            ClientMsg::DeleteGroup { topic, group } => done_or(
                self.durable(move |broker| broker.delete_group(&topic, &group))
                    .await,
            ),
            ClientMsg::Stats { topic: None } => ServerMsg::BrokerStats(self.broker.stats()),
            ClientMsg::Stats { topic: Some(topic) } => match self.broker.topic_stats(&topic) {
                Ok(stats) => ServerMsg::TopicStats(Box::new(stats)),
                Err(e) => ServerMsg::error(&e),
            },
            ClientMsg::Ping => ServerMsg::Pong,
            ClientMsg::Goodbye => return Next::Close,
        };
        self.send(id, reply).await;
        Next::Continue
    }

    /// Runs a broker call that may wait for an fsync: on the blocking pool when the
    /// storage fsyncs before confirming (so concurrent sessions share one fsync and no
    /// async worker waits on a disk), inline otherwise.
    async fn durable<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Broker) -> Result<T, mq_core::Error> + Send + 'static,
    ) -> Result<T, mq_core::Error> {
        if !self.config.waits_for_disk() {
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

    /// Attaches a consumer and starts its pump; replies `Subscribed` itself and returns
    /// `None`, or returns the refusal to send.
    async fn subscribe(&mut self, id: RequestId, req: SubscribeRequest) -> Option<ServerMsg> {
        let mut sub = Subscription::new(req.topic.clone())
            .start(req.start)
            .exclusive(req.exclusive);
        sub.group = req.group;
        sub.ack = req.ack;
        if req.prefetch > 0 {
            sub.prefetch = Some(req.prefetch);
        }
        let consumer = match self.durable(move |broker| broker.subscribe(sub)).await {
            Ok(c) => Arc::new(c),
            Err(e) => return Some(ServerMsg::error(&e)),
        };
        let prefetch = if req.prefetch > 0 {
            req.prefetch
        } else {
            self.broker
                .describe(&req.topic)
                .map_or(mq_core::DEFAULT_PREFETCH, |i| i.config.groups.prefetch)
        };
        let sub_id = SubscriptionId(self.next_sub);
        self.next_sub = self.next_sub.wrapping_add(1).max(1);
        let credits =
            (consumer.ack_mode() == AckMode::Auto).then(|| Arc::new(Credits::new(prefetch)));
        // The reply goes out before the pump starts, so it precedes the first delivery.
        self.send(
            id,
            ServerMsg::Subscribed {
                sub: sub_id,
                group: consumer.group().clone(),
                ack: consumer.ack_mode(),
                prefetch,
            },
        )
        .await;
        let out = self.out.clone()?;
        let pump = Pump {
            sub: sub_id,
            consumer: Arc::clone(&consumer),
            credits: credits.clone(),
            out,
            frame_budget: self.config.max_frame / 2,
        };
        let pump = tokio::spawn(pump.run());
        self.subs.insert(
            sub_id,
            Sub {
                consumer,
                credits,
                prefetch,
                pump,
            },
        );
        None
    }
}

fn done_or(result: Result<(), mq_core::Error>) -> ServerMsg {
    match result {
        Ok(()) => ServerMsg::Done,
        Err(e) => ServerMsg::error(&e),
    }
}

fn unknown_sub(sub: SubscriptionId) -> ServerMsg {
    error(
        ErrorCode::UnknownSubscription,
        format!("subscription {sub} is not open on this connection"),
    )
}

fn bad_frame(bad: &BadFrame) -> ServerMsg {
    error(bad.code(), bad.to_string())
}

/// The last word on a connection whose stream broke: an oversized frame gets an error
/// frame; other failures leave nothing to say.
fn transport_farewell(e: &TransportError, peer: &str) -> Option<ServerMsg> {
    match e {
        TransportError::Codec(CodecError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            tracing::debug!(%peer, error = %io, "closing connection: oversized frame");
            Some(error(
                ErrorCode::FrameTooLarge,
                format!("{io}: closing the connection"),
            ))
        }
        other => {
            tracing::debug!(%peer, error = %other, "connection failed");
            None
        }
    }
}

/// Writes queued frames, flushing whenever the queue runs dry; says on `failed` why writing
/// failed, if it did.
async fn write_frames(
    mut writer: Box<dyn FrameWrite<ServerMsg>>,
    mut rx: mpsc::Receiver<Frame<ServerMsg>>,
    failed: oneshot::Sender<String>,
) {
    let result = async {
        while let Some(frame) = rx.recv().await {
            writer.feed(frame).await?;
            while let Ok(frame) = rx.try_recv() {
                writer.feed(frame).await?;
            }
            writer.flush().await?;
        }
        writer.close().await
    }
    .await;
    if let Err(e) = result {
        let _ = failed.send(e.to_string());
    }
}
