//! Any sequence of client frames, after a Hello, into a real server session over the
//! in-process transport and a real broker: the session never panics, every reply carries
//! the id of a request sent (or 0), and it still answers a Ping at the end unless the
//! sequence closed the connection.
#![no_main]

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mq_core::Broker;
use mq_transport::{
    ClientMsg, Frame, InProcessTransport, Incoming, PROTOCOL_VERSION, RequestId, ServerMsg,
    Transport, decode_frame,
};

/// The client frames in `data`: each is a length byte, then that many bytes of body.
fn frames(data: &[u8]) -> Vec<Frame<ClientMsg>> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (body, after) = tail.split_at(len);
        if let Ok(frame) = decode_frame::<ClientMsg>(Bytes::copy_from_slice(body)) {
            out.push(frame);
        }
        rest = after;
    }
    out
}

async fn exercise(sent: Vec<Frame<ClientMsg>>) {
    let transport = InProcessTransport::new();
    let listener = transport.bind("").await.expect("bind");
    let addr = listener.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mq_server::run(
        listener,
        Broker::new(),
        mq_server::ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut conn = transport.connect(&addr).await.expect("connect");
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: "fuzz".into(),
        token: None,
    };
    let mut ids: HashSet<u32> = HashSet::from([0, 1, u32::MAX]);
    conn.writer
        .feed(Frame::new(RequestId(1), hello))
        .expect("hello");
    for frame in sent {
        ids.insert(frame.id.0);
        if conn.writer.feed(frame).is_err() {
            break;
        }
    }
    let _ = conn
        .writer
        .feed(Frame::new(RequestId(u32::MAX), ClientMsg::Ping));
    let _ = conn.writer.flush().await;
    let read_all = async {
        loop {
            match conn.reader.read_frame().await {
                Ok(Incoming::Frame(frame)) => {
                    assert!(
                        ids.contains(&frame.id.0),
                        "a reply to an unknown id: {frame:?}"
                    );
                    if frame.id.0 == u32::MAX && frame.msg == ServerMsg::Pong {
                        return;
                    }
                }
                Ok(Incoming::Bad(bad)) => panic!("the server sent a bad frame: {bad}"),
                Ok(Incoming::Closed) | Err(_) => return,
            }
        }
    };
    // Requests that wait by design (a long nack delay, a full window) cannot hold the Ping
    // beyond the requests before it: one in flight per connection, answered in order.
    let _ = tokio::time::timeout(Duration::from_secs(5), read_all).await;
    drop(conn);
    let _ = stop.send(());
    server
        .await
        .expect("the server task does not panic")
        .expect("the server stops cleanly");
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(exercise(frames(data)));
});
