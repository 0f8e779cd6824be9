//! How deliveries are settled: acks, nacks with or without delay, ack timeouts, the move
//! of poison messages to the dead-letter topic, and what retention removed.

use std::cmp::Reverse;
use std::time::Duration;

use super::{ConsumerId, DeadLetter, Failure, Group, InFlight};
use crate::clock::Timestamp;
use crate::message::Offset;

impl Group {
    /// Acks `offsets` for consumer `id`; offsets not in flight to it go to `unknown`.
    pub(crate) fn ack(
        &mut self,
        id: ConsumerId,
        offsets: &[Offset],
        now: Timestamp,
        unknown: &mut Vec<Offset>,
    ) {
        let mut done = 0u32;
        for &offset in offsets {
            match self.in_flight.get(&offset) {
                Some(f) if f.consumer == id => {
                    self.in_flight.remove(&offset);
                    self.acks.insert(offset);
                    self.record_done(offset);
                    self.acked += 1;
                    done += 1;
                }
                _ => unknown.push(offset),
            }
        }
        if let Some(slot) = self.attached(id) {
            slot.in_flight -= done;
            if done > 0 {
                slot.last_ack = Some(now);
            }
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
            match self.in_flight.get(&offset) {
                Some(&f) if f.consumer == id => {
                    self.in_flight.remove(&offset);
                    self.requeue(offset, f, Failure::Nack, delay, now, dead);
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

    pub(super) fn requeue(
        &mut self,
        offset: Offset,
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
    pub(crate) fn settle_dead(&mut self, offsets: &[Offset], copied: bool) {
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

    pub(super) fn trim_deadlines(&mut self) {
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
    pub(crate) fn forget_before(&mut self, first: Offset) {
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
}
