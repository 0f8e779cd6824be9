//! The broker-wide memory bound: many topics share one budget. The file storage lets
//! copies it can read back leave memory; a memory-only topic makes room by removing what
//! every group has acked, and only then refuses appends with `MemoryFull`.

use mq_core::{
    AckMode, Broker, Error, FileOptions, FileStorage, FsyncPolicy, NewMessage, Subscription,
};

use super::{sub, topic};

const BOUND: u64 = 200_000;

fn payload(i: usize) -> String {
    format!("{i:08}").repeat(12)
}

#[test]
fn twenty_memory_topics_share_one_bound_and_refuse_at_it() {
    let broker = Broker::builder().max_memory(BOUND).build().unwrap();
    let mut stored = 0;
    let refused = loop {
        let t = topic(&format!("t{}", stored % 20));
        match broker.publish(&t, NewMessage::new(payload(stored))) {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "the bound never refused an append");
    };
    assert!(
        matches!(refused, Error::MemoryFull { limit: BOUND, .. }),
        "{refused}"
    );
    let stats = broker.stats();
    assert!(stats.memory_bytes <= BOUND, "{} held", stats.memory_bytes);
    assert!(
        stats.memory_bytes > BOUND * 9 / 10,
        "{} held",
        stats.memory_bytes
    );
    assert_eq!((stats.memory_limit, stats.refused_memory), (Some(BOUND), 1));

    // Consumers keep consuming at the bound; what they ack makes room.
    let t0 = topic("t0");
    let c = broker.subscribe(sub(&t0, "g").ack(AckMode::Auto)).unwrap();
    let mut taken = Vec::new();
    c.poll_batch(usize::MAX, &mut taken).unwrap();
    assert_eq!(taken.len(), stored.div_ceil(20));
    assert_eq!(taken[0].message.payload, payload(0).as_bytes());
    broker
        .publish(&topic("t1"), NewMessage::new(payload(stored)))
        .unwrap();
    assert!(broker.stats().memory_bytes <= BOUND);
}

#[test]
fn file_topics_let_copies_leave_memory_and_never_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        fsync: FsyncPolicy::Never,
        ..FileOptions::default()
    };
    let broker = Broker::builder()
        .max_memory(BOUND)
        .storage(FileStorage::open(dir.path(), options).unwrap())
        .build()
        .unwrap();
    let per_topic = 1000;
    for i in 0..20 * per_topic {
        let t = topic(&format!("t{}", i % 20));
        broker.publish(&t, NewMessage::new(payload(i))).unwrap();
        assert!(broker.stats().memory_bytes <= BOUND);
    }
    for n in 0..20 {
        let c = broker
            .subscribe(Subscription::new(topic(&format!("t{n}"))))
            .unwrap();
        let mut taken = Vec::new();
        c.poll_batch(usize::MAX, &mut taken).unwrap();
        let want: Vec<String> = (0..per_topic).map(|k| payload(k * 20 + n)).collect();
        let got: Vec<String> = taken
            .iter()
            .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
            .collect();
        assert_eq!(got, want, "topic t{n}");
        assert!(broker.stats().memory_bytes <= BOUND);
    }
}
