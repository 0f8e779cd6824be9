//! Any bytes as a group journal, read from every position: an entry that decodes encodes
//! back to its bytes; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mq_core::fuzzing::journal(data));
