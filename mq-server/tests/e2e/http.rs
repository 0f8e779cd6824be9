//! The HTTP endpoint of the real server: metrics parsed by a Prometheus parser after a
//! known workload, health and readiness, the JSON API, bearer tokens, and the rules for
//! binding its port.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mq_client::{AckMode, NewMessage, Subscription};
use prometheus_parse::{Sample, Scrape, Value};

use super::harness::{Server, http_get};
use super::{group, topic};

/// Parses `/metrics` with a Prometheus text parser.
fn scrape(addr: &str, token: Option<&str>) -> Scrape {
    let reply = http_get(addr, "/metrics", token);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type
    );
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    let lines = reply.body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).expect("the metrics parse")
}

/// The value of `name` with `labels` (all of them), if the scrape has it.
fn value<'s>(scrape: &'s Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'s Value> {
    scrape
        .samples
        .iter()
        .find(|s: &&Sample| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| &s.value)
}

fn number(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(scrape, name, labels) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_the_api_after_a_known_workload() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--fsync",
        "always",
    ]);
    let http = server.http.clone().expect("an HTTP address");
    let client = server.client().await;
    let t = topic("orders");
    client
        .publish(
            &t,
            (0..10).map(|i| NewMessage::new(format!("m{i}"))).collect(),
        )
        .await
        .unwrap();
    let mut sub = client
        .subscribe(
            Subscription::new(t.clone())
                .group(group("billing"))
                .ack(AckMode::Manual)
                .prefetch(4),
        )
        .await
        .unwrap();
    for _ in 0..4 {
        sub.recv().await.unwrap().ack_confirmed().await.unwrap();
    }
    // Four more are in flight once the window refills; wait until the group says so.
    let groups = loop {
        let groups = client.groups(&t).await.unwrap();
        if groups[0].in_flight == 4 {
            break groups;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(groups[0].acked, 4);
    let _ = client.create_topic(&t, Default::default()).await;

    assert_eq!(http_get(&http, "/healthz", None).status, 200);
    assert_eq!(http_get(&http, "/readyz", None).body, "ready\n");

    let m = scrape(&http, None);
    // Names, types and HELP texts.
    let text = http_get(&http, "/metrics", None).body;
    for (family, kind) in [
        ("mq_messages_published", "counter"),
        ("mq_group_acked", "counter"),
        ("mq_connections", "gauge"),
        ("mq_topic_retained_messages", "gauge"),
        ("mq_group_in_flight", "gauge"),
        ("mq_publish_duration_seconds", "histogram"),
        ("mq_fsync_duration_seconds", "histogram"),
    ] {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {family} {kind}")),
            "{family} is not a {kind}"
        );
        assert!(m.docs.contains_key(family), "{family} has no HELP");
    }
    assert_eq!(number(&m, "mq_messages_published_total", &[]), 10.0);
    assert_eq!(number(&m, "mq_connections", &[]), 1.0);
    assert_eq!(number(&m, "mq_topics", &[]), 1.0);
    let orders = [("topic", "orders")];
    assert_eq!(number(&m, "mq_topic_published_total", &orders), 10.0);
    assert_eq!(number(&m, "mq_topic_retained_messages", &orders), 10.0);
    assert_eq!(number(&m, "mq_topic_next_offset", &orders), 10.0);
    let billing = [("topic", "orders"), ("group", "billing")];
    assert_eq!(number(&m, "mq_group_consumers", &billing), 1.0);
    assert_eq!(number(&m, "mq_group_acked_total", &billing), 4.0);
    assert_eq!(number(&m, "mq_group_in_flight", &billing), 4.0);
    assert_eq!(number(&m, "mq_group_pending", &billing), 2.0);
    assert!(number(&m, "mq_group_oldest_pending_age_seconds", &billing) >= 0.0);
    assert_eq!(
        number(&m, "mq_errors_total", &[("code", "topic_exists")]),
        1.0
    );
    assert!(number(&m, "mq_frames_received_total", &[]) >= 8.0);
    assert!(number(&m, "mq_received_bytes_total", &[]) > 0.0);
    assert!(number(&m, "mq_disk_bytes", &[]) > 0.0);
    assert!(number(&m, "mq_topic_disk_bytes", &orders) > 0.0);
    match value(&m, "mq_publish_duration_seconds", &[]) {
        Some(Value::Histogram(buckets)) => {
            assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{buckets:?}");
        }
        other => panic!("publish latency: {other:?}"),
    }
    match value(&m, "mq_fsync_duration_seconds", &[]) {
        Some(Value::Histogram(buckets)) => {
            assert!(
                buckets.last().is_some_and(|b| b.count >= 1.0),
                "{buckets:?}"
            );
        }
        other => panic!("fsync durations: {other:?}"),
    }

    let stats: serde_json::Value =
        serde_json::from_str(&http_get(&http, "/api/v1/stats", None).body).unwrap();
    assert_eq!(stats["messages_in"], 10);
    assert_eq!(stats["connections"], 1);
    let topics: serde_json::Value =
        serde_json::from_str(&http_get(&http, "/api/v1/topics", None).body).unwrap();
    assert_eq!(topics[0]["topic"], "orders");
    let g: serde_json::Value =
        serde_json::from_str(&http_get(&http, "/api/v1/topics/orders/groups/billing", None).body)
            .unwrap();
    assert_eq!(g["group"]["stats"]["acked"], 4);
    assert!(
        g["diagnosis"]
            .as_str()
            .is_some_and(|d| d.starts_with("every consumer is at its prefetch window")),
        "{g}"
    );
    let missing = http_get(&http, "/api/v1/topics/nope", None);
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("nope"), "{}", missing.body);
}

#[test]
fn with_auth_everything_but_health_needs_the_token() {
    let server = Server::start(&["--http", "127.0.0.1:0", "--auth-token", "s3cret"]);
    let http = server.http.clone().unwrap();
    assert_eq!(http_get(&http, "/healthz", None).status, 200);
    assert_eq!(http_get(&http, "/readyz", None).status, 200);
    for path in [
        "/metrics",
        "/api/v1/stats",
        "/api/v1/topics",
        "/",
        "/app.js",
    ] {
        let refused = http_get(&http, path, None);
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused.body.contains("Bearer"), "{}", refused.body);
        assert_eq!(http_get(&http, path, Some("wrong")).status, 401, "{path}");
        assert_eq!(http_get(&http, path, Some("s3cret")).status, 200, "{path}");
    }
    // A browser sends the token as the password of HTTP Basic authentication.
    let stream = std::net::TcpStream::connect(&http).unwrap();
    let reply = super::harness::http_get_with(stream, "/api/v1/stats", "Basic YW55OnMzY3JldA==");
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn an_explicit_http_address_that_cannot_bind_is_fatal_the_default_only_warns() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "memory",
            "--http",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve HTTP on {addr}")),
        "{stderr}"
    );

    // The default port taken: a warning, and the server serves without HTTP.
    let default = std::net::TcpListener::bind(mq_server::DEFAULT_HTTP);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args(["--listen", "127.0.0.1:0", "--storage", "memory"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    if default.is_ok() {
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut warning = String::new();
        stderr.read_line(&mut warning).unwrap();
        assert!(warning.contains("default HTTP port is taken"), "{warning}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
