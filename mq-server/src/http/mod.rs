//! The HTTP endpoint (`--http`): Prometheus metrics, health and readiness, the JSON API and
//! the dashboard, served by axum on the server's runtime, in TLS when the server has TLS.
//!
//! `listener.rs` binds and accepts (TLS included) and shuts down gracefully; `routes.rs`
//! maps paths to handlers; `auth.rs` checks bearer tokens; `metrics.rs` renders
//! `/metrics`; `dashboard.rs` serves the page compiled into the binary.

mod auth;
mod dashboard;
mod listener;
mod metrics;
pub(crate) mod routes;

pub use listener::HttpListener;
pub(crate) use listener::serve;
