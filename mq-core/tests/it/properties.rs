//! Property tests over random interleavings of producers, consumers, acks, nacks, timeouts
//! and detaches, checked against the rules of the broker model.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use mq_core::{
    Broker, Clock, Consumer, Delivery, ManualClock, NewMessage, Offset, Timestamp, TopicConfig,
};
use proptest::prelude::*;

use super::{sub, topic};

/// Consumers 0 and 1 compete in group "work"; consumer 2 is alone in group "fan".
const GROUPS: [&str; 3] = ["work", "work", "fan"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        producer: u8,
        priority: u8,
        count: u8,
    },
    Poll {
        consumer: usize,
        max: usize,
    },
    Ack {
        consumer: usize,
        pick: usize,
    },
    Nack {
        consumer: usize,
        pick: usize,
        delay_ms: u64,
    },
    Advance {
        ms: u64,
    },
    Reattach {
        consumer: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..3, 1u8..5).prop_map(|(producer, priority, count)| Op::Publish { producer, priority, count }),
        3 => (0usize..3, 1usize..6).prop_map(|(consumer, max)| Op::Poll { consumer, max }),
        3 => (0usize..3, any::<usize>()).prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        1 => (0usize..3, any::<usize>(), prop_oneof![Just(0u64), 1u64..300]).prop_map(|(consumer, pick, delay_ms)| Op::Nack { consumer, pick, delay_ms }),
        1 => (1u64..250).prop_map(|ms| Op::Advance { ms }),
        1 => (0usize..3).prop_map(|consumer| Op::Reattach { consumer }),
    ]
}

struct Harness {
    broker: Broker,
    clock: ManualClock,
    consumers: Vec<Consumer>,
    /// What each consumer believes it holds (may be stale after a timeout).
    held: Vec<Vec<Offset>>,
    /// (producer, seq, priority) of each offset.
    published: Vec<(u8, u32, u8)>,
    next_seq: HashMap<u8, u32>,
    /// Per group: offsets acked (with how many successful acks each).
    acked: HashMap<&'static str, HashMap<u64, u32>>,
    /// Per group: offsets delivered at least once.
    seen: HashMap<&'static str, BTreeSet<u64>>,
    /// Per group and (producer, priority): the last seq first-delivered.
    first_order: HashMap<(&'static str, u8, u8), u32>,
}

impl Harness {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let broker = Broker::builder().clock(clock.clone()).build().unwrap();
        let mut config = TopicConfig::default();
        config.groups.max_deliveries = None;
        config.groups.ack_timeout = Duration::from_millis(100);
        broker.create_topic(&topic("p"), config).unwrap();
        let consumers = GROUPS
            .iter()
            .map(|g| broker.subscribe(sub(&topic("p"), g)).unwrap())
            .collect();
        Self {
            broker,
            clock,
            consumers,
            held: vec![Vec::new(); GROUPS.len()],
            published: Vec::new(),
            next_seq: HashMap::new(),
            acked: HashMap::new(),
            seen: HashMap::new(),
            first_order: HashMap::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Publish {
                producer,
                priority,
                count,
            } => {
                let mut batch = Vec::new();
                for _ in 0..count {
                    let seq = self.next_seq.entry(producer).or_default();
                    self.published.push((producer, *seq, priority));
                    batch.push(NewMessage::new(format!("{producer}:{seq}")).priority(priority));
                    *seq += 1;
                }
                let r = self.broker.publish_batch(&topic("p"), batch).unwrap();
                prop_assert_eq!(r.first.get() + r.count, self.published.len() as u64);
            }
            Op::Poll { consumer, max } => {
                let mut out = Vec::new();
                self.consumers[consumer].poll_batch(max, &mut out).unwrap();
                self.record(consumer, &out)?;
            }
            Op::Ack { consumer, pick } => {
                if !self.held[consumer].is_empty() {
                    let at = pick % self.held[consumer].len();
                    let offset = self.held[consumer].swap_remove(at);
                    if self.consumers[consumer].ack(offset).is_ok() {
                        *self
                            .acked
                            .entry(GROUPS[consumer])
                            .or_default()
                            .entry(offset.get())
                            .or_default() += 1;
                    }
                }
            }
            Op::Nack {
                consumer,
                pick,
                delay_ms,
            } => {
                if !self.held[consumer].is_empty() {
                    let at = pick % self.held[consumer].len();
                    let offset = self.held[consumer].swap_remove(at);
                    let delay = (delay_ms > 0).then(|| Duration::from_millis(delay_ms));
                    let _ = self.consumers[consumer].nack(offset, delay);
                }
            }
            Op::Advance { ms } => {
                self.clock.advance(Duration::from_millis(ms));
                let report = self.broker.tick(self.clock.now());
                prop_assert!(report.errors.is_empty());
                self.check_retention()?;
            }
            Op::Reattach { consumer } => {
                let fresh = self
                    .broker
                    .subscribe(sub(&topic("p"), GROUPS[consumer]))
                    .unwrap();
                self.consumers[consumer] = fresh;
                self.held[consumer].clear();
            }
        }
        Ok(())
    }

    fn record(&mut self, consumer: usize, out: &[Delivery]) -> Result<(), TestCaseError> {
        let group = GROUPS[consumer];
        // Within one batch nothing new arrives, so priorities never rise.
        for pair in out.windows(2) {
            prop_assert!(
                pair[0].message.priority >= pair[1].message.priority,
                "priority order broken: {:?}",
                out
            );
        }
        for d in out {
            let (producer, seq, priority) = self.published[d.offset().get() as usize];
            prop_assert_eq!(d.message.priority, priority);
            if d.deliveries == 1
                && let Some(prev) = self.first_order.insert((group, producer, priority), seq)
            {
                prop_assert!(
                    seq > prev,
                    "producer {} priority {} out of order",
                    producer,
                    priority
                );
            }
            self.seen.entry(group).or_default().insert(d.offset().get());
            self.held[consumer].push(d.offset());
        }
        Ok(())
    }

    /// Retention never deletes a message some group has not acked.
    fn check_retention(&self) -> Result<(), TestCaseError> {
        let first = self
            .broker
            .topic_stats(&topic("p"))
            .unwrap()
            .first_offset
            .get();
        for group in ["work", "fan"] {
            let acked = self.acked.get(group);
            for offset in 0..first {
                prop_assert!(
                    acked.is_some_and(|a| a.contains_key(&offset)),
                    "offset {} deleted before {} acked it",
                    offset,
                    group
                );
            }
        }
        Ok(())
    }

    /// Lets every consumer poll and ack until nothing is left, advancing time for timeouts.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..1000 {
            for (consumer, group) in GROUPS.iter().enumerate() {
                loop {
                    let mut out = Vec::new();
                    self.consumers[consumer].poll_batch(64, &mut out).unwrap();
                    if out.is_empty() {
                        break;
                    }
                    self.record(consumer, &out)?;
                    for offset in std::mem::take(&mut self.held[consumer]) {
                        if self.consumers[consumer].ack(offset).is_ok() {
                            *self
                                .acked
                                .entry(group)
                                .or_default()
                                .entry(offset.get())
                                .or_default() += 1;
                        }
                    }
                }
            }
            let stats = self.broker.topic_stats(&topic("p")).unwrap();
            if stats
                .groups
                .iter()
                .all(|g| g.pending == 0 && g.in_flight == 0)
            {
                return Ok(());
            }
            self.clock.advance(Duration::from_millis(100));
            self.broker.tick(self.clock.now());
            self.check_retention()?;
        }
        Err(TestCaseError::fail("messages never drained"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_interleavings_keep_every_delivery_rule(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op)?;
        }
        h.drain()?;
        let all: BTreeSet<u64> = (0..h.published.len() as u64).collect();
        for group in ["work", "fan"] {
            // Every group sees every message ...
            prop_assert_eq!(h.seen.get(group).cloned().unwrap_or_default(), all.clone());
            // ... and acks each exactly once, nothing lost.
            let acked = h.acked.get(group).cloned().unwrap_or_default();
            prop_assert_eq!(acked.len(), all.len());
            prop_assert!(acked.values().all(|&n| n == 1));
        }
        // Everything is acked by every group, so a last pass empties the topic.
        h.clock.advance(Duration::from_millis(1));
        h.broker.tick(h.clock.now());
        prop_assert_eq!(h.broker.topic_stats(&topic("p")).unwrap().retained, 0);
    }
}
