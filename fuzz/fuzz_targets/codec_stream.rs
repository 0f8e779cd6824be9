//! Any byte stream, cut into reads of any size, through the connection codec: frames, bad
//! frames or a typed error, never a panic, and at most one frame per 4 bytes (its length).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mq_transport::{ClientMsg, FrameCodec, ServerMsg};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut codec = FrameCodec::<ClientMsg, ServerMsg>::new(4096);
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert!(frames <= stream.len() / 4);
});
