//! `mq consume`: prints messages and acks each after writing it; exits after `--count`
//! messages or `--timeout` without one, once the server has confirmed the acks.

use std::io::Write;

use anyhow::{Context, bail};
use mq_client::{Client, StartPosition, Subscription};
use mq_core::{GroupName, Offset, TopicName};

use crate::args::{ConsumeArgs, Format};
use crate::format::message_json;

fn start(from: &str) -> anyhow::Result<StartPosition> {
    Ok(match from {
        "earliest" => StartPosition::Earliest,
        "latest" => StartPosition::Latest,
        offset => match offset.parse() {
            Ok(o) => StartPosition::Offset(Offset(o)),
            Err(_) => bail!("--from {offset:?} is not earliest, latest or an offset"),
        },
    })
}

pub(crate) async fn run(client: &Client, args: &ConsumeArgs) -> anyhow::Result<()> {
    let topic = TopicName::new(&args.topic)?;
    let mut sub = Subscription::new(topic.clone())
        .start(start(&args.from)?)
        .exclusive(args.exclusive);
    if let Some(group) = &args.group {
        sub = sub.group(GroupName::new(group)?);
    }
    let mut consumer = client.subscribe(sub).await?;
    let mut received = 0u64;
    let stdout = std::io::stdout();
    while args.count.is_none_or(|n| received < n) {
        let next = match args.timeout {
            Some(t) => match tokio::time::timeout(t, consumer.recv()).await {
                Ok(d) => d,
                Err(_) => break,
            },
            None => consumer.recv().await,
        };
        let delivery = next?;
        {
            let mut out = stdout.lock();
            match args.format {
                Format::Text => {
                    out.write_all(delivery.payload())?;
                    out.write_all(b"\n")?;
                }
                Format::Json => {
                    writeln!(out, "{}", message_json(topic.as_str(), &delivery))?;
                }
            }
            out.flush().context("cannot write to standard output")?;
        }
        delivery.ack().await?;
        received += 1;
    }
    consumer.unsubscribe().await?;
    Ok(())
}
