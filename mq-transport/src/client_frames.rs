//! The bodies of client frames (PROTOCOL.md, "Client frames"): how each [`ClientMsg`] is
//! written and read.

use mq_core::{GroupName, NewMessage, TopicConfig, TopicName};

use crate::frame::{
    WireMsg, ack_code, capacity, group, read_ack, read_count, read_headers, read_offsets,
    read_start, topic, write_headers, write_offsets, write_start,
};
use crate::protocol::{ClientMsg, SubscribeRequest, SubscriptionId, kind};
use crate::wire::{DecodeError, EncodeError, Reader, Writer};

impl WireMsg for ClientMsg {
    fn kind(&self) -> u8 {
        self.kind_byte()
    }

    fn body_size_hint(&self) -> usize {
        // Per message: priority (1), key length (4), header count (2) and payload length
        // (4) besides what `encoded_size` counts.
        let messages = |topic: &mq_core::TopicName, messages: &[mq_core::NewMessage]| {
            2 + topic.as_str().len()
                + 4
                + messages
                    .iter()
                    .map(|m| 11 + m.encoded_size() as usize)
                    .sum::<usize>()
        };
        match self {
            ClientMsg::Publish { topic, messages: m } => messages(topic, m),
            ClientMsg::PublishIdempotent {
                topic, messages: m, ..
            } => 16 + messages(topic, m),
            _ => 0,
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
                write_messages(w, messages)?;
            }
            ClientMsg::PublishIdempotent {
                topic,
                producer,
                seq,
                messages,
            } => {
                w.str("topic", topic.as_str())?;
                w.u64(*producer);
                w.u64(*seq);
                write_messages(w, messages)?;
            }
            ClientMsg::Subscribe(s) => {
                w.str("topic", s.topic.as_str())?;
                w.opt_str("group", s.group.as_ref().map(GroupName::as_str))?;
                write_start(w, s.start);
                w.u8(ack_code(s.ack));
                w.u8(u8::from(s.exclusive) | (u8::from(s.create_topic) << 1));
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
            ClientMsg::CreateTopic { topic, config, .. } => {
                w.str("topic", topic.as_str())?;
                w.json("config", config)?;
            }
            ClientMsg::DeleteTopic { topic }
            | ClientMsg::DescribeTopic { topic }
            | ClientMsg::ListGroups { topic } => w.str("topic", topic.as_str())?,
            ClientMsg::Peek { topic, from, max } => {
                w.str("topic", topic.as_str())?;
                write_start(w, *from);
                w.u32(*max);
            }
            ClientMsg::CreateGroup {
                topic,
                group,
                start: position,
            }
            | ClientMsg::SeekGroup {
                topic,
                group,
                to: position,
            } => {
                w.str("topic", topic.as_str())?;
                w.str("group", group.as_str())?;
                write_start(w, *position);
            }
            ClientMsg::PurgeTopic { topic } => w.str("topic", topic.as_str())?,
            ClientMsg::AlterTopic { topic, config, .. } => {
                w.str("topic", topic.as_str())?;
                w.json("config", config)?;
            }
            ClientMsg::DeleteGroup { topic, group } | ClientMsg::DescribeGroup { topic, group } => {
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
                let messages = read_messages(r)?;
                ClientMsg::Publish { topic, messages }
            }
            kind::PUBLISH_IDEMPOTENT => {
                let topic = topic(r)?;
                let producer = r.u64()?;
                let seq = r.u64()?;
                let messages = read_messages(r)?;
                ClientMsg::PublishIdempotent {
                    topic,
                    producer,
                    seq,
                    messages,
                }
            }
            kind::SUBSCRIBE => {
                let topic = topic(r)?;
                let group = r.opt_str("group")?.map(GroupName::new).transpose()?;
                let start = read_start(r)?;
                let ack = read_ack(r)?;
                let flags = r.u8()?;
                if flags > 0b11 {
                    return Err(DecodeError::InvalidValue {
                        field: "flags",
                        value: u64::from(flags),
                    });
                }
                ClientMsg::Subscribe(SubscribeRequest {
                    topic,
                    group,
                    start,
                    ack,
                    exclusive: flags & 1 != 0,
                    create_topic: flags & 0b10 != 0,
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
            kind::CREATE_TOPIC => {
                let topic = topic(r)?;
                let (config, unknown_keys) = read_config(r)?;
                ClientMsg::CreateTopic {
                    topic,
                    config,
                    unknown_keys,
                }
            }
            kind::DELETE_TOPIC => ClientMsg::DeleteTopic { topic: topic(r)? },
            kind::LIST_TOPICS => ClientMsg::ListTopics,
            kind::DESCRIBE_TOPIC => ClientMsg::DescribeTopic { topic: topic(r)? },
            kind::LIST_GROUPS => ClientMsg::ListGroups { topic: topic(r)? },
            kind::DELETE_GROUP => ClientMsg::DeleteGroup {
                topic: topic(r)?,
                group: group(r)?,
            },
            kind::PEEK => ClientMsg::Peek {
                topic: topic(r)?,
                from: read_start(r)?,
                max: r.u32()?,
            },
            kind::CREATE_GROUP => ClientMsg::CreateGroup {
                topic: topic(r)?,
                group: group(r)?,
                start: read_start(r)?,
            },
            kind::SEEK_GROUP => ClientMsg::SeekGroup {
                topic: topic(r)?,
                group: group(r)?,
                to: read_start(r)?,
            },
            kind::PURGE_TOPIC => ClientMsg::PurgeTopic { topic: topic(r)? },
            kind::ALTER_TOPIC => {
                let topic = topic(r)?;
                let (config, unknown_keys) = read_config(r)?;
                ClientMsg::AlterTopic {
                    topic,
                    config,
                    unknown_keys,
                }
            }
            kind::DESCRIBE_GROUP => ClientMsg::DescribeGroup {
                topic: topic(r)?,
                group: group(r)?,
            },
            kind::STATS => ClientMsg::Stats {
                topic: r
                    .opt_str("topic")?
                    .map(TopicName::new_or_dead_letter)
                    .transpose()?,
            },
            kind::PING => ClientMsg::Ping,
            kind::GOODBYE => ClientMsg::Goodbye,
            other => return Err(DecodeError::UnknownKind { kind: other }),
        })
    }
}

/// A publish's messages: their count, then each one's priority, key, headers and payload.
fn write_messages(w: &mut Writer<'_>, messages: &[NewMessage]) -> Result<(), EncodeError> {
    w.len32("messages", messages.len())?;
    for m in messages {
        w.u8(m.priority);
        w.opt_bytes("key", m.key.as_deref())?;
        write_headers(w, &m.headers)?;
        w.bytes("payload", &m.payload)?;
    }
    Ok(())
}

/// What [`write_messages`] wrote.
fn read_messages(r: &mut Reader) -> Result<Vec<NewMessage>, DecodeError> {
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
    Ok(messages)
}

/// A topic configuration, and the keys of its JSON that no field reads.
fn read_config(r: &mut Reader) -> Result<(TopicConfig, Vec<String>), DecodeError> {
    let doc: serde_json::Value = r.json("config")?;
    let unknown = mq_core::unknown_config_keys(&doc);
    let config = serde_json::from_value(doc).map_err(|e| DecodeError::InvalidJson {
        field: "config",
        reason: e.to_string(),
    })?;
    Ok((config, unknown))
}
