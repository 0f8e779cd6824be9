//! Any bytes as a segment's records, read as recovery reads them: what decodes agrees with
//! its metadata and encodes back to its bytes; damage is skipped forward; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mq_core::fuzzing::records(data));
