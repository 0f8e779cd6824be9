//! [`ErrorCode`]: the typed codes of `Error` frames, declared once with their numbers and
//! names (PROTOCOL.md, "Error codes"), and how core errors map to them.

use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// Typed error codes carried by `Error` frames.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
            /// A code this version does not know.
            Unknown(u16),
        }

        impl ErrorCode {
            /// The code's number on the wire.
            pub fn as_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $code,)*
                    ErrorCode::Unknown(c) => c,
                }
            }

            /// The code for a number read from the wire.
            pub fn from_u16(code: u16) -> Self {
                match code {
                    $($code => ErrorCode::$name,)*
                    c => ErrorCode::Unknown(c),
                }
            }

            /// The code's name, as PROTOCOL.md lists it.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                    ErrorCode::Unknown(_) => "unknown",
                }
            }

            /// Every known code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];
        }
    };
}

error_codes! {
    /// The frame could not be decoded.
    Malformed = 1, "malformed";
    /// The frame kind is unknown.
    UnknownKind = 2, "unknown_kind";
    /// The frame exceeds the maximum frame size.
    FrameTooLarge = 3, "frame_too_large";
    /// A request came before the handshake, or a second handshake.
    HandshakeRequired = 4, "handshake_required";
    /// The client's protocol version is not supported.
    UnsupportedVersion = 5, "unsupported_version";
    /// The auth token is missing or wrong.
    Unauthorized = 6, "unauthorized";
    /// A topic or group name is invalid.
    InvalidName = 10, "invalid_name";
    /// The topic does not exist.
    TopicNotFound = 11, "topic_not_found";
    /// The topic already exists.
    TopicExists = 12, "topic_exists";
    /// The topic was deleted.
    TopicDeleted = 13, "topic_deleted";
    /// The group does not exist.
    GroupNotFound = 14, "group_not_found";
    /// The group is exclusive and has a consumer.
    GroupBusy = 15, "group_busy";
    /// The group has consumers attached.
    GroupInUse = 16, "group_in_use";
    /// The group uses another ack mode.
    AckModeMismatch = 17, "ack_mode_mismatch";
    /// The topic is full and refuses appends.
    TopicFull = 18, "topic_full";
    /// Acked or nacked offsets that are not in flight to this subscription.
    NotInFlight = 19, "not_in_flight";
    /// A configuration value is invalid.
    InvalidConfig = 20, "invalid_config";
    /// The subscription id is unknown on this connection.
    UnknownSubscription = 21, "unknown_subscription";
    /// The topic's files could not be read at start; it is set aside until repaired.
    TopicQuarantined = 22, "topic_quarantined";
    /// The connection holds as many subscriptions as the server allows.
    TooManySubscriptions = 23, "too_many_subscriptions";
    /// The broker holds its limit of topics.
    TooManyTopics = 24, "too_many_topics";
    /// The topic holds its limit of groups.
    TooManyGroups = 25, "too_many_groups";
    /// The user may not do this on this topic.
    PermissionDenied = 26, "permission_denied";
    /// The group already exists.
    GroupExists = 27, "group_exists";
    /// A subscription gave a start for a group that exists.
    StartConflict = 28, "start_conflict";
    /// Storage failed.
    Storage = 30, "storage";
    /// The server has too many connections, or no buffer space for a partial frame.
    ServerBusy = 31, "server_busy";
    /// The server is shutting down.
    ShuttingDown = 32, "shutting_down";
    /// The peer took too long (handshake deadline, idle timeout).
    Timeout = 33, "timeout";
    /// An unexpected server failure.
    Internal = 34, "internal";
    /// The disk is (almost) full: publishes are refused until space returns.
    DiskFull = 35, "disk_full";
    /// The broker holds its memory bound of messages: publishes are refused until consumers
    /// ack (or topics are purged).
    MemoryFull = 36, "memory_full";
    /// A numbered batch overlaps what its producer already stored (version 2).
    SequenceOverlap = 37, "sequence_overlap";
    /// A numbered batch is already stored, too long ago to tell its offsets (version 2).
    DuplicateBatch = 38, "duplicate_batch";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

impl From<&mq_core::Error> for ErrorCode {
    fn from(e: &mq_core::Error) -> Self {
        use mq_core::Error as E;
        match e {
            E::InvalidName(_) => ErrorCode::InvalidName,
            E::TopicNotFound { .. } => ErrorCode::TopicNotFound,
            E::TopicExists { .. } => ErrorCode::TopicExists,
            E::TopicDeleted { .. } => ErrorCode::TopicDeleted,
            E::GroupNotFound { .. } => ErrorCode::GroupNotFound,
            E::GroupExists { .. } => ErrorCode::GroupExists,
            E::StartConflict { .. } => ErrorCode::StartConflict,
            E::GroupBusy { .. } => ErrorCode::GroupBusy,
            E::GroupInUse { .. } => ErrorCode::GroupInUse,
            E::AckModeMismatch { .. } => ErrorCode::AckModeMismatch,
            E::TopicFull { .. } => ErrorCode::TopicFull,
            E::MemoryFull { .. } => ErrorCode::MemoryFull,
            E::NotInFlight { .. } => ErrorCode::NotInFlight,
            E::SequenceOverlap { .. } => ErrorCode::SequenceOverlap,
            E::DuplicateBatch { .. } => ErrorCode::DuplicateBatch,
            E::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            E::MessageTooLarge { .. } => ErrorCode::FrameTooLarge,
            E::TooManyTopics { .. } => ErrorCode::TooManyTopics,
            E::TooManyGroups { .. } => ErrorCode::TooManyGroups,
            E::TopicQuarantined { .. } => ErrorCode::TopicQuarantined,
            E::StoredMessageTooLarge { .. } => ErrorCode::Internal,
            E::Storage(s) if s.kind == Some(std::io::ErrorKind::StorageFull) => ErrorCode::DiskFull,
            E::Storage(_) => ErrorCode::Storage,
        }
    }
}
