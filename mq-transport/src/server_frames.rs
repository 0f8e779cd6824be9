//! The bodies of server frames (PROTOCOL.md, "Server frames"): how each [`ServerMsg`] is
//! written and read.

use mq_core::{GroupName, Offset};

use crate::frame::{
    WireMsg, ack_code, capacity, delivered_size, durability_code, read_ack, read_count,
    read_delivered, read_durability, topic, write_delivered,
};
use crate::protocol::{ErrorCode, ServerMsg, SubscriptionId, kind};
use crate::wire::{DecodeError, EncodeError, Reader, Writer};

impl WireMsg for ServerMsg {
    fn kind(&self) -> u8 {
        self.kind_byte()
    }

    fn body_size_hint(&self) -> usize {
        match self {
            ServerMsg::Deliveries { messages, .. } => 4 + delivered_size(messages),
            ServerMsg::Peeked { messages } => delivered_size(messages),
            _ => 0,
        }
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            ServerMsg::Welcome {
                version,
                server,
                max_frame,
                storage,
                heartbeat_ms,
                max_message,
            } => {
                w.u16(*version);
                w.str("server", server)?;
                w.u32(*max_frame);
                w.str("storage", storage)?;
                if *version >= 2 {
                    w.u32(*heartbeat_ms);
                    w.u64(*max_message);
                }
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
                write_delivered(w, messages)?;
            }
            ServerMsg::Peeked { messages } => write_delivered(w, messages)?,
            ServerMsg::Topics { topics } => {
                w.len32("topics", topics.len())?;
                for t in topics {
                    w.str("topic", t.as_str())?;
                }
            }
            ServerMsg::TopicInfo(info) => w.json("info", info)?,
            ServerMsg::GroupReport(report) => w.json("report", report)?,
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
            kind::WELCOME => {
                let version = r.u16()?;
                ServerMsg::Welcome {
                    version,
                    server: r.str("server")?,
                    max_frame: r.u32()?,
                    storage: r.str("storage")?,
                    heartbeat_ms: if version >= 2 { r.u32()? } else { 0 },
                    max_message: if version >= 2 { r.u64()? } else { 0 },
                }
            }
            kind::PUBLISHED => ServerMsg::Published {
                first: Offset(r.u64()?),
                count: r.u32()?,
                durability: read_durability(r)?,
            },
            kind::SUBSCRIBED => ServerMsg::Subscribed {
                sub: SubscriptionId(r.u32()?),
                group: GroupName::new_or_ephemeral(r.str("group")?)?,
                ack: read_ack(r)?.ok_or(DecodeError::InvalidValue {
                    field: "ack",
                    value: 0,
                })?,
                prefetch: r.u32()?,
            },
            kind::DELIVERIES => ServerMsg::Deliveries {
                sub: SubscriptionId(r.u32()?),
                messages: read_delivered(r)?,
            },
            kind::PEEKED => ServerMsg::Peeked {
                messages: read_delivered(r)?,
            },
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
            kind::GROUP_REPORT => ServerMsg::GroupReport(Box::new(r.json("report")?)),
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
