//! `mq publish`: messages from arguments or standard input, each acknowledged before exit.

use std::io::BufRead;

use anyhow::Context;
use mq_client::{Client, NewMessage};
use mq_core::TopicName;

use crate::args::PublishArgs;

/// Messages per publish request when reading standard input.
const STDIN_BATCH: usize = 500;

pub(crate) async fn run(client: &Client, args: &PublishArgs) -> anyhow::Result<()> {
    let topic = TopicName::new(&args.topic)?;
    let producer = client.producer(topic.clone());
    let build = |text: String| {
        let mut m = NewMessage::new(text).priority(args.priority);
        if let Some(key) = &args.key {
            m = m.key(key.clone());
        }
        for (name, value) in &args.headers {
            m = m.header(name.clone(), value.clone());
        }
        m
    };
    let mut offsets = Vec::new();
    if args.messages.is_empty() {
        let stdin = std::io::stdin();
        let mut batch = Vec::new();
        for line in stdin.lock().lines() {
            batch.push(build(line.context("cannot read standard input")?));
            if batch.len() == STDIN_BATCH {
                offsets.extend(producer.send_batch(std::mem::take(&mut batch)).await?);
            }
        }
        if !batch.is_empty() {
            offsets.extend(producer.send_batch(batch).await?);
        }
    } else {
        let batch = args.messages.iter().cloned().map(build).collect();
        offsets = producer.send_batch(batch).await?;
    }
    match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) if first == last => {
            println!("published 1 message to {topic} at offset {first}");
        }
        (Some(first), Some(last)) => {
            println!(
                "published {} messages to {topic} at offsets {first}-{last}",
                offsets.len()
            );
        }
        _ => println!("published 0 messages to {topic}"),
    }
    Ok(())
}
