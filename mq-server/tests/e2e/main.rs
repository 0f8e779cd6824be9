//! End-to-end tests: the real `mq-server` binary on 127.0.0.1:0, real sockets, the real
//! client SDK (and hand-written frames for bad input). One test binary keeps link times
//! down.

// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod behaviour;
mod dashboard;
mod diagnosis;
mod durability;
mod edges;
mod harness;
mod http;
mod limits;
mod load;
mod ops;
mod reconnect;
mod tls;
mod users;

use mq_core::{GroupName, TopicName};

fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

fn group(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}
