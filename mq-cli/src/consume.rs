//! `mq consume`: prints messages and acks each after writing it; exits after `--count`
//! messages or `--timeout` without one, once the server has confirmed the acks. Interrupted
//! (SIGINT, SIGTERM) or with its output closed (`| head`), it first acks everything it
//! wrote, then exits 130, 143 or 0: nothing printed is delivered again.

use std::io::Write;

use anyhow::Context;
use mq_client::{Client, ClientError, Subscription};
use mq_client::{GroupName, Offset, TopicName};

use crate::args::{ConsumeArgs, Format};
use crate::format::message_json;

pub(crate) async fn run(client: &Client, args: &ConsumeArgs) -> anyhow::Result<()> {
    let topic = TopicName::new(&args.topic)?;
    let mut sub = Subscription::new(topic.clone())
        .start(args.from.unwrap_or_default())
        .create_topic(args.create)
        .exclusive(args.exclusive);
    if let Some(group) = &args.group {
        sub = sub.group(GroupName::new(group)?);
    }
    if let Some(count) = args.count {
        sub = sub.prefetch(window(count));
    }
    let mut consumer = client.subscribe(sub).await?;
    let mut received = 0u64;
    // With --count, acks are batched and never reopen more of the window than messages
    // still wanted, and the last ones go with the unsubscribe: no extra message is pushed
    // to this command only to be handed back when it exits.
    let mut unacked: Vec<Offset> = Vec::new();
    let mut acked = 0u64;
    let stdout = std::io::stdout();
    let watch = |kind| tokio::signal::unix::signal(kind).context("cannot watch for signals");
    let mut interrupt = watch(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = watch(tokio::signal::unix::SignalKind::terminate())?;
    let mut exit = None;
    while args.count.is_none_or(|n| received < n) {
        let wait = async {
            match args.timeout {
                Some(t) => tokio::time::timeout(t, consumer.recv()).await.ok(),
                None => Some(consumer.recv().await),
            }
        };
        let next = tokio::select! {
            next = wait => next,
            _ = interrupt.recv() => {
                exit = Some(130);
                break;
            }
            _ = terminate.recv() => {
                exit = Some(143);
                break;
            }
        };
        let Some(next) = next else {
            if received == 0
                && let Some(t) = args.timeout
            {
                explain_nothing(client, &topic, consumer.group(), t).await;
            }
            break;
        };
        let delivery = next?;
        let written = {
            let mut out = stdout.lock();
            match args.format {
                Format::Text => out
                    .write_all(delivery.payload())
                    .and_then(|()| out.write_all(b"\n")),
                Format::Json => {
                    writeln!(out, "{}", message_json(topic.as_str(), delivery.message()))
                }
            }
            .and_then(|()| out.flush())
        };
        match written {
            Ok(()) => {}
            // The reader is gone (`| head`): what was written is settled below; this one,
            // not written, goes back to the group.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                exit = Some(0);
                break;
            }
            Err(e) => return Err(e).context("cannot write to standard output"),
        }
        received += 1;
        match args.count {
            None => settled(client, delivery.ack().await)?,
            Some(n) => {
                unacked.push(delivery.offset());
                // The server may push up to `window` beyond what is acked: ack only as much
                // as keeps that within `n`.
                let allowed = n.saturating_sub(u64::from(window(n)) + acked);
                let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
                if allowed > 0 && unacked.len() >= ACK_BATCH.min(window(n) as usize) {
                    let now: Vec<Offset> = unacked.drain(..unacked.len().min(allowed)).collect();
                    settled(client, consumer.ack_batch(&now).await)?;
                    acked += now.len() as u64;
                }
            }
        }
    }
    consumer.ack_and_unsubscribe(&unacked).await?;
    if let Some(code) = exit {
        client.close().await;
        std::process::exit(code);
    }
    Ok(())
}

/// An ack the connection was lost under is no failure of the command: the client
/// reconnects, and the server delivers those messages again (they may be printed twice).
fn settled(client: &Client, acked: Result<(), ClientError>) -> Result<(), ClientError> {
    match acked {
        Err(ClientError::Redelivered { offsets }) => {
            eprintln!(
                "mq: the connection was lost before {} printed message(s) were acked: the \
                 server delivers them again",
                offsets.len()
            );
            Ok(())
        }
        Err(ClientError::ConnectionClosed { .. }) if !client.is_closed() => {
            eprintln!(
                "mq: the connection was lost while acking: what was printed since may be \
                 delivered again"
            );
            Ok(())
        }
        other => other,
    }
}

/// Says on standard error why nothing came within `waited`, when the group's diagnosis has
/// more to say than "nothing new" (retention deleted what it would have read).
async fn explain_nothing(
    client: &Client,
    topic: &TopicName,
    group: &GroupName,
    waited: std::time::Duration,
) {
    if let Ok(report) = client.describe_group(topic, group).await
        && report.diagnosis.contains("were deleted")
    {
        eprintln!(
            "mq: no message within {}: {}",
            humantime::format_duration(waited),
            report.diagnosis
        );
    }
}

/// Acks sent per request by `--count` consumers.
const ACK_BATCH: usize = 100;

/// The prefetch window of a consumer that wants `count` messages.
fn window(count: u64) -> u32 {
    u32::try_from(count)
        .unwrap_or(u32::MAX)
        .clamp(1, mq_client::DEFAULT_PREFETCH)
}
