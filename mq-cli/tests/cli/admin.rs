//! The admin commands against a real server: peek, groups create and seek, topics purge and
//! alter, positions given as offsets and times, and the note of an empty consume.

use super::harness::{Server, failed, mq, ok};

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn peek_reads_without_a_group_from_any_position() {
    let server = Server::start();
    ok(&server.mq(&["publish", "t", "a", "b", "c", "d"]));
    assert_eq!(lines(&ok(&server.mq(&["peek", "t"]))), ["a", "b", "c", "d"]);
    assert_eq!(
        lines(&ok(
            &server.mq(&["peek", "t", "--from", "2", "--count", "1"])
        )),
        ["c"]
    );
    // Relative times and RFC 3339 times: everything was published in the last hour.
    assert_eq!(
        lines(&ok(
            &server.mq(&["peek", "t", "--from", "-1h", "--count", "2"])
        )),
        ["a", "b"]
    );
    assert_eq!(
        ok(&server.mq(&["peek", "t", "--from", "2999-01-01T00:00:00Z"])),
        ""
    );
    let json = ok(&server.mq(&["peek", "t", "--from", "latest", "--format", "json"]));
    assert_eq!(json, "");
    let json = ok(&server.mq(&["peek", "t", "--count", "1", "--format", "json"]));
    let m: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(
        (m["offset"].as_u64(), m["payload"].as_str()),
        (Some(0), Some("a"))
    );
    // Peeking touched no group: a new group still gets everything.
    let got = ok(&server.mq(&["consume", "t", "--group", "g", "--count", "4"]));
    assert_eq!(lines(&got), ["a", "b", "c", "d"]);
}

#[test]
fn groups_are_created_and_moved_and_topics_purged_and_altered() {
    let server = Server::start();
    // Kept once consumed: a group created past `a` and `b` is done with them, so with the
    // default (delete at once) the cleaner may remove them before the seek back reads them.
    ok(&server.mq(&["topics", "create", "t", "--retain-consumed", "1h"]));
    ok(&server.mq(&["publish", "t", "a", "b", "c"]));
    assert_eq!(
        ok(&server.mq(&["groups", "create", "t", "late", "--from", "2"])),
        "created group late of topic t\n"
    );
    let err = failed(&server.mq(&["groups", "create", "t", "late"]), 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        lines(&ok(
            &server.mq(&["consume", "t", "--group", "late", "--count", "1"])
        )),
        ["c"]
    );
    assert_eq!(
        ok(&server.mq(&["groups", "seek", "t", "late", "--to", "earliest"])),
        "moved group late of topic t\n"
    );
    assert_eq!(
        lines(&ok(
            &server.mq(&["consume", "t", "--group", "late", "--count", "3"])
        )),
        ["a", "b", "c"]
    );

    assert_eq!(
        ok(&server.mq(&["topics", "purge", "t"])),
        "purged topic t\n"
    );
    assert_eq!(ok(&server.mq(&["peek", "t"])), "");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&server.mq(&["stats", "t", "--format", "json"]))).unwrap();
    assert_eq!(
        (stats["retained"].as_u64(), stats["next_offset"].as_u64()),
        (Some(0), Some(3))
    );

    assert_eq!(
        ok(&server.mq(&["topics", "alter", "t", "--max-messages", "1"])),
        "altered topic t\n"
    );
    ok(&server.mq(&["publish", "t", "x"]));
    let err = failed(&server.mq(&["publish", "t", "y"]), 1);
    assert!(err.contains("full"), "{err}");
    let described = ok(&server.mq(&["topics", "describe", "t", "--format", "json"]));
    let info: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(info["config"]["retention"]["max_messages"], 1);
    // What alter did not name stays as it was.
    assert_eq!(info["config"]["retention"]["max_bytes"], 1u64 << 30);
}

#[test]
fn a_bad_position_is_a_usage_error_before_connecting() {
    // No server on this port: the command must fail on its arguments first.
    for args in [
        &["peek", "t", "--from", "first"][..],
        &["groups", "seek", "t", "g", "--to", "-ten"],
        &["consume", "t", "--from", "yesterday"],
    ] {
        let err = failed(&mq(&[&["--server", "127.0.0.1:9"], args].concat()), 2);
        assert!(err.contains("is not a position"), "{err}");
    }
}

#[test]
fn an_empty_consume_says_when_retention_deleted_what_it_wanted() {
    let server = Server::start();
    ok(&server.mq(&["publish", "t", "a", "b"]));
    assert_eq!(
        lines(&ok(
            &server.mq(&["consume", "t", "--group", "first", "--count", "2"])
        )),
        ["a", "b"]
    );
    // The cleaner deletes what every group acked (retain_consumed is 0).
    loop {
        let stats: serde_json::Value =
            serde_json::from_str(&ok(&server.mq(&["stats", "t", "--format", "json"]))).unwrap();
        if stats["retained"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = server.mq(&["consume", "t", "--group", "late", "--timeout", "200ms"]);
    assert_eq!(ok(&out), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no message within 200ms")
            && err.contains("messages before offset 2 were deleted"),
        "{err}"
    );
}

#[test]
fn bad_names_and_addresses_are_usage_errors_before_connecting() {
    for (args, says) in [
        (
            &["--server", "19301", "topics", "list"][..],
            "is not a server address: use HOST:PORT",
        ),
        (
            &["--server", "127.0.0.1:9", "publish", "a/b", "x"],
            "topic name \"a/b\" is invalid",
        ),
        (
            &["--server", "127.0.0.1:9", "consume", "t", "--group", "a b"],
            "group name \"a b\" is invalid",
        ),
        (
            &[
                "--server",
                "127.0.0.1:9",
                "groups",
                "seek",
                "t",
                "..",
                "--to",
                "0",
            ],
            "group name \"..\" is invalid",
        ),
    ] {
        let err = failed(&mq(args), 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `mq consume` with its stdout piped to this test, and the lines it has written so far.
fn consume_piped(server: &Server, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_mq"))
        .args([&["--server", server.addr.as_str(), "consume"][..], args].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn group_counts(server: &Server, topic: &str) -> (u64, u64, u64) {
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&server.mq(&["stats", topic, "--format", "json"]))).unwrap();
    let g = &stats["groups"][0];
    (
        g["acked"].as_u64().unwrap(),
        g["pending"].as_u64().unwrap(),
        g["in_flight"].as_u64().unwrap(),
    )
}

#[test]
fn an_interrupted_consume_acks_everything_it_printed_and_exits_130() {
    use std::io::BufRead;
    let server = Server::start();
    let lines: String = (0..500).map(|i| format!("m{i}\n")).collect();
    ok(&server.mq_stdin(&["publish", "t"], &lines));
    let mut child = consume_piped(&server, &["t", "--group", "g", "--count", "1000"]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = 0;
    let mut line = String::new();
    while printed < 500 {
        line.clear();
        out.read_line(&mut line).unwrap();
        printed += 1;
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(group_counts(&server, "t"), (500, 0, 0));
}

#[test]
fn a_consume_whose_reader_goes_away_acks_what_it_wrote_and_exits_0() {
    use std::io::BufRead;
    let server = Server::start();
    ok(&server.mq(&["publish", "t", "a", "b", "c"]));
    let mut child = consume_piped(&server, &["t", "--group", "g"]);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "a\n");
    drop(out);
    // More to write after the reader is gone: the write fails with a broken pipe.
    let lines: String = (0..2000).map(|i| format!("more {i}\n")).collect();
    ok(&server.mq_stdin(&["publish", "t"], &lines));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let (acked, pending, in_flight) = group_counts(&server, "t");
    assert!(acked >= 1, "{acked}");
    assert_eq!((acked + pending, in_flight), (2003, 0));
}

#[test]
fn a_message_over_the_limit_is_refused_before_sending_naming_size_and_limit() {
    let server = Server::start_with(&["--storage", "memory", "--max-frame", "4096"]);
    let big = "x".repeat(5000);
    let err = failed(&server.mq(&["publish", "t", "small", &big]), 1);
    assert!(
        err.contains("message 2 of the batch for topic \"t\" is 5000 bytes")
            && err.contains("over the server's limit of")
            && err.contains("--max-frame is 4096"),
        "{err}"
    );
    // Nothing of the batch was stored (not even the topic), and the server is fine.
    let err = failed(&server.mq(&["peek", "t"]), 1);
    assert!(err.contains("does not exist"), "{err}");
    ok(&server.mq(&["publish", "t", "fits"]));
    assert_eq!(ok(&server.mq(&["peek", "t"])), "fits\n");
}

#[test]
fn consume_continues_a_group_and_refuses_to_silently_ignore_a_start() {
    let server = Server::start();
    ok(&server.mq(&["publish", "t", "a", "b", "c"]));
    assert_eq!(
        lines(&ok(
            &server.mq(&["consume", "t", "--group", "g", "--count", "1"])
        )),
        ["a"]
    );
    let err = failed(
        &server.mq(&[
            "consume", "t", "--group", "g", "--from", "0", "--count", "1",
        ]),
        1,
    );
    assert!(
        err.contains("continues where it is") && err.contains("mq groups seek"),
        "{err}"
    );
    assert_eq!(
        lines(&ok(
            &server.mq(&["consume", "t", "--group", "g", "--count", "2"])
        )),
        ["b", "c"]
    );
}

#[test]
fn consuming_a_missing_topic_is_an_error_unless_asked_to_create_it() {
    let server = Server::start();
    let err = failed(&server.mq(&["consume", "ordres", "--timeout", "100ms"]), 1);
    assert!(err.contains("topic \"ordres\" does not exist"), "{err}");
    assert_eq!(
        ok(&server.mq(&["topics", "list"])).lines().count(),
        1,
        "nothing created"
    );
    ok(&server.mq(&["consume", "ordres", "--create", "--timeout", "100ms"]));
    assert!(ok(&server.mq(&["topics", "list"])).contains("ordres"));
}
