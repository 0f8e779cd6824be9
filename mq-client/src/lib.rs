//! The mq client SDK (see issue 3; in progress).
