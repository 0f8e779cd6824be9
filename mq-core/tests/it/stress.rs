//! A bounded multi-threaded stress test: 4 producers and 4 competing consumers plus a
//! fan-out group, all at once, checking the same invariants as the property tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mq_core::{AckMode, Broker, NewMessage};

use super::{sub, topic};

const PRODUCERS: u32 = 4;
const PER_PRODUCER: u32 = 20_000;

fn producer_and_seq(payload: &[u8]) -> (u32, u32) {
    let p = u32::from_le_bytes(payload[0..4].try_into().unwrap());
    let s = u32::from_le_bytes(payload[4..8].try_into().unwrap());
    (p, s)
}

#[test]
fn four_producers_four_consumers_lose_nothing_and_keep_producer_order() {
    let b = Broker::new();
    let t = topic("stress");
    let workers: Vec<_> = (0..4)
        .map(|_| b.subscribe(sub(&t, "work")).unwrap())
        .collect();
    let audit = b.subscribe(sub(&t, "audit").ack(AckMode::Auto)).unwrap();
    let start = Arc::new(Barrier::new(PRODUCERS as usize + 4));
    let done_producing = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (b, t, start) = (b.clone(), t.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for chunk in (0..PER_PRODUCER).collect::<Vec<_>>().chunks(50) {
                    let batch = chunk
                        .iter()
                        .map(|s| {
                            let mut payload = p.to_le_bytes().to_vec();
                            payload.extend_from_slice(&s.to_le_bytes());
                            NewMessage::new(payload)
                        })
                        .collect();
                    b.publish_batch(&t, batch).unwrap();
                }
            })
        })
        .collect();

    let consumers: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (start, done) = (Arc::clone(&start), Arc::clone(&done_producing));
            std::thread::spawn(move || {
                start.wait();
                let mut seen = Vec::new();
                let mut batch = Vec::new();
                loop {
                    batch.clear();
                    let n = c.poll_batch(64, &mut batch).unwrap();
                    if n == 0 {
                        if done.load(Ordering::Acquire)
                            && c.poll_batch(64, &mut batch).unwrap() == 0
                        {
                            break;
                        }
                        assert!(Instant::now() < deadline, "stress test ran out of time");
                        std::thread::yield_now();
                        continue;
                    }
                    let offsets: Vec<_> = batch.iter().map(|d| d.offset()).collect();
                    // Consumer 0 nacks every 7th batch to exercise redelivery.
                    if i == 0 && batch[0].deliveries == 1 && offsets[0].get() % 7 == 0 {
                        c.nack_batch(&offsets, None).unwrap();
                        continue;
                    }
                    seen.extend(batch.iter().map(|d| producer_and_seq(&d.message.payload)));
                    c.ack_batch(&offsets).unwrap();
                }
                seen
            })
        })
        .collect();

    for p in producers {
        p.join().unwrap();
    }
    done_producing.store(true, Ordering::Release);
    let mut per_producer: HashMap<u32, Vec<u32>> = HashMap::new();
    for c in consumers {
        for (p, s) in c.join().unwrap() {
            per_producer.entry(p).or_default().push(s);
        }
    }
    // Every message acked exactly once by the work group.
    for p in 0..PRODUCERS {
        let mut seqs = per_producer.remove(&p).unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..PER_PRODUCER).collect::<Vec<_>>(), "producer {p}");
    }
    // The fan-out group sees every message, each producer's in the order sent.
    let mut last: HashMap<u32, u32> = HashMap::new();
    let mut count = 0;
    let mut batch = Vec::new();
    while audit.poll_batch(1024, &mut batch).unwrap() > 0 {
        for d in batch.drain(..) {
            let (p, s) = producer_and_seq(&d.message.payload);
            if let Some(prev) = last.insert(p, s) {
                assert_eq!(s, prev + 1, "producer {p} out of order");
            }
            count += 1;
        }
    }
    assert_eq!(count, PRODUCERS * PER_PRODUCER);
    let work = b
        .groups(&t)
        .unwrap()
        .into_iter()
        .find(|g| g.name.as_str() == "work")
        .unwrap();
    assert_eq!(work.acked, u64::from(PRODUCERS * PER_PRODUCER));
    assert_eq!((work.pending, work.in_flight), (0, 0));
}
