//! [`Topic`]: one topic's log, groups and store behind one lock.
//!
//! A std `Mutex` is right here: nothing awaits while it is held, every critical section is
//! short and bounded by a batch, and it keeps `mq-core` free of any async runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use rustc_hash::FxHashMap;

use crate::budget::MemoryBudget;
use crate::clock::Timestamp;
use crate::config::TopicConfig;
use crate::error::Error;
use crate::group::{ConsumerId, Delivery, Group};
use crate::log::{Log, Lookup, READ_CHUNK};
use crate::message::{Message, NewMessage, Offset};
use crate::name::{GroupName, TopicName};
use crate::producers::{BatchStamp, Check, ProducerLimits, ProducerStamp, ProducerTable};
use crate::receipt::BatchReceipt;
use crate::record;
use crate::stats::LostRange;
use crate::stats::TopicStats;
use crate::storage::{
    Durability, GroupEvent, ReadOut, Records, RecoveredTopic, StorageError, StoredMessage,
    SyncWait, TopicStore,
};

/// A topic: its name and its state behind a lock.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    state: Mutex<TopicState>,
}

/// Everything about a topic that changes.
#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) name: TopicName,
    pub(crate) config: TopicConfig,
    pub(crate) log: Log,
    pub(crate) groups: FxHashMap<GroupName, Group>,
    pub(crate) store: Box<dyn TopicStore>,
    pub(crate) deleted: bool,
    /// The lowest offset of each read-back in progress (with a count), kept from being
    /// removed as consumed: an auto-ack group counts a message done when it hands it out,
    /// before the message is read back from the store.
    pinned: BTreeMap<Offset, u32>,
    published: u64,
    last_timestamp: Timestamp,
    /// What it remembers of idempotent producers.
    pub(crate) producers: ProducerTable,
}

impl Topic {
    /// The messages at `offsets`, in order (`None` for one no longer retained): from memory,
    /// or read back from the store with the topic's lock released during the read. A read
    /// that fails because retention removed the message meanwhile yields `None`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot read back a message it still retains.
    pub(crate) fn fetch(&self, offsets: &[Offset]) -> Result<Vec<Option<Arc<Message>>>, Error> {
        let mut out = Vec::with_capacity(offsets.len());
        let mut read: FxHashMap<Offset, Arc<Message>> = FxHashMap::default();
        // A read from the start of a piece that did not bring back the offset wanted (the
        // piece spans two segments) is followed by one from that offset itself.
        let mut from_wanted = false;
        loop {
            let (back, from) = {
                let mut state = self.lock();
                let mut next = None;
                for &offset in &offsets[out.len()..] {
                    match state.log.lookup(offset, false) {
                        Lookup::Resident(m) => out.push(Some(m)),
                        Lookup::Gone => out.push(None),
                        Lookup::OnDisk => match read.get(&offset) {
                            Some(m) => out.push(Some(Arc::clone(m))),
                            None => {
                                next = Some(offset);
                                break;
                            }
                        },
                    }
                }
                match next {
                    None => return Ok(out),
                    // Its whole piece is read, so that the log can hold it again.
                    Some(offset) => {
                        let (from, bytes) = match state.log.evicted_span(offset) {
                            Some(span) if !from_wanted => span,
                            _ => (offset, 0),
                        };
                        (state.store.read(from, bytes.max(READ_CHUNK))?, from)
                    }
                }
            };
            let wanted = offsets[out.len()];
            let result = back.read();
            let mut state = self.lock();
            match result {
                Ok(ReadOut::Records { first, data }) => {
                    state.log.restore(first, &data);
                    // What the log did not take back (its piece changed meanwhile, or left
                    // again at once to stay within the budget) is decoded for this fetch;
                    // the store verified the records' checksums.
                    if state.log.is_on_disk(wanted) {
                        let messages = record::starts(&data)
                            .filter_map(|pos| record::read_own(&data, pos))
                            .map(|m| (m.offset, Arc::new(m)));
                        read.extend(messages);
                    }
                }
                Ok(ReadOut::Messages(messages)) => {
                    read.extend(messages.into_iter().map(|m| (m.offset, m)));
                }
                // Retention removed it (and perhaps its file) while it was being read.
                Err(_) if matches!(state.log.lookup(wanted, false), Lookup::Gone) => {}
                Err(e) => return Err(Error::Storage(e)),
            }
            from_wanted = false;
            if state.log.is_on_disk(wanted) && !read.contains_key(&wanted) {
                if from != wanted {
                    from_wanted = true;
                    continue;
                }
                return Err(Error::Storage(StorageError {
                    context: format!("reading offset {wanted} of topic \"{}\" back", self.name),
                    message: "the store does not hold it".into(),
                    kind: None,
                }));
            }
        }
    }

    /// Like [`Topic::fetch`] for messages a group has just handed out, while `pin` (from
    /// [`TopicState::pin`]) keeps them from being removed as consumed; releases the pin.
    ///
    /// # Errors
    /// As [`Topic::fetch`].
    pub(crate) fn fetch_pinned(
        &self,
        offsets: &[Offset],
        pin: Offset,
    ) -> Result<Vec<Option<Arc<Message>>>, Error> {
        let fetched = self.fetch(offsets);
        self.lock().unpin(pin);
        fetched
    }

    /// A new, empty topic.
    pub(crate) fn new(
        name: TopicName,
        config: TopicConfig,
        store: Box<dyn TopicStore>,
        memory: Arc<MemoryBudget>,
        limits: ProducerLimits,
    ) -> Self {
        let budget = store.resident_budget();
        let state = TopicState {
            name: name.clone(),
            config,
            log: Log::recovered(Offset(0), Vec::new(), Offset(0), budget, memory),
            groups: FxHashMap::default(),
            store,
            deleted: false,
            pinned: BTreeMap::new(),
            published: 0,
            last_timestamp: Timestamp::default(),
            producers: ProducerTable::new(limits),
        };
        Self {
            name,
            state: Mutex::new(state),
        }
    }

    /// A topic as storage recovered it; durable groups come back with their positions.
    pub(crate) fn restore(
        rec: RecoveredTopic,
        memory: Arc<MemoryBudget>,
        limits: ProducerLimits,
    ) -> Self {
        let stored = |m: &StoredMessage| match m {
            StoredMessage::Loaded(m) => (m.offset, m.timestamp),
            StoredMessage::OnDisk {
                offset, timestamp, ..
            } => (*offset, *timestamp),
        };
        let first = rec
            .messages
            .iter()
            .flatten()
            .next()
            .map_or(rec.next_offset, |m| stored(m).0);
        let last_timestamp = rec
            .messages
            .iter()
            .flatten()
            .next_back()
            .map_or(Timestamp::default(), |m| stored(m).1);
        let budget = rec.store.resident_budget();
        let log = Log::recovered(first, rec.messages, rec.next_offset, budget, memory);
        let groups = rec
            .groups
            .iter()
            .map(|g| (g.name.clone(), Group::restore(g, &log)))
            .collect();
        let state = TopicState {
            name: rec.name.clone(),
            config: rec.config,
            published: log.next().get(),
            log,
            groups,
            store: rec.store,
            deleted: false,
            pinned: BTreeMap::new(),
            last_timestamp,
            producers: ProducerTable::restore(limits, &rec.producers),
        };
        Self {
            name: rec.name,
            state: Mutex::new(state),
        }
    }

    /// Locks the topic's state. A panic in another thread while it held the lock leaves the
    /// state consistent at batch granularity, so the poison flag is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a numbered batch comes to ([`TopicState::append`]).
enum Stamped {
    /// New: stored with this stamp.
    New(BatchStamp),
    /// Sent again: the first copy's receipt, and the wait for what is stored to be durable.
    Again(BatchReceipt, Option<SyncWait>),
}

impl TopicState {
    /// Appends a batch of `bytes` (the sum of its messages' sizes), all or nothing, and
    /// collects the wakers of consumers to wake.
    ///
    /// # Errors
    /// [`Error::TopicFull`] when the batch does not fit and overflow is `reject`;
    /// [`Error::Storage`] when the store refuses it.
    pub(crate) fn append(
        &mut self,
        batch: Vec<NewMessage>,
        bytes: u64,
        now: Timestamp,
        stamp: Option<ProducerStamp>,
        wakers: &mut Vec<Waker>,
    ) -> Result<(BatchReceipt, Option<SyncWait>), Error> {
        let count = batch.len() as u64;
        let first = self.log.next();
        let stamp = match stamp {
            Some(s) if count > 0 => match self.check_stamp(s, count, now)? {
                Stamped::New(stamp) => Some(stamp),
                Stamped::Again(receipt, sync) => return Ok((receipt, sync)),
            },
            _ => None,
        };
        if count == 0 {
            let receipt = BatchReceipt {
                first,
                count,
                durability: Durability::Memory,
            };
            return Ok((receipt, None));
        }
        self.make_room(count, bytes)?;
        let first = self.log.next();
        let timestamp = now.max(self.last_timestamp);
        self.last_timestamp = timestamp;
        let staged = self
            .log
            .stage(&batch, bytes, timestamp, stamp)
            .map_err(|(offset, e)| StorageError {
                context: format!("appending to topic {}", self.name),
                message: format!("the message at offset {offset}: {e}"),
                kind: Some(std::io::ErrorKind::InvalidInput),
            })?;
        let appended = match self.store.append(staged.records(), stamp) {
            Ok(appended) => appended,
            Err(e) => {
                self.log.abort(staged);
                return Err(e.into());
            }
        };
        self.log.commit(staged, &batch);
        if let Some(s) = stamp {
            self.producers
                .record(s.producer, s.seq, s.count, first, timestamp);
        }
        self.published += count;
        self.enforce_bounds()?;
        for group in self.groups.values_mut() {
            group.take_wakers(wakers);
        }
        let receipt = BatchReceipt {
            first,
            count,
            durability: appended.durability,
        };
        Ok((receipt, appended.sync))
    }

    /// What a numbered batch of `count` messages comes to: stored with its stamp, or (sent
    /// again) answered with the offsets it got the first time, once everything stored so far
    /// is as durable as a new batch would be.
    ///
    /// # Errors
    /// [`Error::SequenceOverlap`], [`Error::DuplicateBatch`] (see [`Check`]).
    fn check_stamp(
        &mut self,
        s: ProducerStamp,
        count: u64,
        now: Timestamp,
    ) -> Result<Stamped, Error> {
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        match self.producers.check(s, n, now) {
            Check::New => Ok(Stamped::New(BatchStamp {
                producer: s.producer,
                seq: s.seq,
                count: n,
            })),
            Check::Duplicate(first) => {
                let appended = self.store.append(Records::new(first, 0, &[]), None)?;
                let receipt = BatchReceipt {
                    first,
                    count,
                    durability: appended.durability,
                };
                Ok(Stamped::Again(receipt, appended.sync))
            }
            Check::Forgotten => Err(Error::DuplicateBatch {
                topic: self.name.clone(),
                producer: s.producer,
                seq: s.seq,
            }),
            Check::Overlap { last } => Err(Error::SequenceOverlap {
                topic: self.name.clone(),
                producer: s.producer,
                seq: s.seq,
                last,
            }),
        }
    }

    /// Journals what durable groups changed since the last call; under fsync `always`,
    /// returns the wait after which it is on disk.
    ///
    /// # Errors
    /// [`Error::Storage`] when the journal cannot be written.
    pub(crate) fn persist_groups(&mut self) -> Result<Option<SyncWait>, Error> {
        let mut events = Vec::new();
        for group in self.groups.values_mut() {
            group.take_events(&mut events);
        }
        self.record(&events)
    }

    /// Journals `events` (a no-op for stores that keep no group state).
    pub(crate) fn record(&mut self, events: &[GroupEvent]) -> Result<Option<SyncWait>, Error> {
        if events.is_empty() || !self.store.keeps_groups() {
            return Ok(None);
        }
        Ok(self.store.record_groups(events)?)
    }

    /// Rewrites the group journal as a snapshot when it has grown.
    pub(crate) fn compact_if_needed(&mut self) -> Result<(), Error> {
        if !self.store.wants_compaction() {
            return Ok(());
        }
        // The snapshot includes every change not yet journaled.
        let mut superseded = Vec::new();
        for group in self.groups.values_mut() {
            group.take_events(&mut superseded);
        }
        let snapshot: Vec<_> = self
            .groups
            .iter()
            .filter(|(name, _)| !name.is_ephemeral())
            .map(|(_, g)| g.snapshot())
            .collect();
        self.store.compact_groups(&snapshot)?;
        Ok(())
    }

    /// Keeps `offsets` (not empty) from being removed as consumed until [`TopicState::unpin`]
    /// with the returned offset.
    pub(crate) fn pin(&mut self, offsets: impl Iterator<Item = Offset>) -> Option<Offset> {
        let low = offsets.min()?;
        *self.pinned.entry(low).or_default() += 1;
        Some(low)
    }

    /// Releases a pin taken by [`TopicState::pin`].
    pub(crate) fn unpin(&mut self, low: Offset) {
        if let Some(n) = self.pinned.get_mut(&low) {
            *n -= 1;
            if *n == 0 {
                self.pinned.remove(&low);
            }
        }
    }

    /// The lowest pinned offset, if any read-back is in progress.
    pub(crate) fn lowest_pinned(&self) -> Option<Offset> {
        self.pinned.keys().next().copied()
    }

    /// Pushes the deliveries of `picks` whose messages are in memory, in order, up to the
    /// first one that is not (or is gone); returns how many picks it handled.
    pub(crate) fn take_resident(
        &mut self,
        picks: &[(Offset, u32)],
        out: &mut Vec<Delivery>,
    ) -> usize {
        let share = self.groups.len() > 1;
        for (i, &(offset, deliveries)) in picks.iter().enumerate() {
            match self.log.lookup(offset, share) {
                Lookup::Resident(message) => out.push(Delivery {
                    message,
                    deliveries,
                }),
                Lookup::OnDisk | Lookup::Gone => return i,
            }
        }
        picks.len()
    }

    /// Picks up to `max` messages for `consumer` of `group` (marking them in flight):
    /// `(offset, deliveries)` in delivery order, into `picks`.
    pub(crate) fn pick(
        &mut self,
        group: &GroupName,
        consumer: ConsumerId,
        now: Timestamp,
        max: usize,
        picks: &mut Vec<(Offset, u32)>,
    ) {
        if let Some(g) = self.groups.get_mut(group) {
            g.deliver(&self.log, consumer, now, max, picks);
        }
    }

    /// The topic's counters.
    pub(crate) fn stats(&self) -> TopicStats {
        let mut groups: Vec<_> = self.groups.values().map(|g| g.stats(&self.log)).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        TopicStats {
            topic: self.name.clone(),
            published: self.published,
            retained: self.log.len(),
            retained_bytes: self.log.bytes(),
            first_offset: self.log.first(),
            next_offset: self.log.next(),
            lost: self
                .log
                .lost()
                .map(|r| LostRange {
                    first: r.start,
                    last: Offset(r.end.get() - 1),
                })
                .collect(),
            groups,
        }
    }
}
