//! Failures: exit 1 with one `error: …` line saying what to do; bad usage exits 2.

use super::harness::{Server, failed, mq};

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    lines[0]
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    let stderr = failed(&mq(&["--server", "127.0.0.1:1", "topics", "list"]), 1);
    let line = one_line(&stderr);
    assert!(
        line.contains("cannot connect to the server at 127.0.0.1:1"),
        "{line}"
    );
    assert!(line.contains("is mq-server running there?"), "{line}");
}

#[test]
fn bad_usage_exits_2() {
    failed(&mq(&["publish"]), 2);
    failed(&mq(&["consume", "t", "--timeout", "soon"]), 2);
    failed(&mq(&["frobnicate"]), 2);
}

#[test]
fn an_invalid_topic_name_says_which_characters_to_use() {
    let server = Server::start();
    // A usage error (exit 2), found before connecting.
    let stderr = failed(&server.mq(&["publish", "a b", "x"]), 2);
    assert!(
        stderr.contains("topic name \"a b\" is invalid: use A-Z a-z 0-9 . _ -"),
        "{stderr}"
    );
}

#[test]
fn a_busy_exclusive_group_names_topic_and_group() {
    let server = Server::start();
    let mut holder = std::process::Command::new(env!("CARGO_BIN_EXE_mq"))
        .args([
            "--server",
            &server.addr,
            "consume",
            "solo",
            "--group",
            "g",
            "--exclusive",
            "--create",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The holder is attached once the group shows a consumer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = server.mq(&["groups", "list", "solo", "--format", "json"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"consumers\":1")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exclusive consumer never attached"
        );
        std::thread::yield_now();
    }
    let stderr = failed(
        &server.mq(&["consume", "solo", "--group", "g", "--count", "1"]),
        1,
    );
    let line = one_line(&stderr);
    assert!(
        line.contains("\"solo\"") && line.contains("\"g\"") && line.contains("exclusive"),
        "{line}"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn a_full_topic_is_reported() {
    let server = Server::start();
    let out = server.mq(&["topics", "create", "tiny", "--max-messages", "1"]);
    assert!(out.status.success());
    assert!(server.mq(&["publish", "tiny", "one"]).status.success());
    let stderr = failed(&server.mq(&["publish", "tiny", "two"]), 1);
    assert!(
        one_line(&stderr).contains("topic \"tiny\" is full (max_messages 1)"),
        "{stderr}"
    );
}

#[test]
fn a_quarantined_topic_is_listed_and_refused_with_its_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    std::fs::create_dir_all(dir.path().join("topics/broken")).expect("topic dir");
    std::fs::write(dir.path().join("topics/broken/config.json"), "{").expect("config");
    let server = Server::start_with(&["--data-dir", data]);
    let listed = super::harness::ok(&server.mq(&["topics", "list"]));
    assert!(listed.contains("quarantined: broken:"), "{listed}");
    assert!(listed.contains("config.json"), "{listed}");
    let stderr = failed(&server.mq(&["publish", "broken", "x"]), 1);
    let line = one_line(&stderr);
    assert!(line.contains("topic \"broken\" is quarantined"), "{line}");
}
