//! The frame kinds, declared once: the kind byte of every client and server frame, its
//! name, and which message variant it carries.

use crate::protocol::{ClientMsg, ServerMsg};

/// Declares every frame kind once: its constant in [`kind`], its name in [`KINDS`], and
/// the `kind_byte` of the message enum that carries it.
macro_rules! frame_kinds {
    ($(
        $msg:ident { $($konst:ident = $byte:literal => $variant:ident, $name:literal;)* }
    )*) => {
        /// The kind bytes: client frames below 0x80, server frames from 0x80.
        pub mod kind {
            $($(
                #[doc = concat!("`", $name, "`.")]
                pub const $konst: u8 = $byte;
            )*)*
        }

        /// Kind bytes of every frame, with their names as PROTOCOL.md lists them.
        pub const KINDS: &[(u8, &str)] = &[$($((kind::$konst, $name),)*)*];

        $(
            impl $msg {
                /// The kind byte of this message's frame.
                pub fn kind_byte(&self) -> u8 {
                    match self {
                        $($msg::$variant { .. } => kind::$konst,)*
                    }
                }
            }
        )*
    };
}

frame_kinds! {
    ClientMsg {
        HELLO = 0x01 => Hello, "Hello";
        PUBLISH = 0x02 => Publish, "Publish";
        SUBSCRIBE = 0x03 => Subscribe, "Subscribe";
        UNSUBSCRIBE = 0x04 => Unsubscribe, "Unsubscribe";
        ACK = 0x05 => Ack, "Ack";
        NACK = 0x06 => Nack, "Nack";
        CREDIT = 0x07 => Credit, "Credit";
        CREATE_TOPIC = 0x08 => CreateTopic, "CreateTopic";
        DELETE_TOPIC = 0x09 => DeleteTopic, "DeleteTopic";
        LIST_TOPICS = 0x0A => ListTopics, "ListTopics";
        DESCRIBE_TOPIC = 0x0B => DescribeTopic, "DescribeTopic";
        LIST_GROUPS = 0x0C => ListGroups, "ListGroups";
        DELETE_GROUP = 0x0D => DeleteGroup, "DeleteGroup";
        STATS = 0x0E => Stats, "Stats";
        PING = 0x0F => Ping, "Ping";
        GOODBYE = 0x10 => Goodbye, "Goodbye";
        DESCRIBE_GROUP = 0x11 => DescribeGroup, "DescribeGroup";
        PEEK = 0x12 => Peek, "Peek";
        CREATE_GROUP = 0x13 => CreateGroup, "CreateGroup";
        SEEK_GROUP = 0x14 => SeekGroup, "SeekGroup";
        PURGE_TOPIC = 0x15 => PurgeTopic, "PurgeTopic";
        ALTER_TOPIC = 0x16 => AlterTopic, "AlterTopic";
        PUBLISH_IDEMPOTENT = 0x17 => PublishIdempotent, "PublishIdempotent";
    }
    ServerMsg {
        WELCOME = 0x81 => Welcome, "Welcome";
        PUBLISHED = 0x82 => Published, "Published";
        SUBSCRIBED = 0x83 => Subscribed, "Subscribed";
        DELIVERIES = 0x84 => Deliveries, "Deliveries";
        DONE = 0x85 => Done, "Done";
        TOPICS = 0x86 => Topics, "Topics";
        TOPIC_INFO = 0x87 => TopicInfo, "TopicInfo";
        GROUPS = 0x88 => Groups, "Groups";
        TOPIC_STATS = 0x89 => TopicStats, "TopicStats";
        BROKER_STATS = 0x8A => BrokerStats, "BrokerStats";
        PONG = 0x8B => Pong, "Pong";
        SUBSCRIPTION_ENDED = 0x8C => SubscriptionEnded, "SubscriptionEnded";
        ERROR = 0x8E => Error, "Error";
        SERVER_GOODBYE = 0x8F => Goodbye, "ServerGoodbye";
        GROUP_REPORT = 0x90 => GroupReport, "GroupReport";
        PEEKED = 0x91 => Peeked, "Peeked";
    }
}
