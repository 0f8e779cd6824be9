//! Encoding and decoding whole frames, runtime-free.
//!
//! ```text
//! frame  := length:u32  kind:u8  request_id:u32  body
//! length := bytes after the length field (kind + request_id + body); at most max_frame
//! ```
//! All integers are big-endian. Decoding checks every length against what is left and
//! returns slices of the frame for payloads, keys and header values.

use bytes::{BufMut, Bytes, BytesMut};
use mq_core::{
    AckMode, Durability, GroupName, Header, NewMessage, Offset, StartPosition, Timestamp, TopicName,
};

use crate::protocol::{
    ClientMsg, DeliveredMessage, ErrorCode, Frame, RequestId, ServerMsg, SubscribeRequest,
    SubscriptionId, kind,
};
use crate::wire::{DecodeError, EncodeError, Reader, Writer};

/// A frame whose length was fine but whose content could not be decoded: the connection's
/// framing is intact, so the peer can answer with an error and carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad frame (kind 0x{kind:02x}, request {}): {error}", id.0)]
pub struct BadFrame {
    /// The request id, when it could be read (0 otherwise).
    pub id: RequestId,
    /// The kind byte, when it could be read (0 otherwise).
    pub kind: u8,
    /// What was wrong.
    pub error: DecodeError,
}

impl BadFrame {
    /// The wire error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self.error {
            DecodeError::UnknownKind { .. } => ErrorCode::UnknownKind,
            DecodeError::InvalidName(_) => ErrorCode::InvalidName,
            _ => ErrorCode::Malformed,
        }
    }
}

/// A message that travels in frames.
pub trait WireMsg: Sized + Send + 'static {
    /// Its kind byte.
    fn kind(&self) -> u8;
    /// Writes its body.
    ///
    /// # Errors
    /// [`EncodeError`] when a field is too long for its length prefix.
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
    /// Reads a body of kind `kind`.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown kind or malformed body.
    fn decode_body(kind: u8, r: &mut Reader) -> Result<Self, DecodeError>;
}

/// Appends `frame` to `dst`, refusing frames longer than `max_frame`.
///
/// # Errors
/// [`EncodeError::FrameTooLarge`] (nothing is appended) or a field error.
pub fn encode_frame<M: WireMsg>(
    frame: &Frame<M>,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u8(frame.msg.kind());
    dst.put_u32(frame.id.0);
    let body = frame.msg.encode_body(&mut Writer::new(dst));
    let len = dst.len() - start - 4;
    if let Err(e) = body {
        dst.truncate(start);
        return Err(e);
    }
    if len > max_frame {
        dst.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decodes a frame from everything after its length field.
///
/// # Errors
/// [`BadFrame`] when the content is not a valid frame of this direction.
pub fn decode_frame<M: WireMsg>(frame: Bytes) -> Result<Frame<M>, BadFrame> {
    let mut r = Reader::new(frame);
    let bad = |id, kind, error| BadFrame {
        id: RequestId(id),
        kind,
        error,
    };
    let kind = r.u8().map_err(|e| bad(0, 0, e))?;
    let id = r.u32().map_err(|e| bad(0, kind, e))?;
    let msg = M::decode_body(kind, &mut r).map_err(|e| bad(id, kind, e))?;
    r.finish().map_err(|e| bad(id, kind, e))?;
    Ok(Frame::new(RequestId(id), msg))
}

/// Preallocation for `count` elements read from the wire: bounded, so a lying count cannot
/// make the decoder reserve gigabytes; the vector still grows to the real size.
fn capacity(count: u32) -> usize {
    (count as usize).min(4096)
}

fn read_count(r: &mut Reader) -> Result<u32, DecodeError> {
    r.u32()
}

fn topic(r: &mut Reader) -> Result<TopicName, DecodeError> {
    Ok(TopicName::new_or_dead_letter(r.str("topic")?)?)
}

fn group(r: &mut Reader) -> Result<GroupName, DecodeError> {
    Ok(GroupName::new(r.str("group")?)?)
}

fn write_headers(w: &mut Writer<'_>, headers: &[Header]) -> Result<(), EncodeError> {
    let count = u16::try_from(headers.len()).map_err(|_| EncodeError::FieldTooLong {
        field: "headers",
        len: headers.len(),
        max: u16::MAX as usize,
    })?;
    w.u16(count);
    for h in headers {
        w.str("header name", &h.name)?;
        w.bytes("header value", &h.value)?;
    }
    Ok(())
}

fn read_headers(r: &mut Reader) -> Result<Vec<Header>, DecodeError> {
    let count = r.u16()?;
    let mut headers = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let name = r.str("header name")?;
        let value = r.bytes()?;
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn write_offsets(w: &mut Writer<'_>, offsets: &[Offset]) -> Result<(), EncodeError> {
    w.len32("offsets", offsets.len())?;
    for o in offsets {
        w.u64(o.get());
    }
    Ok(())
}

fn read_offsets(r: &mut Reader) -> Result<Vec<Offset>, DecodeError> {
    let count = read_count(r)?;
    let mut out = Vec::with_capacity(capacity(count));
    for _ in 0..count {
        out.push(Offset(r.u64()?));
    }
    Ok(out)
}

fn write_start(w: &mut Writer<'_>, start: StartPosition) {
    match start {
        StartPosition::Earliest => w.u8(0),
        StartPosition::Latest => w.u8(1),
        StartPosition::Offset(o) => {
            w.u8(2);
            w.u64(o.get());
        }
    }
}

fn read_start(r: &mut Reader) -> Result<StartPosition, DecodeError> {
    match r.u8()? {
        0 => Ok(StartPosition::Earliest),
        1 => Ok(StartPosition::Latest),
        2 => Ok(StartPosition::Offset(Offset(r.u64()?))),
        v => Err(DecodeError::InvalidValue {
            field: "start",
            value: u64::from(v),
        }),
    }
}

fn ack_code(ack: Option<AckMode>) -> u8 {
    match ack {
        None => 0,
        Some(AckMode::Auto) => 1,
        Some(AckMode::Manual) => 2,
    }
}

fn read_ack(r: &mut Reader) -> Result<Option<AckMode>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(AckMode::Auto)),
        2 => Ok(Some(AckMode::Manual)),
        v => Err(DecodeError::InvalidValue {
            field: "ack",
            value: u64::from(v),
        }),
    }
}

fn durability_code(d: Durability) -> u8 {
    match d {
        Durability::Memory => 0,
        Durability::Written => 1,
        Durability::Fsynced => 2,
    }
}

fn read_durability(r: &mut Reader) -> Result<Durability, DecodeError> {
    match r.u8()? {
        0 => Ok(Durability::Memory),
        1 => Ok(Durability::Written),
        2 => Ok(Durability::Fsynced),
        v => Err(DecodeError::InvalidValue {
            field: "durability",
            value: u64::from(v),
        }),
    }
}

impl WireMsg for ClientMsg {
    fn kind(&self) -> u8 {
        match self {
            ClientMsg::Hello { .. } => kind::HELLO,
            ClientMsg::Publish { .. } => kind::PUBLISH,
            ClientMsg::Subscribe(_) => kind::SUBSCRIBE,
            ClientMsg::Unsubscribe { .. } => kind::UNSUBSCRIBE,
            ClientMsg::Ack { .. } => kind::ACK,
            ClientMsg::Nack { .. } => kind::NACK,
            ClientMsg::Credit { .. } => kind::CREDIT,
            ClientMsg::CreateTopic { .. } => kind::CREATE_TOPIC,
            ClientMsg::DeleteTopic { .. } => kind::DELETE_TOPIC,
            ClientMsg::ListTopics => kind::LIST_TOPICS,
            ClientMsg::DescribeTopic { .. } => kind::DESCRIBE_TOPIC,
            ClientMsg::ListGroups { .. } => kind::LIST_GROUPS,
            ClientMsg::DeleteGroup { .. } => kind::DELETE_GROUP,
            ClientMsg::Stats { .. } => kind::STATS,
            ClientMsg::Ping => kind::PING,
            ClientMsg::Goodbye => kind::GOODBYE,
        }
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            ClientMsg::Hello {
                version,
                client,
                token,
            } => {
                w.u16(*version);
                w.str("client", client)?;
                w.opt_str("token", token.as_deref())?;
            }
            ClientMsg::Publish { topic, messages } => {
                w.str("topic", topic.as_str())?;
                w.len32("messages", messages.len())?;
                for m in messages {
                    w.u8(m.priority);
                    w.opt_bytes("key", m.key.as_deref())?;
                    write_headers(w, &m.headers)?;
                    w.bytes("payload", &m.payload)?;
                }
            }
            ClientMsg::Subscribe(s) => {
                w.str("topic", s.topic.as_str())?;
                w.opt_str("group", s.group.as_ref().map(GroupName::as_str))?;
                write_start(w, s.start);
                w.u8(ack_code(s.ack));
                w.u8(u8::from(s.exclusive));
                w.u32(s.prefetch);
            }
            ClientMsg::Unsubscribe { sub, ack } => {
                w.u32(sub.0);
                write_offsets(w, ack)?;
            }
            ClientMsg::Ack { sub, offsets } => {
                w.u32(sub.0);
                write_offsets(w, offsets)?;
            }
            ClientMsg::Nack {
                sub,
                delay_ms,
                offsets,
            } => {
                w.u32(sub.0);
                w.u64(*delay_ms);
                write_offsets(w, offsets)?;
            }
            ClientMsg::Credit { sub, credits } => {
                w.u32(sub.0);
                w.u32(*credits);
            }
            ClientMsg::CreateTopic { topic, config } => {
                w.str("topic", topic.as_str())?;
                w.json("config", config)?;
            }
            ClientMsg::DeleteTopic { topic }
            | ClientMsg::DescribeTopic { topic }
            | ClientMsg::ListGroups { topic } => w.str("topic", topic.as_str())?,
            ClientMsg::DeleteGroup { topic, group } => {
                w.str("topic", topic.as_str())?;
                w.str("group", group.as_str())?;
            }
            ClientMsg::Stats { topic } => {
                w.opt_str("topic", topic.as_ref().map(TopicName::as_str))?;
            }
            ClientMsg::ListTopics | ClientMsg::Ping | ClientMsg::Goodbye => {}
        }
        Ok(())
    }

    fn decode_body(k: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match k {
            kind::HELLO => ClientMsg::Hello {
                version: r.u16()?,
                client: r.str("client")?,
                token: r.opt_str("token")?,
            },
            kind::PUBLISH => {
                let topic = topic(r)?;
                let count = read_count(r)?;
                let mut messages = Vec::with_capacity(capacity(count));
                for _ in 0..count {
                    let priority = r.u8()?;
                    let key = r.opt_bytes()?;
                    let headers = read_headers(r)?;
                    let payload = r.bytes()?;
                    messages.push(NewMessage {
                        priority,
                        key,
                        headers,
                        payload,
                    });
                }
                ClientMsg::Publish { topic, messages }
            }
            kind::SUBSCRIBE => {
                let topic = topic(r)?;
                let group = r.opt_str("group")?.map(GroupName::new).transpose()?;
                ClientMsg::Subscribe(SubscribeRequest {
                    topic,
                    group,
                    start: read_start(r)?,
                    ack: read_ack(r)?,
                    exclusive: r.bool("exclusive")?,
                    prefetch: r.u32()?,
                })
            }
            kind::UNSUBSCRIBE => ClientMsg::Unsubscribe {
                sub: SubscriptionId(r.u32()?),
                ack: read_offsets(r)?,
            },
            kind::ACK => ClientMsg::Ack {
                sub: SubscriptionId(r.u32()?),
                offsets: read_offsets(r)?,
            },
            kind::NACK => ClientMsg::Nack {
                sub: SubscriptionId(r.u32()?),
                delay_ms: r.u64()?,
                offsets: read_offsets(r)?,
            },
            kind::CREDIT => ClientMsg::Credit {
                sub: SubscriptionId(r.u32()?),
                credits: r.u32()?,
            },
            kind::CREATE_TOPIC => ClientMsg::CreateTopic {
                topic: topic(r)?,
                config: r.json("config")?,
            },
            kind::DELETE_TOPIC => ClientMsg::DeleteTopic { topic: topic(r)? },
            kind::LIST_TOPICS => ClientMsg::ListTopics,
            kind::DESCRIBE_TOPIC => ClientMsg::DescribeTopic { topic: topic(r)? },
            kind::LIST_GROUPS => ClientMsg::ListGroups { topic: topic(r)? },
            kind::DELETE_GROUP => ClientMsg::DeleteGroup {
                topic: topic(r)?,
                group: group(r)?,
            },
            kind::STATS => ClientMsg::Stats {
                topic: r.opt_str("topic")?.map(TopicName::new).transpose()?,
            },
            kind::PING => ClientMsg::Ping,
            kind::GOODBYE => ClientMsg::Goodbye,
            other => return Err(DecodeError::UnknownKind { kind: other }),
        })
    }
}

impl WireMsg for ServerMsg {
    fn kind(&self) -> u8 {
        match self {
            ServerMsg::Welcome { .. } => kind::WELCOME,
            ServerMsg::Published { .. } => kind::PUBLISHED,
            ServerMsg::Subscribed { .. } => kind::SUBSCRIBED,
            ServerMsg::Deliveries { .. } => kind::DELIVERIES,
            ServerMsg::Done => kind::DONE,
            ServerMsg::Topics { .. } => kind::TOPICS,
            ServerMsg::TopicInfo(_) => kind::TOPIC_INFO,
            ServerMsg::Groups(_) => kind::GROUPS,
            ServerMsg::TopicStats(_) => kind::TOPIC_STATS,
            ServerMsg::BrokerStats(_) => kind::BROKER_STATS,
            ServerMsg::Pong => kind::PONG,
            ServerMsg::SubscriptionEnded { .. } => kind::SUBSCRIPTION_ENDED,
            ServerMsg::Error { .. } => kind::ERROR,
            ServerMsg::Goodbye { .. } => kind::SERVER_GOODBYE,
        }
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            ServerMsg::Welcome {
                version,
                server,
                max_frame,
                storage,
            } => {
                w.u16(*version);
                w.str("server", server)?;
                w.u32(*max_frame);
                w.str("storage", storage)?;
            }
            ServerMsg::Published {
                first,
                count,
                durability,
            } => {
                w.u64(first.get());
                w.u32(*count);
                w.u8(durability_code(*durability));
            }
            ServerMsg::Subscribed {
                sub,
                group,
                ack,
                prefetch,
            } => {
                w.u32(sub.0);
                w.str("group", group.as_str())?;
                w.u8(ack_code(Some(*ack)));
                w.u32(*prefetch);
            }
            ServerMsg::Deliveries { sub, messages } => {
                w.u32(sub.0);
                w.len32("messages", messages.len())?;
                for m in messages {
                    w.u64(m.offset.get());
                    w.u64(m.timestamp.as_millis());
                    w.u8(m.priority);
                    w.u32(m.deliveries);
                    w.opt_bytes("key", m.key.as_deref())?;
                    write_headers(w, &m.headers)?;
                    w.bytes("payload", &m.payload)?;
                }
            }
            ServerMsg::Topics { topics } => {
                w.len32("topics", topics.len())?;
                for t in topics {
                    w.str("topic", t.as_str())?;
                }
            }
            ServerMsg::TopicInfo(info) => w.json("info", info)?,
            ServerMsg::Groups(groups) => w.json("groups", groups)?,
            ServerMsg::TopicStats(stats) => w.json("stats", stats)?,
            ServerMsg::BrokerStats(stats) => w.json("stats", stats)?,
            ServerMsg::SubscriptionEnded { sub, code, message } => {
                w.u32(sub.0);
                w.u16(code.as_u16());
                w.str("message", message)?;
            }
            ServerMsg::Error { code, message } => {
                w.u16(code.as_u16());
                w.str("message", message)?;
            }
            ServerMsg::Goodbye { reason } => w.str("reason", reason)?,
            ServerMsg::Done | ServerMsg::Pong => {}
        }
        Ok(())
    }

    fn decode_body(k: u8, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match k {
            kind::WELCOME => ServerMsg::Welcome {
                version: r.u16()?,
                server: r.str("server")?,
                max_frame: r.u32()?,
                storage: r.str("storage")?,
            },
            kind::PUBLISHED => ServerMsg::Published {
                first: Offset(r.u64()?),
                count: r.u32()?,
                durability: read_durability(r)?,
            },
            kind::SUBSCRIBED => ServerMsg::Subscribed {
                sub: SubscriptionId(r.u32()?),
                group: GroupName::from(r.str("group")?),
                ack: read_ack(r)?.ok_or(DecodeError::InvalidValue {
                    field: "ack",
                    value: 0,
                })?,
                prefetch: r.u32()?,
            },
            kind::DELIVERIES => {
                let sub = SubscriptionId(r.u32()?);
                let count = read_count(r)?;
                let mut messages = Vec::with_capacity(capacity(count));
                for _ in 0..count {
                    messages.push(DeliveredMessage {
                        offset: Offset(r.u64()?),
                        timestamp: Timestamp::from_millis(r.u64()?),
                        priority: r.u8()?,
                        deliveries: r.u32()?,
                        key: r.opt_bytes()?,
                        headers: read_headers(r)?,
                        payload: r.bytes()?,
                    });
                }
                ServerMsg::Deliveries { sub, messages }
            }
            kind::DONE => ServerMsg::Done,
            kind::TOPICS => {
                let count = read_count(r)?;
                let mut topics = Vec::with_capacity(capacity(count));
                for _ in 0..count {
                    topics.push(topic(r)?);
                }
                ServerMsg::Topics { topics }
            }
            kind::TOPIC_INFO => ServerMsg::TopicInfo(Box::new(r.json("info")?)),
            kind::GROUPS => ServerMsg::Groups(r.json("groups")?),
            kind::TOPIC_STATS => ServerMsg::TopicStats(Box::new(r.json("stats")?)),
            kind::BROKER_STATS => ServerMsg::BrokerStats(r.json("stats")?),
            kind::PONG => ServerMsg::Pong,
            kind::SUBSCRIPTION_ENDED => ServerMsg::SubscriptionEnded {
                sub: SubscriptionId(r.u32()?),
                code: ErrorCode::from_u16(r.u16()?),
                message: r.str("message")?,
            },
            kind::ERROR => ServerMsg::Error {
                code: ErrorCode::from_u16(r.u16()?),
                message: r.str("message")?,
            },
            kind::SERVER_GOODBYE => ServerMsg::Goodbye {
                reason: r.str("reason")?,
            },
            other => return Err(DecodeError::UnknownKind { kind: other }),
        })
    }
}
