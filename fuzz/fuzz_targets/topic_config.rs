//! Any bytes as a topic configuration from a client: parsed and validated, or refused with
//! an error, never a panic; what parses writes back and parses to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mq_core::TopicConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<TopicConfig>(data) {
        let _ = config.validate();
        let written = serde_json::to_vec(&config).expect("writes");
        let again: TopicConfig = serde_json::from_slice(&written).expect("reads back");
        assert_eq!(again, config);
    }
});
