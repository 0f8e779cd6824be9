//! Tests of `mq-core` through its public API: one test per rule of the broker model, property tests
//! over random interleavings, and a bounded multi-threaded stress test.

// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod admin;
mod damage;
mod faults;
mod idempotence;
mod layout;
mod locking;
mod memory_bound;
mod properties;
mod rules;
mod storage;
mod stress;

use mq_core::{Broker, GroupName, ManualClock, Subscription, Timestamp, TopicName};

/// A broker on a manual clock standing at t = 1000 ms.
fn broker_at_1000() -> (Broker, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_millis(1000));
    let broker = Broker::builder()
        .clock(clock.clone())
        .build()
        .expect("memory broker");
    (broker, clock)
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("valid topic name")
}

fn group(name: &str) -> GroupName {
    GroupName::new(name).expect("valid group name")
}

/// A subscription to `t` in durable group `g`.
fn sub(t: &TopicName, g: &str) -> Subscription {
    Subscription::new(t.clone()).group(group(g))
}
