//! Damage in the `file` storage's data dir: recovery keeps every valid record, names what
//! was lost, never reuses an offset, and never touches what it did not create.

use std::path::Path;

use mq_core::{
    AckMode, Broker, Error, FileOptions, FileStorage, LostRange, ManualClock, NewMessage, Offset,
    Timestamp,
};

use super::storage::{drain, open, segment_path, small_memory};
use super::{sub, topic};

fn publish(b: &Broker, t: &str, n: usize) {
    for i in 0..n {
        b.publish(&topic(t), NewMessage::new(format!("payload {i:04}")))
            .unwrap();
    }
    b.flush().unwrap();
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[at..at + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(path, &bytes).unwrap();
}

fn payloads(deliveries: &[mq_core::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
        .collect()
}

fn logs(dir: &Path, t: &str) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("topics").join(t))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

#[test]
fn damage_mid_segment_loses_only_the_damaged_records_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    publish(
        &open(dir.path(), &clock, FileOptions::default()),
        "flip",
        10,
    );
    let path = segment_path(dir.path(), "flip");
    let record = std::fs::metadata(&path).unwrap().len() as usize / 10;
    flip(&path, record * 6 + 2);
    let b = open(dir.path(), &clock, FileOptions::default());
    let warnings = b.recovery_warnings().join("\n");
    assert!(warnings.contains("offset 6 lost in"), "{warnings}");
    assert!(warnings.contains(&path.display().to_string()), "{warnings}");
    let stats = b.topic_stats(&topic("flip")).unwrap();
    assert_eq!(stats.retained, 9);
    assert_eq!(
        stats.lost,
        vec![LostRange {
            first: Offset(6),
            last: Offset(6)
        }]
    );
    let c = b
        .subscribe(sub(&topic("flip"), "g").ack(AckMode::Auto))
        .unwrap();
    let expected: Vec<String> = (0..10)
        .filter(|&i| i != 6)
        .map(|i| format!("payload {i:04}"))
        .collect();
    assert_eq!(payloads(&drain(&c)), expected);
    let g = &b.topic_stats(&topic("flip")).unwrap().groups[0];
    assert_eq!(
        (g.pending, g.in_flight),
        (0, 0),
        "the hole does not stall the group"
    );
    let next = b.publish(&topic("flip"), NewMessage::new("new")).unwrap();
    assert_eq!(next.offset, Offset(10), "no offset is reused");
    b.flush().unwrap();
    drop(c);
    drop(b);
    let b = open(dir.path(), &clock, FileOptions::default());
    let c = b
        .subscribe(sub(&topic("flip"), "g").ack(AckMode::Auto))
        .unwrap();
    assert_eq!(payloads(&drain(&c)), vec!["new".to_owned()]);
}

#[test]
fn damage_in_an_old_segment_left_on_disk_keeps_every_later_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    publish(&open(dir.path(), &clock, small_memory(1000)), "cold", 400);
    let before = logs(dir.path(), "cold");
    assert!(before.len() > 2);
    let len = std::fs::metadata(&before[0]).unwrap().len() as usize;
    flip(&before[0], len / 2);
    let b = open(dir.path(), &clock, small_memory(1000));
    assert_eq!(logs(dir.path(), "cold"), before, "no segment was deleted");
    let stats = b.topic_stats(&topic("cold")).unwrap();
    let lost: u64 = stats.lost.iter().map(|r| r.last.0 - r.first.0 + 1).sum();
    assert!((1..=2).contains(&lost), "{:?}", stats.lost);
    assert_eq!(stats.retained + lost, 400);
    assert_eq!(stats.next_offset, Offset(400));
    let c = b
        .subscribe(sub(&topic("cold"), "g").ack(AckMode::Auto))
        .unwrap();
    let kept = drain(&c);
    assert_eq!(kept.len() as u64, stats.retained);
    for d in &kept {
        let want = format!("payload {:04}", d.offset().0);
        assert_eq!(d.message.payload, want.as_bytes());
    }
    let warnings = b.recovery_warnings().join("\n");
    assert!(warnings.contains("lost in"), "{warnings}");
}

#[test]
fn offsets_lost_at_the_end_are_never_reused_when_a_group_saw_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        publish(&b, "tail", 20);
        let c = b
            .subscribe(sub(&topic("tail"), "g").ack(AckMode::Auto))
            .unwrap();
        assert_eq!(drain(&c).len(), 20);
        b.flush().unwrap();
    }
    // The last records never reached the disk (fsync interval, then a power cut).
    let path = segment_path(dir.path(), "tail");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let b = open(dir.path(), &clock, FileOptions::default());
    let stats = b.topic_stats(&topic("tail")).unwrap();
    assert_eq!(stats.next_offset, Offset(20), "{:?}", b.recovery_warnings());
    assert_eq!(stats.lost.last().map(|r| r.last), Some(Offset(19)));
    let next = b.publish(&topic("tail"), NewMessage::new("after")).unwrap();
    assert_eq!(next.offset, Offset(20));
    let c = b
        .subscribe(sub(&topic("tail"), "g").ack(AckMode::Auto))
        .unwrap();
    assert_eq!(payloads(&drain(&c)), vec!["after".to_owned()]);
}

#[test]
fn a_flipped_byte_in_the_group_journal_keeps_the_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        publish(&b, "j", 10);
        for g in ["a", "b", "c"] {
            let c = b
                .subscribe(sub(&topic("j"), g).ack(AckMode::Manual))
                .unwrap();
            let got = drain(&c);
            c.ack_batch(&got.iter().map(|d| d.offset()).collect::<Vec<_>>())
                .unwrap();
        }
        b.flush().unwrap();
    }
    let journal = dir.path().join("topics/j/groups.journal");
    let len = std::fs::metadata(&journal).unwrap().len() as usize;
    flip(&journal, len / 2 - 8);
    let b = open(dir.path(), &clock, FileOptions::default());
    let warnings = b.recovery_warnings().join("\n");
    assert!(warnings.contains("group journal"), "{warnings}");
    let stats = b.topic_stats(&topic("j")).unwrap();
    let names: Vec<_> = stats.groups.iter().map(|g| g.name.to_string()).collect();
    assert!(
        names.contains(&"c".to_owned()),
        "events after the damage kept: {names:?}"
    );
}

#[test]
fn a_stored_message_over_the_limit_refuses_the_start_and_names_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        b.publish(
            &topic("big"),
            NewMessage::new(vec![0u8; 1000]).header("h", "v"),
        )
        .unwrap();
        b.flush().unwrap();
    }
    let build = |limit| {
        Broker::builder()
            .clock(clock.clone())
            .storage(FileStorage::open(dir.path(), FileOptions::default()).unwrap())
            .max_message_size(limit)
            .build()
    };
    let err = build(1000).unwrap_err();
    assert!(
        matches!(&err, Error::StoredMessageTooLarge { topic: t, size: 1008, .. } if t.as_str() == "big"),
        "{err}"
    );
    let b = build(1008).unwrap();
    let at_limit = b
        .publish(
            &topic("big"),
            NewMessage::new(vec![0u8; 1001]).key("kkkkkkk"),
        )
        .unwrap();
    assert_eq!(at_limit.offset, Offset(1));
    let err = b
        .publish(
            &topic("big"),
            NewMessage::new(vec![0u8; 1002]).key("kkkkkkk"),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 1009,
                limit: 1008,
                ..
            }
        ),
        "{err}"
    );
}
