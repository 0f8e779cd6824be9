//! The CLI tour of the README, run for real: outputs pinned with insta.

use super::harness::{Server, ok};

/// Consume output with timestamps zeroed, so it can be pinned.
fn without_timestamps(json_lines: &str) -> String {
    json_lines
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
            v["timestamp"] = 0.into();
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn publish_then_consume_text_and_json() {
    let server = Server::start();
    insta::assert_snapshot!(
        "publish_args",
        ok(&server.mq(&["publish", "orders", "first", "second"]))
    );
    insta::assert_snapshot!(
        "publish_with_options",
        ok(&server.mq(&[
            "publish",
            "orders",
            "urgent",
            "--priority",
            "9",
            "--key",
            "k1",
            "--header",
            "trace=abc"
        ]))
    );
    insta::assert_snapshot!(
        "publish_stdin",
        ok(&server.mq_stdin(&["publish", "orders"], "line one\nline two\n"))
    );
    insta::assert_snapshot!(
        "consume_text",
        ok(&server.mq(&["consume", "orders", "--group", "reader", "--count", "3"]))
    );
    insta::assert_snapshot!(
        "consume_json",
        without_timestamps(&ok(&server.mq(&[
            "consume", "orders", "--group", "reader", "--count", "2", "--format", "json"
        ])))
    );
    // Nothing left: --timeout ends the wait with exit 0.
    assert_eq!(
        ok(&server.mq(&[
            "consume",
            "orders",
            "--group",
            "reader",
            "--timeout",
            "200ms"
        ])),
        ""
    );
    insta::assert_snapshot!(
        "stats_topic_json",
        ok(&server.mq(&["stats", "orders", "--format", "json"]))
    );
    insta::assert_snapshot!("stats_topic_text", ok(&server.mq(&["stats", "orders"])));
    insta::assert_snapshot!("groups_list", ok(&server.mq(&["groups", "list", "orders"])));
    let described = ok(&server.mq(&["groups", "describe", "orders", "reader"]));
    assert!(
        described.contains("group:           reader\n"),
        "{described}"
    );
    assert!(
        described.ends_with("diagnosis: no consumer is attached, and nothing waits\n"),
        "{described}"
    );
    let json = ok(&server.mq(&["groups", "describe", "orders", "reader", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["group"]["stats"]["name"], "reader");
    insta::assert_snapshot!(
        "groups_delete",
        ok(&server.mq(&["groups", "delete", "orders", "reader"]))
    );
}

#[test]
fn binary_payloads_come_out_as_base64_in_json() {
    let server = Server::start();
    ok(&server.mq_stdin(&["publish", "bin"], "ok\n"));
    let out = ok(&server.mq(&["consume", "bin", "--count", "1", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["payload"], "ok");
    assert_eq!(v["key"], serde_json::Value::Null);
}

#[test]
fn topics_create_list_describe_delete() {
    let server = Server::start();
    insta::assert_snapshot!(
        "topics_create",
        ok(&server.mq(&[
            "topics",
            "create",
            "jobs",
            "--retain-consumed",
            "5m",
            "--max-age",
            "1h",
            "--max-messages",
            "1000",
            "--max-bytes",
            "1000000",
            "--overflow",
            "drop-oldest",
            "--ack-timeout",
            "10s",
            "--max-deliveries",
            "3",
        ]))
    );
    ok(&server.mq(&["publish", "jobs", "a", "b"]));
    ok(&server.mq(&["publish", "other", "c"]));
    insta::assert_snapshot!("topics_list", ok(&server.mq(&["topics", "list"])));
    insta::assert_snapshot!(
        "topics_list_json",
        ok(&server.mq(&["topics", "list", "--format", "json"]))
    );
    insta::assert_snapshot!(
        "topics_describe",
        ok(&server.mq(&["topics", "describe", "jobs"]))
    );
    insta::assert_snapshot!(
        "topics_delete",
        ok(&server.mq(&["topics", "delete", "other"]))
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&server.mq(&["stats", "--format", "json"]))).unwrap();
    assert_eq!(stats["topics"], 1);
    assert_eq!(stats["messages_in"], 3);
    assert!(ok(&server.mq(&["stats"])).contains("messages in:"));
}

#[test]
fn bench_reports_the_spec_fields() {
    let server = Server::start();
    for workload in ["publish", "fanout", "workqueue", "limit"] {
        let out = ok(&server.mq(&[
            "bench",
            workload,
            "-n",
            "2000",
            "--consumers",
            "2",
            "--format",
            "json",
        ]));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["workload"], workload);
        for field in ["msgs", "payload_bytes", "secs", "msgs_per_s", "mb_per_s"] {
            assert!(v[field].is_number(), "{workload}: {field} missing in {v}");
        }
        let want = if workload == "fanout" { 4000 } else { 2000 };
        assert_eq!(v["msgs"], want, "{v}");
    }
    let out = ok(&server.mq(&[
        "bench", "latency", "-n", "200", "--rate", "2000", "--format", "json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for field in ["p50_us", "p99_us", "p999_us"] {
        assert!(v[field].is_number(), "{field} missing in {v}");
    }
    let text = ok(&server.mq(&["bench", "publish", "-n", "1000"]));
    assert!(text.starts_with("WORKLOAD"), "{text}");
}
