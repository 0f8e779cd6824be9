//! `mq publish`: messages from arguments or standard input, each acknowledged before exit.

use std::collections::VecDeque;
use std::io::BufRead;

use anyhow::Context;
use mq_client::{Client, NewMessage};
use mq_client::{Offset, TopicName};

use crate::args::PublishArgs;

/// Messages per publish request when reading standard input.
const STDIN_BATCH: usize = 500;
/// Batches waiting for their acknowledgements at once when reading standard input.
const IN_FLIGHT: usize = 16;

/// What was published: how many, and the first and last offsets.
#[derive(Default)]
struct Published {
    count: usize,
    range: Option<(Offset, Offset)>,
}

impl Published {
    fn add(&mut self, offsets: &[Offset]) {
        self.count += offsets.len();
        if let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) {
            self.range = Some(self.range.map_or((first, last), |(f, _)| (f, last)));
        }
    }
}

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
    let mut published = Published::default();
    if args.messages.is_empty() {
        // Batches are queued in order and up to IN_FLIGHT of them wait for their
        // acknowledgements at once.
        let mut waiting = VecDeque::new();
        let mut batch = Vec::new();
        for line in std::io::stdin().lock().lines() {
            batch.push(build(line.context("cannot read standard input")?));
            if batch.len() == STDIN_BATCH {
                waiting.push_back(producer.queue_batch(std::mem::take(&mut batch)).await?);
                if waiting.len() >= IN_FLIGHT
                    && let Some(oldest) = waiting.pop_front()
                {
                    published.add(&oldest.offsets().await?);
                }
            }
        }
        if !batch.is_empty() {
            waiting.push_back(producer.queue_batch(batch).await?);
        }
        for queued in waiting {
            published.add(&queued.offsets().await?);
        }
    } else {
        let batch = args.messages.iter().cloned().map(build).collect();
        published.add(&producer.send_batch(batch).await?);
    }
    match published.range {
        Some((first, last)) if first == last => {
            println!("published 1 message to {topic} at offset {first}");
        }
        Some((first, last)) => {
            println!(
                "published {} messages to {topic} at offsets {first}-{last}",
                published.count
            );
        }
        None => println!("published 0 messages to {topic}"),
    }
    Ok(())
}
