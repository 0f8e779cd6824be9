//! The handshake (`Hello` → `Welcome`) and the connection deadlines: no Hello in time, idle
//! too long, a second Hello.

use std::time::Duration;

use mq_transport::{
    ClientMsg, ErrorCode, Frame, HEARTBEAT_MISSES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    ServerMsg,
};

use super::{Shared, error};
use crate::users::{Login, Users, digest};

/// Who logs in: by the token when the client sent one, else by the common name of the client
/// certificate the TLS handshake verified.
fn login(
    users: &Users,
    token: Option<&str>,
    certificate_name: Option<&str>,
) -> Result<Login, ServerMsg> {
    let refused = |why: String| error(ErrorCode::Unauthorized, why);
    match (token, certificate_name) {
        (Some(token), _) => match users.login(token) {
            Some(_) => Ok(Login::Token(digest(token))),
            None => Err(refused(
                "auth token wrong: pass a token the server knows (MQ_AUTH_TOKEN)".into(),
            )),
        },
        (None, Some(cn)) => match users.by_certificate(cn) {
            Some(_) => Ok(Login::Certificate(cn.to_owned())),
            None => Err(refused(format!(
                "no user has the client certificate's common name \"{cn}\": the server's \
                 [[users]] need certificate_cn = \"{cn}\", or pass a token"
            ))),
        },
        (None, None) => Err(refused(
            "auth token missing: pass a token the server knows (MQ_AUTH_TOKEN)".into(),
        )),
    }
}

/// Checks a connection's first frame: `Welcome` in the connection's protocol version (the
/// lower of the client's and the server's newest), or the refusal that ends the connection
/// (also when the server is `stopping`).
pub(crate) fn hello(
    shared: &Shared,
    frame: Frame<ClientMsg>,
    stopping: bool,
    certificate_name: Option<&str>,
) -> Result<(Option<Login>, ServerMsg), ServerMsg> {
    if stopping {
        return Err(error(
            ErrorCode::ShuttingDown,
            "the server is shutting down: connect again once it is back",
        ));
    }
    let ClientMsg::Hello {
        version,
        client,
        token,
    } = frame.msg
    else {
        return Err(error(
            ErrorCode::HandshakeRequired,
            "the first frame must be Hello: see PROTOCOL.md, handshake",
        ));
    };
    if version < MIN_PROTOCOL_VERSION {
        return Err(error(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported: this server speaks \
                 {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
            ),
        ));
    }
    let version = version.min(PROTOCOL_VERSION);
    let users = shared.users.current();
    let login = if users.required() {
        Some(login(&users, token.as_deref(), certificate_name)?)
    } else {
        None
    };
    let user = login.as_ref().and_then(|l| users.find(l));
    tracing::debug!(%client, user = user.map_or("anonymous", |u| u.name.as_str()), "handshake done");
    Ok((
        login,
        ServerMsg::Welcome {
            version,
            server: format!("mq-server {}", env!("CARGO_PKG_VERSION")),
            max_frame: u32::try_from(shared.config.max_frame).unwrap_or(u32::MAX),
            storage: shared.broker.storage_kind().to_owned(),
            // Version 1 knows no heartbeat.
            heartbeat_ms: if version >= 2 {
                u32::try_from(shared.config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX)
            } else {
                0
            },
            max_message: if version >= 2 {
                mq_transport::max_message_size(shared.config.max_frame)
            } else {
                0
            },
        },
    ))
}

/// The reply to a second Hello (the connection stays usable).
pub(crate) fn again() -> ServerMsg {
    error(
        ErrorCode::HandshakeRequired,
        "this connection has already completed its handshake",
    )
}

/// The farewell of a connection that sent no Hello within `deadline`.
pub(crate) fn timed_out(deadline: Duration) -> ServerMsg {
    error(
        ErrorCode::Timeout,
        format!(
            "no handshake within {}: send Hello first",
            humantime::format_duration(deadline)
        ),
    )
}

/// The farewell of a version-2 connection that sent nothing for [`HEARTBEAT_MISSES`]
/// heartbeat intervals of `interval`.
pub(crate) fn silent(interval: Duration) -> ServerMsg {
    error(
        ErrorCode::Timeout,
        format!(
            "nothing received for {} ({HEARTBEAT_MISSES} heartbeat intervals of {}): send Ping \
             every interval Welcome announces; closing the connection",
            humantime::format_duration(interval * HEARTBEAT_MISSES),
            humantime::format_duration(interval)
        ),
    )
}

/// The farewell of a connection without subscriptions that sent nothing for `idle`.
pub(crate) fn idle(idle: Duration) -> ServerMsg {
    error(
        ErrorCode::Timeout,
        format!(
            "idle for {}: closing the connection",
            humantime::format_duration(idle)
        ),
    )
}
