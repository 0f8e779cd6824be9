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
use crate::storage::{GroupEvent, RecoveredGroup};

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

/// A consumer attached to a group, with its window.
#[derive(Debug)]
struct AttachedConsumer {
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
    consumers: Vec<AttachedConsumer>,
    delivered: u64,
    acked: u64,
    redelivered: u64,
    dead_lettered: u64,
    /// Delivery counts recovered from storage for messages not yet redelivered.
    restored: FxHashMap<u64, u32>,
    /// Messages given up on, until their copy is in the dead-letter topic: (priority,
    /// deliveries). Not done yet, so retention keeps them.
    dying: FxHashMap<u64, (u8, u32)>,
    /// For a durable group on a store that keeps group state: changes not yet journaled.
    journal: Option<Changes>,
}

/// Changes to a durable group's state since they were last journaled.
#[derive(Debug, Default)]
struct Changes {
    done: Vec<u64>,
    delivered: Vec<u64>,
}

/// Marks the offsets `log` lost as done in `acks`: no group waits for them.
fn settle_lost(acks: &mut AckSet, log: &Log) {
    for lost in log.lost() {
        for offset in lost.start.max(acks.floor())..lost.end {
            acks.insert(offset);
        }
    }
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
        let mut acks = AckSet::new(start);
        settle_lost(&mut acks, log);
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
            acks,
            consumers: Vec::new(),
            delivered: 0,
            acked: 0,
            redelivered: 0,
            dead_lettered: 0,
            restored: FxHashMap::default(),
            dying: FxHashMap::default(),
            journal: None,
        }
    }

    /// Makes this group journal its changes ([`Group::take_events`]).
    pub(crate) fn journal_changes(&mut self) {
        self.journal = Some(Changes::default());
    }

    /// The event that records this group's creation.
    pub(crate) fn created_event(&self) -> GroupEvent {
        GroupEvent::Created {
            group: self.name.clone(),
            ack: self.settings.ack,
            ack_timeout: self.settings.ack_timeout,
            max_deliveries: self.settings.max_deliveries,
            start: self.min_offset,
        }
    }

    /// A durable group as storage recovered it, over the recovered `log`. Everything it had
    /// in flight is waiting again; nothing it acked comes back.
    pub(crate) fn restore(rec: &RecoveredGroup, log: &Log) -> Self {
        let settings = GroupSettings {
            ack: rec.ack,
            ack_timeout: rec.ack_timeout,
            max_deliveries: rec.max_deliveries,
        };
        let start = StartPosition::Offset(Offset(rec.start));
        let mut group = Group::new(rec.name.clone(), settings, start, log);
        group.acks = AckSet::new(rec.floor.max(rec.start));
        for &offset in &rec.acked {
            group.acks.insert(offset);
        }
        group.acks.raise_floor(log.first());
        settle_lost(&mut group.acks, log);
        let floor = group.acks.floor();
        for p in 0..=u8::MAX {
            group.cursors[usize::from(p)] = log.level(p).seq_at_or_after(floor);
        }
        group.restored = rec.deliveries.iter().copied().collect();
        group.journal = Some(Changes::default());
        group
    }

    /// The group's durable state, for a journal snapshot.
    pub(crate) fn snapshot(&self) -> RecoveredGroup {
        let mut deliveries: Vec<(u64, u32)> = self
            .in_flight
            .iter()
            .map(|(&o, f)| (o, f.deliveries))
            .chain(self.redeliver.iter().map(|(&(_, o), &d)| (o, d)))
            .chain(self.delayed.iter().map(|(&(_, o), &(_, d))| (o, d)))
            .chain(self.restored.iter().map(|(&o, &d)| (o, d)))
            .chain(self.dying.iter().map(|(&o, &(_, d))| (o, d)))
            .collect();
        deliveries.sort_unstable();
        RecoveredGroup {
            name: self.name.clone(),
            ack: self.settings.ack,
            ack_timeout: self.settings.ack_timeout,
            max_deliveries: self.settings.max_deliveries,
            start: self.min_offset,
            floor: self.acks.floor(),
            acked: self.acks.above_floor().collect(),
            deliveries,
        }
    }

    /// The changes since the last call, as journal events.
    pub(crate) fn take_events(&mut self, out: &mut Vec<GroupEvent>) {
        let Some(changes) = self.journal.as_mut() else {
            return;
        };
        if !changes.delivered.is_empty() {
            out.push(GroupEvent::Delivered {
                group: self.name.clone(),
                offsets: std::mem::take(&mut changes.delivered),
            });
        }
        if !changes.done.is_empty() {
            out.push(GroupEvent::Acked {
                group: self.name.clone(),
                offsets: std::mem::take(&mut changes.done),
            });
        }
    }

    fn record_done(&mut self, offset: u64) {
        if let Some(c) = self.journal.as_mut() {
            c.done.push(offset);
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
        self.consumers.push(AttachedConsumer {
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
        if let Some(slot) = self.attached(id) {
            slot.prefetch = prefetch.max(1);
        }
    }

    fn attached(&mut self, id: ConsumerId) -> Option<&mut AttachedConsumer> {
        self.consumers.iter_mut().find(|s| s.id == id)
    }

    /// Remembers `waker` to be woken when the consumer may have something to receive.
    pub(crate) fn set_waker(&mut self, id: ConsumerId, waker: &Waker) {
        if let Some(slot) = self.attached(id) {
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

    /// Hands up to `max` messages to consumer `id`, within its prefetch window: pushes each
    /// one's offset and delivery count to `out` (the caller fetches the messages) and
    /// returns how many.
    pub(crate) fn deliver(
        &mut self,
        log: &Log,
        id: ConsumerId,
        now: Timestamp,
        max: usize,
        out: &mut Vec<(u64, u32)>,
    ) -> usize {
        let manual = self.settings.ack == AckMode::Manual;
        let Some(slot) = self.attached(id) else {
            return 0;
        };
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
                    let before = if self.restored.is_empty() {
                        0
                    } else {
                        self.restored.remove(&offset).unwrap_or(0)
                    };
                    (offset, priority, before + 1)
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
            if offset < log.first() {
                continue;
            }
            out.push((offset, deliveries));
            n += 1;
            self.delivered += 1;
            if let Some(c) = self.journal.as_mut() {
                if manual {
                    c.delivered.push(offset);
                } else {
                    c.done.push(offset);
                }
            }
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
        if manual
            && n > 0
            && let Some(slot) = self.attached(id)
        {
            slot.in_flight += n as u32;
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
            while *cursor < level.end() && {
                let offset = level.offset_at(*cursor);
                offset < self.min_offset || self.acks.contains(offset)
            } {
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
                    self.record_done(offset.get());
                    self.acked += 1;
                    done += 1;
                }
                _ => unknown.push(offset),
            }
        }
        if let Some(slot) = self.attached(id) {
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
        if let Some(slot) = self.attached(id) {
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
            if let Some(slot) = self.attached(f.consumer) {
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
            self.dying.insert(offset, (f.priority, f.deliveries));
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

    /// Ends the dying of `offsets`: done when their copy reached the dead-letter topic,
    /// otherwise back to waiting (they are tried again, and dead-lettered again, after
    /// their next failed delivery).
    pub(crate) fn settle_dead(&mut self, offsets: &[u64], copied: bool) {
        for &offset in offsets {
            let Some((priority, deliveries)) = self.dying.remove(&offset) else {
                continue;
            };
            if copied {
                self.acks.insert(offset);
                self.record_done(offset);
                self.dead_lettered += 1;
            } else {
                self.redeliver
                    .insert((Reverse(priority), offset), deliveries);
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
        if !self.restored.is_empty() {
            self.restored.retain(|&offset, _| offset >= first);
        }
        if !self.dying.is_empty() {
            self.dying.retain(|&offset, _| offset >= first);
        }
        self.redeliver.retain(|&(_, offset), _| offset >= first);
        self.delayed.retain(|&(_, offset), _| offset >= first);
    }

    /// Messages waiting for this group: never delivered, or due for redelivery.
    pub(crate) fn pending(&self, log: &Log) -> u64 {
        let cursor_at = |p: u8| {
            let level = log.level(p);
            self.cursors[usize::from(p)]
                .max(level.start())
                .max(level.seq_at_or_after(self.min_offset.max(self.acks.floor())))
        };
        let fresh: u64 = log
            .active()
            .iter()
            .map(|&p| log.level(p).end().saturating_sub(cursor_at(p)))
            .sum();
        // Offsets acked out of order before a restart are still ahead of the cursors.
        let acked_ahead = self
            .acks
            .above_floor()
            .filter(|&o| {
                log.priority_of(o).is_some_and(|p| {
                    let level = log.level(p);
                    let at = cursor_at(p);
                    at < level.end() && level.offset_at(at) <= o
                })
            })
            .count() as u64;
        fresh.saturating_sub(acked_ahead) + self.redeliver.len() as u64 + self.delayed.len() as u64
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
