//! Runtime-free byte primitives of the protocol: big-endian integers, length-prefixed
//! strings and bytes, with checked lengths on both sides.
//!
//! Decoding reads from a `Bytes` frame body and returns slices of it (`Bytes::slice`), so a
//! payload is never copied on the way in.

use bytes::{BufMut, Bytes, BytesMut};

/// Marks an absent optional byte string (`u32` length field).
pub const NONE_U32: u32 = u32::MAX;
/// Marks an absent optional string (`u16` length field).
pub const NONE_U16: u16 = u16::MAX;

/// Why a frame body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ended before a field did.
    #[error("frame truncated at byte {offset}: needed {need} more bytes, {have} left")]
    Truncated {
        /// Where in the body the field starts.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// Bytes were left over after the last field.
    #[error("frame has {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A string field is not UTF-8.
    #[error("field {field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// An enumerated field holds an unknown value.
    #[error("field {field} has unknown value {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A JSON field does not match its schema.
    #[error("field {field} is not valid JSON for its schema: {reason}")]
    InvalidJson {
        /// The field.
        field: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A topic or group name is invalid.
    #[error(transparent)]
    InvalidName(#[from] mq_core::NameError),
    /// The frame kind is not one this side accepts.
    #[error("unknown frame kind 0x{kind:02x}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field is longer than its length prefix can say.
    #[error("field {field} is {len} bytes long, more than its limit of {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most its prefix allows.
        max: usize,
    },
    /// The frame is larger than the connection's maximum frame size.
    #[error(
        "frame of {len} bytes exceeds the maximum frame size of {max} bytes: send smaller batches"
    )]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A JSON field could not be serialized.
    #[error("field {field} could not be serialized: {reason}")]
    Json {
        /// The field.
        field: &'static str,
        /// What serde said.
        reason: String,
    },
}

/// Reads fields from a frame body.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader at the start of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The range of the next `need` bytes, consumed.
    #[inline]
    fn advance(&mut self, need: usize) -> Result<std::ops::Range<usize>, DecodeError> {
        let have = self.buf.len() - self.pos;
        if need > have {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                need,
                have,
            });
        }
        let range = self.pos..self.pos + need;
        self.pos += need;
        Ok(range)
    }

    /// The next `need` bytes as a slice of the frame (no copy).
    #[inline]
    fn take(&mut self, need: usize) -> Result<Bytes, DecodeError> {
        let range = self.advance(need)?;
        Ok(self.buf.slice(range))
    }

    /// The next `N` bytes, copied (no reference to the frame taken).
    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let range = self.advance(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    /// A `u8`.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `u8` that must be 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                field,
                value: u64::from(v),
            }),
        }
    }

    /// `u32` length + bytes, as a slice of the frame.
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// `u32` length (`0xFFFFFFFF` = absent) + bytes.
    pub fn opt_bytes(&mut self) -> Result<Option<Bytes>, DecodeError> {
        let len = self.u32()?;
        if len == NONE_U32 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }

    /// `u16` length + UTF-8.
    pub fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        self.utf8(field, len)
    }

    /// `u16` length (`0xFFFF` = absent) + UTF-8.
    pub fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        let len = self.u16()?;
        if len == NONE_U16 {
            return Ok(None);
        }
        self.utf8(field, len as usize).map(Some)
    }

    fn utf8(&mut self, field: &'static str, len: usize) -> Result<String, DecodeError> {
        let offset = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { field, offset })
    }

    /// `u32` length + a JSON document.
    pub fn json<T: serde::de::DeserializeOwned>(
        &mut self,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes).map_err(|e| DecodeError::InvalidJson {
            field,
            reason: e.to_string(),
        })
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        let extra = self.buf.len() - self.pos;
        if extra == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { extra })
        }
    }
}

/// Writes fields into a frame body.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut BytesMut,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Self { buf }
    }

    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    /// A length that must fit in a `u32` below [`NONE_U32`].
    pub fn len32(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        let max = (NONE_U32 - 1) as usize;
        if len > max {
            return Err(EncodeError::FieldTooLong { field, len, max });
        }
        self.buf.put_u32(len as u32);
        Ok(())
    }

    /// `u32` length + bytes.
    pub fn bytes(&mut self, field: &'static str, v: &[u8]) -> Result<(), EncodeError> {
        self.len32(field, v.len())?;
        self.buf.put_slice(v);
        Ok(())
    }

    /// `u32` length (`0xFFFFFFFF` = absent) + bytes.
    pub fn opt_bytes(&mut self, field: &'static str, v: Option<&[u8]>) -> Result<(), EncodeError> {
        match v {
            Some(v) => self.bytes(field, v),
            None => {
                self.buf.put_u32(NONE_U32);
                Ok(())
            }
        }
    }

    /// `u16` length + UTF-8.
    pub fn str(&mut self, field: &'static str, v: &str) -> Result<(), EncodeError> {
        let max = (NONE_U16 - 1) as usize;
        if v.len() > max {
            return Err(EncodeError::FieldTooLong {
                field,
                len: v.len(),
                max,
            });
        }
        self.buf.put_u16(v.len() as u16);
        self.buf.put_slice(v.as_bytes());
        Ok(())
    }

    /// `u16` length (`0xFFFF` = absent) + UTF-8.
    pub fn opt_str(&mut self, field: &'static str, v: Option<&str>) -> Result<(), EncodeError> {
        match v {
            Some(v) => self.str(field, v),
            None => {
                self.buf.put_u16(NONE_U16);
                Ok(())
            }
        }
    }

    /// `u32` length + a JSON document.
    pub fn json<T: serde::Serialize>(
        &mut self,
        field: &'static str,
        v: &T,
    ) -> Result<(), EncodeError> {
        let doc = serde_json::to_vec(v).map_err(|e| EncodeError::Json {
            field,
            reason: e.to_string(),
        })?;
        self.bytes(field, &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_truncated_prefix_is_an_error_not_a_panic() {
        let mut buf = BytesMut::new();
        let mut w = Writer::new(&mut buf);
        w.u64(7);
        w.str("s", "hello").unwrap();
        w.opt_bytes("b", Some(b"xyz")).unwrap();
        let full = buf.freeze();
        for cut in 0..full.len() {
            let mut r = Reader::new(full.slice(..cut));
            let res = (|| {
                r.u64()?;
                r.str("s")?;
                r.opt_bytes()
            })();
            assert!(
                matches!(res, Err(DecodeError::Truncated { .. })),
                "cut {cut}"
            );
        }
        let mut r = Reader::new(full);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.str("s").unwrap(), "hello");
        assert_eq!(r.opt_bytes().unwrap().as_deref(), Some(&b"xyz"[..]));
        r.finish().unwrap();
    }
}
