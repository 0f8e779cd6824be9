//! Bad input: each case gets a typed error frame, at most its own connection is closed, and
//! a well-behaved producer/consumer pair running at the same time loses nothing.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mq_client::{Client, ClientConfig, NewMessage, Subscription};
use mq_transport::{ClientMsg, ErrorCode, PROTOCOL_VERSION, ServerMsg, SubscribeRequest};
use tokio::task::JoinHandle;

use super::harness::{Raw, Server};
use super::{group, topic};

const TOKEN: &str = "t0ken";
const GOOD_MESSAGES: u32 = 3000;

/// A producer and a consumer doing honest work on their own connections.
struct GoodPair {
    producer: JoinHandle<()>,
    consumer: JoinHandle<Vec<u32>>,
}

async fn connect(addr: &str) -> Client {
    let config = ClientConfig {
        token: Some(TOKEN.into()),
        ..ClientConfig::default()
    };
    Client::connect_with(addr, config).await.unwrap()
}

impl GoodPair {
    async fn start(addr: &str) -> Self {
        let consumer_client = connect(addr).await;
        let mut consumer = consumer_client
            .subscribe(Subscription::new(topic("good")).group(group("good")))
            .await
            .unwrap();
        let producer_client = connect(addr).await;
        let producer = tokio::spawn(async move {
            let producer = producer_client.producer(topic("good"));
            for i in 0..GOOD_MESSAGES {
                producer
                    .send(NewMessage::new(i.to_be_bytes().to_vec()))
                    .await
                    .unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let consumer = tokio::spawn(async move {
            let _keep = consumer_client;
            let mut got = Vec::new();
            while got.len() < GOOD_MESSAGES as usize {
                let d = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
                    .await
                    .expect("good consumer keeps receiving")
                    .unwrap();
                got.push(u32::from_be_bytes(d.payload()[..4].try_into().unwrap()));
                d.ack_confirmed().await.unwrap();
            }
            got
        });
        Self { producer, consumer }
    }

    async fn finish(self) {
        self.producer.await.unwrap();
        let got = self.consumer.await.unwrap();
        assert_eq!(
            got,
            (0..GOOD_MESSAGES).collect::<Vec<_>>(),
            "the good pair lost or reordered messages"
        );
    }
}

/// Runs `case` on raw connections while a good pair works, then checks the pair and that
/// the server still serves.
async fn check(case: fn(&str)) {
    let server = Server::start(&["--auth-token", TOKEN]);
    let pair = GoodPair::start(&server.addr).await;
    let addr = server.addr.clone();
    tokio::task::spawn_blocking(move || case(&addr))
        .await
        .unwrap();
    pair.finish().await;
    connect(&server.addr).await.ping().await.unwrap();
}

fn expect_error(frame: &mq_transport::Frame<ServerMsg>, want: ErrorCode) {
    match &frame.msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(*code, want, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected an error frame {want}, got {other:?}"),
    }
}

/// A frame built by hand: kind, request id, raw body.
fn raw_frame(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u32(5 + body.len() as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf.put_slice(body);
    buf.to_vec()
}

fn str16(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn still_open(raw: &mut Raw) {
    raw.send(99, ClientMsg::Ping);
    let reply = raw.recv();
    assert_eq!((reply.id.0, reply.msg), (99, ServerMsg::Pong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_an_error_and_close_only_that_connection() {
    check(|addr| {
        let mut raw = Raw::connect(addr);
        raw.write(b"GET / HTTP/1.1\r\nHost: mq\r\n\r\n");
        expect_error(&raw.recv(), ErrorCode::FrameTooLarge);
        assert!(raw.closed_by_server());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_closes_only_that_connection() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        let frame = raw_frame(0x0F, 7, &[]);
        raw.write(&frame[..frame.len() - 3]);
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(raw.closed_by_server());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_gets_frame_too_large() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        let mut header = BytesMut::new();
        header.put_u32(17 * 1024 * 1024);
        header.put_u8(0x02);
        raw.write(&header);
        expect_error(&raw.recv(), ErrorCode::FrameTooLarge);
        assert!(raw.closed_by_server());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_frame_kind_gets_unknown_kind_and_the_connection_goes_on() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        raw.write(&raw_frame(0x7F, 5, b"whatever"));
        let reply = raw.recv();
        assert_eq!(reply.id.0, 5);
        expect_error(&reply, ErrorCode::UnknownKind);
        still_open(&mut raw);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_gets_malformed_and_the_connection_goes_on() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        // A Credit frame needs 8 bytes of body; send 3.
        raw.write(&raw_frame(0x07, 6, &[1, 2, 3]));
        let reply = raw.recv();
        assert_eq!(reply.id.0, 6);
        expect_error(&reply, ErrorCode::Malformed);
        still_open(&mut raw);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_the_handshake_is_refused() {
    check(|addr| {
        let mut raw = Raw::connect(addr);
        raw.send(1, ClientMsg::Ping);
        expect_error(&raw.recv(), ErrorCode::HandshakeRequired);
        assert!(raw.closed_by_server());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handshake_is_refused_and_the_connection_goes_on() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        raw.send(
            2,
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                client: "again".into(),
                token: Some(TOKEN.into()),
            },
        );
        expect_error(&raw.recv(), ErrorCode::HandshakeRequired);
        still_open(&mut raw);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topic_and_group_names_get_invalid_name() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        let mut body = BytesMut::new();
        str16(&mut body, "a b");
        body.put_u32(0);
        raw.write(&raw_frame(0x02, 3, &body));
        let reply = raw.recv();
        assert_eq!(reply.id.0, 3);
        expect_error(&reply, ErrorCode::InvalidName);
        let mut body = BytesMut::new();
        str16(&mut body, "fine");
        str16(&mut body, ".hidden");
        body.put_slice(&[0, 0, 0]);
        body.put_u32(0);
        raw.write(&raw_frame(0x03, 4, &body));
        expect_error(&raw.recv(), ErrorCode::InvalidName);
        still_open(&mut raw);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_for_offsets_never_delivered_get_not_in_flight() {
    check(|addr| {
        let mut raw = Raw::handshaken(addr, Some(TOKEN));
        raw.send(
            2,
            ClientMsg::Subscribe(SubscribeRequest {
                topic: topic("other"),
                group: Some(group("g")),
                start: mq_core::StartPosition::Earliest,
                ack: None,
                exclusive: false,
                create_topic: true,
                prefetch: 0,
            }),
        );
        let ServerMsg::Subscribed { sub, .. } = raw.recv().msg else {
            panic!("subscribe refused");
        };
        raw.send(
            3,
            ClientMsg::Ack {
                sub,
                offsets: vec![mq_core::Offset(12345)],
            },
        );
        let reply = raw.recv();
        assert_eq!(reply.id.0, 3);
        expect_error(&reply, ErrorCode::NotInFlight);
        raw.send(
            4,
            ClientMsg::Ack {
                sub: mq_transport::SubscriptionId(777),
                offsets: vec![],
            },
        );
        expect_error(&raw.recv(), ErrorCode::UnknownSubscription);
        still_open(&mut raw);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_auth_token_gets_unauthorized_and_is_closed() {
    check(|addr| {
        let mut raw = Raw::connect(addr);
        raw.send(
            1,
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                client: "intruder".into(),
                token: Some("guess".into()),
            },
        );
        expect_error(&raw.recv(), ErrorCode::Unauthorized);
        assert!(raw.closed_by_server());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_name_a_client_sends_reaches_outside_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&["--data-dir", data.to_str().unwrap()]);
    let mut raw = Raw::handshaken(&server.addr, None);
    let long = "x".repeat(300);
    let names: [&[u8]; 9] = [
        b"..",
        b"../escape",
        b"a/b",
        b"/abs",
        b"a\0b",
        "é".as_bytes(),
        long.as_bytes(),
        b".dlq",
        b"nul\\x",
    ];
    for (id, name) in (10..).zip(names) {
        let mut body = BytesMut::new();
        body.put_u16(name.len() as u16);
        body.put_slice(name);
        body.put_u32(0);
        raw.write(&raw_frame(0x02, id, &body));
        let reply = raw.recv();
        assert_eq!(reply.id.0, id);
        assert!(
            matches!(&reply.msg, ServerMsg::Error { code, .. } if *code == ErrorCode::InvalidName || *code == ErrorCode::Malformed),
            "{name:?}: {:?}",
            reply.msg
        );
    }
    still_open(&mut raw);
    let topics: Vec<_> = std::fs::read_dir(data.join("topics")).unwrap().collect();
    assert!(topics.is_empty(), "{topics:?}");
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("data")]);
}

#[test]
fn version_2_refuses_request_id_0_and_an_empty_publish_version_1_answers_them() {
    let server = Server::start(&[]);
    let empty = || ClientMsg::Publish {
        topic: topic("t"),
        messages: Vec::new(),
    };
    let (mut v2, _) = Raw::speaking(&server.addr, None, 2);
    v2.send(0, ClientMsg::Ping);
    let reply = v2.recv();
    match (reply.id.0, reply.msg) {
        (0, ServerMsg::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Malformed);
            assert!(message.contains("request id 0 is reserved"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    v2.send(5, empty());
    match v2.recv().msg {
        ServerMsg::Error { code, message } => {
            assert_eq!(code, ErrorCode::Malformed);
            assert!(message.contains("at least one message"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    v2.send(6, ClientMsg::Ping);
    assert_eq!(v2.recv().msg, ServerMsg::Pong, "the connection goes on");

    let (mut v1, _) = Raw::speaking(&server.addr, None, 1);
    v1.send(0, ClientMsg::Ping);
    assert_eq!(v1.recv().msg, ServerMsg::Pong);
    v1.send(7, empty());
    assert!(matches!(
        v1.recv().msg,
        ServerMsg::Published { count: 0, .. }
    ));
}

#[test]
fn version_2_refuses_a_topic_config_with_a_mistyped_key() {
    use bytes::BufMut;
    let server = Server::start(&[]);
    // A CreateTopic written by hand, its config JSON carrying a typo.
    let config = br#"{"groups":{"ack_timout":"5s"},"retention":{"max_messages":10}}"#;
    let mut body = bytes::BytesMut::new();
    body.put_u8(0x08);
    body.put_u32(3);
    body.put_u16(1);
    body.put_slice(b"t");
    body.put_u32(config.len() as u32);
    body.put_slice(config);
    let mut frame = bytes::BytesMut::new();
    frame.put_u32(body.len() as u32);
    frame.put_slice(&body);
    for (version, refused) in [(2, true), (1, false)] {
        let (mut raw, _) = Raw::speaking(&server.addr, None, version);
        raw.write(&frame);
        match raw.recv().msg {
            ServerMsg::Error { code, message } if refused => {
                assert_eq!(code, ErrorCode::InvalidConfig);
                assert!(message.contains("groups.ack_timout"), "{message}");
            }
            ServerMsg::Done if !refused => {}
            other => panic!("version {version}: {other:?}"),
        }
    }
}
