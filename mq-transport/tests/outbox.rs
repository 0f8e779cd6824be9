//! The outbox over real loopback sockets: frames from many senders arrive whole and in each
//! sender's order however the socket keeps up, a cancelled send leaves nothing half
//! written, and the sending direction closes once the last handle is gone, after the last
//! frame, or when the flusher is gone.

// Test helpers outside #[test] functions unwrap freely too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use mq_core::{NewMessage, TopicName};
use mq_transport::{
    Blocked, ClientConnection, ClientMsg, Frame, InProcessTransport, Incoming, Outbox, RequestId,
    ServerConnection, TcpTransport, Transport, TrySendError, outbox,
};

/// A client connection and the server's end of it, over loopback TCP.
async fn pair() -> (ClientConnection, ServerConnection) {
    connected(&TcpTransport::default()).await
}

/// A client connection of `transport` and the server's end of it.
async fn connected(transport: &dyn Transport) -> (ClientConnection, ServerConnection) {
    let mut listener = transport.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let (client, accepted) = tokio::join!(transport.connect(&addr), listener.accept());
    (
        client.unwrap(),
        accepted.unwrap().establish().await.unwrap(),
    )
}

/// A frame of `size` payload bytes that names its sender and its number.
fn numbered(sender: u32, seq: u32, size: usize) -> Frame<ClientMsg> {
    let mut payload = vec![0u8; size.max(8)];
    payload[..4].copy_from_slice(&sender.to_be_bytes());
    payload[4..8].copy_from_slice(&seq.to_be_bytes());
    Frame::new(
        RequestId(seq + 1),
        ClientMsg::Publish {
            topic: TopicName::new("t").unwrap(),
            messages: vec![NewMessage::new(payload)],
        },
    )
}

fn sender_and_seq(frame: &Frame<ClientMsg>) -> (u32, u32) {
    let ClientMsg::Publish { messages, .. } = &frame.msg else {
        panic!("not a publish: {frame:?}");
    };
    let p = &messages[0].payload;
    (
        u32::from_be_bytes(p[..4].try_into().unwrap()),
        u32::from_be_bytes(p[4..8].try_into().unwrap()),
    )
}

/// Reads frames until the connection closes.
async fn read_all(server: &mut ServerConnection) -> Vec<Frame<ClientMsg>> {
    let mut frames = Vec::new();
    loop {
        match server.reader.read_frame().await.unwrap() {
            Incoming::Frame(frame) => frames.push(frame),
            Incoming::Closed => return frames,
            Incoming::Bad(bad) => panic!("a frame arrived damaged: {bad}"),
        }
    }
}

fn never_last(_: &ClientMsg) -> bool {
    false
}

/// Sends until the outbox's queue is full while its flusher waits for the peer (`blocked`
/// says it does); returns how many frames were sent.
async fn fill(out: &Outbox<ClientMsg>, sender: u32, blocked: &Blocked) -> u32 {
    let mut seq = 0;
    loop {
        match out.try_send(numbered(sender, seq, 64 * 1024)) {
            Ok(()) => seq += 1,
            Err(TrySendError::Full(_)) if blocked.for_how_long().is_some() => return seq,
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Closed(_)) => panic!("closed while filling"),
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_many_senders_arrive_whole_and_in_each_senders_order() {
    let (client, mut server) = pair().await;
    let (out, flusher) = outbox(client.writer, 8, never_last);
    let blocked = Blocked::default();
    let watched = blocked.clone();
    let flushing = tokio::spawn(async move { flusher.run(None, Some(&watched)).await });
    // The reader waits until the socket has refused more and the queue is full, so that
    // sends go through every path: written at once, queued, waiting for room.
    let first = fill(&out, 99, &blocked).await;
    let senders: Vec<_> = (0..4u32)
        .map(|sender| {
            let out = out.clone();
            tokio::spawn(async move {
                for seq in 0..300 {
                    out.send(numbered(sender, seq, 1 + (seq as usize * 997) % 20_000))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    drop(out);
    let reading = tokio::spawn(async move { read_all(&mut server).await });
    for s in senders {
        s.await.unwrap();
    }
    flushing.await.unwrap().unwrap();
    let frames = reading.await.unwrap();
    assert_eq!(frames.len(), first as usize + 4 * 300);
    let mut next = [0u32; 100];
    for frame in &frames {
        let (sender, seq) = sender_and_seq(frame);
        assert_eq!(seq, next[sender as usize], "sender {sender} out of order");
        next[sender as usize] += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_dropped_while_it_waits_for_room_sends_nothing() {
    // In process: a peer that does not read holds the writer still for certain (a socket's
    // buffers may still grow).
    let (client, mut server) = connected(&InProcessTransport::new()).await;
    let (out, flusher) = outbox(client.writer, 4, never_last);
    let blocked = Blocked::default();
    let watched = blocked.clone();
    let flushing = tokio::spawn(async move { flusher.run(None, Some(&watched)).await });
    let sent = fill(&out, 1, &blocked).await;
    {
        let mut waiting = pin!(out.send(numbered(1, sent, 64 * 1024)));
        let polled = waiting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "the queue is full: the send waits");
    }
    let frames = tokio::spawn(async move { read_all(&mut server).await });
    out.send(numbered(1, sent, 10)).await.unwrap();
    drop(out);
    flushing.await.unwrap().unwrap();
    let seqs: Vec<u32> = frames
        .await
        .unwrap()
        .iter()
        .map(|f| sender_and_seq(f).1)
        .collect();
    assert_eq!(seqs, (0..=sent).collect::<Vec<_>>());
}

#[tokio::test]
async fn nothing_is_sent_after_the_last_frame_and_the_connection_closes() {
    let (client, mut server) = pair().await;
    let (out, flusher) = outbox(client.writer, 16, |m| matches!(m, ClientMsg::Goodbye));
    let flushing = tokio::spawn(flusher.run(None, None));
    out.send(numbered(0, 0, 10)).await.unwrap();
    out.send(Frame::new(RequestId(0), ClientMsg::Goodbye))
        .await
        .unwrap();
    assert!(out.send(numbered(0, 1, 10)).await.is_err());
    // The handle is still alive: the last frame alone closes the connection.
    let frames = read_all(&mut server).await;
    assert_eq!(frames.len(), 2);
    assert!(matches!(frames[1].msg, ClientMsg::Goodbye));
    flushing.await.unwrap().unwrap();
    drop(out);
}

#[tokio::test]
async fn senders_are_refused_once_the_flusher_is_gone() {
    let (client, _server) = pair().await;
    let (out, flusher) = outbox(client.writer, 16, never_last);
    let flushing = tokio::spawn(flusher.run(None, None));
    flushing.abort();
    assert!(flushing.await.unwrap_err().is_cancelled());
    assert!(matches!(
        out.try_send(numbered(0, 0, 10)),
        Err(TrySendError::Closed(_))
    ));
    assert!(out.send(numbered(0, 0, 10)).await.is_err());
}

#[tokio::test]
async fn a_write_that_fails_is_reported_and_later_sends_are_refused() {
    let (client, server) = pair().await;
    let (out, flusher) = outbox(client.writer, 16, never_last);
    let flushing = tokio::spawn(flusher.run(None, None));
    drop(server);
    // The peer is gone: writes fail once the kernel knows (the first may still be taken).
    while out.send(numbered(0, 0, 64 * 1024)).await.is_ok() {
        tokio::task::yield_now().await;
    }
    assert!(flushing.await.unwrap().is_err());
}
