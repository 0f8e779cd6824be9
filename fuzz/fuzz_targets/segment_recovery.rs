//! Any bytes as the segment file of a stored topic: the broker recovers by the storage
//! rules (damage skipped and reported, or the topic quarantined), never a panic, and
//! serves what it recovered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mq_core::{Broker, FileOptions, FileStorage, FsyncPolicy, NewMessage, Subscription, TopicName};

fn open(dir: &std::path::Path) -> Option<Broker> {
    let options = FileOptions {
        fsync: FsyncPolicy::Never,
        ..FileOptions::default()
    };
    Broker::builder()
        .storage(FileStorage::open(dir, options).ok()?)
        .build()
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = TopicName::new("t").expect("name");
    {
        let broker = open(dir.path()).expect("a fresh data dir opens");
        broker
            .publish(&topic, NewMessage::new("seed"))
            .expect("publish");
    }
    let topic_dir = dir.path().join("topics").join("t");
    let segment = std::fs::read_dir(&topic_dir)
        .expect("topic dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment file");
    std::fs::write(&segment, data).expect("write");
    if let Some(broker) = open(dir.path())
        && let Ok(consumer) = broker.subscribe(Subscription::new(topic))
    {
        let mut out = Vec::new();
        let _ = consumer.poll_batch(usize::MAX, &mut out);
    }
});
