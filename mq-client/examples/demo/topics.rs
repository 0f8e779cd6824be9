//! topics: several topics, handlers, headers, a bounded topic refusing when full, a handler
//! that fails on some messages (nack, redelivery, dead-letter topic), stats as a table.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mq_client::{ClientError, Delivery, Handler, HandlerError, NewMessage, Subscription};
use mq_core::{GroupName, TopicConfig, TopicName};

use crate::Claims;
use crate::server::Server;

/// Accepts orders whose `valid` header is `yes`; fails the others.
#[derive(Default)]
struct OrderHandler {
    handled: Mutex<Vec<String>>,
    failures: Mutex<u32>,
}

#[async_trait]
impl Handler for OrderHandler {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let order = String::from_utf8_lossy(d.payload()).into_owned();
        if d.header("valid").map(|v| &v[..]) != Some(b"yes") {
            *self.failures.lock().map_err(|_| "poisoned")? += 1;
            return Err(format!("order {order:?} is invalid").into());
        }
        self.handled.lock().map_err(|_| "poisoned")?.push(order);
        Ok(())
    }
}

pub(crate) async fn run(server: &Server, claims: &mut Claims) -> anyhow::Result<()> {
    let client = server.client().await?;
    let orders = TopicName::new("demo.orders")?;
    let emails = TopicName::new("demo.emails")?;
    let bounded = TopicName::new("demo.bounded")?;
    let mut config = TopicConfig::default();
    config.groups.max_deliveries = Some(3);
    client.create_topic(&orders, config).await?;
    let mut config = TopicConfig::default();
    config.retention.max_messages = Some(5);
    client.create_topic(&bounded, config).await?;
    claims.say("created demo.orders (max 3 deliveries) and demo.bounded (max 5 messages)");

    let producer = client.producer(orders.clone());
    for (i, valid) in ["yes", "yes", "no", "yes", "no"].iter().enumerate() {
        producer
            .send(
                NewMessage::new(format!("order-{i}"))
                    .header("valid", *valid)
                    .key(format!("customer-{}", i % 2)),
            )
            .await?;
    }
    client
        .producer(emails.clone())
        .send(NewMessage::new("welcome!").header("to", "ada@example.com"))
        .await?;
    claims.say("published 5 orders (2 marked invalid) and 1 email, with headers and keys");

    let handler = std::sync::Arc::new(OrderHandler::default());
    let mut consumer = client
        .subscribe(Subscription::new(orders.clone()).group(GroupName::new("billing")?))
        .await?;
    let runner = {
        let handler = std::sync::Arc::clone(&handler);
        tokio::spawn(async move { consumer.run(handler.as_ref()).await })
    };
    let mut dlq = client
        .subscribe(Subscription::new(orders.dead_letter()).group(GroupName::new("ops")?))
        .await?;
    let mut dead = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(10), dlq.recv()).await??;
        let why = d
            .header("x-mq-dlq-last-failure")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        claims.say(format!(
            "dead letter: {} after {} deliveries (last failure: {})",
            String::from_utf8_lossy(d.payload()),
            d.header("x-mq-dlq-deliveries")
                .map_or("?".into(), |v| String::from_utf8_lossy(v).into_owned()),
            why.unwrap_or_default()
        ));
        dead.push(String::from_utf8_lossy(d.payload()).into_owned());
        d.ack().await?;
    }
    runner.abort();
    dead.sort();
    claims.check(
        dead == ["order-2", "order-4"],
        "the two invalid orders reached demo.orders.dlq",
    );
    let handled = handler
        .handled
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    claims.check(
        handled.len() == 3,
        format!("the handler processed the 3 valid orders: {handled:?}"),
    );
    let failures = handler.failures.lock().map(|f| *f).unwrap_or_default();
    claims.check(failures == 6, format!("each invalid order was tried 3 times ({failures} failures, redelivered after each nack)"));

    let mut email_consumer = client.subscribe(Subscription::new(emails.clone())).await?;
    let email = email_consumer.recv().await?;
    claims.check(
        email.header("to").map(|v| &v[..]) == Some(&b"ada@example.com"[..]),
        "the email's `to` header arrived with it",
    );
    email.ack().await?;

    let bounded_producer = client.producer(bounded.clone());
    for i in 0..5 {
        bounded_producer
            .send(NewMessage::new(format!("{i}")))
            .await?;
    }
    match bounded_producer.send(NewMessage::new("one too many")).await {
        Err(ClientError::TopicFull { message }) => {
            claims.say(format!("sixth publish refused: {message}"));
            claims.check(true, "the bounded topic refused a publish when full");
        }
        other => claims.check(
            false,
            format!("the bounded topic refused a publish when full (got {other:?})"),
        ),
    }

    println!();
    println!(
        "  {:<16} {:>9} {:>8}  {:<12} {:>5} {:>11} {:>13}",
        "TOPIC", "PUBLISHED", "RETAINED", "GROUP", "ACKED", "REDELIVERED", "DEAD_LETTERED"
    );
    for topic in client.topics().await? {
        let stats = client.topic_stats(&topic).await?;
        if stats.groups.is_empty() {
            println!(
                "  {:<16} {:>9} {:>8}  {:<12}",
                topic.as_str(),
                stats.published,
                stats.retained,
                "-"
            );
        }
        for g in &stats.groups {
            let name = if g.name.is_ephemeral() {
                "(ephemeral)".to_owned()
            } else {
                g.name.to_string()
            };
            println!(
                "  {:<16} {:>9} {:>8}  {:<12} {:>5} {:>11} {:>13}",
                topic.as_str(),
                stats.published,
                stats.retained,
                name,
                g.acked,
                g.redelivered,
                g.dead_lettered
            );
        }
    }
    println!();
    Ok(())
}
