//! [`Group`]: one consumer group's delivery state over its topic's log.
//!
//! A group never copies messages: it keeps a cursor per priority level into the log's
//! index, the set of deliveries in flight, the messages waiting for redelivery, and an
//! [`AckSet`] of what it is done with. Every method runs under the topic's lock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::ackset::AckSet;
use crate::clock::Timestamp;
use crate::config::{AckMode, StartPosition};
use crate::log::Log;
use crate::message::{Message, Offset};
use crate::name::GroupName;
use crate::stats::GroupStats;

/// Identifies one attached consumer, unique within a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsumerId(pub u64);

/// One message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message, shared with the log and every other group.
    pub message: Arc<Message>,
    /// How many times this group has delivered it, this time included (1 on first delivery).
    pub deliveries: u32,
}

impl Delivery {
    /// The message's offset, what `ack` and `nack` take.
    pub fn offset(&self) -> Offset {
        self.message.offset
    }
}

/// Why a delivery came back without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Nack,
    AckTimeout,
    ConsumerDetached,
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Nack => "nack",
            Failure::AckTimeout => "ack_timeout",
            Failure::ConsumerDetached => "consumer_detached",
        }
    }
}

/// A message the group gave up on after `max_deliveries`; the topic moves it to the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) offset: u64,
    pub(crate) deliveries: u32,
    pub(crate) failure: Failure,
}

/// Settings fixed when the group is created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupSettings {
    pub(crate) ack: AckMode,
    pub(crate) ack_timeout: Duration,
    pub(crate) max_deliveries: Option<u32>,
}

#[derive(Debug)]
struct Slot {
    id: ConsumerId,
    prefetch: u32,
    in_flight: u32,
    waker: Option<Waker>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    consumer: ConsumerId,
    priority: u8,
    deliveries: u32,
    deadline: Timestamp,
}

/// Where the next delivery comes from.
enum Pick {
    Fresh { priority: u8, seq: u64, offset: u64 },
    Again { priority: u8, offset: u64 },
}

/// A consumer group's state.
///
/// # Invariants
/// Each retained offset at or after the group's start is in exactly one place: not yet
/// reached by its level's cursor, in `in_flight`, in `redeliver`, in `delayed`, or done in
/// `acks`. `deadlines` holds a `(deadline, offset)` entry for every in-flight delivery (and
/// possibly stale entries, skipped when met).
#[derive(Debug)]
pub(crate) struct Group {
    name: GroupName,
    settings: GroupSettings,
    exclusive: bool,
    min_offset: u64,
    cursors: Vec<u64>,
    redeliver: BTreeMap<(Reverse<u8>, u64), u32>,
    delayed: BTreeMap<(Timestamp, u64), (u8, u32)>,
    in_flight: FxHashMap<u64, InFlight>,
    deadlines: VecDeque<(Timestamp, u64)>,
    acks: AckSet,
    consumers: Vec<Slot>,
    delivered: u64,
    acked: u64,
    redelivered: u64,
    dead_lettered: u64,
}

impl Group {
    /// A new group reading `log` from `start`.
    pub(crate) fn new(
        name: GroupName,
        settings: GroupSettings,
        start: StartPosition,
        log: &Log,
    ) -> Self {
        let start = match start {
            StartPosition::Earliest => log.first(),
            StartPosition::Latest => log.next(),
            StartPosition::Offset(o) => o.get().max(log.first()),
        };
        let cursors = (0..=u8::MAX)
            .map(|p| log.level(p).seq_at_or_after(start))
            .collect();
        Self {
            name,
            settings,
            exclusive: false,
            min_offset: start,
            cursors,
            redeliver: BTreeMap::new(),
            delayed: BTreeMap::new(),
            in_flight: FxHashMap::default(),
            deadlines: VecDeque::new(),
            acks: AckSet::new(start),
            consumers: Vec::new(),
            delivered: 0,
            acked: 0,
            redelivered: 0,
            dead_lettered: 0,
        }
    }

    /// The group's ack mode.
    pub(crate) fn ack_mode(&self) -> AckMode {
        self.settings.ack
    }

    /// Number of attached consumers.
    pub(crate) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The lowest offset this group still needs; everything below it is done.
    pub(crate) fn floor(&self) -> u64 {
        self.acks.floor()
    }

    /// Attaches a consumer; `false` when exclusivity forbids it.
    pub(crate) fn attach(&mut self, id: ConsumerId, prefetch: u32, exclusive: bool) -> bool {
        if !self.consumers.is_empty() && (exclusive || self.exclusive) {
            return false;
        }
        self.exclusive = exclusive;
        self.consumers.push(Slot {
            id,
            prefetch: prefetch.max(1),
            in_flight: 0,
            waker: None,
        });
        true
    }

    /// Detaches a consumer; its deliveries in flight go back to the group.
    pub(crate) fn detach(&mut self, id: ConsumerId, now: Timestamp, dead: &mut Vec<DeadLetter>) {
        self.consumers.retain(|s| s.id != id);
        if self.consumers.is_empty() {
            self.exclusive = false;
        }
        let mut mine = Vec::new();
        self.in_flight.retain(|&offset, f| {
            let keep = f.consumer != id;
            if !keep {
                mine.push((offset, *f));
            }
            keep
        });
        mine.sort_unstable_by_key(|&(offset, _)| offset);
        for (offset, f) in mine {
            self.requeue(offset, f, Failure::ConsumerDetached, None, now, dead);
        }
        self.trim_deadlines();
    }

    /// Changes a consumer's prefetch window.
    pub(crate) fn set_prefetch(&mut self, id: ConsumerId, prefetch: u32) {
        if let Some(slot) = self.slot(id) {
            slot.prefetch = prefetch.max(1);
        }
    }

    fn slot(&mut self, id: ConsumerId) -> Option<&mut Slot> {
        self.consumers.iter_mut().find(|s| s.id == id)
    }

    /// Remembers `waker` to be woken when the consumer may have something to receive.
    pub(crate) fn set_waker(&mut self, id: ConsumerId, waker: &Waker) {
        if let Some(slot) = self.slot(id) {
            match &mut slot.waker {
                Some(w) if w.will_wake(waker) => {}
                w => *w = Some(waker.clone()),
            }
        }
    }

    /// Takes every registered waker into `out`.
    pub(crate) fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.consumers.iter_mut().filter_map(|s| s.waker.take()));
    }

    /// Hands up to `max` messages to consumer `id`, within its prefetch window; returns how
    /// many were pushed to `out`.
    pub(crate) fn deliver(
        &mut self,
        log: &Log,
        id: ConsumerId,
        now: Timestamp,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> usize {
        let manual = self.settings.ack == AckMode::Manual;
        let Some(slot) = self.slot(id) else { return 0 };
        let mut budget = max;
        if manual {
            budget = budget.min(slot.prefetch.saturating_sub(slot.in_flight) as usize);
        }
        let deadline = now.saturating_add(self.settings.ack_timeout);
        let mut n = 0;
        while n < budget {
            let Some(pick) = self.pick(log) else { break };
            let (offset, priority, deliveries) = match pick {
                Pick::Fresh {
                    priority,
                    seq,
                    offset,
                } => {
                    self.cursors[usize::from(priority)] = seq + 1;
                    (offset, priority, 1)
                }
                Pick::Again { priority, offset } => {
                    let before = self
                        .redeliver
                        .remove(&(Reverse(priority), offset))
                        .unwrap_or(0);
                    self.redelivered += 1;
                    (offset, priority, before + 1)
                }
            };
            let Some(message) = log.get(offset) else {
                continue;
            };
            out.push(Delivery {
                message: Arc::clone(message),
                deliveries,
            });
            n += 1;
            self.delivered += 1;
            if manual {
                self.in_flight.insert(
                    offset,
                    InFlight {
                        consumer: id,
                        priority,
                        deliveries,
                        deadline,
                    },
                );
                self.deadlines.push_back((deadline, offset));
            } else {
                self.acks.insert(offset);
                self.acked += 1;
            }
        }
        if manual && n > 0 {
            if let Some(slot) = self.slot(id) {
                slot.in_flight += n as u32;
            }
        }
        n
    }

    /// The waiting message that should go next: highest priority, then lowest offset.
    fn pick(&mut self, log: &Log) -> Option<Pick> {
        let mut fresh = None;
        for &p in log.active() {
            let level = log.level(p);
            let cursor = &mut self.cursors[usize::from(p)];
            *cursor = (*cursor).max(level.start());
            while *cursor < level.end() && level.offset_at(*cursor) < self.min_offset {
                *cursor += 1;
            }
            if *cursor < level.end() {
                fresh = Some(Pick::Fresh {
                    priority: p,
                    seq: *cursor,
                    offset: level.offset_at(*cursor),
                });
                break;
            }
        }
        while let Some((&(Reverse(priority), offset), _)) = self.redeliver.first_key_value() {
            if offset < log.first() {
                self.redeliver.pop_first();
                continue;
            }
            let again = match fresh {
                Some(Pick::Fresh {
                    priority: fp,
                    offset: fo,
                    ..
                }) => priority > fp || (priority == fp && offset < fo),
                _ => true,
            };
            if again {
                return Some(Pick::Again { priority, offset });
            }
            break;
        }
        fresh
    }

    /// Acks `offsets` for consumer `id`; offsets not in flight to it go to `unknown`.
    pub(crate) fn ack(&mut self, id: ConsumerId, offsets: &[Offset], unknown: &mut Vec<Offset>) {
        let mut done = 0u32;
        for &offset in offsets {
            match self.in_flight.get(&offset.get()) {
                Some(f) if f.consumer == id => {
                    self.in_flight.remove(&offset.get());
                    self.acks.insert(offset.get());
                    self.acked += 1;
                    done += 1;
                }
                _ => unknown.push(offset),
            }
        }
        if let Some(slot) = self.slot(id) {
            slot.in_flight -= done;
        }
        self.trim_deadlines();
    }

    /// Gives `offsets` back for redelivery (after `delay`, if any).
    pub(crate) fn nack(
        &mut self,
        id: ConsumerId,
        offsets: &[Offset],
        delay: Option<Duration>,
        now: Timestamp,
        unknown: &mut Vec<Offset>,
        dead: &mut Vec<DeadLetter>,
    ) {
        let mut done = 0u32;
        for &offset in offsets {
            match self.in_flight.get(&offset.get()) {
                Some(&f) if f.consumer == id => {
                    self.in_flight.remove(&offset.get());
                    self.requeue(offset.get(), f, Failure::Nack, delay, now, dead);
                    done += 1;
                }
                _ => unknown.push(offset),
            }
        }
        if let Some(slot) = self.slot(id) {
            slot.in_flight -= done;
        }
        self.trim_deadlines();
    }

    /// Requeues deliveries whose ack timeout has passed and delayed nacks that are due;
    /// returns whether anything became deliverable.
    pub(crate) fn expire(&mut self, now: Timestamp, dead: &mut Vec<DeadLetter>) -> bool {
        let mut changed = false;
        while let Some(&(deadline, offset)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(&f) = self.in_flight.get(&offset) else {
                continue;
            };
            if f.deadline != deadline {
                continue;
            }
            self.in_flight.remove(&offset);
            if let Some(slot) = self.slot(f.consumer) {
                slot.in_flight -= 1;
            }
            self.requeue(offset, f, Failure::AckTimeout, None, now, dead);
            changed = true;
        }
        while let Some((&(due, offset), &(priority, deliveries))) = self.delayed.first_key_value() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.redeliver
                .insert((Reverse(priority), offset), deliveries);
            changed = true;
        }
        changed
    }

    fn requeue(
        &mut self,
        offset: u64,
        f: InFlight,
        failure: Failure,
        delay: Option<Duration>,
        now: Timestamp,
        dead: &mut Vec<DeadLetter>,
    ) {
        if self
            .settings
            .max_deliveries
            .is_some_and(|max| f.deliveries >= max)
        {
            self.acks.insert(offset);
            self.dead_lettered += 1;
            dead.push(DeadLetter {
                offset,
                deliveries: f.deliveries,
                failure,
            });
            return;
        }
        match delay {
            Some(d) if !d.is_zero() => {
                self.delayed
                    .insert((now.saturating_add(d), offset), (f.priority, f.deliveries));
            }
            _ => {
                self.redeliver
                    .insert((Reverse(f.priority), offset), f.deliveries);
            }
        }
    }

    fn trim_deadlines(&mut self) {
        while let Some(&(deadline, offset)) = self.deadlines.front() {
            if self
                .in_flight
                .get(&offset)
                .is_some_and(|f| f.deadline == deadline)
            {
                return;
            }
            self.deadlines.pop_front();
        }
    }

    /// The log's front moved to `first`: forget what was removed.
    pub(crate) fn forget_before(&mut self, first: u64) {
        self.acks.raise_floor(first);
        self.redeliver.retain(|&(_, offset), _| offset >= first);
        self.delayed.retain(|&(_, offset), _| offset >= first);
    }

    /// Messages waiting for this group: never delivered, or due for redelivery.
    pub(crate) fn pending(&self, log: &Log) -> u64 {
        let fresh: u64 = log
            .active()
            .iter()
            .map(|&p| {
                let level = log.level(p);
                let from = self.cursors[usize::from(p)]
                    .max(level.start())
                    .max(level.seq_at_or_after(self.min_offset));
                level.end().saturating_sub(from)
            })
            .sum();
        fresh + self.redeliver.len() as u64 + self.delayed.len() as u64
    }

    /// A snapshot of the group's counters.
    pub(crate) fn stats(&self, log: &Log) -> GroupStats {
        GroupStats {
            name: self.name.clone(),
            consumers: self.consumers.len() as u64,
            pending: self.pending(log),
            in_flight: self.in_flight.len() as u64,
            delivered: self.delivered,
            acked: self.acked,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
        }
    }
}
