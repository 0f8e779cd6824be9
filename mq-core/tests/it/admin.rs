//! Changing topics and groups in place: purge, alter, create and move groups, peek and
//! find offsets by time — and every change of a file-stored topic survives a restart.

use std::time::Duration;

use mq_core::{
    AckMode, Broker, FileOptions, FsyncPolicy, ManualClock, NewMessage, Offset, StartPosition,
    Subscription, Timestamp, TopicConfig,
};

use super::storage::{drain, open};
use super::{group, sub, topic};

fn file_broker(dir: &std::path::Path, clock: &ManualClock) -> Broker {
    let opts = FileOptions {
        fsync: FsyncPolicy::Never,
        ..FileOptions::default()
    };
    open(dir, clock, opts)
}

fn publish(b: &Broker, t: &str, n: usize) {
    for i in 0..n {
        b.publish(&topic(t), NewMessage::new(format!("m{i}")))
            .unwrap();
    }
}

#[test]
fn a_purge_drops_everything_for_good_and_offsets_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = file_broker(dir.path(), &clock);
    let c = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Manual))
        .unwrap();
    publish(&b, "t", 5);
    assert_eq!(b.purge_topic(&topic("t")).unwrap(), 5);
    assert!(drain(&c).is_empty());
    assert_eq!(b.topic_stats(&topic("t")).unwrap().retained, 0);
    drop(c);
    drop(b);
    let b = file_broker(dir.path(), &clock);
    let stats = b.topic_stats(&topic("t")).unwrap();
    assert_eq!((stats.retained, stats.next_offset), (0, Offset(5)));
    assert_eq!(
        b.publish(&topic("t"), NewMessage::new("after"))
            .unwrap()
            .offset,
        Offset(5)
    );
    let c = b.subscribe(sub(&topic("t"), "g")).unwrap();
    let got = drain(&c);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].message.payload[..], b"after");
}

#[test]
fn an_altered_config_applies_at_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = file_broker(dir.path(), &clock);
    b.create_topic(&topic("t"), TopicConfig::default()).unwrap();
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(2);
    b.alter_topic(&topic("t"), config.clone()).unwrap();
    publish(&b, "t", 2);
    assert!(b.publish(&topic("t"), NewMessage::new("x")).is_err());
    let mut bad = config.clone();
    bad.retention.max_messages = Some(0);
    assert!(b.alter_topic(&topic("t"), bad).is_err());
    drop(b);
    let b = file_broker(dir.path(), &clock);
    assert_eq!(b.describe(&topic("t")).unwrap().config, config);
}

#[test]
fn a_created_group_waits_at_its_start_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = file_broker(dir.path(), &clock);
    publish(&b, "t", 3);
    b.create_group(&topic("t"), &group("g"), StartPosition::Offset(Offset(1)))
        .unwrap();
    assert!(
        b.create_group(&topic("t"), &group("g"), StartPosition::Earliest)
            .is_err()
    );
    publish(&b, "t", 1);
    drop(b);
    let b = file_broker(dir.path(), &clock);
    let groups = b.groups(&topic("t")).unwrap();
    assert_eq!((groups[0].consumers, groups[0].pending), (0, 3));
    let c = b.subscribe(sub(&topic("t"), "g")).unwrap();
    let offsets: Vec<u64> = drain(&c).iter().map(|d| d.offset().get()).collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}

#[test]
fn seeking_moves_a_group_back_and_forth_durably() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = file_broker(dir.path(), &clock);
    publish(&b, "t", 4);
    let c = b
        .subscribe(
            Subscription::new(topic("t"))
                .group(group("g"))
                .ack(AckMode::Manual),
        )
        .unwrap();
    let first = drain(&c);
    c.ack(first[0].offset()).unwrap();
    b.seek_group(&topic("t"), &group("g"), StartPosition::Offset(Offset(2)))
        .unwrap();
    // What was in flight went back: acking it now is refused.
    assert!(c.ack(first[1].offset()).is_err());
    let offsets: Vec<u64> = drain(&c).iter().map(|d| d.offset().get()).collect();
    assert_eq!(offsets, vec![2, 3]);
    b.seek_group(&topic("t"), &group("g"), StartPosition::Earliest)
        .unwrap();
    drop(c);
    drop(b);
    let b = file_broker(dir.path(), &clock);
    let c = b.subscribe(sub(&topic("t"), "g")).unwrap();
    let offsets: Vec<u64> = drain(&c).iter().map(|d| d.offset().get()).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
}

#[test]
fn peek_reads_without_touching_any_group_and_times_find_offsets() {
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = Broker::builder().clock(clock.clone()).build().unwrap();
    let c = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Manual))
        .unwrap();
    publish(&b, "t", 2);
    clock.advance(Duration::from_secs(60));
    publish(&b, "t", 2);
    let peeked = b
        .peek(&topic("t"), StartPosition::Offset(Offset(1)), 2)
        .unwrap();
    let offsets: Vec<u64> = peeked.iter().map(|m| m.offset.get()).collect();
    assert_eq!(offsets, vec![1, 2]);
    assert_eq!(b.groups(&topic("t")).unwrap()[0].pending, 4);
    assert_eq!(drain(&c).len(), 4);
    assert_eq!(
        b.offset_at(&topic("t"), Timestamp::from_millis(30_000))
            .unwrap(),
        Offset(2)
    );
    assert_eq!(
        b.offset_at(&topic("t"), Timestamp::from_millis(999_999))
            .unwrap(),
        Offset(4)
    );
}

#[test]
fn a_start_given_for_an_existing_group_is_refused_and_resume_continues() {
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let b = Broker::builder().clock(clock.clone()).build().unwrap();
    publish(&b, "t", 3);
    let first = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Auto))
        .unwrap();
    assert_eq!(drain(&first).len(), 3);
    drop(first);
    let err = b
        .subscribe(sub(&topic("t"), "g").start(StartPosition::Offset(Offset(0))))
        .unwrap_err();
    assert!(matches!(err, mq_core::Error::StartConflict { .. }), "{err}");
    assert!(err.to_string().contains("mq groups seek"), "{err}");
    // The version-1 rule: the start is ignored for an existing group.
    let mut legacy = sub(&topic("t"), "g").start(StartPosition::Earliest);
    legacy.start_if_new = true;
    assert!(drain(&b.subscribe(legacy).unwrap()).is_empty());
    // Without a start, the group continues where it is.
    publish(&b, "t", 1);
    let again = b.subscribe(sub(&topic("t"), "g")).unwrap();
    let offsets: Vec<u64> = drain(&again).iter().map(|d| d.offset().get()).collect();
    assert_eq!(offsets, vec![3]);
}
