//! `/metrics`: the Prometheus registry. The server's own counters (errors by code, publish
//! latency) are registered as they are; everything else is read from the broker at scrape
//! time by [`BrokerCollector`], so nothing is counted twice and the publish path pays
//! nothing for it. Labels are bounded: `topic`, `group` and `code` only.

use std::path::Path;

use mq_core::{GroupStats, TopicStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::session::Shared;

/// The registry behind `/metrics`.
pub(crate) fn registry(shared: &Shared) -> Registry {
    let mut registry = Registry::with_prefix("mq");
    registry.register(
        "errors",
        "Error frames sent to clients, by code",
        shared.telemetry.errors.clone(),
    );
    registry.register_with_unit(
        "publish_duration",
        "Time from a Publish read to its reply queued",
        Unit::Seconds,
        shared.telemetry.publish_latency.clone(),
    );
    registry.register_collector(Box::new(BrokerCollector {
        shared: shared.clone(),
    }));
    registry
}

/// Reads the broker's state at every scrape.
#[derive(Clone)]
struct BrokerCollector {
    shared: Shared,
}

impl std::fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCollector").finish_non_exhaustive()
    }
}

/// Writes one unlabelled value.
fn one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &M,
) -> Result<(), std::fmt::Error> {
    let e = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(e)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    one(encoder, name, help, None, &ConstCounter::new(value))
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    one(encoder, name, help, None, &ConstGauge::new(value))
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes one labelled value per item of `rows`.
fn family<'r, T: 'r>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl Iterator<Item = (Vec<(&'static str, String)>, &'r T)>,
    value: impl Fn(&T) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, row) in rows {
        let v = value(row);
        let m = e.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(m)?,
            _ => ConstGauge::new(signed(v)).encode(m)?,
        }
    }
    Ok(())
}

/// Bytes of the file at `path`, or of the files under it, recursively (0 when it cannot
/// be read).
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| disk_bytes(&entry.path()))
            .sum()
    })
}

/// The names and paths of what `dir` holds (none when it cannot be read).
fn entries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        },
    )
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared;
        let broker = &shared.broker;
        let stats = shared.broker_stats();
        let e = &mut encoder;
        one(
            e,
            "uptime",
            "Time since the server started",
            Some(&Unit::Seconds),
            &ConstGauge::new(stats.uptime_ms as f64 / 1000.0),
        )?;
        gauge(
            e,
            "connections",
            "Connections open now",
            signed(stats.connections),
        )?;
        let connections = &shared.connections;
        counter(
            e,
            "connections_opened",
            "Connections opened since start",
            connections.total(),
        )?;
        counter(
            e,
            "connections_refused",
            "Connections refused (connection limit, no file descriptors)",
            connections.refused_total(),
        )?;
        let traffic = &shared.telemetry.traffic;
        counter(
            e,
            "frames_received",
            "Protocol frames received",
            traffic.frames_in(),
        )?;
        counter(
            e,
            "frames_sent",
            "Protocol frames sent",
            traffic.frames_out(),
        )?;
        counter(
            e,
            "received_bytes",
            "Bytes of protocol frames received",
            traffic.bytes_in(),
        )?;
        counter(
            e,
            "sent_bytes",
            "Bytes of protocol frames sent",
            traffic.bytes_out(),
        )?;
        counter(
            e,
            "messages_published",
            "Messages appended",
            stats.messages_in,
        )?;
        counter(
            e,
            "messages_delivered",
            "Deliveries made, redeliveries included",
            stats.messages_out,
        )?;
        gauge(e, "topics", "Topics that exist", signed(stats.topics))?;
        gauge(
            e,
            "quarantined_topics",
            "Topics found in storage that cannot be served",
            signed(stats.quarantined.len() as u64),
        )?;
        gauge(
            e,
            "resident_message_bytes",
            "Bytes of messages held in memory (encoded record sizes)",
            signed(stats.memory_bytes),
        )?;
        if let Some(limit) = stats.memory_limit {
            gauge(
                e,
                "max_memory_bytes",
                "The bound on messages held in memory",
                signed(limit),
            )?;
        }
        counter(
            e,
            "memory_refusals",
            "Publishes refused at the memory bound",
            stats.refused_memory,
        )?;

        let topics: Vec<TopicStats> = broker
            .topics()
            .iter()
            .filter_map(|t| broker.topic_stats(t).ok())
            .collect();
        let groups: Vec<(&TopicStats, &GroupStats)> = topics
            .iter()
            .flat_map(|t| t.groups.iter().map(move |g| (t, g)))
            .collect();
        let sum = |f: fn(&GroupStats) -> u64| groups.iter().map(|(_, g)| f(g)).sum::<u64>();
        counter(
            e,
            "messages_acked",
            "Messages acked, by every group",
            sum(|g| g.acked),
        )?;
        counter(
            e,
            "messages_redelivered",
            "Redeliveries, by every group",
            sum(|g| g.redelivered),
        )?;
        counter(
            e,
            "messages_dead_lettered",
            "Messages moved to dead-letter topics, by every group",
            sum(|g| g.dead_lettered),
        )?;

        if let Some(fsyncs) = broker.fsync_timings() {
            let buckets: Vec<(f64, u64)> = fsyncs
                .buckets
                .iter()
                .map(|(bound, n)| (bound.as_secs_f64(), *n))
                .collect();
            let mut m = e.encode_descriptor(
                "fsync_duration",
                "How long fsyncs of appended data take",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                fsyncs.sum.as_secs_f64(),
                fsyncs.count,
                &buckets,
                None,
            )?;
        }
        if broker.storage_kind() == "file" {
            let dir = &shared.config.data_dir;
            disk_metrics(e, shared, dir, &topics)?;
        }

        let by_topic = || {
            topics
                .iter()
                .map(|t| (vec![("topic", t.topic.to_string())], t))
        };
        family(
            e,
            "topic_published",
            "Messages appended to the topic",
            MetricType::Counter,
            by_topic(),
            |t| t.published,
        )?;
        family(
            e,
            "topic_retained_messages",
            "Messages the topic retains",
            MetricType::Gauge,
            by_topic(),
            |t| t.retained,
        )?;
        family(
            e,
            "topic_retained_bytes",
            "Bytes the topic retains (encoded records)",
            MetricType::Gauge,
            by_topic(),
            |t| t.retained_bytes,
        )?;
        family(
            e,
            "topic_first_offset",
            "The topic's first retained offset",
            MetricType::Gauge,
            by_topic(),
            |t| t.first_offset.get(),
        )?;
        family(
            e,
            "topic_next_offset",
            "The offset the topic's next message gets",
            MetricType::Gauge,
            by_topic(),
            |t| t.next_offset.get(),
        )?;

        let by_group = || {
            groups.iter().map(|(t, g)| {
                (
                    vec![
                        ("topic", t.topic.to_string()),
                        ("group", g.name.to_string()),
                    ],
                    *g,
                )
            })
        };
        family(
            e,
            "group_consumers",
            "Consumers attached to the group",
            MetricType::Gauge,
            by_group(),
            |g| g.consumers,
        )?;
        family(
            e,
            "group_pending",
            "Messages waiting for the group (new or due again)",
            MetricType::Gauge,
            by_group(),
            |g| g.pending,
        )?;
        family(
            e,
            "group_lag",
            "Messages never delivered to the group",
            MetricType::Gauge,
            by_group(),
            |g| g.lag,
        )?;
        family(
            e,
            "group_in_flight",
            "Deliveries of the group not yet acked or nacked",
            MetricType::Gauge,
            by_group(),
            |g| g.in_flight,
        )?;
        family(
            e,
            "group_delivered",
            "Deliveries the group made",
            MetricType::Counter,
            by_group(),
            |g| g.delivered,
        )?;
        family(
            e,
            "group_acked",
            "Messages the group acked",
            MetricType::Counter,
            by_group(),
            |g| g.acked,
        )?;
        family(
            e,
            "group_redelivered",
            "Redeliveries the group made",
            MetricType::Counter,
            by_group(),
            |g| g.redelivered,
        )?;
        family(
            e,
            "group_dead_lettered",
            "Messages the group dead-lettered",
            MetricType::Counter,
            by_group(),
            |g| g.dead_lettered,
        )?;
        let now = broker.now();
        let mut m = e.encode_descriptor(
            "group_oldest_pending_age",
            "Age of the oldest message waiting for the group (0 when none waits)",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (labels, g) in by_group() {
            let age = g.oldest_pending.map_or(0.0, |t| now.since(t).as_secs_f64());
            ConstGauge::new(age).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Disk metrics of the file storage: free space against the floor, bytes on disk in all
/// and per topic.
fn disk_metrics(
    e: &mut DescriptorEncoder,
    shared: &Shared,
    dir: &Path,
    topics: &[TopicStats],
) -> Result<(), std::fmt::Error> {
    if let Ok(s) = rustix::fs::statvfs(dir) {
        gauge(
            e,
            "disk_free_bytes",
            "Free bytes on the data dir's disk",
            signed(s.f_bavail.saturating_mul(s.f_frsize)),
        )?;
    }
    if let Some(floor) = shared.config.min_free_disk {
        gauge(
            e,
            "disk_min_free_bytes",
            "The free-space floor below which publishes are refused",
            signed(floor),
        )?;
    }
    // One walk: the topics' directories, and everything else in the data dir.
    let per_topic: Vec<(String, u64)> = entries(&dir.join("topics"))
        .into_iter()
        .map(|(name, path)| (name, disk_bytes(&path)))
        .collect();
    let outside: u64 = entries(dir)
        .iter()
        .filter(|(name, _)| name != "topics")
        .map(|(_, path)| disk_bytes(path))
        .sum();
    gauge(
        e,
        "disk_bytes",
        "Bytes of files in the data dir",
        signed(outside + per_topic.iter().map(|(_, b)| b).sum::<u64>()),
    )?;
    let rows: Vec<(Vec<(&'static str, String)>, u64)> = topics
        .iter()
        .map(|t| {
            let bytes = per_topic
                .iter()
                .find(|(name, _)| name == t.topic.as_str())
                .map_or(0, |(_, b)| *b);
            (vec![("topic", t.topic.to_string())], bytes)
        })
        .collect();
    family(
        e,
        "topic_disk_bytes",
        "Bytes of the topic's files",
        MetricType::Gauge,
        rows.iter().map(|(l, b)| (l.clone(), b)),
        |b| *b,
    )
}
