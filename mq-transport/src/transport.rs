//! The [`Transport`] trait: how a server accepts and a client opens connections that carry
//! frames. Two implementations: [`crate::TcpTransport`] and [`crate::InProcessTransport`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;

use crate::codec::CodecError;
use crate::frame::BadFrame;
use crate::protocol::{ClientMsg, Frame, ServerMsg};

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not bind, connect, read or write.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `connecting to 127.0.0.1:9800`.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stream broke framing (oversized frame) or a frame could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The peer is gone.
    #[error("connection closed")]
    Closed,
    /// The TLS handshake failed, or one side speaks TLS and the other does not.
    #[error("{0}")]
    Tls(String),
    /// The peer's socket took nothing written to it for this long.
    #[error("the peer took no data for {0:?}: closing the connection as stalled")]
    Stalled(std::time::Duration),
}

impl TransportError {
    /// The oversized frame that broke the stream, if that is what happened.
    pub fn frame_too_large(&self) -> Option<(usize, usize)> {
        match self {
            TransportError::Codec(CodecError::FrameTooLarge { len, max }) => Some((*len, *max)),
            _ => None,
        }
    }

    /// Whether the peer went away (closed, reset or aborted the connection) rather than
    /// something going wrong on this side: the ordinary end of a client that exits
    /// without saying goodbye.
    pub fn is_peer_gone(&self) -> bool {
        let io = match self {
            TransportError::Closed => return true,
            TransportError::Io { source, .. } => source,
            TransportError::Codec(CodecError::Io(source)) => source,
            _ => return false,
        };
        matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
        )
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// What one read of a connection yields.
#[derive(Debug)]
pub enum Incoming<M> {
    /// A whole, valid frame.
    Frame(Frame<M>),
    /// A frame whose content could not be decoded; its length was fine, so the stream
    /// stays usable.
    Bad(BadFrame),
    /// The peer closed the connection cleanly (between frames).
    Closed,
}

/// The receiving half of a connection.
#[async_trait]
pub trait FrameRead<M>: Send {
    /// The next frame, a bad frame, or the clean end of the stream.
    ///
    /// Cancel-safe: partial input stays buffered in the reader, so dropping the future
    /// loses nothing.
    ///
    /// # Errors
    /// [`TransportError`] on I/O failure, a stream that ends mid-frame, or an oversized
    /// frame ([`CodecError::FrameTooLarge`]); the connection is then unusable.
    async fn read_frame(&mut self) -> Result<Incoming<M>, TransportError>;
}

/// The sending half of a connection: frames are encoded into a buffer as they are fed and
/// written to the peer when flushed.
pub trait FrameWrite<M>: Send {
    /// Encodes `frame` behind what is buffered; it is sent by the next flush. Never waits:
    /// the buffer grows (see [`FrameWrite::buffered`]).
    ///
    /// # Errors
    /// [`TransportError`] when the connection failed or the frame cannot be encoded (then
    /// nothing of it was buffered).
    fn feed(&mut self, frame: Frame<M>) -> Result<(), TransportError>;

    /// Bytes (for a byte stream) or frames buffered and not yet written.
    fn buffered(&self) -> usize;

    /// Writes what is buffered. Cancel-safe: what the peer has not taken stays buffered
    /// for the next call, whichever task makes it.
    ///
    /// # Errors
    /// [`TransportError`] when the connection failed.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Writes what is buffered, then closes the sending direction.
    ///
    /// # Errors
    /// [`TransportError`] when the connection failed.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;
}

impl<M> dyn FrameWrite<M> + '_ {
    /// Writes everything buffered.
    ///
    /// # Errors
    /// [`TransportError`] when the connection failed.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Writes everything buffered and closes the sending direction.
    ///
    /// # Errors
    /// [`TransportError`] when the connection failed.
    pub async fn close(&mut self) -> Result<(), TransportError> {
        std::future::poll_fn(|cx| self.poll_close(cx)).await
    }
}

/// One connection: a reader of `In` frames and a writer of `Out` frames, usable from two
/// tasks at once.
pub struct Connection<In, Out> {
    /// Receives frames.
    pub reader: Box<dyn FrameRead<In>>,
    /// Sends frames.
    pub writer: Box<dyn FrameWrite<Out>>,
    /// The peer's address, for logs.
    pub peer: String,
    /// The common name (CN) in the subject of the client certificate the TLS handshake
    /// verified (mutual TLS); `None` for every other connection.
    pub certificate_name: Option<String>,
}

impl<In, Out> fmt::Debug for Connection<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("certificate_name", &self.certificate_name)
            .finish_non_exhaustive()
    }
}

/// A connection as the server sees it.
pub type ServerConnection = Connection<ClientMsg, ServerMsg>;
/// A connection as a client sees it.
pub type ClientConnection = Connection<ServerMsg, ClientMsg>;

/// The work left to make an accepted connection ready.
type Establish = Pin<Box<dyn Future<Output = Result<ServerConnection, TransportError>> + Send>>;

/// A connection accepted but maybe not ready: what remains (a TLS handshake) runs in the
/// connection's own task, under its handshake deadline, never in the accept loop.
pub struct Accepted {
    /// The peer's address, for logs.
    pub peer: String,
    establish: Establish,
}

impl Accepted {
    /// A connection that is ready now.
    pub fn ready(conn: ServerConnection) -> Self {
        let peer = conn.peer.clone();
        Self {
            peer,
            establish: Box::pin(async move { Ok(conn) }),
        }
    }

    /// A connection that is ready once `establish` completes.
    pub fn pending(
        peer: String,
        establish: impl Future<Output = Result<ServerConnection, TransportError>> + Send + 'static,
    ) -> Self {
        Self {
            peer,
            establish: Box::pin(establish),
        }
    }

    /// Completes what remains (the TLS handshake).
    ///
    /// # Errors
    /// [`TransportError::Tls`] when the handshake fails; I/O errors.
    pub async fn establish(self) -> Result<ServerConnection, TransportError> {
        self.establish.await
    }
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Accepts connections.
#[async_trait]
pub trait Listener: Send {
    /// The next connection; the caller completes it with [`Accepted::establish`].
    ///
    /// # Errors
    /// [`TransportError::Io`] when accepting failed (often transient: back off and retry).
    async fn accept(&mut self) -> Result<Accepted, TransportError>;

    /// The address clients connect to.
    fn local_addr(&self) -> String;
}

/// A way to carry frames between clients and a server.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Listens on `addr`.
    ///
    /// # Errors
    /// [`TransportError::Io`] when the address cannot be bound.
    async fn bind(&self, addr: &str) -> Result<Box<dyn Listener>, TransportError>;

    /// Connects to a server listening on `addr`.
    ///
    /// # Errors
    /// [`TransportError::Io`] when nothing listens there.
    async fn connect(&self, addr: &str) -> Result<ClientConnection, TransportError>;
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_peer_that_went_away_is_told_apart_from_a_failure_here() {
        let gone = [ErrorKind::BrokenPipe, ErrorKind::ConnectionReset]
            .map(|kind| TransportError::from(Error::from(kind)));
        assert!(gone.iter().all(TransportError::is_peer_gone));
        assert!(TransportError::Closed.is_peer_gone());
        assert!(
            TransportError::io("writing", Error::from(ErrorKind::ConnectionAborted)).is_peer_gone()
        );
        let here = [
            TransportError::Stalled(Duration::from_secs(30)),
            TransportError::io("writing", Error::from(ErrorKind::PermissionDenied)),
            TransportError::Tls("bad certificate".into()),
        ];
        assert!(!here.iter().any(TransportError::is_peer_gone));
    }
}
