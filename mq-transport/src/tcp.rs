//! [`TcpTransport`]: frames over TCP with [`FrameCodec`], in clear or inside TLS.
//!
//! With TLS the server reads the first byte a client sends before the handshake: a client
//! that speaks mq in clear (its first byte is a frame length, not a TLS handshake record)
//! gets an mq `Error` frame saying the port speaks TLS, instead of a silent close.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Encoder, FramedRead};

use crate::codec::{CodecError, FrameCodec};
use crate::frame::{WireMsg, encode_frame};
use crate::protocol::{ClientMsg, DEFAULT_MAX_FRAME, ErrorCode, Frame, RequestId, ServerMsg};
use crate::read_budget::{ReadBudget, UNCHARGED_BYTES};
use crate::tls::{self, ClientTls, ClientTlsReady, ServerTls, TLS_HANDSHAKE, TlsError};
use crate::traffic::Traffic;
use crate::transport::{
    Accepted, ClientConnection, Connection, FrameRead, FrameWrite, Incoming, Listener,
    ServerConnection, Transport, TransportError,
};

/// Read buffer reserved per connection; grows with the bytes of a large frame as they arrive.
const READ_BUFFER: usize = UNCHARGED_BYTES;

/// TCP with length-prefixed frames, optionally inside TLS.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    max_frame: usize,
    read_budget: ReadBudget,
    traffic: Traffic,
    server_tls: Option<Arc<ServerTls>>,
    client_tls: Option<ClientTlsReady>,
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl TcpTransport {
    /// A TCP transport accepting frames up to `max_frame` bytes, in clear.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            read_budget: ReadBudget::default(),
            traffic: Traffic::default(),
            server_tls: None,
            client_tls: None,
        }
    }

    /// Partially received frames of this transport's connections are charged to `budget`.
    #[must_use]
    pub fn with_read_budget(mut self, budget: ReadBudget) -> Self {
        self.read_budget = budget;
        self
    }

    /// Frames and bytes of this transport's connections are counted in `traffic`.
    #[must_use]
    pub fn with_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// Listeners of this transport accept TLS connections only, with `tls`.
    #[must_use]
    pub fn with_server_tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.server_tls = Some(tls);
        self
    }

    /// Connections this transport opens speak TLS, trusting and presenting what `tls` says.
    ///
    /// # Errors
    /// [`TlsError`] when its files cannot be read.
    pub fn with_client_tls(mut self, tls: &ClientTls) -> Result<Self, TlsError> {
        self.client_tls = Some(tls.ready()?);
        Ok(self)
    }

    fn split<S, In: WireMsg, Out: WireMsg>(&self, stream: S, peer: String) -> Connection<In, Out>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Connection {
            reader: Box::new(TcpReader {
                inner: FramedRead::with_capacity(
                    read,
                    FrameCodec::<In, Out>::with_budget(self.max_frame, self.read_budget.clone())
                        .with_traffic(self.traffic.clone()),
                    READ_BUFFER,
                ),
            }),
            writer: Box::new(TcpWriter {
                io: write,
                codec: FrameCodec::<In, Out>::new(self.max_frame)
                    .with_traffic(self.traffic.clone()),
                buffer: BytesMut::new(),
                grown: false,
            }),
            peer,
            certificate_name: None,
        }
    }
}

struct TcpReader<R, In, Out> {
    inner: FramedRead<R, FrameCodec<In, Out>>,
}

#[async_trait]
impl<R, In: WireMsg, Out: WireMsg> FrameRead<In> for TcpReader<R, In, Out>
where
    R: AsyncRead + Send + Unpin,
{
    async fn read_frame(&mut self) -> Result<Incoming<In>, TransportError> {
        match self.inner.next().await {
            None => Ok(Incoming::Closed),
            Some(Ok(Ok(frame))) => Ok(Incoming::Frame(frame)),
            Some(Ok(Err(bad))) => Ok(Incoming::Bad(bad)),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// Bytes of write buffer a connection keeps between writes: a buffer grown past it (a large
/// frame, a long queue) is let go once it is written, so that idle connections hold little.
const KEPT_WRITE_BUFFER: usize = 64 * 1024;

struct TcpWriter<W, In, Out> {
    io: W,
    codec: FrameCodec<In, Out>,
    buffer: BytesMut,
    /// The buffer grew past [`KEPT_WRITE_BUFFER`] since it was last let go.
    grown: bool,
}

impl<W, In: WireMsg, Out: WireMsg> FrameWrite<Out> for TcpWriter<W, In, Out>
where
    W: AsyncWrite + Send + Unpin,
{
    fn feed(&mut self, frame: Frame<Out>) -> Result<(), TransportError> {
        Encoder::encode(&mut self.codec, &frame, &mut self.buffer).map_err(TransportError::from)?;
        self.grown |= self.buffer.len() > KEPT_WRITE_BUFFER;
        Ok(())
    }

    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        while !self.buffer.is_empty() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.buffer)) {
                Ok(0) => {
                    return Poll::Ready(Err(
                        std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                    ));
                }
                Ok(n) => self.buffer.advance(n),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        if self.grown {
            self.buffer = BytesMut::new();
            self.grown = false;
        }
        Pin::new(&mut self.io)
            .poll_flush(cx)
            .map_err(TransportError::from)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        ready!(self.poll_flush(cx))?;
        Pin::new(&mut self.io)
            .poll_shutdown(cx)
            .map_err(TransportError::from)
    }
}

struct TcpAcceptor {
    listener: TcpListener,
    transport: TcpTransport,
    addr: String,
}

/// Completes a TLS connection: refuses a client that speaks in clear, then shakes hands.
async fn establish_tls(
    transport: TcpTransport,
    tls: Arc<ServerTls>,
    mut stream: TcpStream,
    peer: String,
) -> Result<ServerConnection, TransportError> {
    let mut first = [0u8; 1];
    let n = stream
        .peek(&mut first)
        .await
        .map_err(|e| TransportError::io("reading the first byte of a connection", e))?;
    if n == 1 && first[0] != TLS_HANDSHAKE {
        let refusal = Frame::new(
            RequestId(0),
            ServerMsg::Error {
                code: ErrorCode::HandshakeRequired,
                message: "this server speaks TLS on this port: connect with TLS \
                          (mq --tls-ca FILE, or ClientConfig::tls)"
                    .into(),
            },
        );
        let mut buf = BytesMut::new();
        if encode_frame(&refusal, transport.max_frame, &mut buf).is_ok() {
            let _ = stream.write_all(&buf).await;
            let _ = stream.shutdown().await;
        }
        return Err(TransportError::Tls(format!(
            "{peer} spoke in clear on a TLS port: told it to use TLS and closed"
        )));
    }
    let tls_stream = tls
        .acceptor()
        .accept(stream)
        .await
        .map_err(|e| TransportError::Tls(format!("TLS handshake with {peer} failed: {e}")))?;
    let certificate_name = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| tls::common_name(cert));
    let mut conn = transport.split(tls_stream, peer);
    conn.certificate_name = certificate_name;
    Ok(conn)
}

#[async_trait]
impl Listener for TcpAcceptor {
    async fn accept(&mut self) -> Result<Accepted, TransportError> {
        let (stream, peer) = self
            .listener
            .accept()
            .await
            .map_err(|e| TransportError::io("accepting a connection", e))?;
        // Frames are whole requests; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let peer = peer.to_string();
        Ok(match &self.transport.server_tls {
            None => Accepted::ready(self.transport.split(stream, peer)),
            Some(tls) => Accepted::pending(
                peer.clone(),
                establish_tls(self.transport.clone(), Arc::clone(tls), stream, peer),
            ),
        })
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
            transport: self.clone(),
            addr: local.to_string(),
        }))
    }

    async fn connect(&self, addr: &str) -> Result<ClientConnection, TransportError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| TransportError::io(format!("connecting to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.client_tls else {
            return Ok(self.split::<_, ServerMsg, ClientMsg>(stream, addr.to_owned()));
        };
        let name = tls::server_name(addr, tls.server_name.as_deref())
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let tls_stream = tls.connector.connect(name, stream).await.map_err(|e| {
            TransportError::Tls(format!(
                "TLS handshake with {addr} failed: {e} (does the server speak TLS there, \
                 and does --tls-ca hold the CA of its certificate?)"
            ))
        })?;
        Ok(self.split::<_, ServerMsg, ClientMsg>(tls_stream, addr.to_owned()))
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::Codec(CodecError::Io(e))
    }
}
