//! The HTTP endpoint's paths: health and readiness (open to everyone), metrics, the JSON
//! API (the same documents as `mq stats --format json`) and the dashboard.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mq_core::{GroupName, TopicName};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::{auth, dashboard, metrics};
use crate::session::Shared;

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) shared: Shared,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) registry: Arc<Registry>,
}

/// The endpoint's routes.
pub(crate) fn router(shared: Shared, stop: watch::Receiver<bool>) -> Router {
    let state = HttpState {
        registry: Arc::new(metrics::registry(&shared)),
        shared,
        stop,
    };
    let guarded = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/v1/stats", get(broker_stats))
        .route("/api/v1/settings", get(settings))
        .route("/api/v1/topics", get(topics))
        .route("/api/v1/topics/{topic}", get(topic))
        .route("/api/v1/topics/{topic}/groups", get(groups))
        .route("/api/v1/topics/{topic}/groups/{group}", get(group))
        .merge(dashboard::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_user,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(guarded)
        .with_state(state)
}

/// An API error: the status and the broker's message, answered as JSON.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<mq_core::Error> for ApiError {
    fn from(e: mq_core::Error) -> Self {
        let status = match e {
            mq_core::Error::TopicNotFound { .. } | mq_core::Error::GroupNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            mq_core::Error::InvalidName(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

impl From<mq_core::NameError> for ApiError {
    fn from(e: mq_core::NameError) -> Self {
        Self(StatusCode::BAD_REQUEST, e.to_string())
    }
}

async fn ready(State(state): State<HttpState>) -> Response {
    if *state.stop.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn broker_stats(State(state): State<HttpState>) -> Response {
    Json(state.shared.broker_stats()).into_response()
}

async fn settings(State(state): State<HttpState>) -> Response {
    let config = &state.shared.config;
    Json(serde_json::json!({
        "server": format!("mq-server {}", env!("CARGO_PKG_VERSION")),
        "storage": config.storage,
        "data_dir": config.data_dir,
        "fsync": config.fsync,
        "max_memory": config.memory_bound(),
        "max_connections": config.max_connections,
        "max_topics": config.max_topics,
        "max_frame": config.max_frame,
        "heartbeat_interval_ms": config.heartbeat_interval.as_millis(),
        "auth": state.shared.users.current().required(),
    }))
    .into_response()
}

async fn topics(State(state): State<HttpState>) -> Response {
    let broker = &state.shared.broker;
    let stats: Vec<_> = broker
        .topics()
        .iter()
        .filter_map(|t| broker.topic_stats(t).ok())
        .collect();
    Json(stats).into_response()
}

async fn topic(
    State(state): State<HttpState>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    let topic = TopicName::new(topic)?;
    Ok(Json(state.shared.broker.describe(&topic)?).into_response())
}

async fn groups(
    State(state): State<HttpState>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    let topic = TopicName::new(topic)?;
    Ok(Json(state.shared.broker.groups(&topic)?).into_response())
}

async fn group(
    State(state): State<HttpState>,
    Path((topic, group)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (topic, group) = (TopicName::new(topic)?, GroupName::new(group)?);
    Ok(Json(state.shared.report(&topic, &group)?).into_response())
}
