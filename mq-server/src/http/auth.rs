//! Credentials on the HTTP endpoint: when the server asks for them, every request but
//! `/healthz` and `/readyz` carries a token of a user with the `stats` permission on every
//! topic — as `Authorization: Bearer <token>` (scrapers, scripts), or as the password of
//! HTTP Basic authentication (a browser asks for it, then sends it with every request of
//! the dashboard). The token is checked the way the protocol's Hello is: by its SHA-256
//! digest, in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::routes::HttpState;
use crate::users::Action;

/// Lets the request through, or answers 401 (no or unknown token) or 403 (a user without
/// `stats` on every topic).
pub(crate) async fn require_user(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let users = state.shared.users.current();
    if !users.required() {
        return next.run(request).await;
    }
    let Some(token) = token(request.headers()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <token> (a token the server knows), or \
             the token as the password of HTTP Basic authentication",
        );
    };
    match users.login(&token) {
        None => {
            tracing::warn!(path = %request.uri().path(), "failed http login");
            refuse(StatusCode::UNAUTHORIZED, "the bearer token is wrong")
        }
        Some(user) if !user.allows_everywhere(Action::Stats) => refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "user \"{}\" may not read the server's state: that needs stats on \"*\"",
                user.name
            ),
        ),
        Some(_) => next.run(request).await,
    }
}

/// The token of a Bearer header, or the password of a Basic one.
fn token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.trim().to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (_user, password) = pair.split_once(':')?;
    Some(password.to_owned())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut response = (status, format!("{why}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"mq\", charset=\"UTF-8\""),
        );
    }
    response
}
