//! The checks: after every restart, the latest acknowledged messages are where the server
//! said it put them; at the end, the whole topic is read and held against the ledger, and
//! the server's stats against what the clients saw.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mq_client::{Client, Offset, StartPosition, TopicName};

use crate::load::{Ledger, TOPIC};

/// What the final read found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Messages read from the topic.
    pub(crate) stored: u64,
    /// Acknowledged publishes checked.
    pub(crate) acked: u64,
    /// Acknowledged publishes missing (or at another offset), with when they were acked.
    pub(crate) missing: Vec<(usize, u64, Instant)>,
    /// Messages stored more than once.
    pub(crate) duplicates: u64,
    /// Messages out of their producer's order.
    pub(crate) out_of_order: u64,
}

/// The last `per_producer` acknowledged messages of each producer: (producer, number,
/// offset).
pub(crate) fn latest(ledger: &Ledger, per_producer: usize) -> Vec<(usize, u64, Offset)> {
    ledger
        .published
        .iter()
        .flat_map(|(id, acked)| {
            acked
                .iter()
                .rev()
                .take(per_producer)
                .map(|(n, offset, _)| (*id, *n, *offset))
        })
        .collect()
}

/// Checks that each of `messages` (from [`latest`]) is at its offset; returns what is
/// wrong.
pub(crate) async fn spot_check(
    client: &Client,
    messages: &[(usize, u64, Offset)],
) -> anyhow::Result<Vec<String>> {
    let topic = TopicName::new(TOPIC)?;
    let mut wrong = Vec::new();
    for (id, n, offset) in messages {
        let got = client
            .peek(&topic, StartPosition::Offset(*offset), 1)
            .await?;
        let want = format!("p{id}:{n}");
        match got.first() {
            Some(m) if m.offset == *offset && m.payload[..] == *want.as_bytes() => {}
            other => wrong.push(format!(
                "offset {offset} should hold {want}, holds {:?}",
                other.map(|m| (m.offset, String::from_utf8_lossy(&m.payload).into_owned()))
            )),
        }
    }
    Ok(wrong)
}

/// Reads the whole topic and holds it against the ledger.
pub(crate) async fn read_all(client: &Client, ledger: &Ledger) -> anyhow::Result<Findings> {
    let topic = TopicName::new(TOPIC)?;
    let mut stored: HashMap<(usize, u64), Offset> = HashMap::new();
    let mut last: HashMap<usize, u64> = HashMap::new();
    let mut findings = Findings::default();
    let mut from = Offset(0);
    loop {
        let page = client
            .peek(&topic, StartPosition::Offset(from), 1000)
            .await?;
        let Some(end) = page.last().map(|m| m.offset) else {
            break;
        };
        for m in &page {
            findings.stored += 1;
            let text = String::from_utf8_lossy(&m.payload);
            let Some((id, n)) = text
                .strip_prefix('p')
                .and_then(|t| t.split_once(':'))
                .and_then(|(id, n)| Some((id.parse().ok()?, n.parse().ok()?)))
            else {
                anyhow::bail!("offset {} holds {text:?}, which no producer sent", m.offset);
            };
            if stored.insert((id, n), m.offset).is_some() {
                findings.duplicates += 1;
            }
            if last.get(&id).is_some_and(|&l| n <= l) {
                findings.out_of_order += 1;
            }
            last.insert(id, n);
        }
        from = Offset(end.0 + 1);
    }
    for (id, acked) in &ledger.published {
        for (n, offset, at) in acked {
            findings.acked += 1;
            if stored.get(&(*id, *n)) != Some(offset) {
                findings.missing.push((*id, *n, *at));
            }
        }
    }
    Ok(findings)
}

/// Waits (at most `limit`) until every group of the topic has nothing pending or in
/// flight; returns the groups that still have.
pub(crate) async fn drained(
    client: &Client,
    groups: &HashSet<String>,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let topic = TopicName::new(TOPIC).unwrap_or_else(|_| unreachable!());
    loop {
        let busy: Vec<String> = match client.topic_stats(&topic).await {
            Ok(stats) => stats
                .groups
                .iter()
                .filter(|g| groups.contains(g.name.as_str()))
                .filter(|g| g.pending + g.in_flight > 0)
                .map(|g| {
                    format!(
                        "{}: {} pending, {} in flight",
                        g.name, g.pending, g.in_flight
                    )
                })
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        if busy.is_empty() || Instant::now() >= deadline {
            return busy;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
