//! [`InProcessTransport`]: frames passed as values over channels between tasks of one
//! process. No bytes, no sockets; the same server and client code runs over it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::protocol::Frame;
use crate::transport::{
    Accepted, ClientConnection, Connection, FrameRead, FrameWrite, Incoming, Listener,
    ServerConnection, Transport, TransportError,
};

/// Frames in flight per direction before the sender waits.
const CHANNEL_FRAMES: usize = 1024;

type Registry = Arc<Mutex<HashMap<String, mpsc::Sender<ServerConnection>>>>;

/// An in-process transport. Clones share the same address space: a client connects to a
/// name a listener of the same transport bound.
#[derive(Debug, Clone, Default)]
pub struct InProcessTransport {
    listeners: Registry,
    next: Arc<AtomicU64>,
}

impl InProcessTransport {
    /// A transport with no listeners yet.
    pub fn new() -> Self {
        Self::default()
    }
}

struct ChannelReader<M> {
    rx: mpsc::Receiver<Frame<M>>,
}

#[async_trait]
impl<M: Send + 'static> FrameRead<M> for ChannelReader<M> {
    async fn read_frame(&mut self) -> Result<Incoming<M>, TransportError> {
        Ok(self
            .rx
            .recv()
            .await
            .map_or(Incoming::Closed, Incoming::Frame))
    }
}

struct ChannelWriter<M> {
    tx: Option<PollSender<Frame<M>>>,
    buffer: VecDeque<Frame<M>>,
}

impl<M: Send + 'static> FrameWrite<M> for ChannelWriter<M> {
    fn feed(&mut self, frame: Frame<M>) -> Result<(), TransportError> {
        if self.tx.is_none() {
            return Err(TransportError::Closed);
        }
        self.buffer.push_back(frame);
        Ok(())
    }

    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        while !self.buffer.is_empty() {
            let tx = self.tx.as_mut().ok_or(TransportError::Closed)?;
            ready!(tx.poll_reserve(cx)).map_err(|_| TransportError::Closed)?;
            if let Some(frame) = self.buffer.pop_front() {
                tx.send_item(frame).map_err(|_| TransportError::Closed)?;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        ready!(self.poll_flush(cx))?;
        self.tx = None;
        Poll::Ready(Ok(()))
    }
}

fn pair<A: Send + 'static, B: Send + 'static>(
    peer_a: String,
    peer_b: String,
) -> (Connection<A, B>, Connection<B, A>) {
    let (a_tx, a_rx) = mpsc::channel(CHANNEL_FRAMES);
    let (b_tx, b_rx) = mpsc::channel(CHANNEL_FRAMES);
    (
        Connection {
            reader: Box::new(ChannelReader { rx: a_rx }),
            writer: Box::new(ChannelWriter {
                tx: Some(PollSender::new(b_tx)),
                buffer: VecDeque::new(),
            }),
            peer: peer_a,
            certificate_name: None,
        },
        Connection {
            reader: Box::new(ChannelReader { rx: b_rx }),
            writer: Box::new(ChannelWriter {
                tx: Some(PollSender::new(a_tx)),
                buffer: VecDeque::new(),
            }),
            peer: peer_b,
            certificate_name: None,
        },
    )
}

struct ChannelListener {
    rx: mpsc::Receiver<ServerConnection>,
    addr: String,
    listeners: Registry,
}

impl Drop for ChannelListener {
    fn drop(&mut self) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.addr);
    }
}

#[async_trait]
impl Listener for ChannelListener {
    async fn accept(&mut self) -> Result<Accepted, TransportError> {
        self.rx
            .recv()
            .await
            .map(Accepted::ready)
            .ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> String {
        self.addr.clone()
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    /// Binds a name; an empty name or one ending in `:0` gets a fresh unique name.
    async fn bind(&self, addr: &str) -> Result<Box<dyn Listener>, TransportError> {
        let addr = if addr.is_empty() || addr.ends_with(":0") {
            format!("inprocess-{}", self.next.fetch_add(1, Ordering::Relaxed))
        } else {
            addr.to_owned()
        };
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if listeners.contains_key(&addr) {
            return Err(TransportError::io(
                format!("binding {addr}"),
                std::io::ErrorKind::AddrInUse.into(),
            ));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        listeners.insert(addr.clone(), tx);
        Ok(Box::new(ChannelListener {
            rx,
            addr,
            listeners: Arc::clone(&self.listeners),
        }))
    }

    async fn connect(&self, addr: &str) -> Result<ClientConnection, TransportError> {
        let listener = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .cloned();
        let refused = || {
            TransportError::io(
                format!("connecting to {addr}"),
                std::io::ErrorKind::ConnectionRefused.into(),
            )
        };
        let listener = listener.ok_or_else(refused)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (client, server) = pair(addr.to_owned(), format!("inprocess:{id}"));
        listener.send(server).await.map_err(|_| refused())?;
        Ok(client)
    }
}
