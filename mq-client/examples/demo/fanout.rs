//! fanout: 3 producers and 3 consumers started in shuffled order; every consumer gets every
//! message, each producer's in order; one consumer leaves midway and its cursor goes; the
//! cleaner deletes what every group consumed once it is older than the retention.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mq_client::{NewMessage, Subscription};
use mq_core::{GroupName, TopicConfig, TopicName};

use crate::Claims;
use crate::server::Server;

const PER_PRODUCER: u32 = 100;

#[derive(Debug, Clone, Copy)]
enum Role {
    Producer(u32),
    Consumer(u32),
}

/// A small deterministic shuffle (xorshift), seeded by the clock: a different order each run.
fn shuffled(mut roles: Vec<Role>) -> Vec<Role> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    for i in (1..roles.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        roles.swap(i, (x % (i as u64 + 1)) as usize);
    }
    roles
}

pub(crate) async fn run(server: &Server, claims: &mut Claims) -> anyhow::Result<()> {
    let admin = server.client().await?;
    let topic = TopicName::new("demo.fanout")?;
    let mut config = TopicConfig::default();
    config.retention.retain_consumed = Duration::from_secs(1);
    admin.create_topic(&topic, config).await?;
    claims.say("topic demo.fanout keeps messages every group consumed for 1s");
    let roles = shuffled(vec![
        Role::Producer(0),
        Role::Producer(1),
        Role::Producer(2),
        Role::Consumer(0),
        Role::Consumer(1),
        Role::Consumer(2),
    ]);
    claims.say(format!("starting in this order: {roles:?}"));
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for role in roles {
        let client = server.client().await?;
        let topic = topic.clone();
        match role {
            Role::Producer(p) => producers.push(tokio::spawn(async move {
                let producer = client.producer(topic);
                for seq in 0..PER_PRODUCER {
                    producer.send(NewMessage::new(format!("{p}:{seq}"))).await?;
                    if seq % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                anyhow::Ok(())
            })),
            Role::Consumer(c) => {
                // Consumers 0 and 1 join durable groups; consumer 2 gets an ephemeral one
                // and leaves halfway.
                let mut sub = Subscription::new(topic);
                if c < 2 {
                    sub = sub.group(GroupName::new(format!("reader-{c}"))?);
                }
                let mut consumer = client.subscribe(sub).await?;
                let group = consumer.group().clone();
                let wanted = if c < 2 {
                    3 * PER_PRODUCER
                } else {
                    3 * PER_PRODUCER / 2
                };
                consumers.push(tokio::spawn(async move {
                    let _keep = client;
                    let mut got = Vec::new();
                    while got.len() < wanted as usize {
                        let d = consumer.recv().await?;
                        got.push(String::from_utf8_lossy(d.payload()).into_owned());
                        d.ack().await?;
                    }
                    consumer.unsubscribe().await?;
                    anyhow::Ok((c, group, got))
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in producers {
        p.await??;
    }
    let mut leaver_group = None;
    for c in consumers {
        let (c, group, got) = c.await??;
        let mut last: HashMap<String, i64> = HashMap::new();
        let in_order = got.iter().all(|m| {
            let (p, seq) = m.split_once(':').unwrap_or(("?", "-1"));
            let seq: i64 = seq.parse().unwrap_or(-1);
            let prev = last.insert(p.to_owned(), seq).unwrap_or(-1);
            seq == prev + 1
        });
        if c < 2 {
            claims.check(
                got.len() == 3 * PER_PRODUCER as usize,
                format!(
                    "consumer {c} (group {group}) received all {} messages",
                    3 * PER_PRODUCER
                ),
            );
        } else {
            claims.check(
                got.len() == (3 * PER_PRODUCER / 2) as usize,
                format!(
                    "consumer {c} (ephemeral group) received {} messages, then unregistered",
                    got.len()
                ),
            );
            leaver_group = Some(group);
        }
        claims.check(
            in_order,
            format!("consumer {c} got each producer's messages in the order sent"),
        );
    }
    let groups = admin.groups(&topic).await?;
    let names: Vec<String> = groups.iter().map(|g| g.name.to_string()).collect();
    claims.check(
        leaver_group.is_some_and(|g| !names.contains(&g.to_string())) && names.len() == 2,
        format!("the leaver's cursor was cleaned up: groups now {names:?}"),
    );
    let retained = admin.topic_stats(&topic).await?.retained;
    claims.check(
        retained == u64::from(3 * PER_PRODUCER),
        format!("right after consumption all {retained} messages are still retained"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut retained = retained;
    while retained > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        retained = admin.topic_stats(&topic).await?.retained;
    }
    claims.check(
        retained == 0,
        "the cleaner deleted every consumed message once older than 1s",
    );
    Ok(())
}
