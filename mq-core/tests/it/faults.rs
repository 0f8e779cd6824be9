//! Faults injected under the `file` storage (`FaultInjector`): a write that fails part-way,
//! a cut-back that fails too, a failed fsync, a failed journal write. Nothing refused is
//! stored, nothing acknowledged is lost, no offset is used twice.

use mq_core::{
    AckMode, Broker, Error, FaultInjector, FileOptions, FileStorage, FsyncPolicy, ManualClock,
    NewMessage, Offset, Timestamp,
};

use super::storage::{drain, open};
use super::{sub, topic};

fn always() -> FileOptions {
    FileOptions {
        fsync: FsyncPolicy::Always,
        min_free_disk: Some(0),
        ..FileOptions::default()
    }
}

fn faulty(dir: &std::path::Path, clock: &ManualClock) -> (Broker, FaultInjector) {
    let storage = FileStorage::open(dir, always()).unwrap();
    let faults = storage.fault_injector();
    let broker = Broker::builder()
        .clock(clock.clone())
        .storage(storage)
        .build()
        .unwrap();
    (broker, faults)
}

fn send(b: &Broker, payload: &str) -> Result<Offset, Error> {
    b.publish(&topic("t"), NewMessage::new(payload.to_owned()))
        .map(|r| r.offset)
}

fn batch(b: &Broker, n: usize) -> Result<Offset, Error> {
    b.publish_batch(
        &topic("t"),
        (0..n)
            .map(|i| NewMessage::new(format!("batch {i}")))
            .collect(),
    )
    .map(|r| r.first)
}

fn stored(b: &Broker) -> Vec<(u64, String)> {
    let c = b
        .subscribe(sub(&topic("t"), "check").ack(AckMode::Auto))
        .unwrap();
    drain(&c)
        .iter()
        .map(|d| {
            (
                d.offset().0,
                String::from_utf8_lossy(&d.message.payload).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_write_that_fails_part_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (b, faults) = faulty(dir.path(), &clock);
    for i in 0..3 {
        send(&b, &format!("before {i}")).unwrap();
    }
    faults.fail_write_after(70);
    assert!(matches!(batch(&b, 5), Err(Error::Storage(_))));
    assert_eq!(send(&b, "after").unwrap(), Offset(3));
    drop(b);
    let b = open(dir.path(), &clock, always());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    let expected = vec![
        (0, "before 0".to_owned()),
        (1, "before 1".to_owned()),
        (2, "before 2".to_owned()),
        (3, "after".to_owned()),
    ];
    assert_eq!(stored(&b), expected);
}

#[test]
fn when_the_cut_back_fails_too_appends_go_on_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (b, faults) = faulty(dir.path(), &clock);
    send(&b, "first").unwrap();
    // One whole record of the batch and part of the next reach the file, and they stay.
    faults.fail_write_after(60);
    faults.fail_truncates(2);
    assert!(matches!(batch(&b, 3), Err(Error::Storage(_))));
    assert_eq!(send(&b, "acknowledged").unwrap(), Offset(1));
    drop(b);
    let b = open(dir.path(), &clock, always());
    let warnings = b.recovery_warnings().join("\n");
    assert!(
        warnings.contains("the next segment's copy is kept"),
        "{warnings}"
    );
    assert_eq!(
        stored(&b),
        vec![(0, "first".to_owned()), (1, "acknowledged".to_owned())]
    );
    assert_eq!(send(&b, "next").unwrap(), Offset(2));
}

#[test]
fn a_failed_fsync_fails_its_publishes_and_the_topic_goes_on_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (b, faults) = faulty(dir.path(), &clock);
    for i in 0..3 {
        send(&b, &format!("m{i}")).unwrap();
    }
    faults.fail_fsyncs(1);
    let err = send(&b, "unsynced").unwrap_err();
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    let after = send(&b, "after").unwrap();
    assert_eq!(after, Offset(4), "the refused offset is not reused");
    drop(b);
    let b = open(dir.path(), &clock, always());
    let kept = stored(&b);
    for (offset, payload) in [(0, "m0"), (1, "m1"), (2, "m2"), (4, "after")] {
        assert!(kept.contains(&(offset, payload.to_owned())), "{kept:?}");
    }
    assert_eq!(send(&b, "next").unwrap(), Offset(5));
}

#[test]
fn a_failed_journal_write_is_cut_back_and_later_acks_stay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (b, faults) = faulty(dir.path(), &clock);
    for i in 0..6 {
        send(&b, &format!("m{i}")).unwrap();
    }
    let c = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Manual))
        .unwrap();
    let got = drain(&c);
    assert_eq!(got.len(), 6);
    c.ack(got[0].offset()).unwrap();
    faults.fail_write_after(5);
    assert!(matches!(c.ack(got[1].offset()), Err(Error::Storage(_))));
    for d in &got[2..] {
        c.ack(d.offset()).unwrap();
    }
    drop(c);
    drop(b);
    let b = open(dir.path(), &clock, always());
    assert!(
        b.recovery_warnings().is_empty(),
        "{:?}",
        b.recovery_warnings()
    );
    let c = b
        .subscribe(sub(&topic("t"), "g").ack(AckMode::Manual))
        .unwrap();
    let again: Vec<u64> = drain(&c).iter().map(|d| d.offset().0).collect();
    assert_eq!(
        again,
        vec![1],
        "only the ack whose write failed is redelivered"
    );
}
