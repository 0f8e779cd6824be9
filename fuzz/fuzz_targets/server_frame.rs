//! A server frame body of any bytes: decoded without a panic; what decodes encodes back to
//! the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mq_transport::{DEFAULT_MAX_FRAME, ServerMsg, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame::<ServerMsg>(Bytes::copy_from_slice(data)) {
        let mut buf = BytesMut::new();
        if encode_frame(&frame, DEFAULT_MAX_FRAME, &mut buf).is_ok() {
            let again = decode_frame::<ServerMsg>(buf.freeze().slice(4..)).expect("re-decodes");
            assert_eq!(again, frame);
        }
    }
});
