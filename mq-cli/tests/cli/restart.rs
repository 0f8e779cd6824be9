//! The CLI across a server crash: the client reconnects and resends what was not
//! acknowledged, and the server stores each line once.

use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Server, ok};

fn retained(server: &Server, topic: &str) -> u64 {
    let out = server.mq(&["stats", topic, "--format", "json"]);
    if !out.status.success() {
        return 0;
    }
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["retained"].as_u64().unwrap()
}

#[test]
fn a_publish_from_stdin_across_a_server_crash_stores_every_line_exactly_once() {
    const LINES: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--fsync",
        "always",
    ];
    let server = Server::start_with(&args);
    let addr = server.addr.clone();
    let mut publish = Command::new(env!("CARGO_BIN_EXE_mq"))
        .args(["--server", &addr, "publish", "lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = publish.stdin.take().unwrap();
    // The pipe paces the writer: it blocks while mq does not read.
    let writer = std::thread::spawn(move || {
        let mut stdin = BufWriter::new(stdin);
        for i in 0..LINES {
            writeln!(stdin, "line {i}").unwrap();
        }
    });
    // Crash the server once a third of the lines are stored, and start it again.
    while retained(&server, "lines") < LINES as u64 / 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.crash();
    let server = Server::start_on(&addr, &args);
    writer.join().unwrap();
    let out = publish.wait_with_output().unwrap();
    let said = ok(&out);
    assert!(
        said.starts_with(&format!("published {LINES} messages")),
        "{said}"
    );
    assert_eq!(
        retained(&server, "lines"),
        LINES as u64,
        "stored exactly once"
    );
    let read = ok(&server.mq(&[
        "consume",
        "lines",
        "--group",
        "audit",
        "--count",
        &LINES.to_string(),
    ]));
    let mut lines: Vec<&str> = read.lines().collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), LINES, "every line, each once");
}
