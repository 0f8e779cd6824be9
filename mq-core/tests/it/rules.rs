//! One test per rule of the broker model (README, "the model"), named after the rule, in
//! the model's order. It reads best whole: it is the model's executable specification, and
//! splitting it would scatter rules that refer to each other.

use std::time::Duration;

use bytes::Bytes;
use mq_core::{
    AckMode, Broker, Clock, Error, Limit, NewMessage, Offset, Overflow, StartPosition,
    Subscription, Timestamp, TopicConfig, dlq,
};

use super::{broker_at_1000, group, sub, topic};

fn payloads(deliveries: &[mq_core::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
        .collect()
}

fn drain(c: &mq_core::Consumer) -> Vec<mq_core::Delivery> {
    let mut out = Vec::new();
    c.poll_batch(usize::MAX, &mut out).unwrap();
    out
}

#[test]
fn topic_is_created_on_first_publish() {
    let b = Broker::new();
    b.publish(&topic("t"), NewMessage::new("x")).unwrap();
    assert_eq!(b.topics(), vec![topic("t")]);
}

#[test]
fn topic_is_created_on_first_subscribe() {
    let b = Broker::new();
    let _c = b.subscribe(Subscription::new(topic("t"))).unwrap();
    assert_eq!(b.topics(), vec![topic("t")]);
}

#[test]
fn invalid_names_are_rejected_with_a_clear_error() {
    let err = mq_core::TopicName::new("a b").unwrap_err();
    assert!(err.to_string().contains("use A-Z a-z 0-9 . _ -"), "{err}");
    assert!(mq_core::GroupName::new("").is_err());
}

#[test]
fn explicit_create_stores_the_config_and_describe_shows_it() {
    let b = Broker::new();
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(5);
    config.groups.max_deliveries = None;
    b.create_topic(&topic("t"), config.clone()).unwrap();
    let info = b.describe(&topic("t")).unwrap();
    assert_eq!(info.config, config);
    assert_eq!(info.stats.retained, 0);
    assert!(matches!(
        b.create_topic(&topic("t"), config),
        Err(Error::TopicExists { .. })
    ));
}

#[test]
fn create_rejects_an_invalid_config() {
    let b = Broker::new();
    let mut config = TopicConfig::default();
    config.groups.prefetch = 0;
    assert!(matches!(
        b.create_topic(&topic("t"), config),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(b.topics().is_empty());
}

#[test]
fn delete_removes_the_topic_and_fails_its_consumers() {
    let b = Broker::new();
    let c = b.subscribe(sub(&topic("t"), "g")).unwrap();
    b.publish(&topic("t"), NewMessage::new("x")).unwrap();
    b.delete_topic(&topic("t")).unwrap();
    assert!(b.topics().is_empty());
    assert!(matches!(c.poll(), Err(Error::TopicDeleted { .. })));
    assert!(matches!(
        b.delete_topic(&topic("t")),
        Err(Error::TopicNotFound { .. })
    ));
    // Publishing again makes a fresh topic.
    let r = b.publish(&topic("t"), NewMessage::new("y")).unwrap();
    assert_eq!(r.offset, Offset(0));
}

#[test]
fn list_returns_topics_sorted() {
    let b = Broker::new();
    for name in ["c", "a", "b"] {
        b.publish(&topic(name), NewMessage::new("x")).unwrap();
    }
    assert_eq!(b.topics(), vec![topic("a"), topic("b"), topic("c")]);
}

#[test]
fn broker_assigns_increasing_offsets_and_timestamps() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let r0 = b.publish(&t, NewMessage::new("a")).unwrap();
    clock.advance(Duration::from_millis(5));
    let r1 = b.publish(&t, NewMessage::new("b")).unwrap();
    assert_eq!((r0.offset, r1.offset), (Offset(0), Offset(1)));
    let c = b.subscribe(Subscription::new(t)).unwrap();
    let got = drain(&c);
    assert_eq!(got[0].message.timestamp, Timestamp::from_millis(1000));
    assert_eq!(got[1].message.timestamp, Timestamp::from_millis(1005));
}

#[test]
fn offsets_are_never_reused_after_retention() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    b.publish(&t, NewMessage::new("a")).unwrap();
    assert_eq!(drain(&c).len(), 1);
    assert_eq!(b.tick(clock.now()).deleted, 1);
    assert_eq!(
        b.publish(&t, NewMessage::new("b")).unwrap().offset,
        Offset(1)
    );
}

#[test]
fn batch_append_gets_consecutive_offsets() {
    let b = Broker::new();
    b.publish(&topic("t"), NewMessage::new("x")).unwrap();
    let r = b
        .publish_batch(
            &topic("t"),
            (0..3).map(|i| NewMessage::new(format!("{i}"))).collect(),
        )
        .unwrap();
    assert_eq!(
        r.offsets().collect::<Vec<_>>(),
        vec![Offset(1), Offset(2), Offset(3)]
    );
}

#[test]
fn a_message_is_stored_once_and_its_bytes_shared_by_every_group() {
    let b = Broker::new();
    let t = topic("t");
    let g1 = b.subscribe(sub(&t, "g1")).unwrap();
    let g2 = b.subscribe(sub(&t, "g2")).unwrap();
    let payload = Bytes::from(vec![7u8; 1000]);
    b.publish(&t, NewMessage::new(payload.clone())).unwrap();
    let d1 = g1.poll().unwrap().unwrap();
    let d2 = g2.poll().unwrap().unwrap();
    // One copy, in the log's memory: every group's delivery is a slice of it.
    assert_eq!(d1.message.payload, payload);
    assert_eq!(d1.message.payload.as_ptr(), d2.message.payload.as_ptr());
}

#[test]
fn every_group_receives_every_message() {
    let b = Broker::new();
    let t = topic("t");
    let groups: Vec<_> = (0..3)
        .map(|i| b.subscribe(sub(&t, &format!("g{i}"))).unwrap())
        .collect();
    for i in 0..10 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    for g in &groups {
        assert_eq!(payloads(&drain(g)), want);
    }
}

#[test]
fn consumers_in_one_group_compete_for_its_messages() {
    let b = Broker::new();
    let t = topic("t");
    let c1 = b.subscribe(sub(&t, "work")).unwrap();
    let c2 = b.subscribe(sub(&t, "work")).unwrap();
    for i in 0..10 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    let mut a = Vec::new();
    c1.poll_batch(4, &mut a).unwrap();
    let bb = drain(&c2);
    assert_eq!(a.len() + bb.len(), 10);
    let mut all: Vec<u64> = a.iter().chain(&bb).map(|d| d.offset().get()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert!(c1.poll().unwrap().is_none());
}

#[test]
fn exclusive_group_refuses_a_second_consumer_naming_topic_and_group() {
    let b = Broker::new();
    let t = topic("orders");
    let first = b.subscribe(sub(&t, "solo").exclusive(true)).unwrap();
    let err = b.subscribe(sub(&t, "solo")).unwrap_err();
    assert!(matches!(err, Error::GroupBusy { .. }));
    let text = err.to_string();
    assert!(
        text.contains("\"orders\"") && text.contains("\"solo\""),
        "{text}"
    );
    drop(first);
    assert!(b.subscribe(sub(&t, "solo").exclusive(true)).is_ok());
}

#[test]
fn exclusive_consumer_is_refused_beside_existing_consumers() {
    let b = Broker::new();
    let t = topic("t");
    let _shared = b.subscribe(sub(&t, "g")).unwrap();
    assert!(matches!(
        b.subscribe(sub(&t, "g").exclusive(true)),
        Err(Error::GroupBusy { .. })
    ));
}

#[test]
fn start_position_earliest_latest_and_offset() {
    let b = Broker::new();
    let t = topic("t");
    for i in 0..5 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    let earliest = b.subscribe(sub(&t, "e")).unwrap();
    let latest = b
        .subscribe(sub(&t, "l").start(StartPosition::Latest))
        .unwrap();
    let at3 = b
        .subscribe(sub(&t, "o").start(StartPosition::Offset(Offset(3))))
        .unwrap();
    let future = b
        .subscribe(sub(&t, "f").start(StartPosition::Offset(Offset(6))))
        .unwrap();
    b.publish(&t, NewMessage::new("5")).unwrap();
    b.publish(&t, NewMessage::new("6")).unwrap();
    assert_eq!(
        payloads(&drain(&earliest)),
        ["0", "1", "2", "3", "4", "5", "6"]
    );
    assert_eq!(payloads(&drain(&latest)), ["5", "6"]);
    assert_eq!(payloads(&drain(&at3)), ["3", "4", "5", "6"]);
    assert_eq!(payloads(&drain(&future)), ["6"]);
}

#[test]
fn durable_group_outlives_its_consumers() {
    let b = Broker::new();
    let t = topic("t");
    for i in 0..4 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    let c = b.subscribe(sub(&t, "g")).unwrap();
    let mut got = Vec::new();
    c.poll_batch(2, &mut got).unwrap();
    c.ack_batch(&got.iter().map(|d| d.offset()).collect::<Vec<_>>())
        .unwrap();
    drop(c);
    assert_eq!(b.groups(&t).unwrap().len(), 1);
    let again = b.subscribe(sub(&t, "g")).unwrap();
    assert_eq!(payloads(&drain(&again)), ["2", "3"]);
}

#[test]
fn ephemeral_group_is_deleted_when_its_consumer_detaches() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(Subscription::new(t.clone())).unwrap();
    assert!(c.group().is_ephemeral());
    assert_eq!(b.groups(&t).unwrap().len(), 1);
    drop(c);
    assert!(b.groups(&t).unwrap().is_empty());
}

#[test]
fn higher_priority_is_delivered_first_and_fifo_within_a_priority() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    for (p, name) in [(1, "a"), (5, "b"), (1, "c"), (9, "d"), (5, "e"), (0, "f")] {
        b.publish(&t, NewMessage::new(name).priority(p)).unwrap();
    }
    assert_eq!(payloads(&drain(&c)), ["d", "b", "e", "a", "c", "f"]);
}

#[test]
fn redelivery_takes_its_place_by_priority_then_offset() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("a")).unwrap();
    b.publish(&t, NewMessage::new("b")).unwrap();
    let a = c.poll().unwrap().unwrap();
    c.nack(a.offset(), None).unwrap();
    b.publish(&t, NewMessage::new("hi").priority(3)).unwrap();
    assert_eq!(payloads(&drain(&c)), ["hi", "a", "b"]);
}

#[test]
fn prefetch_window_bounds_deliveries_in_flight() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g").prefetch(3)).unwrap();
    for i in 0..10 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    let got = drain(&c);
    assert_eq!(got.len(), 3);
    assert!(c.poll().unwrap().is_none());
    c.ack(got[0].offset()).unwrap();
    assert_eq!(drain(&c).len(), 1);
    c.set_prefetch(10);
    assert_eq!(drain(&c).len(), 6);
}

#[test]
fn poll_returns_nothing_at_once_when_nothing_waits() {
    let b = Broker::new();
    let c = b.subscribe(Subscription::new(topic("empty"))).unwrap();
    assert!(c.poll().unwrap().is_none());
}

#[test]
fn recv_waits_on_a_non_tokio_executor() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    let publisher = {
        let b = b.clone();
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..100 {
                b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
            }
        })
    };
    let got = futures::executor::block_on(async {
        let mut got = Vec::new();
        while got.len() < 100 {
            let d = c.recv().await.unwrap();
            c.ack(d.offset()).unwrap();
            got.push(d.offset().get());
        }
        got
    });
    publisher.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn recv_wakes_when_the_topic_is_deleted() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    let deleter = {
        let b = b.clone();
        std::thread::spawn(move || b.delete_topic(&t).unwrap())
    };
    let r = futures::executor::block_on(c.recv());
    deleter.join().unwrap();
    assert!(matches!(r, Err(Error::TopicDeleted { .. })));
}

#[test]
fn auto_ack_counts_a_message_acked_when_delivered() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    let g = &b.groups(&t).unwrap()[0];
    assert_eq!((g.in_flight, g.acked), (0, 1));
    assert!(matches!(c.ack(d.offset()), Err(Error::NotInFlight { .. })));
}

#[test]
fn manual_ack_acks_once_and_a_second_ack_is_an_error() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    assert_eq!(b.groups(&t).unwrap()[0].in_flight, 1);
    c.ack(d.offset()).unwrap();
    assert!(matches!(c.ack(d.offset()), Err(Error::NotInFlight { .. })));
    let g = &b.groups(&t).unwrap()[0];
    assert_eq!((g.in_flight, g.acked, g.pending), (0, 1, 0));
}

#[test]
fn ack_of_an_offset_never_delivered_is_an_error_and_acks_the_rest() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    match c.ack_batch(&[d.offset(), Offset(99)]) {
        Err(Error::NotInFlight { offsets, .. }) => assert_eq!(offsets, vec![Offset(99)]),
        other => panic!("expected NotInFlight, got {other:?}"),
    }
    assert_eq!(b.groups(&t).unwrap()[0].acked, 1);
}

#[test]
fn another_consumer_cannot_ack_my_delivery() {
    let b = Broker::new();
    let t = topic("t");
    let c1 = b.subscribe(sub(&t, "g")).unwrap();
    let c2 = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c1.poll().unwrap().unwrap();
    assert!(c2.ack(d.offset()).is_err());
    assert!(c1.ack(d.offset()).is_ok());
}

#[test]
fn nack_redelivers_at_once() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    c.nack(d.offset(), None).unwrap();
    let again = c.poll().unwrap().unwrap();
    assert_eq!((again.offset(), again.deliveries), (d.offset(), 2));
    assert_eq!(b.groups(&t).unwrap()[0].redelivered, 1);
}

#[test]
fn nack_with_a_delay_redelivers_after_the_delay() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    c.nack(d.offset(), Some(Duration::from_secs(5))).unwrap();
    assert!(c.poll().unwrap().is_none());
    assert_eq!(b.groups(&t).unwrap()[0].pending, 1);
    clock.advance(Duration::from_millis(4999));
    b.tick(clock.now());
    assert!(c.poll().unwrap().is_none());
    clock.advance(Duration::from_millis(1));
    b.tick(clock.now());
    assert_eq!(c.poll().unwrap().unwrap().offset(), d.offset());
}

#[test]
fn ack_timeout_redelivers_an_unacked_delivery() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    let d = c.poll().unwrap().unwrap();
    clock.advance(Duration::from_secs(29));
    b.tick(clock.now());
    assert!(c.poll().unwrap().is_none());
    clock.advance(Duration::from_secs(1));
    b.tick(clock.now());
    let again = c.poll().unwrap().unwrap();
    assert_eq!((again.offset(), again.deliveries), (d.offset(), 2));
    // The first delivery's ack is now stale.
    c.ack(again.offset()).unwrap();
}

#[test]
fn detach_with_deliveries_in_flight_redelivers_them_to_another_consumer() {
    let b = Broker::new();
    let t = topic("t");
    let c1 = b.subscribe(sub(&t, "g")).unwrap();
    let c2 = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    b.publish(&t, NewMessage::new("y")).unwrap();
    assert_eq!(drain(&c1).len(), 2);
    assert!(c2.poll().unwrap().is_none());
    drop(c1);
    let got = drain(&c2);
    assert_eq!(payloads(&got), ["x", "y"]);
    assert!(got.iter().all(|d| d.deliveries == 2));
}

#[test]
fn max_deliveries_moves_a_message_to_the_dead_letter_topic_with_headers() {
    let b = Broker::new();
    let t = topic("jobs");
    let mut config = TopicConfig::default();
    config.groups.max_deliveries = Some(2);
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(
        &t,
        NewMessage::new("poison").header("trace", "1").priority(4),
    )
    .unwrap();
    for _ in 0..2 {
        let d = c.poll().unwrap().unwrap();
        c.nack(d.offset(), None).unwrap();
    }
    assert!(c.poll().unwrap().is_none());
    assert_eq!(b.groups(&t).unwrap()[0].dead_lettered, 1);
    let dlq_consumer = b.subscribe(Subscription::new(topic("jobs.dlq"))).unwrap();
    let dead = dlq_consumer.poll().unwrap().unwrap();
    let m = &dead.message;
    assert_eq!(&m.payload[..], b"poison");
    assert_eq!(m.priority, 4);
    let h = |name| String::from_utf8_lossy(m.header(name).unwrap()).into_owned();
    assert_eq!(h("trace"), "1");
    assert_eq!(h(dlq::HEADER_REASON), "max_deliveries");
    assert_eq!(h(dlq::HEADER_LAST_FAILURE), "nack");
    assert_eq!(h(dlq::HEADER_TOPIC), "jobs");
    assert_eq!(h(dlq::HEADER_GROUP), "g");
    assert_eq!(h(dlq::HEADER_OFFSET), "0");
    assert_eq!(h(dlq::HEADER_DELIVERIES), "2");
}

#[test]
fn a_message_the_dead_letter_topic_refuses_stays_in_its_group() {
    let b = Broker::new();
    let t = topic("jobs");
    let mut config = TopicConfig::default();
    config.groups.max_deliveries = Some(1);
    b.create_topic(&t, config).unwrap();
    let mut full = TopicConfig::default();
    full.retention.max_messages = Some(1);
    b.create_topic(&topic("jobs.dlq"), full).unwrap();
    let c = b.subscribe(sub(&t, "g")).unwrap();
    // A first poison message fills the dead-letter topic.
    b.publish(&t, NewMessage::new("first poison")).unwrap();
    let first = c.poll().unwrap().unwrap();
    c.nack(first.offset(), None).unwrap();
    b.publish(&t, NewMessage::new("poison")).unwrap();
    let d = c.poll().unwrap().unwrap();
    let err = c.nack(d.offset(), None).unwrap_err();
    assert!(matches!(err, Error::TopicFull { .. }), "{err:?}");
    // Not lost: it comes back, and goes to the dead-letter topic once there is room.
    let again = c.poll().unwrap().unwrap();
    assert_eq!((again.offset(), again.deliveries), (d.offset(), 2));
    b.delete_topic(&topic("jobs.dlq")).unwrap();
    c.nack(again.offset(), None).unwrap();
    assert!(c.poll().unwrap().is_none());
    let g = &b.groups(&t).unwrap()[0];
    assert_eq!((g.dead_lettered, g.pending, g.in_flight), (2, 0, 0));
    assert_eq!(b.topic_stats(&topic("jobs.dlq")).unwrap().retained, 1);
}

#[test]
fn only_the_broker_writes_to_a_dead_letter_topic() {
    let b = Broker::new();
    let err = b
        .publish(&topic("jobs.dlq"), NewMessage::new("by hand"))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidName(mq_core::NameError::Reserved { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("publish to \"jobs\""), "{err}");
    // Configuring a dead-letter topic's limits stays possible.
    b.create_topic(&topic("jobs.dlq"), TopicConfig::default())
        .unwrap();
}

#[test]
fn ack_timeouts_also_count_towards_max_deliveries() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.groups.max_deliveries = Some(1);
    config.groups.ack_timeout = Duration::from_secs(1);
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    c.poll().unwrap().unwrap();
    clock.advance(Duration::from_secs(1));
    let report = b.tick(clock.now());
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(b.topic_stats(&topic("t.dlq")).unwrap().retained, 1);
}

#[test]
fn retain_consumed_deletes_acked_messages_once_older_than_the_retention() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.retain_consumed = Duration::from_secs(60);
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    drain(&c);
    clock.advance(Duration::from_secs(59));
    assert_eq!(b.tick(clock.now()).deleted, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.tick(clock.now()).deleted, 1);
}

#[test]
fn retention_keeps_what_any_group_still_needs() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let fast = b.subscribe(sub(&t, "fast").ack(AckMode::Auto)).unwrap();
    let _slow = b.subscribe(sub(&t, "slow")).unwrap();
    b.publish(&t, NewMessage::new("x")).unwrap();
    drain(&fast);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(b.tick(clock.now()).deleted, 0);
    assert_eq!(b.topic_stats(&t).unwrap().retained, 1);
}

#[test]
fn messages_are_kept_while_a_topic_has_no_groups() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    b.publish(&t, NewMessage::new("x")).unwrap();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(b.tick(clock.now()).deleted, 0);
    let late = b.subscribe(Subscription::new(t)).unwrap();
    assert!(late.poll().unwrap().is_some());
}

#[test]
fn max_age_deletes_messages_even_if_not_consumed() {
    let (b, clock) = broker_at_1000();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.max_age = Some(Duration::from_secs(10));
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("old")).unwrap();
    clock.advance(Duration::from_secs(5));
    b.publish(&t, NewMessage::new("new")).unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(b.tick(clock.now()).deleted, 1);
    assert_eq!(payloads(&drain(&c)), ["new"]);
}

#[test]
fn max_messages_with_reject_refuses_with_topic_full() {
    let b = Broker::new();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(2);
    b.create_topic(&t, config).unwrap();
    let _g = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("1")).unwrap();
    b.publish(&t, NewMessage::new("2")).unwrap();
    let err = b.publish(&t, NewMessage::new("3")).unwrap_err();
    assert_eq!(
        err,
        Error::TopicFull {
            topic: t.clone(),
            limit: Limit::Messages(2)
        }
    );
    assert!(err.to_string().contains("is full"));
    assert_eq!(b.topic_stats(&t).unwrap().retained, 2);
}

#[test]
fn a_batch_that_does_not_fit_is_refused_whole() {
    let b = Broker::new();
    let t = topic("t");
    let mut config = TopicConfig::default();
    // Room for two records of 5-byte payloads, whatever the per-record overhead.
    let limit = 2 * (5 + mq_core::RECORD_OVERHEAD);
    config.retention.max_bytes = Some(limit);
    b.create_topic(&t, config).unwrap();
    b.publish(&t, NewMessage::new("12345")).unwrap();
    let batch = vec![NewMessage::new("123"), NewMessage::new("456")];
    assert!(matches!(
        b.publish_batch(&t, batch),
        Err(Error::TopicFull {
            limit: Limit::Bytes(l),
            ..
        }) if l == limit
    ));
    assert_eq!(b.topic_stats(&t).unwrap().retained, 1);
}

#[test]
fn limits_drop_messages_every_group_acked_before_refusing() {
    let b = Broker::new();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(2);
    config.retention.retain_consumed = Duration::from_secs(3600);
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    b.publish(&t, NewMessage::new("1")).unwrap();
    b.publish(&t, NewMessage::new("2")).unwrap();
    drain(&c);
    b.publish(&t, NewMessage::new("3")).unwrap();
    let stats = b.topic_stats(&t).unwrap();
    assert_eq!((stats.retained, stats.first_offset), (2, Offset(1)));
}

#[test]
fn drop_oldest_overflow_deletes_the_oldest_messages() {
    let b = Broker::new();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(3);
    config.retention.overflow = Overflow::DropOldest;
    b.create_topic(&t, config).unwrap();
    let c = b.subscribe(sub(&t, "g")).unwrap();
    for i in 0..5 {
        b.publish(&t, NewMessage::new(format!("{i}"))).unwrap();
    }
    assert_eq!(payloads(&drain(&c)), ["2", "3", "4"]);
    b.publish_batch(
        &t,
        (5..10).map(|i| NewMessage::new(format!("{i}"))).collect(),
    )
    .unwrap();
    assert_eq!(b.topic_stats(&t).unwrap().first_offset, Offset(7));
}

#[test]
fn delete_group_is_refused_while_consumers_are_attached() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    assert!(matches!(
        b.delete_group(&t, &group("g")),
        Err(Error::GroupInUse { consumers: 1, .. })
    ));
    drop(c);
    b.delete_group(&t, &group("g")).unwrap();
    assert!(matches!(
        b.delete_group(&t, &group("g")),
        Err(Error::GroupNotFound { .. })
    ));
}

#[test]
fn a_group_keeps_the_ack_mode_it_was_created_with() {
    let b = Broker::new();
    let t = topic("t");
    let _c = b.subscribe(sub(&t, "g").ack(AckMode::Auto)).unwrap();
    assert!(matches!(
        b.subscribe(sub(&t, "g").ack(AckMode::Manual)),
        Err(Error::AckModeMismatch { .. })
    ));
    let same = b.subscribe(sub(&t, "g")).unwrap();
    assert_eq!(same.ack_mode(), AckMode::Auto);
}

#[test]
fn stats_report_every_field_the_spec_lists() {
    let b = Broker::new();
    let t = topic("t");
    let c = b.subscribe(sub(&t, "g")).unwrap();
    b.publish(&t, NewMessage::new("abc")).unwrap();
    b.publish(&t, NewMessage::new("de")).unwrap();
    let d = c.poll().unwrap().unwrap();
    c.ack(d.offset()).unwrap();
    c.poll().unwrap().unwrap();
    let json = serde_json::to_value(b.topic_stats(&t).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "topic": "t", "published": 2, "retained": 2, "retained_bytes": 5 + 2 * mq_core::RECORD_OVERHEAD,
            "first_offset": 0, "next_offset": 2,
            "groups": [{"name": "g", "consumers": 1, "pending": 0, "lag": 0, "in_flight": 1,
                        "delivered": 2, "acked": 1, "redelivered": 0, "dead_lettered": 0}]
        })
    );
    let broker = serde_json::to_value(b.stats()).unwrap();
    assert_eq!(broker["topics"], 1);
    assert_eq!(
        broker["connections"], 0,
        "connections are the server's to count"
    );
    assert_eq!(broker["messages_in"], 2);
    assert_eq!(broker["messages_out"], 2);
    assert!(broker.get("uptime_ms").is_some());
}

#[test]
fn broker_and_consumer_are_shareable_across_threads() {
    fn shareable<T: Clone + Send + Sync>() {}
    fn sendable<T: Send + Sync>() {}
    shareable::<Broker>();
    sendable::<mq_core::Consumer>();
}

#[test]
fn topics_and_groups_beyond_the_broker_limits_are_refused_and_counted() {
    let b = Broker::builder()
        .max_topics(2)
        .max_groups_per_topic(1)
        .build()
        .unwrap();
    b.publish(&topic("a"), NewMessage::new("x")).unwrap();
    b.create_topic(&topic("b"), TopicConfig::default()).unwrap();
    let err = b.publish(&topic("c"), NewMessage::new("x")).unwrap_err();
    assert!(
        matches!(err, Error::TooManyTopics { limit: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--max-topics"), "{err}");
    let _g = b.subscribe(sub(&topic("a"), "g")).unwrap();
    let err = b.subscribe(sub(&topic("a"), "h")).unwrap_err();
    assert!(
        matches!(err, Error::TooManyGroups { limit: 1, .. }),
        "{err}"
    );
    let again = b.subscribe(sub(&topic("a"), "g"));
    assert!(again.is_ok(), "an existing group is not a new one");
    let stats = b.stats();
    assert_eq!((stats.refused_topics, stats.refused_groups), (1, 1));
}

#[test]
fn empty_messages_count_against_max_bytes() {
    let b = Broker::new();
    let t = topic("t");
    let mut config = TopicConfig::default();
    config.retention.max_bytes = Some(10 * mq_core::RECORD_OVERHEAD);
    b.create_topic(&t, config).unwrap();
    for _ in 0..10 {
        b.publish(&t, NewMessage::new("")).unwrap();
    }
    let err = b.publish(&t, NewMessage::new("")).unwrap_err();
    assert!(matches!(err, Error::TopicFull { .. }), "{err}");
    assert_eq!(
        b.topic_stats(&t).unwrap().retained_bytes,
        10 * mq_core::RECORD_OVERHEAD
    );
}

#[test]
fn a_group_made_after_a_message_of_the_highest_priority_gets_it() {
    let b = Broker::new();
    let t = topic("t");
    b.publish(&t, NewMessage::new("top").priority(u8::MAX))
        .unwrap();
    b.publish(&t, NewMessage::new("low")).unwrap();
    let c = b.subscribe(sub(&t, "late")).unwrap();
    let first = c.poll().unwrap().unwrap();
    assert_eq!(
        (&first.message.payload[..], first.message.priority),
        (&b"top"[..], u8::MAX)
    );
    assert_eq!(&c.poll().unwrap().unwrap().message.payload[..], b"low");
}
