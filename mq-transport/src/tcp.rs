//! [`TcpTransport`]: frames over TCP with [`FrameCodec`].

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::codec::{CodecError, FrameCodec};
use crate::frame::WireMsg;
use crate::protocol::{ClientMsg, DEFAULT_MAX_FRAME, Frame, ServerMsg};
use crate::transport::{
    ClientConnection, Connection, FrameRead, FrameWrite, Incoming, Listener, ServerConnection,
    Transport, TransportError,
};

/// Read buffer reserved per connection; grows on demand up to one maximum frame.
const READ_BUFFER: usize = 64 * 1024;

/// TCP with length-prefixed frames.
#[derive(Debug, Clone, Copy)]
pub struct TcpTransport {
    max_frame: usize,
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl TcpTransport {
    /// A TCP transport accepting frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    fn split<In: WireMsg, Out: WireMsg>(
        &self,
        stream: TcpStream,
        peer: String,
    ) -> Connection<In, Out> {
        // Frames are whole requests; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Connection {
            reader: Box::new(TcpReader {
                inner: FramedRead::with_capacity(
                    read,
                    FrameCodec::<In, Out>::new(self.max_frame),
                    READ_BUFFER,
                ),
            }),
            writer: Box::new(TcpWriter {
                inner: FramedWrite::new(write, FrameCodec::<In, Out>::new(self.max_frame)),
            }),
            peer,
        }
    }
}

struct TcpReader<In, Out> {
    inner: FramedRead<OwnedReadHalf, FrameCodec<In, Out>>,
}

#[async_trait]
impl<In: WireMsg, Out: WireMsg> FrameRead<In> for TcpReader<In, Out> {
    async fn read_frame(&mut self) -> Result<Incoming<In>, TransportError> {
        match self.inner.next().await {
            None => Ok(Incoming::Closed),
            Some(Ok(Ok(frame))) => Ok(Incoming::Frame(frame)),
            Some(Ok(Err(bad))) => Ok(Incoming::Bad(bad)),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

struct TcpWriter<In, Out> {
    inner: FramedWrite<OwnedWriteHalf, FrameCodec<In, Out>>,
}

#[async_trait]
impl<In: WireMsg, Out: WireMsg> FrameWrite<Out> for TcpWriter<In, Out> {
    async fn feed(&mut self, frame: Frame<Out>) -> Result<(), TransportError> {
        self.inner.feed(frame).await.map_err(TransportError::from)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        SinkExt::<Frame<Out>>::flush(&mut self.inner)
            .await
            .map_err(TransportError::from)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        SinkExt::<Frame<Out>>::close(&mut self.inner)
            .await
            .map_err(TransportError::from)
    }
}

struct TcpAcceptor {
    listener: TcpListener,
    transport: TcpTransport,
    addr: String,
}

#[async_trait]
impl Listener for TcpAcceptor {
    async fn accept(&mut self) -> Result<ServerConnection, TransportError> {
        let (stream, peer) = self
            .listener
            .accept()
            .await
            .map_err(|e| TransportError::io("accepting a connection", e))?;
        Ok(self.transport.split(stream, peer.to_string()))
    }

    fn local_addr(&self) -> String {
        self.addr.clone()
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn bind(&self, addr: &str) -> Result<Box<dyn Listener>, TransportError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| TransportError::io(format!("binding {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| TransportError::io(format!("reading the address bound for {addr}"), e))?;
        Ok(Box::new(TcpAcceptor {
            listener,
            transport: *self,
            addr: local.to_string(),
        }))
    }

    async fn connect(&self, addr: &str) -> Result<ClientConnection, TransportError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| TransportError::io(format!("connecting to {addr}"), e))?;
        Ok(self.split::<ServerMsg, ClientMsg>(stream, addr.to_owned()))
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::Codec(CodecError::Io(e))
    }
}
