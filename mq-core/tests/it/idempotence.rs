//! Idempotent publishing: a numbered batch sent again is answered with its first offsets,
//! in memory and across restarts of file storage.

use mq_core::{
    Broker, Clock, Durability, FileOptions, FsyncPolicy, ManualClock, NewMessage, ProducerLimits,
    ProducerStamp, Timestamp,
};

use crate::storage::open;
use crate::topic;

fn batch(n: usize, tag: &str) -> Vec<NewMessage> {
    (0..n)
        .map(|i| NewMessage::new(format!("{tag}{i}")))
        .collect()
}

#[test]
fn a_batch_sent_again_is_not_stored_twice() {
    let broker = Broker::new();
    let t = topic("orders");
    let a = ProducerStamp {
        producer: 1,
        seq: 0,
    };
    let b = ProducerStamp {
        producer: 1,
        seq: 3,
    };
    let first = broker.publish_idempotent(&t, a, batch(3, "a")).unwrap();
    broker.publish(&t, NewMessage::new("plain")).unwrap();
    let second = broker.publish_idempotent(&t, b, batch(2, "b")).unwrap();
    assert_eq!(
        broker
            .publish_idempotent(&t, a, batch(3, "a"))
            .unwrap()
            .first,
        first.first
    );
    assert_eq!(
        broker
            .publish_idempotent(&t, b, batch(2, "b"))
            .unwrap()
            .first,
        second.first
    );
    assert_eq!(broker.topic_stats(&t).unwrap().retained, 6);
    // Another producer with the same numbers is another producer.
    let other = ProducerStamp {
        producer: 2,
        seq: 0,
    };
    broker.publish_idempotent(&t, other, batch(3, "c")).unwrap();
    assert_eq!(broker.topic_stats(&t).unwrap().retained, 9);
}

#[test]
fn a_batch_that_overlaps_what_was_stored_is_refused_with_the_numbers() {
    let broker = Broker::new();
    let t = topic("orders");
    let stamp = |seq| ProducerStamp { producer: 7, seq };
    broker
        .publish_idempotent(&t, stamp(0), batch(4, "a"))
        .unwrap();
    let err = broker
        .publish_idempotent(&t, stamp(2), batch(4, "b"))
        .unwrap_err();
    assert!(
        matches!(err, mq_core::Error::SequenceOverlap { last: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("resend batches exactly as first sent"),
        "{err}"
    );
    let err = broker
        .publish_idempotent(&t, stamp(1), batch(2, "b"))
        .unwrap_err();
    assert!(
        matches!(err, mq_core::Error::DuplicateBatch { .. }),
        "{err}"
    );
    assert_eq!(broker.topic_stats(&t).unwrap().retained, 4);
}

#[test]
fn producers_survive_a_restart_of_file_storage_and_duplicates_wait_for_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let t = topic("orders");
    let opts = || FileOptions {
        fsync: FsyncPolicy::Always,
        ..FileOptions::default()
    };
    let stamp = |seq| ProducerStamp {
        producer: 0xfeed,
        seq,
    };
    let (first, second) = {
        let broker = open(dir.path(), &clock, opts());
        let first = broker
            .publish_idempotent(&t, stamp(0), batch(5, "a"))
            .unwrap();
        let second = broker
            .publish_idempotent(&t, stamp(5), batch(5, "b"))
            .unwrap();
        (first, second)
    };
    // Twice: the second start reads what the first one wrote (nothing new).
    for _ in 0..2 {
        let broker = open(dir.path(), &clock, opts());
        let again = broker
            .publish_idempotent(&t, stamp(0), batch(5, "a"))
            .unwrap();
        assert_eq!((again.first, again.count), (first.first, 5));
        assert_eq!(again.durability, Durability::Fsynced);
        let again = broker
            .publish_idempotent(&t, stamp(5), batch(5, "b"))
            .unwrap();
        assert_eq!(again.first, second.first);
        assert_eq!(broker.topic_stats(&t).unwrap().retained, 10);
    }
    let broker = open(dir.path(), &clock, opts());
    let third = broker
        .publish_idempotent(&t, stamp(10), batch(1, "c"))
        .unwrap();
    assert_eq!(third.first.get(), 10);
}

#[test]
fn a_forgotten_producer_is_stored_again() {
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let broker = Broker::builder()
        .clock(clock.clone())
        .producer_limits(ProducerLimits {
            max_producers: 10,
            expiry: std::time::Duration::from_secs(60),
        })
        .build()
        .unwrap();
    let t = topic("orders");
    let stamp = ProducerStamp {
        producer: 3,
        seq: 0,
    };
    broker.publish_idempotent(&t, stamp, batch(1, "a")).unwrap();
    clock.advance(std::time::Duration::from_secs(61));
    broker.tick(clock.now());
    broker.publish_idempotent(&t, stamp, batch(1, "a")).unwrap();
    assert_eq!(broker.topic_stats(&t).unwrap().retained, 2);
}

#[test]
fn a_batch_cut_short_by_a_crash_is_removed_so_that_its_resend_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let t = topic("orders");
    let stamp = |seq| ProducerStamp { producer: 5, seq };
    {
        let broker = open(dir.path(), &clock, FileOptions::default());
        broker
            .publish_idempotent(&t, stamp(0), batch(3, "a"))
            .unwrap();
        broker
            .publish_idempotent(&t, stamp(3), batch(3, "b"))
            .unwrap();
    }
    // The second batch's write stopped before its last record, as a kill part-way through
    // a write leaves it.
    let segment = dir.path().join("topics/orders/00000000000000000000.log");
    let bytes = std::fs::read(&segment).unwrap();
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    assert_eq!(starts.len(), 6);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(starts[5] as u64).unwrap();
    drop(file);

    let broker = open(dir.path(), &clock, FileOptions::default());
    assert!(
        broker
            .recovery_warnings()
            .iter()
            .any(|w| w.contains("offsets 3–4") && w.contains("cut short by a crash")),
        "{:?}",
        broker.recovery_warnings()
    );
    assert_eq!(broker.topic_stats(&t).unwrap().retained, 3);
    let resent = broker
        .publish_idempotent(&t, stamp(3), batch(3, "b"))
        .unwrap();
    assert_eq!(resent.first.get(), 3);
    let consumer = broker.subscribe(crate::sub(&t, "audit")).unwrap();
    let mut payloads = Vec::new();
    let mut got = Vec::new();
    consumer.poll_batch(usize::MAX, &mut got).unwrap();
    for d in &got {
        payloads.push(String::from_utf8(d.message.payload.to_vec()).unwrap());
    }
    assert_eq!(payloads, ["a0", "a1", "a2", "b0", "b1", "b2"]);
}
