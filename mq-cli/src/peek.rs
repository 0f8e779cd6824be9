//! `mq peek`: prints retained messages without a group, changing no delivery state.

use std::io::Write;

use anyhow::Context;
use mq_client::{Client, TopicName};

use crate::args::{Format, PeekArgs};
use crate::format::message_json;

pub(crate) async fn run(client: &Client, args: &PeekArgs) -> anyhow::Result<()> {
    let topic = TopicName::new(&args.topic)?;
    let mut from = args.from;
    let mut left = args.count;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while left > 0 {
        let messages = client.peek(&topic, from, left).await?;
        let Some(last) = messages.last() else { break };
        from = mq_client::StartPosition::Offset(mq_client::Offset(last.offset.get() + 1));
        left = left.saturating_sub(u32::try_from(messages.len()).unwrap_or(u32::MAX));
        for m in &messages {
            match args.format {
                Format::Json => writeln!(out, "{}", message_json(topic.as_str(), m)),
                Format::Text => out
                    .write_all(&m.payload)
                    .and_then(|()| out.write_all(b"\n")),
            }
            .context("cannot write to standard output")?;
        }
    }
    out.flush().context("cannot write to standard output")
}
