//! The mq wire protocol and transports (see issue 3; in progress).
