//! Request handling of one session over the in-process transport: every request kind and
//! its refusals, without a socket or a server process (the end-to-end tests cover those).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mq_core::{AckMode, Broker, Durability, NewMessage, Offset, StartPosition, TopicName};
use mq_transport::{
    ClientConnection, ClientMsg, ErrorCode, Frame, InProcessTransport, Incoming, PROTOCOL_VERSION,
    RequestId, ServerMsg, SubscribeRequest, SubscriptionId, Transport,
};
use tokio::sync::watch;

use super::{Session, Shared};
use crate::config::ServerConfig;
use crate::connections::Connections;

/// A session served in this process and the client end of its connection.
struct Harness {
    client: ClientConnection,
    next_id: u32,
    stop: watch::Sender<bool>,
}

impl Harness {
    async fn start(broker: Broker) -> Self {
        let transport = InProcessTransport::new();
        let mut listener = transport.bind("").await.unwrap();
        let client = transport.connect(&listener.local_addr()).await.unwrap();
        let conn = listener.accept().await.unwrap().establish().await.unwrap();
        let shared = Shared {
            broker,
            config: Arc::new(ServerConfig::default()),
            connections: Arc::new(Connections::default()),
            logins: Arc::default(),
            users: crate::users::UsersHandle::default(),
            telemetry: crate::telemetry::Telemetry::default(),
            attachments: Arc::default(),
        };
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(Session::new(shared, stopped).run(conn));
        Self {
            client,
            next_id: 1,
            stop,
        }
    }

    async fn handshaken(broker: Broker) -> Self {
        let mut h = Self::start(broker).await;
        let welcome = h.request(hello(PROTOCOL_VERSION)).await;
        assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
        h
    }

    async fn send(&mut self, msg: ClientMsg) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.client.writer.feed(Frame::new(id, msg)).unwrap();
        self.client.writer.flush().await.unwrap();
        id
    }

    async fn next(&mut self) -> Option<Frame<ServerMsg>> {
        match self.client.reader.read_frame().await.unwrap() {
            Incoming::Frame(frame) => Some(frame),
            Incoming::Bad(bad) => panic!("bad frame from the server: {bad}"),
            Incoming::Closed => None,
        }
    }

    /// Sends a request and returns its reply (pushed frames before it are skipped).
    async fn request(&mut self, msg: ClientMsg) -> ServerMsg {
        let id = self.send(msg).await;
        loop {
            let frame = self.next().await.expect("a reply before the close");
            if frame.id == id {
                return frame.msg;
            }
        }
    }
}

fn hello(version: u16) -> ClientMsg {
    ClientMsg::Hello {
        version,
        client: "test".into(),
        token: None,
    }
}

fn topic() -> TopicName {
    TopicName::new("t").unwrap()
}

fn code(msg: &ServerMsg) -> ErrorCode {
    match msg {
        ServerMsg::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn subscribe(ack: AckMode) -> ClientMsg {
    ClientMsg::Subscribe(SubscribeRequest {
        topic: topic(),
        group: None,
        start: StartPosition::Earliest,
        ack: Some(ack),
        exclusive: false,
        create_topic: true,
        prefetch: 10,
    })
}

#[tokio::test]
async fn a_request_before_hello_is_refused_and_the_connection_closed() {
    let mut h = Harness::start(Broker::new()).await;
    assert_eq!(
        code(&h.request(ClientMsg::Ping).await),
        ErrorCode::HandshakeRequired
    );
    assert!(h.next().await.is_none());
}

#[tokio::test]
async fn an_unsupported_version_is_refused_and_the_connection_closed() {
    let mut h = Harness::start(Broker::new()).await;
    assert_eq!(
        code(&h.request(hello(0)).await),
        ErrorCode::UnsupportedVersion
    );
    assert!(h.next().await.is_none());
}

#[tokio::test]
async fn the_handshake_picks_the_lower_of_the_two_versions() {
    for (offered, picked, heartbeat) in [(1, 1, 0), (2, 2, 10_000), (99, 2, 10_000)] {
        let mut h = Harness::start(Broker::new()).await;
        match h.request(hello(offered)).await {
            ServerMsg::Welcome {
                version,
                heartbeat_ms,
                ..
            } => assert_eq!((version, heartbeat_ms), (picked, heartbeat), "{offered}"),
            other => panic!("expected Welcome, got {other:?}"),
        }
        assert_eq!(h.request(ClientMsg::Ping).await, ServerMsg::Pong);
    }
}

#[tokio::test]
async fn a_second_hello_is_refused_and_the_connection_stays_usable() {
    let mut h = Harness::handshaken(Broker::new()).await;
    assert_eq!(
        code(&h.request(hello(PROTOCOL_VERSION)).await),
        ErrorCode::HandshakeRequired
    );
    assert_eq!(h.request(ClientMsg::Ping).await, ServerMsg::Pong);
}

#[tokio::test]
async fn publish_subscribe_ack_and_a_second_ack_of_the_same_offset() {
    let mut h = Harness::handshaken(Broker::new()).await;
    let published = h
        .request(ClientMsg::Publish {
            topic: topic(),
            messages: vec![NewMessage::new("a"), NewMessage::new("b")],
        })
        .await;
    assert_eq!(
        published,
        ServerMsg::Published {
            first: Offset(0),
            count: 2,
            durability: Durability::Memory
        }
    );
    let ServerMsg::Subscribed { sub, .. } = h.request(subscribe(AckMode::Manual)).await else {
        panic!("not subscribed")
    };
    let Some(Frame {
        msg: ServerMsg::Deliveries { messages, .. },
        ..
    }) = h.next().await
    else {
        panic!("no deliveries")
    };
    let offsets: Vec<Offset> = messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![Offset(0), Offset(1)]);
    let ack = ClientMsg::Ack {
        sub,
        offsets: offsets.clone(),
    };
    assert_eq!(h.request(ack.clone()).await, ServerMsg::Done);
    assert_eq!(code(&h.request(ack).await), ErrorCode::NotInFlight);
}

#[tokio::test]
async fn requests_on_an_unknown_subscription_are_refused() {
    let mut h = Harness::handshaken(Broker::new()).await;
    let sub = SubscriptionId(42);
    for request in [
        ClientMsg::Ack {
            sub,
            offsets: vec![Offset(0)],
        },
        ClientMsg::Nack {
            sub,
            delay_ms: 0,
            offsets: vec![Offset(0)],
        },
        ClientMsg::Credit { sub, credits: 1 },
        ClientMsg::Unsubscribe {
            sub,
            ack: Vec::new(),
        },
    ] {
        assert_eq!(
            code(&h.request(request).await),
            ErrorCode::UnknownSubscription
        );
    }
}

#[tokio::test]
async fn a_message_over_the_broker_limit_is_refused_and_the_connection_stays() {
    let broker = Broker::builder().max_message_size(10).build().unwrap();
    let mut h = Harness::handshaken(broker).await;
    let refused = h
        .request(ClientMsg::Publish {
            topic: topic(),
            messages: vec![NewMessage::new(vec![0u8; 11])],
        })
        .await;
    assert_eq!(code(&refused), ErrorCode::FrameTooLarge);
    assert_eq!(h.request(ClientMsg::Ping).await, ServerMsg::Pong);
}

#[tokio::test]
async fn broker_stats_count_this_connection_and_admin_requests_answer() {
    let mut h = Harness::handshaken(Broker::new()).await;
    let ServerMsg::BrokerStats(stats) = h.request(ClientMsg::Stats { topic: None }).await else {
        panic!("no stats")
    };
    assert_eq!(stats.connections, 1);
    let created = h
        .request(ClientMsg::CreateTopic {
            topic: topic(),
            config: mq_core::TopicConfig::default(),
            unknown_keys: Vec::new(),
        })
        .await;
    assert_eq!(created, ServerMsg::Done);
    assert_eq!(
        h.request(ClientMsg::ListTopics).await,
        ServerMsg::Topics {
            topics: vec![topic()]
        }
    );
    let again = h
        .request(ClientMsg::CreateTopic {
            topic: topic(),
            config: mq_core::TopicConfig::default(),
            unknown_keys: Vec::new(),
        })
        .await;
    assert_eq!(code(&again), ErrorCode::TopicExists);
    assert_eq!(
        h.request(ClientMsg::DeleteTopic { topic: topic() }).await,
        ServerMsg::Done
    );
}

#[tokio::test]
async fn every_name_the_broker_makes_is_usable_in_requests() {
    let mut h = Harness::handshaken(Broker::new()).await;
    let long = TopicName::new("t".repeat(200)).unwrap();
    let dlq = long.dead_letter();
    let refused = h
        .request(ClientMsg::Publish {
            topic: dlq.clone(),
            messages: vec![NewMessage::new("x")],
        })
        .await;
    assert_eq!(
        code(&refused),
        ErrorCode::InvalidName,
        "only the broker writes there"
    );
    let created = h
        .request(ClientMsg::CreateTopic {
            topic: dlq.clone(),
            config: mq_core::TopicConfig::default(),
            unknown_keys: Vec::new(),
        })
        .await;
    assert_eq!(created, ServerMsg::Done);
    let ServerMsg::TopicStats(stats) = h
        .request(ClientMsg::Stats {
            topic: Some(dlq.clone()),
        })
        .await
    else {
        panic!("no stats of the dead-letter topic")
    };
    assert_eq!(stats.topic, dlq);
    let ServerMsg::Subscribed { group, .. } = h
        .request(ClientMsg::Subscribe(SubscribeRequest {
            topic: dlq.clone(),
            group: None,
            start: StartPosition::Earliest,
            ack: Some(AckMode::Manual),
            exclusive: false,
            create_topic: true,
            prefetch: 1,
        }))
        .await
    else {
        panic!("not subscribed")
    };
    assert!(group.is_ephemeral());
    let busy = h
        .request(ClientMsg::DeleteGroup {
            topic: dlq.clone(),
            group,
        })
        .await;
    assert_eq!(
        code(&busy),
        ErrorCode::GroupInUse,
        "the generated name was understood"
    );
    assert_eq!(
        h.request(ClientMsg::DeleteTopic { topic: dlq }).await,
        ServerMsg::Done
    );
}

#[tokio::test]
async fn a_hello_while_the_server_stops_is_refused_with_shutting_down() {
    let mut h = Harness::start(Broker::new()).await;
    h.stop.send(true).unwrap();
    assert_eq!(
        code(&h.request(hello(PROTOCOL_VERSION)).await),
        ErrorCode::ShuttingDown
    );
    assert!(h.next().await.is_none());
}

#[tokio::test]
async fn a_prefetch_above_the_maximum_is_granted_the_maximum() {
    let mut h = Harness::handshaken(Broker::new()).await;
    let mut wide = SubscribeRequest {
        topic: topic(),
        group: None,
        start: StartPosition::Earliest,
        ack: Some(AckMode::Manual),
        exclusive: false,
        create_topic: true,
        prefetch: u32::MAX,
    };
    let ServerMsg::Subscribed { prefetch, .. } =
        h.request(ClientMsg::Subscribe(wide.clone())).await
    else {
        panic!("not subscribed")
    };
    assert_eq!(prefetch, ServerConfig::default().max_prefetch);
    wide.prefetch = 5;
    let ServerMsg::Subscribed { prefetch, .. } = h.request(ClientMsg::Subscribe(wide)).await else {
        panic!("not subscribed")
    };
    assert_eq!(
        prefetch, 5,
        "a window within the maximum is granted as asked"
    );
}

#[tokio::test]
async fn subscriptions_beyond_the_per_connection_maximum_are_refused() {
    let broker = Broker::new();
    let transport = InProcessTransport::new();
    let mut listener = transport.bind("").await.unwrap();
    let client = transport.connect(&listener.local_addr()).await.unwrap();
    let conn = listener.accept().await.unwrap().establish().await.unwrap();
    let config = ServerConfig {
        max_subscriptions: 2,
        ..ServerConfig::default()
    };
    let shared = Shared {
        broker,
        config: Arc::new(config),
        connections: Arc::new(Connections::default()),
        logins: Arc::default(),
        users: crate::users::UsersHandle::default(),
        telemetry: crate::telemetry::Telemetry::default(),
        attachments: Arc::default(),
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(Session::new(shared, stopped).run(conn));
    let mut h = Harness {
        client,
        next_id: 1,
        stop,
    };
    assert!(matches!(
        h.request(hello(PROTOCOL_VERSION)).await,
        ServerMsg::Welcome { .. }
    ));
    for _ in 0..2 {
        let reply = h.request(subscribe(AckMode::Manual)).await;
        assert!(matches!(reply, ServerMsg::Subscribed { .. }), "{reply:?}");
    }
    let third = h.request(subscribe(AckMode::Manual)).await;
    assert_eq!(code(&third), ErrorCode::TooManySubscriptions);
    assert_eq!(h.request(ClientMsg::Ping).await, ServerMsg::Pong);
}

/// A session with `shared`, on a fresh in-process connection.
async fn session_with(shared: Shared) -> Harness {
    let transport = InProcessTransport::new();
    let mut listener = transport.bind("").await.unwrap();
    let client = transport.connect(&listener.local_addr()).await.unwrap();
    let conn = listener.accept().await.unwrap().establish().await.unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(Session::new(shared, stopped).run(conn));
    Harness {
        client,
        next_id: 1,
        stop,
    }
}

#[tokio::test(start_paused = true)]
async fn failed_logins_are_answered_later_and_later_and_the_right_token_at_once() {
    let shared = Shared {
        broker: Broker::new(),
        config: Arc::new(ServerConfig::default()),
        connections: Arc::new(Connections::default()),
        logins: Arc::default(),
        users: crate::users::UsersHandle::new(
            crate::users::Users::new(&[], Some("right")).unwrap(),
        ),
        telemetry: crate::telemetry::Telemetry::default(),
        attachments: Arc::default(),
    };
    let login = |token: &str| ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
        token: Some(token.to_owned()),
    };
    let mut waits = Vec::new();
    for _ in 0..5 {
        let mut h = session_with(shared.clone()).await;
        let started = tokio::time::Instant::now();
        assert_eq!(
            code(&h.request(login("wrong")).await),
            ErrorCode::Unauthorized
        );
        waits.push(started.elapsed());
    }
    assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
    assert!(
        waits[3] >= std::time::Duration::from_millis(100),
        "{waits:?}"
    );
    assert!(
        waits[4] >= std::time::Duration::from_millis(200),
        "{waits:?}"
    );
    let mut h = session_with(shared).await;
    let started = tokio::time::Instant::now();
    assert!(matches!(
        h.request(login("right")).await,
        ServerMsg::Welcome { .. }
    ));
    assert!(
        started.elapsed().is_zero(),
        "the right token is never delayed"
    );
}
