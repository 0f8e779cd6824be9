//! A client frame body of any bytes: decoded without a panic; what decodes encodes back to
//! the same frame (but for the unknown keys of a topic config, which are reported, not
//! kept).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mq_transport::{ClientMsg, DEFAULT_MAX_FRAME, Frame, decode_frame, encode_frame};

/// The frame as its encoding keeps it: unknown config keys are reported, not sent on.
fn kept(mut frame: Frame<ClientMsg>) -> Frame<ClientMsg> {
    if let ClientMsg::CreateTopic { unknown_keys, .. }
    | ClientMsg::AlterTopic { unknown_keys, .. } = &mut frame.msg
    {
        unknown_keys.clear();
    }
    frame
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame::<ClientMsg>(Bytes::copy_from_slice(data)).map(kept) {
        let mut buf = BytesMut::new();
        if encode_frame(&frame, DEFAULT_MAX_FRAME, &mut buf).is_ok() {
            let again = decode_frame::<ClientMsg>(buf.freeze().slice(4..)).expect("re-decodes");
            assert_eq!(again, frame);
        }
    }
});
