//! The cleaner pass ([`clean`], run by [`crate::Broker::tick`]): ack timeouts and delayed
//! nacks come due, poison messages go to their dead-letter topics, and retention trims
//! every topic.

use std::sync::Arc;
use std::task::Waker;

use crate::clock::Timestamp;
use crate::dlq;
use crate::error::Error;
use crate::registry::Registry;
use crate::topic::Topic;

/// What one cleaner pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Messages deleted by retention.
    pub deleted: u64,
    /// Messages moved to dead-letter topics after their ack timeout.
    pub dead_lettered: u64,
    /// Failures met on the way (the pass goes on past them).
    pub errors: Vec<Error>,
}

/// One cleaner pass over every topic at time `now`.
pub(crate) fn clean(registry: &Registry, now: Timestamp) -> TickReport {
    let mut report = TickReport::default();
    for topic in registry.all() {
        clean_topic(registry, &topic, now, &mut report);
    }
    report
}

fn clean_topic(registry: &Registry, topic: &Arc<Topic>, now: Timestamp, report: &mut TickReport) {
    let mut wakers = Vec::new();
    let letters;
    {
        let mut state = topic.lock();
        let state = &mut *state;
        let mut dead_by_group = Vec::new();
        for (name, group) in &mut state.groups {
            let mut dead = Vec::new();
            if group.expire(now, &mut dead) {
                group.take_wakers(&mut wakers);
            }
            if !dead.is_empty() {
                dead_by_group.push((name.clone(), dead));
            }
        }
        letters = dead_by_group;
        state.producers.expire(now);
        match state.clean(now) {
            Ok(n) => report.deleted += n,
            Err(e) => report.errors.push(e),
        }
        let journaled = state
            .persist_groups()
            .and_then(|_| state.compact_if_needed());
        if let Err(e) = journaled {
            report.errors.push(e);
        }
    }
    wakers.into_iter().for_each(Waker::wake);
    for (group, dead) in letters {
        let batch = match dlq::letters(topic, dead) {
            Ok(batch) => batch,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        let n = batch.len() as u64;
        match dlq::route(registry, topic, &group, batch) {
            Ok(()) => report.dead_lettered += n,
            Err(e) => report.errors.push(e),
        }
    }
}
