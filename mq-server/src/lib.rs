//! The mq broker server (see issue 3; in progress).
