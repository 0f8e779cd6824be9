//! [`ClientError`]: what can go wrong for a client, in variants a caller can match on.

use std::time::Duration;

use mq_transport::ErrorCode;

/// A client failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// TLS could not be set up with the server: a handshake that failed (an untrusted or
    /// expired certificate, a wrong server name), TLS on one side only, or unreadable
    /// certificate files.
    #[error("TLS with the server at {addr} failed: {reason}")]
    Tls {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// Nothing accepted the connection.
    #[error("cannot connect to the server at {addr}: {reason}: is mq-server running there?")]
    ConnectionRefused {
        /// The address tried.
        addr: String,
        /// What the OS said.
        reason: String,
    },
    /// The connection is gone: the server closed it, or it failed. Without reconnecting
    /// (or after [`crate::Client::close`]) handles made from it stay unusable; with it, a
    /// request that was on its way when the connection was lost fails with this (it may or
    /// may not have been done), and the next one goes over the new connection.
    #[error("the connection to the server is closed{}: connect again", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    ConnectionClosed {
        /// Why, when the server said.
        reason: Option<String>,
    },
    /// The client tried to reconnect for as long as its [`crate::Reconnect`] policy allows,
    /// and gave up: every handle made from it fails from then on.
    #[error(
        "lost the connection to the server at {addr} and could not reconnect in {attempts} \
         attempts over {}: {reason}; is mq-server running there?",
        humantime_like(*waited)
    )]
    ReconnectFailed {
        /// The server's address.
        addr: String,
        /// Connection attempts made.
        attempts: u32,
        /// How long it tried.
        waited: Duration,
        /// Why the last attempt failed.
        reason: String,
    },
    /// An ack or nack of a delivery that came over a connection lost since: the server put
    /// it back for its group when that connection closed, and delivers it again.
    #[error(
        "offsets {offsets:?} were delivered over a connection that was lost since: the server \
         delivers them again (settle the new delivery)"
    )]
    Redelivered {
        /// The offsets.
        offsets: Vec<mq_core::Offset>,
    },
    /// The group is exclusive and already has a consumer.
    #[error("{message}")]
    GroupBusy {
        /// The server's message, naming topic and group.
        message: String,
    },
    /// The topic is full and refused the publish (backpressure).
    #[error("{message}")]
    TopicFull {
        /// The server's message, naming the topic and the limit.
        message: String,
    },
    /// A topic or group name is invalid.
    #[error("{message}")]
    InvalidName {
        /// What is wrong with it.
        message: String,
    },
    /// The server did not speak the protocol as expected.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was unexpected.
        message: String,
    },
    /// The server refused the request.
    #[error("{message} [{code}]")]
    Server {
        /// The wire error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// A message, or a batch, is larger than the server accepts; nothing was sent.
    #[error("{message}")]
    TooLarge {
        /// Which message, how large, and the server's limit.
        message: String,
    },
    /// A handle that needs a tokio runtime was made outside one.
    #[error(
        "{what} was called outside a tokio runtime: call it from async code running on \
         tokio (for example under #[tokio::main]), or inside Runtime::enter"
    )]
    NoRuntime {
        /// What was called.
        what: &'static str,
    },
    /// No reply within the request timeout; the connection was dropped, since a late reply
    /// could no longer be matched safely (a reconnecting client opens a new one).
    #[error("no reply from the server within {}: the connection was dropped", humantime_like(*after))]
    Timeout {
        /// The timeout.
        after: Duration,
    },
}

fn humantime_like(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl ClientError {
    /// The error for an `Error` frame.
    pub fn from_server(code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::GroupBusy => ClientError::GroupBusy { message },
            ErrorCode::TopicFull => ClientError::TopicFull { message },
            ErrorCode::InvalidName => ClientError::InvalidName { message },
            code => ClientError::Server { code, message },
        }
    }

    /// A closed connection without a reason.
    pub(crate) fn closed() -> Self {
        ClientError::ConnectionClosed { reason: None }
    }
}

impl From<mq_core::Error> for ClientError {
    fn from(e: mq_core::Error) -> Self {
        let code = ErrorCode::from(&e);
        ClientError::from_server(code, e.to_string())
    }
}

impl From<mq_core::NameError> for ClientError {
    fn from(e: mq_core::NameError) -> Self {
        ClientError::InvalidName {
            message: e.to_string(),
        }
    }
}
