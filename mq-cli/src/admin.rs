//! `mq topics`, `mq groups` and `mq stats`.

use mq_client::Client;
use mq_client::{
    GroupName, GroupReport, GroupStats, Overflow, Timestamp, TopicConfig, TopicName, TopicStats,
};

use crate::args::{CreateArgs, Format, GroupsCommand, OverflowArg, StatsArgs, TopicsCommand};
use crate::format::{pairs, plural, size, table};

fn json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

pub(crate) async fn topics(client: &Client, cmd: &TopicsCommand) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::List { format } => {
            let mut stats = Vec::new();
            for topic in client.topics().await? {
                stats.push(client.topic_stats(&topic).await?);
            }
            match format {
                Format::Json => json_line(&stats),
                Format::Text => {
                    let rows: Vec<Vec<String>> = stats
                        .iter()
                        .map(|s| {
                            vec![
                                s.topic.to_string(),
                                s.retained.to_string(),
                                size(s.retained_bytes),
                                s.published.to_string(),
                                s.groups.len().to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["TOPIC", "MESSAGES", "SIZE", "PUBLISHED", "GROUPS"], &rows)
                    );
                    for q in client.stats().await?.quarantined {
                        println!("quarantined: {}: {}", q.name, q.reason);
                    }
                    Ok(())
                }
            }
        }
        TopicsCommand::Create(args) => {
            let topic = TopicName::new(&args.name)?;
            client
                .create_topic(&topic, config(args, TopicConfig::default()))
                .await?;
            println!("created topic {topic}");
            Ok(())
        }
        TopicsCommand::Delete { name } => {
            let topic = TopicName::new(name)?;
            client.delete_topic(&topic).await?;
            println!("deleted topic {topic}");
            Ok(())
        }
        TopicsCommand::Purge { name } => {
            let topic = TopicName::new(name)?;
            client.purge_topic(&topic).await?;
            println!("purged topic {topic}");
            Ok(())
        }
        TopicsCommand::Alter(args) => {
            let topic = TopicName::new(&args.name)?;
            let current = client.describe(&topic).await?.config;
            client.alter_topic(&topic, config(args, current)).await?;
            println!("altered topic {topic}");
            Ok(())
        }
        TopicsCommand::Describe { name, format } => {
            let info = client.describe(&TopicName::new(name)?).await?;
            match format {
                Format::Json => json_line(&info),
                Format::Text => {
                    let c = &info.config;
                    let s = &info.stats;
                    println!(
                        "{}",
                        pairs(&[
                            ("topic", s.topic.to_string()),
                            ("published", s.published.to_string()),
                            (
                                "retained",
                                format!(
                                    "{}, {}",
                                    plural(s.retained, "message", "messages"),
                                    size(s.retained_bytes)
                                )
                            ),
                            (
                                "offsets",
                                if s.retained == 0 {
                                    format!("none (next is {})", s.next_offset)
                                } else {
                                    format!(
                                        "{} to {} (inclusive)",
                                        s.first_offset,
                                        s.next_offset.get().saturating_sub(1)
                                    )
                                }
                            ),
                            ("retain consumed", duration(c.retention.retain_consumed)),
                            ("max age", or_none(c.retention.max_age.map(duration))),
                            ("max messages", or_none(c.retention.max_messages)),
                            (
                                "max bytes",
                                c.retention
                                    .max_bytes
                                    .map_or_else(|| "none".to_owned(), size)
                            ),
                            (
                                "overflow",
                                match c.retention.overflow {
                                    Overflow::Reject => "reject".into(),
                                    Overflow::DropOldest => "drop-oldest".into(),
                                }
                            ),
                            ("ack timeout", duration(c.groups.ack_timeout)),
                            ("max deliveries", or_none(c.groups.max_deliveries)),
                        ])
                    );
                    if !s.groups.is_empty() {
                        println!();
                        println!("{}", groups_table(&s.groups));
                    }
                    Ok(())
                }
            }
        }
    }
}

/// `base` with the options `args` gives.
fn config(args: &CreateArgs, base: TopicConfig) -> TopicConfig {
    let mut c = base;
    if let Some(d) = args.retain_consumed {
        c.retention.retain_consumed = d;
    }
    c.retention.max_age = args.max_age.or(c.retention.max_age);
    c.retention.max_messages = args.max_messages.or(c.retention.max_messages);
    c.retention.max_bytes = args.max_bytes.or(c.retention.max_bytes);
    if let Some(o) = args.overflow {
        c.retention.overflow = match o {
            OverflowArg::Reject => Overflow::Reject,
            OverflowArg::DropOldest => Overflow::DropOldest,
        };
    }
    if let Some(d) = args.ack_timeout {
        c.groups.ack_timeout = d;
    }
    c.groups.max_deliveries = args.max_deliveries.or(c.groups.max_deliveries);
    c
}

fn groups_table(groups: &[GroupStats]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.name.to_string(),
                g.consumers.to_string(),
                g.pending.to_string(),
                g.in_flight.to_string(),
                g.delivered.to_string(),
                g.acked.to_string(),
                g.redelivered.to_string(),
                g.dead_lettered.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "GROUP",
            "CONSUMERS",
            "PENDING",
            "IN_FLIGHT",
            "DELIVERED",
            "ACKED",
            "REDELIVERED",
            "DEAD_LETTERED",
        ],
        &rows,
    )
}

pub(crate) async fn groups(client: &Client, cmd: &GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List { topic, format } => {
            let groups = client.groups(&TopicName::new(topic)?).await?;
            match format {
                Format::Json => json_line(&groups),
                Format::Text => {
                    println!("{}", groups_table(&groups));
                    Ok(())
                }
            }
        }
        GroupsCommand::Create { topic, group, from } => {
            let (topic, group) = (TopicName::new(topic)?, GroupName::new(group)?);
            client.create_group(&topic, &group, *from).await?;
            println!("created group {group} of topic {topic}");
            Ok(())
        }
        GroupsCommand::Seek { topic, group, to } => {
            let (topic, group) = (TopicName::new(topic)?, GroupName::new(group)?);
            client.seek_group(&topic, &group, *to).await?;
            println!("moved group {group} of topic {topic}");
            Ok(())
        }
        GroupsCommand::Describe {
            topic,
            group,
            format,
        } => {
            let report = client
                .describe_group(&TopicName::new(topic)?, &GroupName::new(group)?)
                .await?;
            match format {
                Format::Json => json_line(&report),
                Format::Text => {
                    println!("{}", group_report_text(&report));
                    Ok(())
                }
            }
        }
        GroupsCommand::Delete { topic, group } => {
            let topic = TopicName::new(topic)?;
            let group = GroupName::new(group)?;
            client.delete_group(&topic, &group).await?;
            println!("deleted group {group} of topic {topic}");
            Ok(())
        }
    }
}

/// When a timestamp was, as an age ("12s ago"), or "never".
fn age(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let secs = now.saturating_sub(t.as_millis()) / 1000;
            format!(
                "{} ago",
                humantime::format_duration(std::time::Duration::from_secs(secs))
            )
        },
    )
}

fn group_report_text(r: &GroupReport) -> String {
    let g = &r.group;
    let mut out = pairs(&[
        ("topic", g.topic.to_string()),
        ("group", g.stats.name.to_string()),
        ("ack", format!("{:?}", g.ack).to_lowercase()),
        ("exclusive", g.exclusive.to_string()),
        ("pending", g.stats.pending.to_string()),
        ("in flight", g.stats.in_flight.to_string()),
        (
            "oldest pending",
            g.stats
                .oldest_pending
                .map_or_else(|| "none".to_owned(), |t| age(Some(t))),
        ),
        ("delivered", g.stats.delivered.to_string()),
        ("acked", g.stats.acked.to_string()),
    ]);
    if !g.consumers.is_empty() {
        let rows: Vec<Vec<String>> = g
            .consumers
            .iter()
            .map(|c| {
                let conn = r.connections.iter().find(|k| k.consumer == c.id);
                let oldest = c.oldest_unacked.first().map_or_else(
                    || "-".to_owned(),
                    |u| format!("{} ({})", u.offset, age(Some(u.since))),
                );
                vec![
                    c.id.0.to_string(),
                    conn.map_or_else(|| "-".to_owned(), |k| k.connection.to_string()),
                    conn.map_or_else(|| "-".to_owned(), |k| k.peer.clone()),
                    conn.map_or_else(|| "-".to_owned(), |k| k.client.clone()),
                    c.prefetch.to_string(),
                    c.in_flight.to_string(),
                    conn.and_then(|k| k.credits)
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    age(c.last_delivery),
                    age(c.last_ack),
                    oldest,
                ]
            })
            .collect();
        out.push_str("\n\n");
        out.push_str(&table(
            &[
                "CONSUMER",
                "CONNECTION",
                "PEER",
                "CLIENT",
                "PREFETCH",
                "IN_FLIGHT",
                "CREDITS",
                "LAST_DELIVERY",
                "LAST_ACK",
                "OLDEST_UNACKED",
            ],
            &rows,
        ));
    }
    out.push_str("\n\ndiagnosis: ");
    out.push_str(&r.diagnosis);
    out
}

fn topic_text(s: &TopicStats) -> String {
    let mut out = pairs(&[
        ("topic", s.topic.to_string()),
        ("published", s.published.to_string()),
        ("retained", s.retained.to_string()),
        ("retained size", size(s.retained_bytes)),
        ("first offset", s.first_offset.to_string()),
        ("next offset", s.next_offset.to_string()),
    ]);
    if !s.groups.is_empty() {
        out.push_str("\n\n");
        out.push_str(&groups_table(&s.groups));
    }
    out
}

pub(crate) async fn stats(client: &Client, args: &StatsArgs) -> anyhow::Result<()> {
    match &args.topic {
        Some(topic) => {
            let stats = client.topic_stats(&TopicName::new(topic)?).await?;
            match args.format {
                Format::Json => json_line(&stats),
                Format::Text => {
                    println!("{}", topic_text(&stats));
                    Ok(())
                }
            }
        }
        None => {
            let stats = client.stats().await?;
            match args.format {
                Format::Json => json_line(&stats),
                Format::Text => {
                    println!(
                        "{}",
                        pairs(&[
                            (
                                "uptime",
                                duration(std::time::Duration::from_secs(stats.uptime_ms / 1000))
                            ),
                            ("connections", stats.connections.to_string()),
                            ("topics", stats.topics.to_string()),
                            ("messages in", stats.messages_in.to_string()),
                            ("messages out", stats.messages_out.to_string()),
                            (
                                "memory",
                                match stats.memory_limit {
                                    Some(limit) => format!(
                                        "{} of {} bytes{}",
                                        stats.memory_bytes,
                                        limit,
                                        refusals(stats.refused_memory)
                                    ),
                                    None => format!("{} bytes", stats.memory_bytes),
                                }
                            ),
                        ])
                    );
                    Ok(())
                }
            }
        }
    }
}

/// ", N publishes refused" when some were.
fn refusals(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} publishes refused")
    }
}
