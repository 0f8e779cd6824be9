//! [`Group`]: one consumer group's delivery state over its topic's log.
//!
//! A group never copies messages: it keeps a cursor per priority level into the log's
//! index, the set of deliveries in flight, the messages waiting for redelivery, and an
//! [`AckSet`] of what it is done with. Every method runs under the topic's lock.
//!
//! This file holds the state and its consumers; what the group does lives beside it:
//! `delivery.rs` (which message goes next), `settle.rs` (acks, nacks, timeouts, dead
//! letters, retention), `durable.rs` (what is journaled and restored), `stats.rs`.

mod delivery;
mod durable;
mod settle;
mod stats;

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use rustc_hash::FxHashMap;

use self::durable::settle_lost;
use crate::ackset::AckSet;
use crate::clock::Timestamp;
use crate::config::{AckMode, StartPosition};
use crate::log::Log;
use crate::message::{Message, Offset};
use crate::name::GroupName;

pub(crate) use crate::consumer_id::ConsumerId;

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
    pub(crate) offset: Offset,
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
    last_delivery: Option<Timestamp>,
    last_ack: Option<Timestamp>,
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
    Fresh {
        priority: u8,
        seq: u64,
        offset: Offset,
    },
    Again {
        priority: u8,
        offset: Offset,
    },
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
    min_offset: Offset,
    /// Per priority level: the sequence number (not an offset) of the next entry to read;
    /// only as long as the highest priority in use needs (a level past the end reads from
    /// its start: it had nothing when the group was made).
    cursors: Vec<u64>,
    redeliver: BTreeMap<(Reverse<u8>, Offset), u32>,
    delayed: BTreeMap<(Timestamp, Offset), (u8, u32)>,
    in_flight: FxHashMap<Offset, InFlight>,
    deadlines: VecDeque<(Timestamp, Offset)>,
    acks: AckSet,
    consumers: Vec<AttachedConsumer>,
    delivered: u64,
    acked: u64,
    redelivered: u64,
    dead_lettered: u64,
    /// Delivery counts recovered from storage for messages not yet redelivered.
    restored: FxHashMap<Offset, u32>,
    /// Messages given up on, until their copy is in the dead-letter topic: (priority,
    /// deliveries). Not done yet, so retention keeps them.
    dying: FxHashMap<Offset, (u8, u32)>,
    /// For a durable group on a store that keeps group state: changes not yet journaled.
    journal: Option<Changes>,
}

/// Changes to a durable group's state since they were last journaled.
#[derive(Debug, Default)]
struct Changes {
    done: Vec<Offset>,
    delivered: Vec<Offset>,
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
            StartPosition::Resume | StartPosition::Earliest => log.first(),
            StartPosition::Latest => log.next(),
            StartPosition::Offset(o) => o.max(log.first()),
            StartPosition::Time(t) => log.offset_at(t),
        };
        let levels = log.active().first().map_or(0, |&p| usize::from(p) + 1);
        let cursors = (0..=u8::MAX)
            .take(levels)
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

    /// The cursor of priority level `p`.
    fn cursor(&self, p: u8) -> u64 {
        self.cursors.get(usize::from(p)).copied().unwrap_or(0)
    }

    /// The cursor of priority level `p`, to move.
    fn cursor_mut(&mut self, p: u8) -> &mut u64 {
        let i = usize::from(p);
        if i >= self.cursors.len() {
            self.cursors.resize(i + 1, 0);
        }
        &mut self.cursors[i]
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
    pub(crate) fn floor(&self) -> Offset {
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
            last_delivery: None,
            last_ack: None,
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
}
