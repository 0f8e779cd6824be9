//! Users and permissions through the real server and a config file: tokens made with
//! `mq-server new-token`, each permission granted and refused with `permission_denied`.

use mq_client::{Client, ClientConfig, ClientError, GroupName, NewMessage, Subscription};
use mq_transport::ErrorCode;

use super::harness::Server;
use super::topic;

/// A token and its config digest, from `mq-server new-token`.
fn new_token() -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .arg("new-token")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("token: ")
        .unwrap();
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("token_sha256 = "))
        .unwrap()
        .trim_matches('"');
    (token.to_owned(), digest.to_owned())
}

async fn login(server: &Server, token: &str) -> Client {
    let config = ClientConfig {
        token: Some(token.to_owned()),
        ..ClientConfig::default()
    };
    Client::connect_with(&server.addr, config).await.unwrap()
}

fn denied(err: ClientError, user: &str) {
    let ClientError::Server { code, message } = &err else {
        panic!("{err}")
    };
    assert_eq!(*code, ErrorCode::PermissionDenied, "{message}");
    assert!(message.contains(&format!("user \"{user}\"")), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_is_granted_and_refused() {
    let (writer_token, writer_digest) = new_token();
    let (reader_token, reader_digest) = new_token();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mq.toml");
    std::fs::write(
        &file,
        format!(
            r#"
storage = "memory"

[[users]]
name = "writer"
token_sha256 = "{writer_digest}"
permissions = [{{ topics = "orders.*", actions = ["publish", "admin"] }}]

[[users]]
name = "reader"
token_sha256 = "{reader_digest}"
permissions = [
  {{ topics = "orders.*", actions = ["consume", "stats"], groups = "billing-*" }},
]
"#
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config", file.to_str().unwrap()]);
    assert!(
        Client::connect(&server.addr).await.is_err(),
        "a token is required"
    );

    let writer = login(&server, &writer_token).await;
    let reader = login(&server, &reader_token).await;
    let orders = topic("orders.eu");
    writer
        .create_topic(&orders, mq_client::TopicConfig::default())
        .await
        .unwrap();
    writer
        .producer(orders.clone())
        .send(NewMessage::new("order"))
        .await
        .unwrap();
    denied(
        writer
            .producer(topic("payments"))
            .send(NewMessage::new("x"))
            .await
            .unwrap_err(),
        "writer",
    );
    denied(writer.topic_stats(&orders).await.unwrap_err(), "writer");
    denied(
        writer
            .subscribe(Subscription::new(orders.clone()))
            .await
            .unwrap_err(),
        "writer",
    );

    let billing = GroupName::new("billing-1").unwrap();
    let mut c = reader
        .subscribe(Subscription::new(orders.clone()).group(billing))
        .await
        .unwrap();
    assert_eq!(&c.recv().await.unwrap().payload()[..], b"order");
    let other = GroupName::new("marketing").unwrap();
    denied(
        reader
            .subscribe(Subscription::new(orders.clone()).group(other))
            .await
            .unwrap_err(),
        "reader",
    );
    denied(
        reader
            .producer(orders.clone())
            .send(NewMessage::new("x"))
            .await
            .unwrap_err(),
        "reader",
    );
    denied(reader.delete_topic(&orders).await.unwrap_err(), "reader");
    assert_eq!(reader.topic_stats(&orders).await.unwrap().published, 1);
    assert_eq!(reader.topics().await.unwrap(), vec![orders.clone()]);
    denied(reader.stats().await.unwrap_err(), "reader");
    // The dead-letter topic follows its topic's permissions.
    let dlq = orders.dead_letter();
    writer
        .create_topic(&dlq, mq_client::TopicConfig::default())
        .await
        .unwrap();
    reader.topic_stats(&dlq).await.unwrap();
    // The connection stays open after a refusal.
    reader.ping().await.unwrap();
}

fn users_file(path: &std::path::Path, name: &str, digest: &str, actions: &str) {
    std::fs::write(
        path,
        format!(
            r#"
storage = "memory"

[[users]]
name = "{name}"
token_sha256 = "{digest}"
permissions = [{{ topics = "*", actions = [{actions}] }}]
"#
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users_for_new_and_established_connections() {
    let (token, digest) = new_token();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mq.toml");
    users_file(&file, "ops", &digest, r#""publish", "stats""#);
    let server = Server::start_with(&["--config", file.to_str().unwrap()]);
    let ops = login(&server, &token).await;
    let t = topic("reloaded");
    ops.producer(t.clone())
        .send(NewMessage::new("before"))
        .await
        .unwrap();

    users_file(&file, "ops", &digest, r#""stats""#);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The established connection's next publish is refused once the reload is done.
    let refused = async {
        loop {
            match ops.producer(t.clone()).send(NewMessage::new("x")).await {
                Err(ClientError::Server {
                    code: ErrorCode::PermissionDenied,
                    ..
                }) => {
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the reload applies to established connections");
    assert_eq!(ops.topic_stats(&t).await.unwrap().topic, t);
}
