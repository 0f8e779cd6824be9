//! Durability at the edges through the real server: a full disk, the free-space floor, and
//! messages at the exact size limit.

use mq_client::{AckMode, ClientError, NewMessage, Subscription};
use mq_core::Offset;
use mq_transport::{ClientMsg, ErrorCode, ServerMsg};

use super::harness::{Raw, Server};
use super::{group, topic};

fn dir_arg(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_message_and_stores_no_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--data-dir",
        dir_arg(&dir),
        "--fsync",
        "always",
        "--min-free-disk",
        "0",
    ];
    let server = Server::start_with_file_limit(256 * 1024, &args);
    let client = server.client().await;
    let producer = client.producer(topic("full"));
    let mut acked: Vec<(Offset, String)> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    // Batches until the file limit refuses one, then single small messages that still fit
    // after it: a failed write must not leave bytes that would swallow them.
    let mut batch_size = 50;
    while refused < 20 {
        let batch: Vec<NewMessage> = (0..batch_size)
            .map(|i| NewMessage::new(format!("{n:06}-{i:03}-{}", "x".repeat(200 / batch_size))))
            .collect();
        let payloads: Vec<String> = batch
            .iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect();
        match producer.send_batch(batch).await {
            Ok(offsets) => acked.extend(offsets.into_iter().zip(payloads)),
            Err(ClientError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::Storage, "{message}");
                refused += 1;
                batch_size = 1;
            }
            Err(e) => panic!("{e}"),
        }
        n += 1;
    }
    let after_refusal = acked.iter().filter(|(_, p)| p.contains("-000-")).count();
    assert!(after_refusal > 0 && acked.len() > 1000, "{}", acked.len());
    drop(producer);
    drop(client);
    server.crash();

    let server = Server::start_with(&args);
    let client = server.client().await;
    // Counted before anything is consumed: consumed messages are trimmed by the cleaner.
    let stats = client.topic_stats(&topic("full")).await.unwrap();
    assert_eq!(
        stats.retained,
        acked.len() as u64,
        "no refused message came back"
    );
    assert!(stats.lost.is_empty(), "{:?}", stats.lost);
    let mut c = client
        .subscribe(
            Subscription::new(topic("full"))
                .group(group("check"))
                .ack(AckMode::Auto),
        )
        .await
        .unwrap();
    let mut stored = Vec::new();
    while stored.len() < acked.len() {
        let d = c.recv().await.unwrap();
        stored.push((d.offset(), String::from_utf8(d.payload().to_vec()).unwrap()));
    }
    assert_eq!(
        stored, acked,
        "every acknowledged message, in order, nothing else"
    );
    let next = client
        .producer(topic("full"))
        .send(NewMessage::new("after"))
        .await
        .unwrap();
    assert_eq!(next.0, acked.last().unwrap().0.0 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_floor_publishes_get_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&[
        "--data-dir",
        dir_arg(&dir),
        "--min-free-disk",
        "1000000000000000000",
    ]);
    let client = server.client().await;
    let err = client
        .producer(topic("t"))
        .send(NewMessage::new("x"))
        .await
        .unwrap_err();
    let ClientError::Server { code, message } = err else {
        panic!("{err}")
    };
    assert_eq!(code, ErrorCode::DiskFull);
    assert!(message.contains("--min-free-disk"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_the_size_limit_is_delivered_and_dead_lettered_and_one_byte_more_is_refused() {
    let max_frame = 8192;
    let server = Server::start(&["--max-frame", &max_frame.to_string()]);
    let client = server.client().await;
    let long = topic(&"t".repeat(200));
    let mut config = mq_core::TopicConfig::default();
    config.groups.max_deliveries = Some(1);
    client.create_topic(&long, config).await.unwrap();
    let limit = mq_transport::max_message_size(max_frame) as usize;
    let mut message = NewMessage::new(Vec::new()).key("a key").priority(3);
    for i in 0..20 {
        message = message.header(format!("header-{i}"), format!("value {i}"));
    }
    let fixed = message.encoded_size() as usize;
    message.payload = vec![b'p'; limit - fixed].into();
    let mut too_big = message.clone();
    too_big.payload = vec![b'p'; limit - fixed + 1].into();

    // The SDK refuses it before sending, naming the size and the limit...
    let producer = client.producer(long.clone());
    let err = producer.send(too_big.clone()).await.unwrap_err();
    let ClientError::TooLarge { message: why } = err else {
        panic!("{err}")
    };
    assert!(
        why.contains(&format!("is {} bytes", limit + 1))
            && why.contains(&format!("limit of {limit} bytes")),
        "{why}"
    );
    // ...and a client that sends it anyway is refused by the server, which stays up.
    let mut raw = Raw::handshaken(&server.addr, None);
    raw.send(
        2,
        ClientMsg::Publish {
            topic: long.clone(),
            messages: vec![too_big],
        },
    );
    match raw.recv().msg {
        ServerMsg::Error { code, message: why } => {
            assert_eq!(code, ErrorCode::FrameTooLarge);
            assert!(why.contains(&format!("at most {limit}")), "{why}");
        }
        other => panic!("expected frame_too_large, got {other:?}"),
    }
    producer.send(message.clone()).await.unwrap();

    let g = group(&"g".repeat(200));
    let mut c = client
        .subscribe(Subscription::new(long.clone()).group(g.clone()))
        .await
        .unwrap();
    let d = c.recv().await.unwrap();
    assert_eq!(d.payload(), &message.payload);
    assert_eq!(d.headers().len(), 20);
    d.nack(None).await.unwrap();

    let mut dead = client
        .subscribe(Subscription::new(long.dead_letter()).group(g))
        .await
        .unwrap();
    let d = dead.recv().await.unwrap();
    assert_eq!(d.payload(), &message.payload);
    assert_eq!(d.key().map(|k| k.as_ref()), Some(&b"a key"[..]));
    assert_eq!(d.headers().len(), 26);
    d.ack_confirmed().await.unwrap();
    let stats = client.topic_stats(&long).await.unwrap();
    assert_eq!(stats.groups[0].dead_lettered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_frame_limit_too_small_for_a_stored_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&["--data-dir", dir_arg(&dir)]);
    let client = server.client().await;
    client
        .producer(topic("large"))
        .send(NewMessage::new(vec![0u8; 6000]))
        .await
        .unwrap();
    drop(client);
    assert!(server.terminate().success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mq-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir", dir_arg(&dir)])
        .args(["--max-frame", "4096"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("topic \"large\" holds a message of 6000 bytes"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_damage_offline_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&["--data-dir", dir_arg(&dir)]);
    let client = server.client().await;
    let producer = client.producer(topic("checked"));
    for i in 0..100 {
        producer
            .send(NewMessage::new(format!("message {i:03}")))
            .await
            .unwrap();
    }
    drop(producer);
    drop(client);
    assert!(server.terminate().success());
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mq-server"))
            .args(["check", "--data-dir", dir_arg(&dir)])
            .output()
            .unwrap()
    };
    let clean = check();
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{stdout}");
    assert!(
        stdout.contains("checked 1 topics, 100 messages"),
        "{stdout}"
    );

    let segment = dir
        .path()
        .join("topics/checked")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 16]
        .iter_mut()
        .for_each(|b| *b ^= 0x5A);
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = check();
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("lost in"), "{stdout}");
    assert!(stdout.contains(&segment.display().to_string()), "{stdout}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "check changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_topics_start_and_serve_under_256_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", dir_arg(&dir), "--min-free-disk", "0"];
    let limited = |args: &[&str]| {
        let mut shell = vec!["-c", "ulimit -n 256; exec \"$0\" \"$@\""];
        shell.push(env!("CARGO_BIN_EXE_mq-server"));
        shell.extend(["--listen", "127.0.0.1:0"]);
        shell.extend(args);
        Server::start_command("sh", &shell)
    };
    let server = limited(&args);
    let client = server.client().await;
    for t in 0..1000 {
        client
            .publish(
                &topic(&format!("topic-{t:04}")),
                vec![NewMessage::new(format!("m{t}"))],
            )
            .await
            .unwrap();
    }
    drop(client);
    assert!(server.terminate().success());

    let server = limited(&args);
    let client = server.client().await;
    assert_eq!(client.topics().await.unwrap().len(), 1000);
    for t in (0..1000).step_by(97) {
        let mut c = client
            .subscribe(Subscription::new(topic(&format!("topic-{t:04}"))).ack(AckMode::Auto))
            .await
            .unwrap();
        assert_eq!(
            c.recv().await.unwrap().payload(),
            format!("m{t}").as_bytes()
        );
    }
    // Past the descriptor limit, a new connection is told so at once, never left hanging.
    let mut raws = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut raw = super::harness::Raw::connect(&server.addr);
        raw.send(
            1,
            mq_transport::ClientMsg::Hello {
                version: mq_transport::PROTOCOL_VERSION,
                client: "raw".into(),
                token: None,
            },
        );
        match raw.try_recv().map(|f| f.msg) {
            Some(mq_transport::ServerMsg::Welcome { .. }) => raws.push(raw),
            Some(mq_transport::ServerMsg::Error { code, message }) => {
                assert_eq!(code, ErrorCode::ServerBusy, "{message}");
                assert!(message.contains("file descriptors"), "{message}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused > 0 && !raws.is_empty(), "{refused} refused");
    drop(raws);
    let again = client.topics().await.unwrap();
    assert_eq!(again.len(), 1000, "the server serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_writes_fail_ends_and_returns_its_deliveries() {
    use mq_transport::{
        ClientMsg, Frame, InProcessTransport, RequestId, SubscribeRequest, Transport,
    };
    let transport = InProcessTransport::new();
    let listener = transport.bind("").await.unwrap();
    let addr = listener.local_addr();
    let broker = mq_core::Broker::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mq_server::run(
        listener,
        broker.clone(),
        mq_server::ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let t = topic("w");
    for i in 0..10 {
        broker
            .publish(&t, NewMessage::new(format!("m{i}")))
            .unwrap();
    }
    // A client that can send but no longer receive: every write of the server fails.
    let mut conn = transport.connect(&addr).await.unwrap();
    conn.writer
        .feed(Frame::new(
            RequestId(1),
            ClientMsg::Hello {
                version: mq_transport::PROTOCOL_VERSION,
                client: "deaf".into(),
                token: None,
            },
        ))
        .unwrap();
    conn.writer.flush().await.unwrap();
    assert!(
        matches!(
            conn.reader.read_frame().await.unwrap(),
            mq_transport::Incoming::Frame(_)
        ),
        "welcome"
    );
    drop(conn.reader);
    conn.writer
        .feed(Frame::new(
            RequestId(2),
            ClientMsg::Subscribe(SubscribeRequest {
                topic: t.clone(),
                group: Some(group("g")),
                start: mq_core::StartPosition::Earliest,
                ack: Some(AckMode::Manual),
                exclusive: false,
                create_topic: true,
                prefetch: 5,
            }),
        ))
        .unwrap();
    conn.writer.flush().await.unwrap();
    // The session ends: its consumer detaches and what it had in flight goes back.
    let ended = async {
        loop {
            let stats = broker.topic_stats(&t).unwrap();
            if let Some(g) = stats.groups.first()
                && g.consumers == 0
            {
                break g.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    let g = tokio::time::timeout(std::time::Duration::from_secs(10), ended)
        .await
        .expect("the session ends when its writes fail");
    assert_eq!((g.in_flight, g.pending), (0, 10), "{g:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
