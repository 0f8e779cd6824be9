//! What a durable group journals and how it comes back: its creation event, the changes
//! since the last journal write, a snapshot for compaction, and the restore after a
//! restart (offsets lost to damage count as done).

use super::{Changes, Group, GroupSettings};
use crate::ackset::AckSet;
use crate::config::StartPosition;
use crate::log::Log;
use crate::message::Offset;
use crate::storage::{GroupEvent, RecoveredGroup};

/// Marks the offsets `log` lost as done in `acks`: no group waits for them.
pub(super) fn settle_lost(acks: &mut AckSet, log: &Log) {
    for lost in log.lost() {
        for offset in lost.start.max(acks.floor()).get()..lost.end.get() {
            acks.insert(Offset(offset));
        }
    }
}

impl Group {
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
        let start = StartPosition::Offset(rec.start);
        let mut group = Group::new(rec.name.clone(), settings, start, log);
        group.acks = AckSet::new(rec.floor.max(rec.start));
        for &offset in &rec.acked {
            group.acks.insert(offset);
        }
        group.acks.raise_floor(log.first());
        settle_lost(&mut group.acks, log);
        let floor = group.acks.floor();
        for p in log.active().to_vec() {
            *group.cursor_mut(p) = log.level(p).seq_at_or_after(floor);
        }
        group.restored = rec.deliveries.iter().copied().collect();
        group.journal = Some(Changes::default());
        group
    }

    /// The group's durable state, for a journal snapshot.
    pub(crate) fn snapshot(&self) -> RecoveredGroup {
        let mut deliveries: Vec<(Offset, u32)> = self
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

    pub(super) fn record_done(&mut self, offset: Offset) {
        if let Some(c) = self.journal.as_mut() {
            c.done.push(offset);
        }
    }
}

impl Group {
    /// Moves the group to `start` over `log`, as if created there: everything from it on
    /// is waiting, nothing before it is the group's; deliveries in flight go back (their
    /// acks are then refused); attached consumers stay attached. For a journaled group,
    /// returns the events that record the move.
    pub(crate) fn seek(&mut self, start: StartPosition, log: &Log) -> Vec<GroupEvent> {
        let mut moved = Group::new(self.name.clone(), self.settings, start, log);
        moved.consumers = std::mem::take(&mut self.consumers);
        for c in &mut moved.consumers {
            c.in_flight = 0;
        }
        moved.exclusive = self.exclusive;
        moved.delivered = self.delivered;
        moved.acked = self.acked;
        moved.redelivered = self.redelivered;
        moved.dead_lettered = self.dead_lettered;
        let journaled = self.journal.is_some();
        *self = moved;
        if !journaled {
            return Vec::new();
        }
        self.journal_changes();
        vec![
            GroupEvent::Deleted {
                group: self.name.clone(),
            },
            self.created_event(),
        ]
    }
}
