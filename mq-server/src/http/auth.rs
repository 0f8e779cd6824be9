//! Bearer tokens on the HTTP endpoint: when the server asks for credentials, every request
//! but `/healthz` and `/readyz` carries `Authorization: Bearer <token>` of a user with the
//! `stats` permission on every topic. The token is checked the way the protocol's Hello
//! is: by its SHA-256 digest, in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
    let Some(token) = bearer(request.headers()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <token> (a token the server knows)",
        );
    };
    match users.login(token) {
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut response = (status, format!("{why}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"mq\""),
        );
    }
    response
}
