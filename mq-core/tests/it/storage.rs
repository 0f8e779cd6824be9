//! The `file` storage: restarts keep everything acknowledged, a torn tail is cut off, retention
//! deletes whole segments, and a property test holds it to the memory storage's behaviour.

use std::path::Path;
use std::time::Duration;

use mq_core::{
    AckMode, Broker, Clock, Consumer, Durability, FileOptions, FileStorage, FsyncPolicy,
    ManualClock, NewMessage, Offset, Timestamp, TopicConfig,
};
use proptest::prelude::*;

use super::{sub, topic};

fn options(fsync: FsyncPolicy, segment_bytes: u64) -> FileOptions {
    FileOptions {
        fsync,
        segment_bytes,
        ..FileOptions::default()
    }
}

/// Options keeping only `resident_bytes` of each topic in memory.
pub(crate) fn small_memory(resident_bytes: u64) -> FileOptions {
    FileOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: 4096,
        resident_bytes,
        ..FileOptions::default()
    }
}

pub(crate) fn open(dir: &Path, clock: &ManualClock, opts: FileOptions) -> Broker {
    Broker::builder()
        .clock(clock.clone())
        .storage(FileStorage::open(dir, opts).unwrap())
        .build()
        .unwrap()
}

pub(crate) fn drain(c: &Consumer) -> Vec<mq_core::Delivery> {
    let mut out = Vec::new();
    c.poll_batch(usize::MAX, &mut out).unwrap();
    out
}

pub(crate) fn segment_files(dir: &Path, t: &str) -> usize {
    std::fs::read_dir(dir.join("topics").join(t))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

#[test]
fn a_restart_keeps_messages_offsets_headers_priorities_groups_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let t = topic("orders");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(100);
    config.groups.max_deliveries = Some(7);
    let before;
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        b.create_topic(&t, config.clone()).unwrap();
        for i in 0..10u8 {
            b.publish(
                &t,
                NewMessage::new(format!("m{i}"))
                    .priority(i % 3)
                    .key(format!("k{i}"))
                    .header("n", vec![i]),
            )
            .unwrap();
        }
        let g = b.subscribe(sub(&t, "g")).unwrap();
        let got = drain(&g);
        // Ack the first four deliveries (priority 2 first), leave two in flight.
        let offsets: Vec<Offset> = got.iter().map(|d| d.offset()).collect();
        g.ack_batch(&offsets[..4]).unwrap();
        before = (
            offsets[4..].to_vec(),
            got.iter().map(|d| d.offset()).collect::<Vec<_>>(),
        );
        let _h = b.subscribe(sub(&t, "h").ack(AckMode::Auto)).unwrap();
        b.flush().unwrap();
    }
    let b = open(dir.path(), &clock, FileOptions::default());
    let info = b.describe(&t).unwrap();
    assert_eq!(info.config, config);
    assert_eq!(
        (
            info.stats.published,
            info.stats.retained,
            info.stats.next_offset
        ),
        (10, 10, Offset(10))
    );
    let names: Vec<String> = info
        .stats
        .groups
        .iter()
        .map(|g| g.name.to_string())
        .collect();
    assert_eq!(names, ["g", "h"]);
    // Every message comes back to a new group exactly as it was published.
    let fresh = b.subscribe(sub(&t, "fresh").ack(AckMode::Auto)).unwrap();
    let all = drain(&fresh);
    assert_eq!(all.len(), 10);
    for d in &all {
        let i = d.offset().get() as u8;
        assert_eq!(d.message.payload, format!("m{i}").as_bytes());
        assert_eq!(d.message.priority, i % 3);
        assert_eq!(d.message.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(d.message.header("n").map(|v| v.to_vec()), Some(vec![i]));
        assert_eq!(d.message.timestamp, Timestamp::from_millis(1_000));
    }
    // Group g gets everything but what it acked; what was in flight comes back as a
    // second delivery.
    let g_stats = b
        .groups(&t)
        .unwrap()
        .into_iter()
        .find(|g| g.name.as_str() == "g")
        .unwrap();
    assert_eq!(g_stats.pending, 6);
    let g = b.subscribe(sub(&t, "g")).unwrap();
    let again = drain(&g);
    let acked: Vec<Offset> = before.1[..4].to_vec();
    assert!(
        again.iter().all(|d| !acked.contains(&d.offset())),
        "an acked message came back"
    );
    assert_eq!(again.len(), 6);
    for d in &again {
        let want = if before.0.contains(&d.offset()) { 2 } else { 1 };
        assert_eq!(d.deliveries, want, "offset {}", d.offset());
    }
    // Publishing goes on at the next offset.
    assert_eq!(
        b.publish(&t, NewMessage::new("after")).unwrap().offset,
        Offset(10)
    );
}

#[test]
fn fsync_always_reports_fsynced_and_interval_reports_written() {
    let clock = ManualClock::new(Timestamp::from_millis(1));
    for (policy, want) in [
        (FsyncPolicy::Always, Durability::Fsynced),
        (FsyncPolicy::Interval, Durability::Written),
        (FsyncPolicy::Never, Durability::Written),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path(), &clock, options(policy, 1 << 20));
        assert_eq!(
            b.publish(&topic("t"), NewMessage::new("x"))
                .unwrap()
                .durability,
            want
        );
    }
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FileStorage::open(dir.path(), FileOptions::default()).unwrap();
    let err = FileStorage::open(dir.path(), FileOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("in use by another mq-server"),
        "{err}"
    );
}

#[test]
fn deleting_a_topic_removes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let b = open(dir.path(), &clock, FileOptions::default());
    b.publish(&topic("gone"), NewMessage::new("x")).unwrap();
    assert!(dir.path().join("topics/gone").exists());
    b.delete_topic(&topic("gone")).unwrap();
    assert!(!dir.path().join("topics/gone").exists());
    drop(b);
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(b.topics().is_empty());
}

#[test]
fn retention_deletes_whole_segments_once_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let b = open(dir.path(), &clock, options(FsyncPolicy::Never, 1024));
    let t = topic("rolling");
    let c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    for i in 0..200 {
        b.publish(&t, NewMessage::new(format!("message number {i:04}")))
            .unwrap();
    }
    assert!(segment_files(dir.path(), "rolling") > 5);
    assert_eq!(drain(&c).len(), 200);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.tick(clock.now()).deleted, 200);
    assert_eq!(
        segment_files(dir.path(), "rolling"),
        1,
        "only the open segment stays"
    );
    drop(c);
    drop(b);
    let b = open(dir.path(), &clock, options(FsyncPolicy::Never, 1024));
    let stats = b.topic_stats(&t).unwrap();
    assert_eq!((stats.retained, stats.next_offset), (0, Offset(200)));
    assert_eq!(
        b.publish(&t, NewMessage::new("next")).unwrap().offset,
        Offset(200)
    );
}

pub(crate) fn segment_path(dir: &Path, t: &str) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("topics").join(t))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn a_segment_cut_mid_record_keeps_every_record_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        for i in 0..10 {
            b.publish(&topic("torn"), NewMessage::new(format!("payload {i}")))
                .unwrap();
        }
        b.flush().unwrap();
    }
    let path = segment_path(dir.path(), "torn");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let b = open(dir.path(), &clock, FileOptions::default());
    assert_eq!(b.recovery_warnings().len(), 1);
    assert!(
        b.recovery_warnings()[0].contains("topic \"torn\""),
        "{:?}",
        b.recovery_warnings()
    );
    let stats = b.topic_stats(&topic("torn")).unwrap();
    assert_eq!((stats.retained, stats.next_offset), (9, Offset(9)));
    assert_eq!(
        b.publish(&topic("torn"), NewMessage::new("again"))
            .unwrap()
            .offset,
        Offset(9)
    );
    drop(b);
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(b.recovery_warnings().is_empty(), "the repair sticks");
    assert_eq!(b.topic_stats(&topic("torn")).unwrap().retained, 10);
}

#[test]
fn the_open_segment_is_grown_ahead_of_its_records_and_cut_back_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let b = open(dir.path(), &clock, FileOptions::default());
    b.publish(&topic("grown"), NewMessage::new("one")).unwrap();
    b.flush().unwrap();
    let path = segment_path(dir.path(), "grown");
    let grown = std::fs::metadata(&path).unwrap().len();
    assert!(grown >= 64 * 1024, "grown ahead to {grown} bytes");
    drop(b);
    let closed = std::fs::metadata(&path).unwrap().len();
    assert!(closed < 100, "cut back to its one record: {closed} bytes");
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    assert_eq!(b.topic_stats(&topic("grown")).unwrap().retained, 1);
}

#[test]
fn a_rolled_segment_holds_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let b = open(dir.path(), &clock, options(FsyncPolicy::Interval, 4096));
    for i in 0..200 {
        b.publish(&topic("rolled"), NewMessage::new(format!("payload {i:04}")))
            .unwrap();
    }
    b.flush().unwrap();
    assert!(segment_files(dir.path(), "rolled") > 2);
    let mut logs: Vec<_> = std::fs::read_dir(dir.path().join("topics").join("rolled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop();
    for sealed in logs {
        let len = std::fs::metadata(&sealed).unwrap().len();
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(
            (4096..4096 + 64).contains(&len) && bytes.last() != Some(&0),
            "{} is {len} bytes and ends in a record",
            sealed.display()
        );
    }
}

#[test]
fn zeros_after_the_last_record_are_where_appends_go_on_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let publish = |b: &Broker, from: usize, to: usize| {
        for i in from..to {
            b.publish(&topic("crashed"), NewMessage::new(format!("payload {i}")))
                .unwrap();
        }
        b.flush().unwrap();
    };
    publish(&open(dir.path(), &clock, FileOptions::default()), 0, 10);
    // What a crash leaves of a segment grown ahead of its records.
    let path = segment_path(dir.path(), "crashed");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + 300 * 1024)
        .unwrap();
    let report = FileStorage::check(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.messages, 10);
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    publish(&b, 10, 15);
    drop(b);
    let b = open(dir.path(), &clock, FileOptions::default());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    let c = b
        .subscribe(sub(&topic("crashed"), "g").ack(AckMode::Auto))
        .unwrap();
    let got: Vec<_> = drain(&c)
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
        .collect();
    let want: Vec<_> = (0..15).map(|i| format!("payload {i}")).collect();
    assert_eq!(got, want);
}

#[derive(Debug, Clone)]
enum Op {
    Publish { count: u8, priority: u8 },
    ConsumeAndAck { count: usize },
    ConsumeNoAck { count: usize },
    Tick,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..6, 0u8..3).prop_map(|(count, priority)| Op::Publish { count, priority }),
        2 => (1usize..5).prop_map(|count| Op::ConsumeAndAck { count }),
        1 => (1usize..3).prop_map(|count| Op::ConsumeNoAck { count }),
        1 => Just(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

struct Side {
    broker: Option<Broker>,
    consumer: Option<Consumer>,
    log: Vec<(u64, u32)>,
}

impl Side {
    fn broker(&self) -> &Broker {
        self.broker.as_ref().unwrap()
    }

    fn consumer(&mut self) -> &Consumer {
        if self.consumer.is_none() {
            self.consumer = Some(self.broker().subscribe(sub(&topic("p"), "g")).unwrap());
        }
        self.consumer.as_ref().unwrap()
    }

    fn consume(&mut self, count: usize, ack: bool) {
        let mut out = Vec::new();
        self.consumer().poll_batch(count, &mut out).unwrap();
        self.log
            .extend(out.iter().map(|d| (d.offset().get(), d.deliveries)));
        if ack {
            let offsets: Vec<_> = out.iter().map(|d| d.offset()).collect();
            self.consumer().ack_batch(&offsets).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn file_storage_behaves_like_memory_storage_across_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(1));
        // A tiny memory budget: most reads go back to disk.
        let opts = small_memory(200);
        let mut memory = Side { broker: Some(Broker::builder().clock(clock.clone()).build().unwrap()), consumer: None, log: Vec::new() };
        let mut file = Side { broker: Some(open(dir.path(), &clock, opts.clone())), consumer: None, log: Vec::new() };
        for op in &ops {
            for side in [&mut memory, &mut file] {
                match *op {
                    Op::Publish { count, priority } => {
                        let batch = (0..count).map(|i| NewMessage::new(vec![i; 20]).priority(priority)).collect();
                        side.broker().publish_batch(&topic("p"), batch).unwrap();
                    }
                    Op::ConsumeAndAck { count } => side.consume(count, true),
                    Op::ConsumeNoAck { count } => side.consume(count, false),
                    Op::Tick => {
                        side.broker().tick(clock.now());
                    }
                    Op::Restart => side.consumer = None,
                }
            }
            if matches!(op, Op::Restart) {
                // The file broker really restarts; the memory one only loses its consumer.
                drop(file.broker.take());
                file.broker = Some(open(dir.path(), &clock, opts.clone()));
            }
            clock.advance(Duration::from_millis(1));
            let (m, f) = (memory.broker(), file.broker());
            if m.topics().is_empty() {
                prop_assert!(f.topics().is_empty());
                continue;
            }
            let (ms, fs) = (m.topic_stats(&topic("p")).unwrap(), f.topic_stats(&topic("p")).unwrap());
            prop_assert_eq!((ms.retained, ms.next_offset, ms.first_offset), (fs.retained, fs.next_offset, fs.first_offset));
            let pending = |s: &mq_core::TopicStats| s.groups.iter().map(|g| (g.name.to_string(), g.pending, g.in_flight)).collect::<Vec<_>>();
            prop_assert_eq!(pending(&ms), pending(&fs));
        }
        memory.consume(usize::MAX, true);
        file.consume(usize::MAX, true);
        prop_assert_eq!(&memory.log, &file.log);
    }
}

#[test]
fn messages_beyond_the_memory_budget_are_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let t = topic("big");
    let payload = |i: u32| format!("message {i:05} ").repeat(8);
    {
        let b = open(dir.path(), &clock, small_memory(10_000));
        for chunk in (0..3000u32).collect::<Vec<_>>().chunks(100) {
            let batch = chunk
                .iter()
                .map(|&i| NewMessage::new(payload(i)).priority((i % 3) as u8))
                .collect();
            b.publish_batch(&t, batch).unwrap();
        }
        // A group that starts late reads everything, mostly from disk, in priority order.
        let late = b.subscribe(sub(&t, "late").ack(AckMode::Auto)).unwrap();
        let got = drain(&late);
        assert_eq!(got.len(), 3000);
        assert!(
            got.windows(2)
                .all(|w| w[0].message.priority >= w[1].message.priority)
        );
        for d in &got {
            assert_eq!(
                d.message.payload,
                payload(d.offset().get() as u32).as_bytes()
            );
        }
        let _slow = b.subscribe(sub(&t, "slow")).unwrap();
    }
    // After a restart only the newest segments are loaded; the rest comes from disk.
    let b = open(dir.path(), &clock, small_memory(10_000));
    let slow = b.subscribe(sub(&t, "slow").ack(AckMode::Manual)).unwrap();
    let got = drain(&slow);
    assert_eq!(got.len(), 1000, "the prefetch window");
    slow.ack_batch(&got.iter().map(|d| d.offset()).collect::<Vec<_>>())
        .unwrap();
    let mut seen: Vec<u64> = got.iter().map(|d| d.offset().get()).collect();
    loop {
        let more = drain(&slow);
        if more.is_empty() {
            break;
        }
        for d in &more {
            assert_eq!(
                d.message.payload,
                payload(d.offset().get() as u32).as_bytes()
            );
        }
        slow.ack_batch(&more.iter().map(|d| d.offset()).collect::<Vec<_>>())
            .unwrap();
        seen.extend(more.iter().map(|d| d.offset().get()));
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..3000).collect::<Vec<_>>());
}

#[test]
fn a_topic_deleted_and_created_again_under_a_live_consumer_keeps_its_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let t = topic("reborn");
    {
        let b = open(dir.path(), &clock, FileOptions::default());
        let old = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
        for i in 0..5 {
            b.publish(&t, NewMessage::new(format!("old {i}"))).unwrap();
        }
        drain(&old);
        clock.advance(Duration::from_millis(1));
        b.tick(clock.now());
        b.delete_topic(&t).unwrap();
        b.publish(&t, NewMessage::new("new 0")).unwrap();
        // The old consumer (and the old topic state it holds) goes only now.
        drop(old);
        b.flush().unwrap();
    }
    let b = open(dir.path(), &clock, FileOptions::default());
    let stats = b.topic_stats(&t).unwrap();
    assert_eq!(
        (stats.retained, stats.first_offset, stats.next_offset),
        (1, Offset(0), Offset(1))
    );
}
