//! The operator's tools of the real binary: the effective config printed and a config file
//! checked, JSON logs, shell completions and the manual page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn server(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args(args)
        .env_remove("MQ_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn the_effective_config_is_printed_and_a_config_file_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mq.toml");
    std::fs::write(&file, "max_topics = 7\nauth_token = \"hidden\"\n").unwrap();
    let out = server(&[
        "--print-config",
        "--config",
        file.to_str().unwrap(),
        "--max-groups-per-topic",
        "9",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(printed["max_topics"].as_integer(), Some(7));
    assert_eq!(printed["max_groups_per_topic"].as_integer(), Some(9));
    assert_eq!(printed["auth_token"].as_str(), Some("(set)"));

    let out = server(&["--check-config", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("mq.toml: valid\n"));
    std::fs::write(&file, "max_topicz = 7\n").unwrap();
    let out = server(&["--check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field") && err.contains("max_topicz"),
        "{err}"
    );
}

#[test]
fn logs_can_be_json_lines() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "memory",
            "--http",
            "off",
            "--log-format",
            "json",
        ])
        .env("MQ_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["level"], "INFO", "{line}");
    assert_eq!(entry["fields"]["message"], "mq-server ready", "{line}");
}

#[test]
fn completions_and_the_manual_page_are_printed() {
    let out = server(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete -F _mq__server"));
    let out = server(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH mq-server 1"), "{page}");
    assert!(page.contains("heartbeat"), "{page}");
}
