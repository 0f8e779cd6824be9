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
    AckMode, Durability, GroupName, Header, Offset, StartPosition, Timestamp, TopicName,
};

use crate::protocol::{ErrorCode, Frame, RequestId, WireDelivery};
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
    /// About how many bytes its body takes, when that is large (a frame of messages): the
    /// buffer is reserved once instead of growing while the body is written. 0 by default.
    fn body_size_hint(&self) -> usize {
        0
    }
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
    dst.reserve(4 + 1 + 4 + frame.msg.body_size_hint());
    dst.put_u32(0);
    dst.put_u8(frame.msg.kind());
    dst.put_u32(frame.id.0);
    let body = frame.msg.encode_body(&mut Writer::new(dst));
    let len = dst.len() - start - 4;
    if let Err(e) = body {
        dst.truncate(start);
        return Err(e);
    }
    let max = max_frame.min(u32::MAX as usize);
    let Some(length) = u32::try_from(len).ok().filter(|_| len <= max) else {
        dst.truncate(start);
        return Err(EncodeError::FrameTooLarge { len, max });
    };
    dst[start..start + 4].copy_from_slice(&length.to_be_bytes());
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
pub(crate) fn capacity(count: u32) -> usize {
    (count as usize).min(4096)
}

pub(crate) fn read_count(r: &mut Reader) -> Result<u32, DecodeError> {
    r.u32()
}

pub(crate) fn topic(r: &mut Reader) -> Result<TopicName, DecodeError> {
    Ok(TopicName::new_or_dead_letter(r.str("topic")?)?)
}

pub(crate) fn group(r: &mut Reader) -> Result<GroupName, DecodeError> {
    Ok(GroupName::new_or_ephemeral(r.str("group")?)?)
}

pub(crate) fn write_headers(w: &mut Writer<'_>, headers: &[Header]) -> Result<(), EncodeError> {
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

pub(crate) fn read_headers(r: &mut Reader) -> Result<Vec<Header>, DecodeError> {
    let count = r.u16()?;
    let mut headers = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let name = r.str("header name")?;
        let value = r.bytes()?;
        headers.push(Header { name, value });
    }
    Ok(headers)
}

pub(crate) fn write_offsets(w: &mut Writer<'_>, offsets: &[Offset]) -> Result<(), EncodeError> {
    w.len32("offsets", offsets.len())?;
    for o in offsets {
        w.u64(o.get());
    }
    Ok(())
}

pub(crate) fn read_offsets(r: &mut Reader) -> Result<Vec<Offset>, DecodeError> {
    let count = read_count(r)?;
    let mut out = Vec::with_capacity(capacity(count));
    for _ in 0..count {
        out.push(Offset(r.u64()?));
    }
    Ok(out)
}

pub(crate) fn write_start(w: &mut Writer<'_>, start: StartPosition) {
    match start {
        StartPosition::Earliest => w.u8(0),
        StartPosition::Resume => w.u8(4),
        StartPosition::Latest => w.u8(1),
        StartPosition::Offset(o) => {
            w.u8(2);
            w.u64(o.get());
        }
        StartPosition::Time(t) => {
            w.u8(3);
            w.u64(t.as_millis());
        }
    }
}

pub(crate) fn read_start(r: &mut Reader) -> Result<StartPosition, DecodeError> {
    match r.u8()? {
        0 => Ok(StartPosition::Earliest),
        1 => Ok(StartPosition::Latest),
        2 => Ok(StartPosition::Offset(Offset(r.u64()?))),
        3 => Ok(StartPosition::Time(Timestamp::from_millis(r.u64()?))),
        4 => Ok(StartPosition::Resume),
        v => Err(DecodeError::InvalidValue {
            field: "start",
            value: u64::from(v),
        }),
    }
}

/// Writes a list of delivered messages (`Deliveries`, `Peeked`).
pub(crate) fn write_delivered(
    w: &mut Writer<'_>,
    messages: &[WireDelivery],
) -> Result<(), EncodeError> {
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
    Ok(())
}

/// Bytes [`write_delivered`] writes for `messages`.
pub(crate) fn delivered_size(messages: &[WireDelivery]) -> usize {
    4 + messages
        .iter()
        .map(|m| {
            crate::DELIVERED_OVERHEAD
                + m.key.as_ref().map_or(0, |k| k.len())
                + m.headers
                    .iter()
                    .map(|h| 6 + h.name.len() + h.value.len())
                    .sum::<usize>()
                + m.payload.len()
        })
        .sum::<usize>()
}

/// Reads what [`write_delivered`] wrote.
pub(crate) fn read_delivered(r: &mut Reader) -> Result<Vec<WireDelivery>, DecodeError> {
    let count = read_count(r)?;
    let mut messages = Vec::with_capacity(capacity(count));
    for _ in 0..count {
        messages.push(WireDelivery {
            offset: Offset(r.u64()?),
            timestamp: Timestamp::from_millis(r.u64()?),
            priority: r.u8()?,
            deliveries: r.u32()?,
            key: r.opt_bytes()?,
            headers: read_headers(r)?,
            payload: r.bytes()?,
        });
    }
    Ok(messages)
}

pub(crate) fn ack_code(ack: Option<AckMode>) -> u8 {
    match ack {
        None => 0,
        Some(AckMode::Auto) => 1,
        Some(AckMode::Manual) => 2,
    }
}

pub(crate) fn read_ack(r: &mut Reader) -> Result<Option<AckMode>, DecodeError> {
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

pub(crate) fn durability_code(d: Durability) -> u8 {
    match d {
        Durability::Memory => 0,
        Durability::Written => 1,
        Durability::Fsynced => 2,
    }
}

pub(crate) fn read_durability(r: &mut Reader) -> Result<Durability, DecodeError> {
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
