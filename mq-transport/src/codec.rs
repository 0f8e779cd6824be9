//! [`FrameCodec`]: frames over a byte stream, for tokio-util's `FramedRead`/`FramedWrite`.
//!
//! Built on [`LengthDelimitedCodec`] with the same 4-byte big-endian length prefix. The
//! maximum frame length is checked on decode (before any buffer is reserved for the body)
//! and on encode.

use std::marker::PhantomData;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::frame::{BadFrame, WireMsg, decode_frame, encode_frame};
use crate::protocol::Frame;
use crate::wire::EncodeError;

/// A failure that ends the connection: I/O, or a frame longer than the maximum.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed (or a frame was longer than the maximum: `InvalidData`).
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
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
    inner: LengthDelimitedCodec,
    max_frame: usize,
    _kinds: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec accepting frames up to `max_frame` bytes (after the length field).
    pub fn new(max_frame: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .big_endian()
            .max_frame_length(max_frame)
            .new_codec();
        Self {
            inner,
            max_frame,
            _kinds: PhantomData,
        }
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
        match self.inner.decode(src)? {
            Some(body) => Ok(Some(decode_frame(body.freeze()))),
            None => Ok(None),
        }
    }
}

impl<In, Out: WireMsg> Encoder<&Frame<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame<Out>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode_frame(frame, self.max_frame, dst)?;
        Ok(())
    }
}

impl<In, Out: WireMsg> Encoder<Frame<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame<Out>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode_frame(&frame, self.max_frame, dst)?;
        Ok(())
    }
}
