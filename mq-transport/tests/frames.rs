//! Every frame kind: the exact bytes pinned with insta, a round trip, and every truncated
//! prefix rejected with an error rather than a panic.

// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::fmt::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mq_core::{
    AckMode, BrokerStats, ConsumerId, ConsumerInfo, Durability, GroupInfo, GroupName, GroupStats,
    Header, NewMessage, Offset, StartPosition, Timestamp, TopicConfig, TopicInfo, TopicName,
    TopicStats, Unacked,
};
use mq_transport::wire::DecodeError;
use mq_transport::{
    ClientMsg, ConsumerConnection, DEFAULT_MAX_FRAME, ErrorCode, Frame, GroupReport, RequestId,
    ServerMsg, SubscribeRequest, SubscriptionId, WireDelivery, WireMsg, decode_frame, encode_frame,
    protocol::KINDS,
};

fn topic() -> TopicName {
    TopicName::new("orders").unwrap()
}

fn group() -> GroupName {
    GroupName::new("billing").unwrap()
}

fn client_examples() -> Vec<(&'static str, ClientMsg)> {
    vec![
        (
            "hello",
            ClientMsg::Hello {
                version: 1,
                client: "cli".into(),
                token: Some("tk".into()),
            },
        ),
        (
            "hello_v2",
            ClientMsg::Hello {
                version: 2,
                client: "cli".into(),
                token: Some("tk".into()),
            },
        ),
        (
            "hello_no_token",
            ClientMsg::Hello {
                version: 1,
                client: "cli".into(),
                token: None,
            },
        ),
        (
            "publish",
            ClientMsg::Publish {
                topic: topic(),
                messages: vec![
                    NewMessage::new("hi").priority(3).key("k").header("h", "v"),
                    NewMessage::new(""),
                ],
            },
        ),
        (
            "publish_idempotent",
            ClientMsg::PublishIdempotent {
                topic: topic(),
                producer: 0x0123_4567_89ab_cdef,
                seq: 1000,
                messages: vec![NewMessage::new("hi").key("k"), NewMessage::new("")],
            },
        ),
        (
            "subscribe",
            ClientMsg::Subscribe(SubscribeRequest {
                topic: topic(),
                group: Some(group()),
                start: StartPosition::Offset(Offset(42)),
                ack: Some(AckMode::Manual),
                exclusive: true,
                create_topic: false,
                prefetch: 100,
            }),
        ),
        (
            "subscribe_ephemeral",
            ClientMsg::Subscribe(SubscribeRequest {
                topic: topic(),
                group: None,
                start: StartPosition::Latest,
                ack: None,
                exclusive: false,
                create_topic: false,
                prefetch: 0,
            }),
        ),
        (
            "subscribe_v2",
            ClientMsg::Subscribe(SubscribeRequest {
                topic: topic(),
                group: Some(group()),
                start: StartPosition::Resume,
                ack: None,
                exclusive: true,
                create_topic: true,
                prefetch: 0,
            }),
        ),
        (
            "unsubscribe",
            ClientMsg::Unsubscribe {
                sub: SubscriptionId(7),
                ack: vec![Offset(9)],
            },
        ),
        (
            "ack",
            ClientMsg::Ack {
                sub: SubscriptionId(7),
                offsets: vec![Offset(1), Offset(2)],
            },
        ),
        (
            "nack",
            ClientMsg::Nack {
                sub: SubscriptionId(7),
                delay_ms: 500,
                offsets: vec![Offset(3)],
            },
        ),
        (
            "credit",
            ClientMsg::Credit {
                sub: SubscriptionId(7),
                credits: 64,
            },
        ),
        (
            "create_topic",
            ClientMsg::CreateTopic {
                topic: topic(),
                config: small_config(),
                unknown_keys: Vec::new(),
            },
        ),
        ("delete_topic", ClientMsg::DeleteTopic { topic: topic() }),
        ("list_topics", ClientMsg::ListTopics),
        (
            "describe_topic",
            ClientMsg::DescribeTopic { topic: topic() },
        ),
        ("list_groups", ClientMsg::ListGroups { topic: topic() }),
        (
            "delete_group",
            ClientMsg::DeleteGroup {
                topic: topic(),
                group: group(),
            },
        ),
        (
            "peek",
            ClientMsg::Peek {
                topic: topic(),
                from: StartPosition::Offset(Offset(5)),
                max: 10,
            },
        ),
        (
            "create_group",
            ClientMsg::CreateGroup {
                topic: topic(),
                group: group(),
                start: StartPosition::Latest,
            },
        ),
        (
            "seek_group",
            ClientMsg::SeekGroup {
                topic: topic(),
                group: group(),
                to: StartPosition::Time(Timestamp::from_millis(1_700_000_000_000)),
            },
        ),
        ("purge_topic", ClientMsg::PurgeTopic { topic: topic() }),
        (
            "alter_topic",
            ClientMsg::AlterTopic {
                topic: topic(),
                config: small_config(),
                unknown_keys: Vec::new(),
            },
        ),
        (
            "describe_group",
            ClientMsg::DescribeGroup {
                topic: topic(),
                group: group(),
            },
        ),
        (
            "stats_topic",
            ClientMsg::Stats {
                topic: Some(topic()),
            },
        ),
        ("stats_broker", ClientMsg::Stats { topic: None }),
        ("ping", ClientMsg::Ping),
        ("goodbye", ClientMsg::Goodbye),
    ]
}

fn small_config() -> TopicConfig {
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(10);
    config.groups.ack_timeout = Duration::from_secs(5);
    config
}

fn topic_stats() -> TopicStats {
    TopicStats {
        topic: topic(),
        published: 3,
        retained: 2,
        retained_bytes: 20,
        first_offset: Offset(1),
        next_offset: Offset(3),
        lost: Vec::new(),
        groups: vec![group_stats()],
    }
}

fn group_stats() -> GroupStats {
    GroupStats {
        name: group(),
        consumers: 1,
        pending: 1,
        lag: 1,
        in_flight: 1,
        delivered: 2,
        acked: 1,
        redelivered: 0,
        dead_lettered: 0,
        oldest_pending: None,
    }
}

fn server_examples() -> Vec<(&'static str, ServerMsg)> {
    vec![
        (
            "welcome",
            ServerMsg::Welcome {
                version: 1,
                server: "mq".into(),
                max_frame: 16 << 20,
                storage: "memory".into(),
                heartbeat_ms: 0,
                max_message: 0,
            },
        ),
        (
            "welcome_v2",
            ServerMsg::Welcome {
                version: 2,
                server: "mq".into(),
                max_frame: 16 << 20,
                storage: "memory".into(),
                heartbeat_ms: 10_000,
                max_message: 16_776_461,
            },
        ),
        (
            "published",
            ServerMsg::Published {
                first: Offset(10),
                count: 2,
                durability: Durability::Written,
            },
        ),
        (
            "subscribed",
            ServerMsg::Subscribed {
                sub: SubscriptionId(1),
                group: group(),
                ack: AckMode::Auto,
                prefetch: 1000,
            },
        ),
        (
            "deliveries",
            ServerMsg::Deliveries {
                sub: SubscriptionId(1),
                messages: vec![WireDelivery {
                    offset: Offset(5),
                    timestamp: Timestamp::from_millis(1_700_000_000_000),
                    priority: 2,
                    deliveries: 1,
                    key: None,
                    headers: vec![Header::new("h", "v")],
                    payload: Bytes::from_static(b"data"),
                }],
            },
        ),
        ("done", ServerMsg::Done),
        (
            "topics",
            ServerMsg::Topics {
                topics: vec![topic(), TopicName::new("x").unwrap()],
            },
        ),
        (
            "topic_info",
            ServerMsg::TopicInfo(Box::new(TopicInfo {
                config: small_config(),
                stats: topic_stats(),
            })),
        ),
        ("groups", ServerMsg::Groups(vec![group_stats()])),
        (
            "peeked",
            ServerMsg::Peeked {
                messages: vec![WireDelivery {
                    offset: Offset(5),
                    timestamp: Timestamp::from_millis(9),
                    priority: 0,
                    deliveries: 0,
                    key: None,
                    headers: Vec::new(),
                    payload: Bytes::from_static(b"hi"),
                }],
            },
        ),
        (
            "group_report",
            ServerMsg::GroupReport(Box::new(GroupReport {
                group: GroupInfo {
                    topic: topic(),
                    stats: group_stats(),
                    ack: AckMode::Manual,
                    exclusive: false,
                    ack_timeout_ms: 30_000,
                    start: Offset(0),
                    first_offset: Offset(1),
                    next_offset: Offset(3),
                    retain_consumed_ms: 0,
                    next_delayed: None,
                    consumers: vec![ConsumerInfo {
                        id: ConsumerId(7),
                        prefetch: 1,
                        in_flight: 1,
                        last_delivery: Some(Timestamp::from_millis(5)),
                        last_ack: None,
                        oldest_unacked: vec![Unacked {
                            offset: Offset(1),
                            since: Timestamp::from_millis(5),
                        }],
                    }],
                },
                connections: vec![ConsumerConnection {
                    consumer: ConsumerId(7),
                    connection: 2,
                    peer: "127.0.0.1:5000".into(),
                    client: "cli".into(),
                    credits: None,
                    stopped_reading: false,
                }],
                diagnosis: "every consumer is at its prefetch window".into(),
            })),
        ),
        (
            "topic_stats",
            ServerMsg::TopicStats(Box::new(topic_stats())),
        ),
        (
            "broker_stats",
            ServerMsg::BrokerStats(BrokerStats {
                uptime_ms: 1,
                connections: 2,
                topics: 3,
                messages_in: 4,
                messages_out: 5,
                quarantined: Vec::new(),
                refused_topics: 0,
                refused_groups: 0,
                memory_bytes: 6,
                memory_limit: Some(7),
                refused_memory: 0,
            }),
        ),
        ("pong", ServerMsg::Pong),
        (
            "subscription_ended",
            ServerMsg::SubscriptionEnded {
                sub: SubscriptionId(1),
                code: ErrorCode::TopicDeleted,
                message: "gone".into(),
            },
        ),
        (
            "error",
            ServerMsg::Error {
                code: ErrorCode::TopicFull,
                message: "full".into(),
            },
        ),
        (
            "goodbye",
            ServerMsg::Goodbye {
                reason: "bye".into(),
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:04x}:", i * 16);
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        out.push('\n');
    }
    out
}

fn check<M: WireMsg + PartialEq + std::fmt::Debug + Clone>(name: &str, msg: M) {
    let frame = Frame::new(RequestId(0x0102_0304), msg);
    let mut buf = BytesMut::new();
    encode_frame(&frame, DEFAULT_MAX_FRAME, &mut buf).unwrap();
    insta::assert_snapshot!(name, hex(&buf));
    let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
    assert_eq!(len, buf.len() - 4, "{name}: length field");
    let body = buf.freeze().slice(4..);
    let back: Frame<M> = decode_frame(body.clone()).unwrap();
    assert_eq!(back, frame, "{name}: round trip");
    for cut in 0..body.len() {
        assert!(
            decode_frame::<M>(body.slice(..cut)).is_err(),
            "{name}: prefix of {cut} bytes accepted"
        );
    }
}

#[test]
fn client_frames_have_pinned_bytes_round_trip_and_reject_truncation() {
    for (name, msg) in client_examples() {
        check(&format!("client_{name}"), msg);
    }
}

#[test]
fn server_frames_have_pinned_bytes_round_trip_and_reject_truncation() {
    for (name, msg) in server_examples() {
        check(&format!("server_{name}"), msg);
    }
}

#[test]
fn every_kind_in_the_table_has_an_example() {
    let mut kinds: Vec<u8> = client_examples().iter().map(|(_, m)| m.kind()).collect();
    kinds.extend(server_examples().iter().map(|(_, m)| m.kind()));
    for (kind, name) in KINDS {
        assert!(kinds.contains(kind), "{name} (0x{kind:02x}) has no example");
    }
}

#[test]
fn unknown_kinds_and_trailing_bytes_are_errors() {
    let body = Bytes::from_static(&[0x7F, 0, 0, 0, 9]);
    let err = decode_frame::<ClientMsg>(body).unwrap_err();
    assert_eq!(err.error, DecodeError::UnknownKind { kind: 0x7F });
    assert_eq!(err.code(), ErrorCode::UnknownKind);
    let body = Bytes::from_static(&[0x0F, 0, 0, 0, 9, 0xAA]);
    let err = decode_frame::<ClientMsg>(body).unwrap_err();
    assert_eq!(err.id, RequestId(9));
    assert_eq!(err.error, DecodeError::TrailingBytes { extra: 1 });
    // Server kinds are not client kinds.
    assert!(decode_frame::<ClientMsg>(Bytes::from_static(&[0x8B, 0, 0, 0, 1])).is_err());
}

#[test]
fn frames_larger_than_the_maximum_are_refused_on_encode() {
    let msg = ClientMsg::Publish {
        topic: topic(),
        messages: vec![NewMessage::new(vec![0u8; 2000])],
    };
    let mut buf = BytesMut::new();
    let err = encode_frame(&Frame::new(RequestId(1), msg), 1024, &mut buf).unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum frame size"));
    assert!(buf.is_empty());
}

fn delivery_frame_len(message: &NewMessage, max_frame: usize) -> Result<usize, String> {
    let msg = ServerMsg::Deliveries {
        sub: SubscriptionId(u32::MAX),
        messages: vec![WireDelivery {
            offset: Offset(u64::MAX),
            timestamp: Timestamp::from_millis(u64::MAX),
            priority: 255,
            deliveries: u32::MAX,
            key: message.key.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        }],
    };
    let mut buf = BytesMut::new();
    encode_frame(&Frame::new(RequestId(0), msg), max_frame, &mut buf).map_err(|e| e.to_string())?;
    Ok(buf.len() - 4)
}

#[test]
fn a_message_at_the_size_limit_fits_a_delivery_frame_also_as_a_dead_letter() {
    use mq_core::dlq;
    let max_frame = 4096;
    let limit = mq_transport::max_message_size(max_frame) as usize;
    let headers = 5;
    let mut message = NewMessage::new(Vec::new()).key("key");
    for i in 0..headers {
        message = message.header(format!("h{i}"), "v");
    }
    let fixed = message.encoded_size() as usize;
    message.payload = Bytes::from(vec![7u8; limit - fixed]);
    assert_eq!(message.encoded_size() as usize, limit);
    assert_eq!(
        delivery_frame_len(&message, max_frame).unwrap(),
        limit + mq_transport::DELIVERY_FRAME_OVERHEAD
    );
    let longest = "t".repeat(256);
    for (name, value) in [
        (dlq::HEADER_REASON, "max_deliveries".to_owned()),
        (dlq::HEADER_LAST_FAILURE, "consumer_detached".to_owned()),
        (dlq::HEADER_TOPIC, longest.clone()),
        (dlq::HEADER_GROUP, longest.clone()),
        (dlq::HEADER_OFFSET, u64::MAX.to_string()),
        (dlq::HEADER_DELIVERIES, u32::MAX.to_string()),
    ] {
        message = message.header(name, value);
    }
    assert_eq!(message.encoded_size(), limit as u64 + dlq::RESERVE);
    assert_eq!(delivery_frame_len(&message, max_frame).unwrap(), max_frame);
    message = message.header("one", "more");
    assert!(delivery_frame_len(&message, max_frame).is_err());
}

#[test]
fn error_codes_round_trip_and_have_names() {
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(code.as_u16()), *code);
        assert!(!code.name().is_empty());
    }
    assert_eq!(ErrorCode::from_u16(999), ErrorCode::Unknown(999));
}

/// Found by the `client_frame` fuzz target: a config with a mistyped key decodes with the
/// key reported, and encodes back without it.
#[test]
fn a_config_with_an_unknown_key_reports_it_and_does_not_carry_it_on() {
    let json = br#"{"retention":{"maxiage":null,"max_messages":10}}"#;
    let mut body = BytesMut::new();
    body.extend_from_slice(&[0x16, 1, 2, 3, 4, 0, 6]);
    body.extend_from_slice(b"orders");
    body.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    body.extend_from_slice(json);
    let frame = decode_frame::<ClientMsg>(body.freeze()).unwrap();
    let ClientMsg::AlterTopic {
        config,
        unknown_keys,
        ..
    } = &frame.msg
    else {
        panic!("{frame:?}")
    };
    assert_eq!(unknown_keys, &vec!["retention.maxiage".to_owned()]);
    assert_eq!(config.retention.max_messages, Some(10));
    let mut buf = BytesMut::new();
    encode_frame(&frame, DEFAULT_MAX_FRAME, &mut buf).unwrap();
    let again = decode_frame::<ClientMsg>(buf.freeze().slice(4..)).unwrap();
    let ClientMsg::AlterTopic { unknown_keys, .. } = &again.msg else {
        panic!("{again:?}")
    };
    assert!(unknown_keys.is_empty());
}

/// A frame's body size hint is the size of the body it encodes to.
fn assert_hint_is_body_size<M: WireMsg>(msg: M) {
    let hint = msg.body_size_hint();
    let mut buf = BytesMut::new();
    encode_frame(&Frame::new(RequestId(1), msg), DEFAULT_MAX_FRAME, &mut buf).unwrap();
    assert_eq!(
        hint,
        buf.len() - 4 - 1 - 4,
        "length, kind and request id aside"
    );
}

#[test]
fn the_body_size_hint_of_a_frame_of_messages_is_its_body_size() {
    let delivery = |key: Option<&str>, headers: Vec<Header>, payload: &str| WireDelivery {
        offset: Offset(7),
        timestamp: Timestamp::from_millis(9),
        priority: 3,
        deliveries: 1,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        headers,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    };
    let messages = vec![
        delivery(None, Vec::new(), "hello"),
        delivery(Some("k1"), vec![Header::new("trace", "abc")], ""),
    ];
    for msg in [
        ServerMsg::Deliveries {
            sub: SubscriptionId(4),
            messages: messages.clone(),
        },
        ServerMsg::Peeked { messages },
    ] {
        assert_hint_is_body_size(msg);
    }
}

#[test]
fn the_body_size_hint_of_a_publish_is_its_body_size() {
    let messages = vec![
        NewMessage::new("hello"),
        NewMessage::new("")
            .key("k")
            .header("trace", "abc")
            .priority(2),
    ];
    for msg in [
        ClientMsg::Publish {
            topic: topic(),
            messages: messages.clone(),
        },
        ClientMsg::PublishIdempotent {
            topic: topic(),
            producer: 1,
            seq: 2,
            messages,
        },
    ] {
        assert_hint_is_body_size(msg);
    }
}
