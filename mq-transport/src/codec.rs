//! [`FrameCodec`]: frames over a byte stream, for tokio-util's `FramedRead`/`FramedWrite`.
//!
//! A frame is a 4-byte big-endian length and that many bytes. The maximum frame length is
//! checked on decode (as soon as the length is read) and on encode. Nothing is reserved for
//! a frame's body before it arrives: the buffer grows with the bytes received, which are
//! charged to the broker-wide [`ReadBudget`] while the frame is incomplete. What is buffered is parsed before more is read; the end of the
//! stream between frames is a clean close, in the middle of one an error.

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{BadFrame, WireMsg, decode_frame, encode_frame};
use crate::protocol::Frame;
use crate::read_budget::{Charge, ReadBudget};
use crate::traffic::Traffic;
use crate::wire::EncodeError;

/// Bytes of a frame's length field.
const LENGTH: usize = 4;

/// A failure that ends the connection: I/O, or a frame longer than the maximum.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame announced a length over the maximum; framing can no longer be trusted.
    #[error("a frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The length the frame announced (after its length field).
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The broker-wide pool for partially received frames is spent.
    #[error(
        "the server's buffers for partially received frames ({limit} bytes) are full: \
         try again later"
    )]
    ReadBudgetExhausted {
        /// The size of the pool.
        limit: usize,
    },
    /// A frame to send could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Decodes frames of kind `In` and encodes frames of kind `Out`.
///
/// Each decoded item is either a frame or a [`BadFrame`]: a frame whose content was wrong
/// but whose length was fine, so the stream stays usable.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    max_frame: usize,
    charge: Charge,
    traffic: Traffic,
    _kinds: PhantomData<fn(Out) -> In>,
}

/// Frames shorter than this are copied out of the read buffer into their own allocation:
/// half the buffer a connection reads into, so a frame never holds more than twice its size.
const OWN_ALLOCATION_BELOW: usize = crate::read_budget::UNCHARGED_BYTES / 2;

impl<In, Out> FrameCodec<In, Out> {
    /// A codec accepting frames up to `max_frame` bytes (after the length field).
    pub fn new(max_frame: usize) -> Self {
        Self::with_budget(max_frame, ReadBudget::default())
    }

    /// A codec whose partially received frames are charged to `budget`.
    pub fn with_budget(max_frame: usize, budget: ReadBudget) -> Self {
        Self {
            max_frame,
            charge: Charge::new(budget),
            traffic: Traffic::default(),
            _kinds: PhantomData,
        }
    }

    /// Frames this codec reads and writes are counted in `traffic`.
    #[must_use]
    pub fn with_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// The maximum frame size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl<In: WireMsg, Out> Decoder for FrameCodec<In, Out> {
    type Item = Result<Frame<In>, BadFrame>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let Some(prefix) = src.get(..LENGTH) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < LENGTH + len {
            if !self.charge.cover(src.len()) {
                return Err(CodecError::ReadBudgetExhausted {
                    limit: self.charge.budget().limit(),
                });
            }
            return Ok(None);
        }
        self.charge.release();
        self.traffic.read(LENGTH + len);
        src.advance(LENGTH);
        // What a frame decodes to (messages kept in memory for minutes) holds on to the
        // allocation its bytes are in. A small frame is copied into its own, so that it does
        // not keep the connection's whole read buffer alive; a large one fills most of the
        // allocation it is in and is taken without a copy.
        let body = if len < OWN_ALLOCATION_BELOW {
            let body = Bytes::copy_from_slice(&src[..len]);
            src.advance(len);
            body
        } else {
            src.split_to(len).freeze()
        };
        Ok(Some(decode_frame(body)))
    }
}

impl<In, Out: WireMsg> Encoder<&Frame<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame<Out>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let before = dst.len();
        encode_frame(frame, self.max_frame, dst)?;
        self.traffic.wrote(dst.len() - before);
        Ok(())
    }
}

impl<In, Out: WireMsg> Encoder<Frame<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame<Out>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode(&frame, dst)
    }
}
