//! The data dir as operators meet it: topics that cannot be read are quarantined, foreign
//! files are left alone, the format version is checked, free space and open files are
//! bounded, and a dir written by the previous release opens whole.

use std::path::Path;

use mq_core::{
    AckMode, Broker, Error, FileOptions, FileStorage, ManualClock, NewMessage, Offset, Timestamp,
};

use super::storage::{drain, open};
use super::{sub, topic};

fn publish(b: &Broker, t: &str, n: usize) {
    for i in 0..n {
        b.publish(&topic(t), NewMessage::new(format!("payload {i:04}")))
            .unwrap();
    }
    b.flush().unwrap();
}

#[test]
fn a_topic_that_cannot_be_read_is_quarantined_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        publish(&b, "good", 3);
        publish(&b, "bad", 3);
    }
    std::fs::write(dir.path().join("topics/bad/config.json"), b"{ not json").unwrap();
    let b = open(dir.path(), &clock, FileOptions::default());
    assert_eq!(b.topic_stats(&topic("good")).unwrap().retained, 3);
    assert_eq!(b.quarantined().len(), 1);
    assert_eq!(b.stats().quarantined[0].name, topic("bad"));
    for err in [
        b.publish(&topic("bad"), NewMessage::new("x")).unwrap_err(),
        b.topic_stats(&topic("bad")).unwrap_err(),
        b.delete_topic(&topic("bad")).unwrap_err(),
    ] {
        assert!(matches!(err, Error::TopicQuarantined { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
    }
    assert!(
        b.recovery_warnings()
            .iter()
            .any(|w| w.contains("\"bad\" is quarantined")),
        "{:?}",
        b.recovery_warnings()
    );
    assert!(dir.path().join("topics/bad/config.json").exists());
}

#[test]
fn foreign_files_are_left_alone_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    drop(open(dir.path(), &clock, FileOptions::default()));
    let topics = dir.path().join("topics");
    for (sub_dir, file) in [("backup", "keep.txt"), ("my notes", "todo.txt")] {
        std::fs::create_dir_all(topics.join(sub_dir)).unwrap();
        std::fs::write(topics.join(sub_dir).join(file), b"mine").unwrap();
    }
    std::fs::write(topics.join("README"), b"mine").unwrap();
    let b = open(dir.path(), &clock, FileOptions::default());
    let warnings = b.recovery_warnings().join("\n");
    assert!(warnings.contains("my notes"), "{warnings}");
    assert!(warnings.contains("README"), "{warnings}");
    let err = b
        .publish(&topic("backup"), NewMessage::new("x"))
        .unwrap_err();
    assert!(matches!(err, Error::TopicQuarantined { .. }), "{err}");
    publish(&b, "fresh", 2);
    drop(b);
    drop(open(dir.path(), &clock, FileOptions::default()));
    assert_eq!(
        std::fs::read(topics.join("backup/keep.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(
        std::fs::read(topics.join("my notes/todo.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(std::fs::read(topics.join("README")).unwrap(), b"mine");
}

#[test]
fn an_interrupted_creation_leaves_no_topic_behind() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    drop(open(dir.path(), &clock, FileOptions::default()));
    let half = dir.path().join("topics/.creating-orders");
    std::fs::create_dir_all(&half).unwrap();
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(!half.exists());
    assert!(b.topics().is_empty());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
}

#[test]
fn a_data_dir_of_a_newer_format_is_refused_and_an_older_one_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    publish(&open(dir.path(), &clock, FileOptions::default()), "t", 2);
    let format = dir.path().join("FORMAT");
    assert_eq!(
        std::fs::read_to_string(&format).unwrap().trim(),
        mq_core::DATA_FORMAT.to_string()
    );
    // Written by a release before the format was recorded.
    std::fs::remove_file(&format).unwrap();
    let b = open(dir.path(), &clock, FileOptions::default());
    assert_eq!(b.topic_stats(&topic("t")).unwrap().retained, 2);
    drop(b);
    assert!(format.exists());
    std::fs::write(&format, "99\n").unwrap();
    let err = FileStorage::open(dir.path(), FileOptions::default()).unwrap_err();
    assert!(err.to_string().contains("newer mq-server"), "{err}");
}

#[test]
fn below_the_free_space_floor_publishes_are_refused_and_acks_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let storage = FileStorage::open(
        dir.path(),
        FileOptions {
            min_free_disk: Some(0),
            ..FileOptions::default()
        },
    )
    .unwrap();
    let floor = storage.free_space_floor();
    let b = Broker::builder()
        .clock(clock.clone())
        .storage(storage)
        .build()
        .unwrap();
    publish(&b, "t", 3);
    floor.set(u64::MAX / 2);
    let err = b.publish(&topic("t"), NewMessage::new("x")).unwrap_err();
    let Error::Storage(storage_error) = &err else {
        panic!("{err}")
    };
    assert_eq!(storage_error.kind, Some(std::io::ErrorKind::StorageFull));
    assert!(err.to_string().contains("almost full"), "{err}");
    let c = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Manual))
        .unwrap();
    let got = drain(&c);
    assert_eq!(got.len(), 3, "nothing refused was stored");
    c.ack_batch(&got.iter().map(|d| d.offset()).collect::<Vec<_>>())
        .unwrap();
    floor.set(0);
    let again = b.publish(&topic("t"), NewMessage::new("x")).unwrap();
    assert_eq!(again.offset, Offset(3));
}

#[test]
fn many_topics_keep_only_a_bounded_number_of_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let options = FileOptions {
        fsync: mq_core::FsyncPolicy::Always,
        max_open_files: Some(16),
        ..FileOptions::default()
    };
    let storage = FileStorage::open(dir.path(), options.clone()).unwrap();
    let b = Broker::builder()
        .clock(clock.clone())
        .storage(storage)
        .build()
        .unwrap();
    for round in 0..2 {
        for t in 0..100 {
            b.publish(
                &topic(&format!("t{t:03}")),
                NewMessage::new(format!("round {round}")),
            )
            .unwrap();
        }
    }
    for t in 0..100 {
        let c = b
            .subscribe(sub(&topic(&format!("t{t:03}")), "g").ack(AckMode::Manual))
            .unwrap();
        let got = drain(&c);
        assert_eq!(got.len(), 2);
        c.ack_batch(&got.iter().map(|d| d.offset()).collect::<Vec<_>>())
            .unwrap();
        assert!(
            files_open_under(dir.path()) <= 17,
            "the cache bounds open files"
        );
    }
    drop(b);
    let storage = FileStorage::open(dir.path(), options).unwrap();
    let b = Broker::builder()
        .clock(clock.clone())
        .storage(storage)
        .build()
        .unwrap();
    assert_eq!(b.topics().len(), 100);
    for t in 0..100 {
        let stats = b.topic_stats(&topic(&format!("t{t:03}"))).unwrap();
        assert_eq!((stats.retained, stats.groups[0].pending), (2, 0));
        let next = b
            .publish(&topic(&format!("t{t:03}")), NewMessage::new("after"))
            .unwrap();
        assert_eq!(next.offset, Offset(2));
    }
    assert!(
        files_open_under(dir.path()) <= 17,
        "the cache bounds open files"
    );
}

/// Descriptors of this process open on files under `dir` (16 cached files and the lock).
fn files_open_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `tests/fixtures/format-1` was written by the release before the format was recorded
/// (commit f16210b): `topics create limited --max-messages 100 --ack-timeout 45s`, five
/// messages to `orders` with priorities, keys and headers, two of them consumed by group
/// `billing`, three to `limited`, then SIGTERM.
#[test]
fn a_data_dir_written_by_the_previous_release_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1"),
        dir.path(),
    );
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    let orders = b.topic_stats(&topic("orders")).unwrap();
    assert_eq!((orders.retained, orders.next_offset), (5, Offset(5)));
    assert_eq!(
        (orders.groups[0].name.as_str(), orders.groups[0].pending),
        ("billing", 3)
    );
    let limited = b.describe(&topic("limited")).unwrap();
    assert_eq!(limited.config.retention.max_messages, Some(100));
    assert_eq!(
        limited.config.groups.ack_timeout,
        std::time::Duration::from_secs(45)
    );
    let c = b
        .subscribe(sub(&topic("orders"), "billing").ack(AckMode::Manual))
        .unwrap();
    let rest = drain(&c);
    let offsets: Vec<u64> = rest.iter().map(|d| d.offset().0).collect();
    assert_eq!(
        offsets,
        vec![4, 0, 3],
        "priority order, the acked ones gone"
    );
    let m = &rest[1].message;
    assert_eq!(m.key.as_deref(), Some(&b"k0"[..]));
    assert_eq!(m.header("n").map(|v| v.as_ref()), Some(&b"0"[..]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT"))
            .unwrap()
            .trim(),
        "2",
        "a format-1 dir opened for writing is marked with the format it may now hold"
    );
}
