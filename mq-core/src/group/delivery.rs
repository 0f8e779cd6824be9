//! Which message a group hands out next: the highest priority waiting, lowest offset
//! first, redeliveries in their place, within each consumer's window.

use std::cmp::Reverse;

use super::{ConsumerId, Group, InFlight, Pick};
use crate::clock::Timestamp;
use crate::config::AckMode;
use crate::log::Log;
use crate::message::Offset;

impl Group {
    /// Hands up to `max` messages to consumer `id`, within its prefetch window: pushes each
    /// one's offset and delivery count to `out` (the caller fetches the messages) and
    /// returns how many.
    pub(crate) fn deliver(
        &mut self,
        log: &Log,
        id: ConsumerId,
        now: Timestamp,
        max: usize,
        out: &mut Vec<(Offset, u32)>,
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
                    *self.cursor_mut(priority) = seq + 1;
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
        if n > 0
            && let Some(slot) = self.attached(id)
        {
            slot.last_delivery = Some(now);
            if manual {
                slot.in_flight = slot
                    .in_flight
                    .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        n
    }

    /// The waiting message that should go next: highest priority, then lowest offset.
    fn pick(&mut self, log: &Log) -> Option<Pick> {
        let mut fresh = None;
        for &p in log.active() {
            let level = log.level(p);
            let mut cursor = self.cursor(p).max(level.start());
            let mut next = None;
            while cursor < level.end() {
                let offset = level.offset_at(cursor);
                if offset >= self.min_offset && !self.acks.contains(offset) {
                    next = Some(offset);
                    break;
                }
                cursor += 1;
            }
            *self.cursor_mut(p) = cursor;
            if let Some(offset) = next {
                fresh = Some(Pick::Fresh {
                    priority: p,
                    seq: cursor,
                    offset,
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
}
