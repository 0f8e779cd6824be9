//! Tests of the `mq` binary: `--help` snapshots for every command, and end-to-end runs
//! against a real `mq-server` process on a free port.

// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod errors;
mod harness;
mod help;
mod restart;
mod tour;
