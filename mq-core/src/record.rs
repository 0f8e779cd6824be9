//! The record of one message, framed with its length and a CRC32C: the one format of a
//! message in a segment file and in the memory log's chunks.
//!
//! ```text
//! record := len:u32  crc:u32  body          (len = bytes of body, crc = CRC32C of body)
//! body   := offset:u64  timestamp:u64  priority:u8  key  headers  payload  [stamp]
//! key    := len:u32 (0xFFFFFFFF = none)  bytes
//! headers:= count:u16  count × (name_len:u16 name  value_len:u32 value)
//! payload:= len:u32  bytes
//! stamp  := producer:u64  seq:u64  count:u32   (format 2: the last record of a numbered
//!           batch; also its first when it has several, with the top bit of count set)
//! ```
//! All integers little-endian. A record whose length runs past the end of the data, whose CRC
//! does not match or whose fields do not add up is [`Damage`]; since every record carries its
//! offset and checksum, [`find_next`] can find the next valid record after a damaged region.

use bytes::{BufMut, Bytes};

use crate::clock::Timestamp;
use crate::cursor::Cursor;
use crate::message::{Header, Message, NewMessage, Offset};
use crate::producers::BatchStamp;

/// Bytes of a [`BatchStamp`] at the end of a record's body.
pub(crate) const STAMP: usize = 8 + 8 + 4;
/// The bit of a stamp's count that marks the first record of its batch.
const FIRST: u32 = 1 << 31;

/// The stamp a record of a numbered batch carries: its last record has one, and so has its
/// first when it has several — recovery can then tell a batch a crash cut short (a first
/// mark without its last) and remove it, so that the producer's resend stores it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The first record of a batch of several.
    First(BatchStamp),
    /// The last record (the only one of a batch of one).
    Last(BatchStamp),
}

/// Bytes before a record's body: its length and its CRC.
pub(crate) const FRAME: usize = 8;

/// A field of a message longer than a record can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("its {field} of {len} bytes is longer than a record can hold ({max})")]
pub(crate) struct TooLong {
    /// Which field.
    pub(crate) field: &'static str,
    /// Its length.
    pub(crate) len: usize,
    /// The most a record holds.
    pub(crate) max: usize,
}

/// `len` as a length field of type `T`, or why it does not fit.
fn length<T: TryFrom<usize>>(field: &'static str, len: usize, max: usize) -> Result<T, TooLong> {
    if len > max {
        return Err(TooLong { field, len, max });
    }
    T::try_from(len).map_err(|_| TooLong { field, len, max })
}

/// The fields of a message a record holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) offset: u64,
    pub(crate) timestamp: Timestamp,
    pub(crate) priority: u8,
    pub(crate) key: Option<&'a Bytes>,
    pub(crate) headers: &'a [Header],
    pub(crate) payload: &'a Bytes,
}

impl<'a> Fields<'a> {
    /// The fields of a stored message.
    pub(crate) fn of(m: &'a Message) -> Self {
        Self {
            offset: m.offset.get(),
            timestamp: m.timestamp,
            priority: m.priority,
            key: m.key.as_ref(),
            headers: &m.headers,
            payload: &m.payload,
        }
    }

    /// The fields of a producer's message stored at `offset` at `timestamp`.
    pub(crate) fn of_new(m: &'a NewMessage, offset: u64, timestamp: Timestamp) -> Self {
        Self {
            offset,
            timestamp,
            priority: m.priority,
            key: m.key.as_ref(),
            headers: &m.headers,
            payload: &m.payload,
        }
    }
}

/// Appends `message` as a record to `buf`, with its batch's stamp after its payload when it
/// begins or ends a numbered batch; on error `buf` is as it was. The checksum is left 0
/// unless `checksum`: records only this process reads ([`read_own`]) need none.
///
/// # Errors
/// [`TooLong`] when a field's length does not fit its length field (the key, a header
/// value or the payload over 4 GiB − 2, a header name over 64 KiB − 1, more than 65,535
/// headers).
pub(crate) fn encode<B: Buffer>(
    message: Fields<'_>,
    mark: Option<Mark>,
    checksum: bool,
    buf: &mut B,
) -> Result<(), TooLong> {
    let start = buf.len();
    let written = encode_fields(message, mark, checksum, buf);
    if written.is_err() {
        buf.truncate(start);
    }
    written
}

/// A growable byte buffer records are encoded into: a memory chunk of the log, or a `Vec`.
pub(crate) trait Buffer: BufMut + std::ops::DerefMut<Target = [u8]> {
    /// Shortens the buffer to `len` bytes.
    fn truncate(&mut self, len: usize);
}

impl Buffer for Vec<u8> {
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

impl Buffer for bytes::BytesMut {
    fn truncate(&mut self, len: usize) {
        bytes::BytesMut::truncate(self, len);
    }
}

/// The message of the record at `pos` of `data`, a record this process encoded (the memory
/// log's own chunks: the checksum is not checked again). Payloads are slices of `data`.
pub(crate) fn read_own(data: &Bytes, pos: usize) -> Option<Message> {
    let body = pos + FRAME;
    let end = body.checked_add(own_len(data, pos)?)?;
    let fixed = data.get(body..body + 21)?;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let offset = u64::from_le_bytes(fixed[0..8].try_into().ok()?);
    let timestamp = u64::from_le_bytes(fixed[8..16].try_into().ok()?);
    let priority = fixed[16];
    let mut at = body + 21;
    let key = match u32_at(at - 4)? {
        u32::MAX => None,
        n => {
            let key_end = at.checked_add(n as usize).filter(|&e| e <= end)?;
            let key = data.slice(at..key_end);
            at = key_end;
            Some(key)
        }
    };
    let count = u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?);
    at += 2;
    let mut headers = Vec::new();
    if count > 0 {
        let mut c = Cursor::new(data.get(at..end)?);
        headers = read_headers(data, &mut c, count)?;
        at = end - c.remaining();
    }
    let n = u32_at(at)? as usize;
    let payload_end = (at + 4).checked_add(n).filter(|&e| e <= end)?;
    Some(Message {
        offset: Offset(offset),
        timestamp: Timestamp::from_millis(timestamp),
        priority,
        key,
        headers,
        payload: data.slice(at + 4..payload_end),
    })
}

/// The priority of the record at `pos` of `data` (one this process encoded).
pub(crate) fn own_priority(data: &[u8], pos: usize) -> Option<u8> {
    data.get(pos + FRAME + 16).copied()
}

/// Where each record of `data` (records back to back, as this process encoded them)
/// starts.
pub(crate) fn starts(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = own_len(data, pos)?;
        let at = pos;
        pos += FRAME + len;
        Some(at)
    })
}

/// The whole length (frame included) and the offset of the record at `pos` of `data`, if
/// it lies within `data`; its checksum and other fields are not looked at (a record whose
/// checksum was verified when it was read).
pub(crate) fn frame_at(data: &[u8], pos: usize) -> Option<(usize, u64)> {
    let len = FRAME.checked_add(own_len(data, pos)?)?;
    if pos.checked_add(len)? > data.len() {
        return None;
    }
    let offset = data.get(pos + FRAME..pos + FRAME + 8)?;
    Some((len, u64::from_le_bytes(offset.try_into().ok()?)))
}

fn own_len(data: &[u8], pos: usize) -> Option<usize> {
    let frame = data.get(pos..pos + 4)?;
    Some(u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize)
}

fn encode_fields<B: Buffer>(
    message: Fields<'_>,
    mark: Option<Mark>,
    checksum: bool,
    buf: &mut B,
) -> Result<(), TooLong> {
    const MAX32: usize = (u32::MAX - 1) as usize;
    const MAX16: usize = u16::MAX as usize;
    let start = buf.len();
    // The fixed fields at once: frame (filled in last), offset, timestamp, priority, key
    // length.
    let mut head = [0u8; FRAME + 8 + 8 + 1 + 4];
    head[8..16].copy_from_slice(&message.offset.to_le_bytes());
    head[16..24].copy_from_slice(&message.timestamp.as_millis().to_le_bytes());
    head[24] = message.priority;
    let key_len = match message.key {
        Some(key) => length("key", key.len(), MAX32)?,
        None => u32::MAX,
    };
    head[25..29].copy_from_slice(&key_len.to_le_bytes());
    buf.put_slice(&head);
    if let Some(key) = message.key {
        buf.put_slice(key);
    }
    buf.put_u16_le(length("header count", message.headers.len(), MAX16)?);
    for h in message.headers {
        buf.put_u16_le(length("header name", h.name.len(), MAX16)?);
        buf.put_slice(h.name.as_bytes());
        buf.put_u32_le(length("header value", h.value.len(), MAX32)?);
        buf.put_slice(&h.value);
    }
    buf.put_u32_le(length("payload", message.payload.len(), MAX32)?);
    buf.put_slice(message.payload);
    if let Some(mark) = mark {
        let (s, flag) = match mark {
            Mark::First(s) => (s, FIRST),
            Mark::Last(s) => (s, 0),
        };
        buf.put_u64_le(s.producer);
        buf.put_u64_le(s.seq);
        buf.put_u32_le(s.count | flag);
    }
    let body_len: u32 = length("record", buf.len() - start - FRAME, MAX32)?;
    let crc = if checksum {
        crc32c::crc32c(&buf[start + FRAME..])
    } else {
        0
    };
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Smallest body a record can have: offset, timestamp, priority, absent key, no headers,
/// empty payload.
const MIN_BODY: usize = 8 + 8 + 1 + 4 + 2 + 4;

/// Why the bytes at some position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer bytes than a record header are left.
    HeaderCut,
    /// The record's length runs past the end of the data.
    RecordCut,
    /// The record's checksum does not match its body.
    Checksum,
    /// The body's fields do not add up to its length.
    Fields,
    /// A valid record whose offset does not follow the one before it.
    OutOfSequence,
}

impl Damage {
    /// Whether more data could complete the record (it was cut by the end of a read).
    pub(crate) fn is_cut(self) -> bool {
        matches!(self, Damage::HeaderCut | Damage::RecordCut)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::HeaderCut => "a record header is cut off",
            Damage::RecordCut => "a record is cut off",
            Damage::Checksum => "a record's checksum does not match",
            Damage::Fields => "a record's fields do not add up",
            Damage::OutOfSequence => "a record's offset is out of sequence",
        })
    }
}

/// What reading a record at some position found.
#[derive(Debug)]
pub(crate) enum Read {
    /// A valid record, its total length (frame included) and the mark of the numbered batch
    /// it begins or ends, if any.
    Record(Message, usize, Option<Mark>),
    /// Nothing more: the position is the end of the data.
    End,
    /// The bytes there are not a valid record.
    Damaged(Damage),
}

/// Reads the record at `pos` of `data`. Payloads are slices of `data`, not copies.
pub(crate) fn decode(data: &Bytes, pos: usize) -> Read {
    if pos == data.len() {
        return Read::End;
    }
    if data.len() - pos < FRAME {
        return Read::Damaged(Damage::HeaderCut);
    }
    let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
    let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
    let body = pos + FRAME;
    if len > data.len() - body {
        return Read::Damaged(Damage::RecordCut);
    }
    if crc32c::crc32c(&data[body..body + len]) != crc {
        return Read::Damaged(Damage::Checksum);
    }
    match parse(data, &data[body..body + len]) {
        Some((message, stamp)) => Read::Record(message, FRAME + len, stamp),
        None => Read::Damaged(Damage::Fields),
    }
}

/// Whether `data` holds nothing but zero bytes from `pos` on: the end of a segment grown
/// ahead of its records (never a record: no record has length 0), not damage.
pub(crate) fn only_zeros(data: &[u8], pos: usize) -> bool {
    data.get(pos..)
        .is_some_and(|rest| rest.iter().all(|&b| b == 0))
}

/// What the log must know of a record it leaves on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub(crate) offset: u64,
    pub(crate) timestamp: u64,
    pub(crate) priority: u8,
    /// What [`Message::size`] counts: the whole record.
    pub(crate) size: u64,
    /// Its size as [`Message::encoded_size`] counts it.
    pub(crate) encoded: u64,
    /// The mark of the numbered batch it begins or ends, if any.
    pub(crate) stamp: Option<Mark>,
}

/// Like [`decode`] (the checksum included), but only reads what the log keeps of a message
/// left on disk: no allocation.
pub(crate) fn decode_meta(data: &[u8], pos: usize) -> Result<Option<(RecordMeta, usize)>, Damage> {
    if pos == data.len() {
        return Ok(None);
    }
    if data.len() - pos < FRAME {
        return Err(Damage::HeaderCut);
    }
    let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
    let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
    let body = pos + FRAME;
    if len > data.len() - body {
        return Err(Damage::RecordCut);
    }
    let body = &data[body..body + len];
    if crc32c::crc32c(body) != crc {
        return Err(Damage::Checksum);
    }
    match meta_of(body) {
        Some(meta) => Ok(Some((meta, FRAME + len))),
        None => Err(Damage::Fields),
    }
}

/// The position of the first valid record at or after `from` whose offset is above `after`
/// (any offset when `None`): where reading resumes after a damaged region. Cheap checks of
/// the length and offset come before the checksum, so a scan through garbage stays fast.
pub(crate) fn find_next(data: &[u8], from: usize, after: Option<u64>) -> Option<usize> {
    let last = data.len().checked_sub(FRAME + MIN_BODY)?;
    (from..=last).find(|&pos| {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        if len < MIN_BODY || len > data.len() - pos - FRAME {
            return false;
        }
        let at = pos + FRAME;
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&data[at..at + 8]);
        if after.is_some_and(|a| u64::from_le_bytes(offset) <= a) {
            return false;
        }
        matches!(decode_meta(data, pos), Ok(Some(_)))
    })
}

/// Reads the fields of a record body the log keeps, checking that they add up.
fn meta_of(body: &[u8]) -> Option<RecordMeta> {
    let mut c = Cursor::new(body);
    let offset = c.u64()?;
    let timestamp = c.u64()?;
    let priority = c.u8()?;
    let mut size = 0u64;
    let mut framing = 0u64;
    let key = c.u32()?;
    if key != u32::MAX {
        c.take(key as usize)?;
        size += u64::from(key);
    }
    for _ in 0..c.u16()? {
        let name = usize::from(c.u16()?);
        // As strict as `parse`: what one reader takes, the other takes too.
        std::str::from_utf8(c.take(name)?).ok()?;
        let value = c.u32()? as usize;
        c.take(value)?;
        size += (name + value) as u64;
        framing += crate::message::HEADER_FRAMING;
    }
    let payload = c.u32()? as usize;
    c.take(payload)?;
    size += payload as u64;
    let encoded = size + framing;
    let stamp = read_stamp(&mut c)?;
    Some(RecordMeta {
        offset,
        timestamp,
        priority,
        size: encoded + crate::message::RECORD_OVERHEAD,
        encoded,
        stamp,
    })
}

/// What follows the payload: nothing, or a batch's mark; `None` when it is anything else.
fn read_stamp(c: &mut Cursor<'_>) -> Option<Option<Mark>> {
    match c.remaining() {
        0 => Some(None),
        STAMP => {
            let producer = c.u64()?;
            let seq = c.u64()?;
            let count = c.u32()?;
            let stamp = BatchStamp {
                producer,
                seq,
                count: count & !FIRST,
            };
            Some(Some(if count & FIRST != 0 {
                Mark::First(stamp)
            } else {
                Mark::Last(stamp)
            }))
        }
        _ => None,
    }
}

/// Reads `count` headers at `c`, a cursor over part of `data`: names checked as UTF-8,
/// values slices of `data`.
fn read_headers(data: &Bytes, c: &mut Cursor<'_>, count: u16) -> Option<Vec<Header>> {
    let mut headers = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let n = usize::from(c.u16()?);
        let name = std::str::from_utf8(c.take(n)?).ok()?.to_owned();
        let n = c.u32()? as usize;
        headers.push(Header {
            name,
            value: data.slice_ref(c.take(n)?),
        });
    }
    Some(headers)
}

/// Reads a whole record body; its bytes are slices of `data` (which holds `body`), not
/// copies.
fn parse(data: &Bytes, body: &[u8]) -> Option<(Message, Option<Mark>)> {
    let mut c = Cursor::new(body);
    let offset = Offset(c.u64()?);
    let timestamp = Timestamp::from_millis(c.u64()?);
    let priority = c.u8()?;
    let key = match c.u32()? {
        u32::MAX => None,
        n => Some(data.slice_ref(c.take(n as usize)?)),
    };
    let count = c.u16()?;
    let headers = read_headers(data, &mut c, count)?;
    let n = c.u32()? as usize;
    let payload = data.slice_ref(c.take(n)?);
    let stamp = read_stamp(&mut c)?;
    let message = Message {
        offset,
        timestamp,
        priority,
        key,
        headers,
        payload,
    };
    Some((message, stamp))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewMessage;

    fn sample() -> Message {
        Message::from_new(
            Offset(42),
            Timestamp::from_millis(7),
            NewMessage::new("payload")
                .priority(3)
                .key("k")
                .header("h", "v"),
        )
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode(Fields::of(&sample()), None, true, &mut buf).unwrap();
        encode(Fields::of(&sample()), None, true, &mut buf).unwrap();
        let data = Bytes::from(buf);
        let Read::Record(m, len, None) = decode(&data, 0) else {
            panic!("first record")
        };
        assert_eq!(m, sample());
        assert!(matches!(decode(&data, len), Read::Record(..)));
        assert!(matches!(decode(&data, 2 * len), Read::End));
    }

    #[test]
    fn meta_reads_what_the_log_keeps() {
        let mut buf = Vec::new();
        encode(Fields::of(&sample()), None, true, &mut buf).unwrap();
        let data = Bytes::from(buf);
        let (meta, len) = decode_meta(&data, 0).unwrap().unwrap();
        assert_eq!(len, data.len());
        assert_eq!(
            meta,
            RecordMeta {
                offset: 42,
                timestamp: 7,
                priority: 3,
                size: sample().size(),
                encoded: sample().encoded_size(),
                stamp: None,
            }
        );
        assert!(decode_meta(&data.slice(..len - 1), 0).is_err());
    }

    #[test]
    fn the_last_record_of_a_numbered_batch_carries_its_stamp() {
        let stamp = BatchStamp {
            producer: u64::MAX - 3,
            seq: 1 << 40,
            count: 17,
        };
        for mark in [Mark::First(stamp), Mark::Last(stamp)] {
            let mut buf = Vec::new();
            encode(Fields::of(&sample()), Some(mark), true, &mut buf).unwrap();
            let data = Bytes::from(buf);
            let Read::Record(m, len, got) = decode(&data, 0) else {
                panic!("a record")
            };
            assert_eq!((m, len, got), (sample(), data.len(), Some(mark)));
            let (meta, _) = decode_meta(&data, 0).unwrap().unwrap();
            assert_eq!(meta.stamp, Some(mark));
            assert_eq!(meta.encoded, sample().encoded_size());
        }
    }

    #[test]
    fn a_header_name_that_is_not_utf8_is_damage_to_both_readers() {
        let mut buf = Vec::new();
        let mut m = sample();
        m.headers[0].name = "\u{e9}".into();
        encode(Fields::of(&m), None, true, &mut buf).unwrap();
        // "é" is C3 A9 in UTF-8: make it C3 C3, then set the checksum right.
        let at = buf.windows(2).position(|w| w == [0xC3, 0xA9]).unwrap();
        buf[at + 1] = 0xC3;
        let crc = crc32c::crc32c(&buf[FRAME..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let data = Bytes::from(buf);
        assert!(matches!(decode(&data, 0), Read::Damaged(Damage::Fields)));
        assert_eq!(decode_meta(&data, 0), Err(Damage::Fields));
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_damage_not_a_panic() {
        let mut buf = Vec::new();
        encode(Fields::of(&sample()), None, true, &mut buf).unwrap();
        for cut in 1..buf.len() {
            let data = Bytes::copy_from_slice(&buf[..cut]);
            assert!(matches!(decode(&data, 0), Read::Damaged(_)), "cut {cut}");
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let data = Bytes::from(bad);
            assert!(matches!(decode(&data, 0), Read::Damaged(_)), "flip {i}");
        }
    }

    #[test]
    fn reading_resumes_at_the_next_valid_record_after_damage() {
        let mut buf = Vec::new();
        encode(Fields::of(&sample()), None, true, &mut buf).unwrap();
        let one = buf.len();
        let mut later = sample();
        later.offset = Offset(43);
        encode(Fields::of(&later), None, true, &mut buf).unwrap();
        for i in 0..one {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert_eq!(find_next(&bad, 1, Some(42)), Some(one), "flip {i}");
        }
        assert_eq!(find_next(&buf, 0, None), Some(0));
        assert_eq!(find_next(&buf, 0, Some(43)), None);
        assert_eq!(find_next(&buf[..one + 5], 1, None), None);
    }
}
