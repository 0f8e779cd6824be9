//! Slow storage work never holds a lock others need: creating a topic's files does not
//! stall publishers of other topics, and reading a message back from disk does not stall
//! publishers of the same topic. A store that blocks on a gate stands in for a slow disk.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use mq_core::{
    AckMode, Appended, Broker, Durability, GroupEvent, Message, NewMessage, Offset, ReadBack,
    RecoveredGroup, Recovery, Storage, StorageError, SyncWait, Timestamp, TopicConfig, TopicName,
    TopicStore,
};

use super::{sub, topic};

/// A gate the slow operation waits at, and a flag saying it is waiting.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Called by the slow operation: says it arrived, waits until opened.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn wait_until_reached(&self) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| !s.0)
            .unwrap();
        assert!(
            !timeout.timed_out() && state.0,
            "the slow operation never started"
        );
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// Keeps messages in a list and nothing in the log's memory, so every delivery reads back;
/// creating the topic named `slow` and every read back wait at the gate.
#[derive(Debug)]
struct GatedStorage {
    gate: Arc<Gate>,
    gate_reads: bool,
}

#[derive(Debug)]
struct GatedTopic {
    messages: Arc<Mutex<Vec<Arc<Message>>>>,
    gate: Option<Arc<Gate>>,
}

impl Storage for GatedStorage {
    fn kind(&self) -> &'static str {
        "gated"
    }

    fn open_topic(
        &self,
        topic: &TopicName,
        _config: &TopicConfig,
    ) -> Result<Box<dyn TopicStore>, StorageError> {
        if topic.as_str() == "slow" {
            self.gate.pass();
        }
        Ok(Box::new(GatedTopic {
            messages: Arc::default(),
            gate: self.gate_reads.then(|| Arc::clone(&self.gate)),
        }))
    }

    fn remove_topic(&self, _topic: &TopicName) -> Result<(), StorageError> {
        Ok(())
    }

    fn recover(&self) -> Result<Recovery, StorageError> {
        Ok(Recovery::default())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl TopicStore for GatedTopic {
    fn append(
        &mut self,
        records: mq_core::Records<'_>,
        _stamp: Option<mq_core::BatchStamp>,
    ) -> Result<Appended, StorageError> {
        self.messages
            .lock()
            .unwrap()
            .extend(records.messages().map(Arc::new));
        Ok(Appended {
            durability: Durability::Memory,
            sync: None,
        })
    }

    fn keeps_groups(&self) -> bool {
        false
    }

    fn record_groups(&mut self, _: &[GroupEvent]) -> Result<Option<SyncWait>, StorageError> {
        Ok(None)
    }

    fn wants_compaction(&self) -> bool {
        false
    }

    fn compact_groups(&mut self, _: &[RecoveredGroup]) -> Result<(), StorageError> {
        Ok(())
    }

    fn read(&mut self, from: Offset, _max_bytes: usize) -> Result<ReadBack, StorageError> {
        let messages = Arc::clone(&self.messages);
        let gate = self.gate.clone();
        Ok(ReadBack::new(move || {
            if let Some(gate) = gate {
                gate.pass();
            }
            let all = messages.lock().unwrap();
            Ok(all.iter().filter(|m| m.offset >= from).cloned().collect())
        }))
    }

    fn resident_budget(&self) -> Option<u64> {
        Some(0)
    }

    fn trim_before(&mut self, _: Offset) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Runs `publish` on another thread and says whether it finished within 10 s.
fn finishes(broker: &Broker, t: &str) -> bool {
    let (done, finished) = mpsc::channel();
    let broker = broker.clone();
    let t = topic(t);
    std::thread::spawn(move || {
        let r = broker.publish(&t, NewMessage::new("meanwhile"));
        let _ = done.send(r.is_ok());
    });
    finished.recv_timeout(Duration::from_secs(10)) == Ok(true)
}

#[test]
fn creating_a_topic_does_not_stall_publishers_of_other_topics() {
    let gate = Arc::new(Gate::default());
    let broker = Broker::builder()
        .storage(GatedStorage {
            gate: Arc::clone(&gate),
            gate_reads: false,
        })
        .build()
        .unwrap();
    broker
        .publish(&topic("fast"), NewMessage::new("x"))
        .unwrap();
    let creator = {
        let broker = broker.clone();
        std::thread::spawn(move || broker.publish(&topic("slow"), NewMessage::new("y")))
    };
    gate.wait_until_reached();
    assert!(
        finishes(&broker, "fast"),
        "a publish waited for another topic's creation"
    );
    gate.open();
    assert!(creator.join().unwrap().is_ok());
}

#[test]
fn reading_a_message_back_does_not_stall_publishers_of_its_topic() {
    let gate = Arc::new(Gate::default());
    let broker = Broker::builder()
        .storage(GatedStorage {
            gate: Arc::clone(&gate),
            gate_reads: true,
        })
        .build()
        .unwrap();
    broker.publish(&topic("t"), NewMessage::new("old")).unwrap();
    let reader = {
        let broker = broker.clone();
        std::thread::spawn(move || {
            let c = broker
                .subscribe(sub(&topic("t"), "g").ack(AckMode::Auto))
                .unwrap();
            c.poll().map(|d| d.map(|d| d.message.payload.clone()))
        })
    };
    gate.wait_until_reached();
    assert!(
        finishes(&broker, "t"),
        "a publish waited for a read back from disk"
    );
    gate.open();
    let read = reader.join().unwrap().unwrap();
    assert_eq!(read.as_deref(), Some(&b"old"[..]));
}

#[test]
fn a_message_being_read_back_for_an_auto_ack_group_is_not_removed_as_consumed() {
    let gate = Arc::new(Gate::default());
    let broker = Broker::builder()
        .storage(GatedStorage {
            gate: Arc::clone(&gate),
            gate_reads: true,
        })
        .build()
        .unwrap();
    let t = topic("t");
    broker.publish(&t, NewMessage::new("old")).unwrap();
    let reader = {
        let broker = broker.clone();
        let t = t.clone();
        std::thread::spawn(move || {
            let c = broker.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
            c.poll().map(|d| d.map(|d| d.message.payload.clone()))
        })
    };
    gate.wait_until_reached();
    // The group counts the message done when it hands it out, before it is read back: the
    // cleaner must not remove it meanwhile.
    let later = Timestamp::from_millis(u64::MAX / 4);
    assert_eq!(broker.tick(later).deleted, 0);
    gate.open();
    let read = reader.join().unwrap().unwrap();
    assert_eq!(read.as_deref(), Some(&b"old"[..]));
    assert_eq!(broker.tick(later).deleted, 1);
}
