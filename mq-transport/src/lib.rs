//! `mq-transport`: the mq wire protocol and the transports that carry it.
//!
//! - [`protocol`]: the messages ([`ClientMsg`], [`ServerMsg`]), their kind bytes and the
//!   wire [`ErrorCode`]s;
//! - [`wire`] and [`frame`]: runtime-free encoding and decoding with checked lengths;
//! - [`codec`]: [`FrameCodec`] for tokio-util framing, with a maximum frame size;
//! - [`read_budget`]: [`ReadBudget`], the broker-wide pool for partially received frames;
//! - [`Transport`]: the trait the server and client are written against, with
//!   [`TcpTransport`] and [`InProcessTransport`];
//! - [`Outbox`]: what a connection sends, written by the sender itself when the connection
//!   is idle, else by the connection's [`Flusher`].
//!
//! The transport knows frames, not broker rules. PROTOCOL.md documents every byte.

mod client_frames;
pub mod codec;
mod error_code;
pub mod frame;
mod inprocess;
mod kinds;
mod outbox;
pub mod protocol;
pub mod read_budget;
mod report;
mod server_frames;
mod tcp;
pub mod tls;
mod traffic;
mod transport;
pub mod wire;

pub use codec::{CodecError, FrameCodec};
pub use frame::{BadFrame, WireMsg, decode_frame, encode_frame};
pub use inprocess::InProcessTransport;
pub use outbox::{Blocked, Flusher, Outbox, OutboxClosed, TrySendError, outbox};
pub use protocol::{
    ClientMsg, DEFAULT_MAX_FRAME, DELIVERED_OVERHEAD, DELIVERY_FRAME_OVERHEAD, ErrorCode, Frame,
    HEARTBEAT_MISSES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RequestId, ServerMsg,
    SubscribeRequest, SubscriptionId, WireDelivery, max_message_size,
};
pub use read_budget::ReadBudget;
pub use report::{ConsumerConnection, GroupReport};
pub use tcp::TcpTransport;
pub use tls::{ClientTls, ServerTls, ServerTlsFiles, TlsError};
pub use traffic::Traffic;
pub use transport::{
    Accepted, ClientConnection, Connection, FrameRead, FrameWrite, Incoming, Listener,
    ServerConnection, Transport, TransportError,
};
